// RoPE + paged KV write and paged attention (decode and prefill rows in one launch, split-K; the prefill tile kernels
// on CUDA cores and on tensor cores) against src/backends/reference/ops.ts, at head_dim 8, 64 and 128, GQA groups 1,
// 2, 4, 16, block sizes that do not divide the lengths. Ignored (with the reason in the name) where no NVIDIA driver is present.
import assert from "node:assert/strict";
import * as ops from "../src/backends/reference/ops.ts";
import { roundTo } from "../src/model/dtype.ts";
import { ropeTables } from "../src/model/rope.ts";
import { CudaDevice } from "../src/backends/cuda/device.ts";
import {
  attentionPlan,
  CudaOps,
  type Half,
  PF_ROWS,
  type PrefillKernel,
  prefillKernelFits,
  prefillTcFits,
} from "../src/backends/cuda/ops.ts";
import { cudaKernelTest, download, poisoned, randomArray, relErr, upload } from "../src/backends/cuda/testing.ts";
import { mixedBatch, mixedBatchReference, ROPE, splitKReversed } from "./helpers/cuda_attention.ts";

let seed = Math.floor(Math.random() * 1e9);
const rnd = (n: number, scale = 1) => randomArray(n, ++seed, scale);

function gpuTest(name: string, fn: (o: CudaOps, dev: CudaDevice) => Promise<void>, kv: Half) {
  cudaKernelTest(name, (k, dev) => fn(new CudaOps(k, kv, kv, kv), dev));
}

for (const kv of ["bf16", "f16"] as const) {
  for (const [nh, nkv, d, qkNorm] of [[4, 4, 8, false], [8, 4, 128, true], [8, 2, 64, false]] as const) {
    gpuTest(
      `rope_kv: RoPE${qkNorm ? " + qk-norm" : ""} and paged KV write (${kv}, ${nh}/${nkv} heads, d=${d})`,
      async (o, dev) => {
        const T = 19, bs = 5, nb = 9, maxPos = 64, eps = 1e-6, qkvDim = (nh + 2 * nkv) * d;
        const qkv = rnd(T * qkvDim, 2);
        const positions = Int32Array.from({ length: T }, (_, i) => (i * 13 + 5) % maxPos);
        const slots = Int32Array.from({ length: T }, (_, i) => (i === 4 ? -1 : (i * 7) % (nb * bs)));
        const { cos, sin } = ropeTables(ROPE, d, maxPos);
        const qn = qkNorm ? rnd(d) : null, kn = qkNorm ? rnd(d) : null;
        using qkvb = upload(dev, qkv, "f32"), cb = upload(dev, cos, "f32"), sb = upload(dev, sin, "f32");
        using pb = upload(dev, positions, "i32"), slb = upload(dev, slots, "i32");
        using qnb = upload(dev, qn ?? new Float32Array(1), "f32"), knb = upload(dev, kn ?? new Float32Array(1), "f32");
        const cacheN = nb * nkv * bs * d;
        using qb = poisoned(dev, T * nh * d, 4), kc = poisoned(dev, cacheN, 2), vc = poisoned(dev, cacheN, 2);
        o.ropeKv({
          qkv: qkvb.ptr,
          cos: cb.ptr,
          sin: sb.ptr,
          qNorm: qn ? qnb.ptr : 0n,
          kNorm: kn ? knb.ptr : 0n,
          positions: pb.ptr,
          slots: slb.ptr,
          q: qb.ptr,
          kCache: kc.ptr,
          vCache: vc.ptr,
          n: T,
          nh,
          nkv,
          d,
          blockSize: bs,
          eps,
        });
        const q = new Float32Array(T * nh * d), k = new Float32Array(T * nkv * d), v = new Float32Array(T * nkv * d);
        for (let t = 0; t < T; t++) {
          const row = qkv.subarray(t * qkvDim, (t + 1) * qkvDim);
          q.set(row.subarray(0, nh * d), t * nh * d);
          k.set(row.subarray(nh * d, (nh + nkv) * d), t * nkv * d);
          v.set(row.subarray((nh + nkv) * d), t * nkv * d);
        }
        if (qn && kn) {
          ops.rmsNorm(q, qn, T * nh, d, eps, q);
          ops.rmsNorm(k, kn, T * nkv, d, eps, k);
        }
        ops.rope(q, positions, nh, d, cos, sin);
        ops.rope(k, positions, nkv, d, cos, sin);
        const eq = relErr(await download(dev, qb, T * nh * d, "f32"), q);
        assert.ok(eq < 1e-5, `q error ${eq}`);
        const gotK = await download(dev, kc, cacheN, kv), gotV = await download(dev, vc, cacheN, kv);
        const kr = roundTo(k, kv), vr = roundTo(v, kv);
        // The last write to a slot wins (slots repeat when T > nb*bs / 7); compare each slot's last writer.
        const last = new Map<number, number>();
        slots.forEach((s, t) => s >= 0 && last.set(s, t));
        for (const [s, t] of last) {
          for (let h = 0; h < nkv; h++) {
            const off = ((Math.floor(s / bs) * nkv + h) * bs + (s % bs)) * d;
            const ek = relErr(gotK.subarray(off, off + d), kr.subarray((t * nkv + h) * d, (t * nkv + h + 1) * d));
            const ev = relErr(gotV.subarray(off, off + d), vr.subarray((t * nkv + h) * d, (t * nkv + h + 1) * d));
            assert.ok(ek < 1e-2 && ev === 0, `slot ${s} head ${h}: k error ${ek}, v error ${ev}`);
          }
        }
      },
      kv,
    );
  }

  // [nh, nkv, d, block size, sliding window, split plan as for a decode step (short splits) or a prefill]
  const CASES: [number, number, number, number, number, "decode" | "prefill"][] = [
    [4, 4, 8, 16, 0, "decode"],
    [8, 4, 128, 5, 0, "prefill"],
    [8, 2, 64, 7, 0, "decode"],
    [16, 1, 128, 16, 0, "prefill"],
    [8, 2, 64, 7, 100, "prefill"],
    [8, 8, 80, 16, 0, "prefill"],
    [32, 4, 96, 5, 0, "prefill"],
  ];
  for (const [nh, nkv, d, bs, window, splitMode] of CASES) {
    const label = `${kv}, ${nh}/${nkv} heads, d=${d}, block ${bs}${
      window ? `, window ${window}` : ""
    }, ${splitMode} splits`;
    gpuTest(
      `paged attention: split-K (token list) and tiled prefill kernels, 600 positions (${label})`,
      async (o, dev) => {
        const batch = mixedBatch(bs), { seqs, maxBlocks, nb, tables, T, positions, tokenSeq, queryStarts } = batch;
        const cacheN = nb * nkv * bs * d;
        const kCache = roundTo(rnd(cacheN), kv), vCache = roundTo(rnd(cacheN), kv), q = rnd(T * nh * d, 2);
        using kb = upload(dev, kCache, kv), vb = upload(dev, vCache, kv), qb = upload(dev, q, "f32");
        using tb = upload(dev, tables, "i32"), sb = upload(dev, tokenSeq, "i32"), pb = upload(dev, positions, "i32");
        const plan = attentionPlan(splitMode === "decode" ? 1 : T, 600);
        const splits = plan.splits + 1; // one spare, always-empty split
        const want = mixedBatchReference(batch, { q, kCache, vCache, nh, nkv, d, window });
        const bound = kv === "bf16" ? 1.6e-2 : 2e-3;
        const common = {
          q: qb.ptr,
          kCache: kb.ptr,
          vCache: vb.ptr,
          blockTables: tb.ptr,
          positions: pb.ptr,
          nh,
          nkv,
          d,
        };
        const rest = { blockSize: bs, maxBlocks, window, scale: 1 / Math.sqrt(d) };
        // Split-K kernel over every token, listed in reverse order (rows of the partials follow the list).
        {
          const args = { ...common, ...rest, tokenSeq: sb.ptr }, p = { splits, splitLen: plan.splitLen };
          using out = poisoned(dev, T * nh * d, 2), o32 = poisoned(dev, T * nh * d, 4);
          const e = relErr(await splitKReversed(o, dev, args, T, p, { buf: out, dtype: kv }), want);
          assert.ok(e < bound, `split-K attention error ${e}`);
          const f32ops = new CudaOps(o.k, kv, kv, "f32");
          const e32 = relErr(await splitKReversed(f32ops, dev, args, T, p, { buf: o32, dtype: "f32" }), want);
          assert.ok(e32 < 1e-5, `split-K attention error with f32 output ${e32}`);
        }
        // Tiled prefill kernels over every sequence (the 1-token decode row included), tiles of PF_ROWS/G tokens: the
        // CUDA-core kernel (every case) and the tensor-core one (d = 64 and 128 here; d = 8 is the fallback's alone).
        const G = nh / nkv;
        if (prefillKernelFits(G, d)) {
          const per = Math.floor(PF_ROWS / G), tl: number[] = [];
          seqs.forEach((s, b) => {
            for (let k = 0; k < s.n; k += per) tl.push(b, queryStarts[b]! + k, Math.min(per, s.n - k));
          });
          using tiles = upload(dev, Int32Array.from(tl), "i32");
          const args = { ...common, ...rest, tileList: tiles.ptr, tiles: tl.length / 3 };
          const f32ops = new CudaOps(o.k, kv, kv, "f32");
          const kernels: PrefillKernel[] = prefillTcFits(kv, G, d) ? ["cores", "tc"] : ["cores"];
          // The automatic choice: tensor cores for 16-bit activations where they fit, the exact kernel for f32.
          assert.equal(f32ops.prefillKernel(G, d), "cores");
          if (prefillTcFits(kv, G, d) && Deno.env.get("TURBODENO_CUDA_PREFILL_TC") !== "0") {
            assert.equal(o.prefillKernel(G, d), "tc");
          }
          for (const kernel of kernels) {
            using out = poisoned(dev, T * nh * d, 2);
            o.attentionPrefill({ ...args, out: out.ptr, kernel });
            const e = relErr(await download(dev, out, T * nh * d, kv), want);
            assert.ok(e < bound, `prefill attention (${kernel}) error ${e}`);
            // With f32 output the kernel's own error shows.
            using o32 = poisoned(dev, T * nh * d, 4);
            f32ops.attentionPrefill({ ...args, out: o32.ptr, kernel });
            const got = await download(dev, o32, T * nh * d, "f32");
            const e32 = relErr(got, want);
            if (kernel === "cores") {
              // f32 arithmetic vs the reference's f64.
              assert.ok(e32 < 1e-5, `prefill attention (cores) error with f32 output ${e32}`);
              continue;
            }
            assert.ok(e32 < bound, `prefill attention (tc) error with f32 output ${e32}`);
            // Worst case of the tensor-core kernel (attn_prefill.cu, attn_prefill_tc): q * scale and p rounded to the
            // cache type (unit roundoff u), K and V exact. A score is off by at most delta = u * scale * sum_i
            // |q_i k_i| <= u * scale * |q|_1 * max|k|, so each weight p_j (rounded, in the P . V product) is off by a
            // factor within e^{+-delta} (1 +- u) and the row sum (of unrounded p) by e^{+-delta}: with a =
            // e^delta (1 + u) - 1, |o - o_exact| <= (a max|v| + a |o|) / (1 - a) <= 2a / (1 - a) max|v|. f16 adds
            // subnormals (absolute 2^-25 on q * scale * log2 e and on p <= 1; at most 600 keys), f32 accumulation a
            // 1e-5 relative slack.
            const u = kv === "bf16" ? 2 ** -8 : 2 ** -11, sub = kv === "bf16" ? 0 : 2 ** -25;
            let maxK = 0, maxV = 0;
            for (let i = 0; i < cacheN; i++) {
              maxK = Math.max(maxK, Math.abs(kCache[i]!));
              maxV = Math.max(maxV, Math.abs(vCache[i]!));
            }
            const scl = 1 / Math.sqrt(d);
            for (let r = 0; r < T * nh; r++) {
              let q1 = 0;
              for (let i = 0; i < d; i++) q1 += Math.abs(q[r * d + i]!);
              const delta = u * scl * q1 * maxK + sub * d * maxK;
              const a = Math.exp(delta) * (1 + u) - 1;
              const lim = (2 * a / (1 - a)) * maxV + 600 * sub * maxV + 1e-5 * maxV + 1e-6;
              for (let i = 0; i < d; i++) {
                const err = Math.abs(got[r * d + i]! - want[r * d + i]!);
                assert.ok(err <= lim, `prefill attention (tc) row ${r} dim ${i}: error ${err} > bound ${lim}`);
              }
            }
          }
        }
      },
      kv,
    );
  }
}

// int8 / int4 KV cache on CUDA (kv.ts layout): rope_kv's quantize-on-write against quant/reference.ts (the cache
// bytes bit for bit), the decode (split-K) and prefill attention kernels against src/backends/reference/ops.ts on
// the dequantized cache (GQA 1, 2, 3, 4, 8, 12; head dims 8, 32, 64, 80, 96, 128, 256; lengths that are no multiple of the
// block size; scattered block tables); stories260K end to end is in cuda_kv_quant_model_test.ts. Ignored (with the reason in the name) where no NVIDIA driver is present.
import assert from "node:assert/strict";
import * as ops from "../src/backends/reference/ops.ts";
import { f16ToF32, f32ToF16 } from "../src/model/dtype.ts";
import { ropeTables } from "../src/model/rope.ts";
import { f16Down, f16Up, qMax } from "../src/quant/types.ts";
import { kvRoundTrip } from "../src/quant/reference.ts";
import { CudaDevice, type DeviceBuffer } from "../src/backends/cuda/device.ts";
import { kvRowBytes } from "../src/backends/cuda/kv.ts";
import {
  attentionPlan,
  ATTN_SPLIT,
  ATTN_SPLIT_QUANT,
  CudaOps,
  PF_ROWS,
  prefillKernelFits,
  prefillTcFits,
} from "../src/backends/cuda/ops.ts";
import { cudaKernelTest, download, poisoned, randomArray, relErr, upload } from "../src/backends/cuda/testing.ts";
import { mixedBatch, mixedBatchReference, ROPE, splitKReversed } from "./helpers/cuda_attention.ts";

let seed = Math.floor(Math.random() * 1e9);
const rnd = (n: number, scale = 1) => randomArray(n, ++seed, scale);
type QKv = "int8" | "int4";
const bitsOf = (kv: QKv) => (kv === "int8" ? 8 : 4);

const gpuTest = cudaKernelTest;

/** The reference's quantization of one head vector (kvRoundTrip's formulas): q per value, scale, zero. */
function quantizeRef(x: Float32Array, bits: 4 | 8): { q: Uint8Array; scale: number; zero: number } {
  let lo = Infinity, hi = -Infinity;
  for (const v of x) lo = Math.min(lo, v), hi = Math.max(hi, v);
  const zero = f16Down(lo), qm = qMax(bits), scale = hi > zero ? f16Up((hi - zero) / qm) : 0;
  const q = x.map((v) => (scale === 0 ? 0 : Math.min(qm, Math.max(0, Math.round((v - zero) / scale)))));
  return { q: Uint8Array.from(q), scale, zero };
}

/** Packs q values into one kv.ts row (padding zero). */
function packRow(q: Uint8Array, kv: QKv, d: number): Uint8Array {
  const row = new Uint8Array(kvRowBytes(kv, d));
  for (let i = 0; i < d; i++) row[kv === "int8" ? i : i >> 1]! |= kv === "int8" ? q[i]! : q[i]! << (4 * (i & 1));
  return row;
}

async function bytes(dev: CudaDevice, b: DeviceBuffer, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  dev.download(out, b.ptr);
  await dev.sync();
  return out;
}

for (const kv of ["int8", "int4"] as const) {
  for (const [nh, nkv, d] of [[4, 4, 8], [8, 2, 64], [4, 2, 80], [8, 4, 128]] as const) {
    gpuTest(
      `rope_kv() writes ${kv} K/V rows and scales bit-identical to kvRoundTrip (${nh}/${nkv} heads, d=${d})`,
      async (k, dev) => {
        const o = new CudaOps(k, "f16", kv, "f32");
        const T = 23,
          bs = 5,
          nb = 7,
          eps = 1e-6,
          qkvDim = (nh + 2 * nkv) * d,
          bits = bitsOf(kv),
          RB = kvRowBytes(kv, d);
        // Pass 0: positions 0 (RoPE is then the identity in f32: x*1 - y*0), so K is bit-comparable; pass 1: positions
        // 1..63 and qk-norm, K compared after dequantization (f32 RoPE / norm vs the reference's f64 may move a value
        // across a rounding boundary: one quantization step, at most `scale`).
        for (const pass of [0, 1]) {
          const qkv = rnd(T * qkvDim, 3);
          const positions = Int32Array.from({ length: T }, (_, i) => (pass ? (i * 13 + 5) % 64 : 0));
          const slots = Int32Array.from({ length: T }, (_, i) => (i === 4 ? -1 : (i * 11) % (nb * bs)));
          const { cos, sin } = ropeTables(ROPE, d, 64);
          const kn = pass ? rnd(d) : null, qn = pass ? rnd(d) : null;
          using qkvb = upload(dev, qkv, "f32"), cb = upload(dev, cos, "f32"), sb = upload(dev, sin, "f32");
          using pb = upload(dev, positions, "i32"), slb = upload(dev, slots, "i32");
          using knb = upload(dev, kn ?? new Float32Array(1), "f32"),
            qnb = upload(dev, qn ?? new Float32Array(1), "f32");
          const rows = nb * nkv * bs;
          using qb = poisoned(dev, T * nh * d, 4), kc = poisoned(dev, rows * RB, 1), vc = poisoned(dev, rows * RB, 1);
          using ks = poisoned(dev, rows, 4), vs = poisoned(dev, rows, 4);
          const args = { qkv: qkvb.ptr, cos: cb.ptr, sin: sb.ptr, qNorm: qn ? qnb.ptr : 0n, kNorm: kn ? knb.ptr : 0n };
          o.ropeKv({
            ...args,
            positions: pb.ptr,
            slots: slb.ptr,
            q: qb.ptr,
            kCache: kc.ptr,
            vCache: vc.ptr,
            kScale: ks.ptr,
            vScale: vs.ptr,
            n: T,
            nh,
            nkv,
            d,
            blockSize: bs,
            eps,
          });
          const kb = await bytes(dev, kc, rows * RB), vb = await bytes(dev, vc, rows * RB);
          const kz = new Uint16Array((await bytes(dev, ks, rows * 4)).buffer);
          const vz = new Uint16Array((await bytes(dev, vs, rows * 4)).buffer);
          const k = new Float32Array(T * nkv * d);
          for (let t = 0; t < T; t++) {
            k.set(qkv.subarray(t * qkvDim + nh * d, t * qkvDim + (nh + nkv) * d), t * nkv * d);
          }
          if (kn) {
            ops.rmsNorm(k, kn, T * nkv, d, eps, k);
          }
          ops.rope(k, positions, nkv, d, cos, sin);
          const last = new Map<number, number>();
          slots.forEach((s, t) => s >= 0 && last.set(s, t));
          for (const [s, t] of last) {
            for (let h = 0; h < nkv; h++) {
              const r = (Math.floor(s / bs) * nkv + h) * bs + (s % bs);
              const v = qkv.subarray(t * qkvDim + (nh + nkv + h) * d, t * qkvDim + (nh + nkv + h + 1) * d);
              for (
                const [x, got, sz, exact] of [[v, vb, vz, true], [
                  k.subarray((t * nkv + h) * d, (t * nkv + h + 1) * d),
                  kb,
                  kz,
                  pass === 0,
                ]] as const
              ) {
                const ref = quantizeRef(x, bits), rt = Float32Array.from(x);
                assert.equal(kvRoundTrip(rt, bits), ref.scale, "quantizeRef disagrees with kvRoundTrip's scale");
                ref.q.forEach((q, i) => assert.equal(Math.fround(q * ref.scale + ref.zero), rt[i], "vs kvRoundTrip"));
                const row = got.subarray(r * RB, (r + 1) * RB),
                  sc = f16ToF32(sz[2 * r]!),
                  zr = f16ToF32(sz[2 * r + 1]!);
                if (exact) {
                  assert.deepEqual(row, packRow(ref.q, kv, d), `slot ${s} head ${h}: q bytes`);
                  assert.deepEqual(
                    [sz[2 * r], sz[2 * r + 1]],
                    [f32ToF16(ref.scale), f32ToF16(ref.zero)],
                    `slot ${s} scale/zero`,
                  );
                } else {
                  for (let i = 0; i < d; i++) {
                    const q = kv === "int8" ? row[i]! : (row[i >> 1]! >> (4 * (i & 1))) & 15;
                    const e = Math.abs(Math.fround(q * sc + zr) - rt[i]!);
                    assert.ok(e <= ref.scale * 1.001 + 1e-5, `slot ${s} head ${h} dim ${i}: dequantized K off by ${e}`);
                  }
                }
              }
            }
          }
        }
      },
    );
  }
}

/** A random quantized cache: rows (kv.ts), scales (f16 pairs) and its dequantization q * scale + zero (f32). */
function randomCache(kv: "int8" | "int4" | "f16", rows: number, d: number) {
  const deq = new Float32Array(rows * d);
  if (kv === "f16") {
    const x = rnd(rows * d);
    for (let i = 0; i < x.length; i++) deq[i] = f16ToF32(f32ToF16(x[i]!));
    return { rows: x, scales: null, deq };
  }
  const RB = kvRowBytes(kv, d), qm = qMax(bitsOf(kv));
  const data = new Uint8Array(rows * RB), sz = new Uint16Array(2 * rows);
  const u = rnd(rows * (d + 2));
  for (let r = 0; r < rows; r++) {
    const scale = f16Up((Math.abs(u[r * (d + 2)]!) + 0.05) / qm), zero = f16Down(-0.5 + 0.2 * u[r * (d + 2) + 1]!);
    sz[2 * r] = f32ToF16(scale);
    sz[2 * r + 1] = f32ToF16(zero);
    const q = Uint8Array.from(
      { length: d },
      (_, i) => Math.floor(((u[r * (d + 2) + 2 + i]! + 1) / 2) * (qm + 1)) % (qm + 1),
    );
    data.set(packRow(q, kv, d), r * RB);
    q.forEach((v, i) => (deq[r * d + i] = Math.fround(v * scale + zero)));
  }
  return { rows: data, scales: sz, deq };
}

function uploadBytes(dev: CudaDevice, b: Uint8Array | Uint16Array): DeviceBuffer {
  const buf = dev.alloc(Math.max(4, b.byteLength), "test");
  dev.upload(buf.ptr, new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
  return buf;
}

// [kv, nh, nkv, d, block size]: GQA 1, 2, 4, 8 over head dims 8 .. 256, then groups of 3 (a padded n-tile) and 12
// (two n-tiles of the decode kernel); f16 rows at the dims attention_test lacks.
const CASES: ["int8" | "int4" | "f16", number, number, number, number][] = [];
for (const kv of ["int8", "int4"] as const) {
  CASES.push([kv, 4, 4, 8, 5], [kv, 8, 4, 64, 7], [kv, 8, 2, 80, 16], [kv, 16, 2, 96, 5], [kv, 8, 1, 128, 7], [
    kv,
    4,
    2,
    256,
    16,
  ]);
}
CASES.push(["int4", 12, 4, 96, 5], ["int8", 12, 1, 64, 16], ["int4", 24, 2, 128, 7], ["int8", 8, 2, 32, 5]);
// The Llama-3 shape (GQA 4, d 128, blocks of 16: every tile one block, the bench's fast copy path).
CASES.push(["int4", 16, 4, 128, 16], ["int8", 16, 4, 128, 16]);
CASES.push(["f16", 8, 2, 80, 7], ["f16", 16, 2, 96, 16], ["f16", 8, 1, 256, 5], ["f16", 12, 1, 128, 7], [
  "f16",
  4,
  2,
  32,
  16,
]);

for (const [kv, nh, nkv, d, bs] of CASES) {
  gpuTest(
    `attention() and attentionPrefill() on a ${kv} cache match the reference on the dequantized cache (${nh}/${nkv} heads, d=${d}, block ${bs})`,
    async (k, dev) => {
      const batch = mixedBatch(bs), { seqs, maxBlocks, nb, tables, T, positions, tokenSeq, queryStarts } = batch;
      const kc = randomCache(kv, nb * nkv * bs, d), vc = randomCache(kv, nb * nkv * bs, d), q = rnd(T * nh * d, 2);
      const up = (
        c: typeof kc,
      ) => (c.rows instanceof Float32Array ? upload(dev, c.rows, "f16") : uploadBytes(dev, c.rows));
      using kb = up(kc), vb = up(vc), qb = upload(dev, q, "f32");
      using ksb = uploadBytes(dev, kc.scales ?? new Uint16Array(2)),
        vsb = uploadBytes(dev, vc.scales ?? new Uint16Array(2));
      using tb = upload(dev, tables, "i32"), sb = upload(dev, tokenSeq, "i32"), pb = upload(dev, positions, "i32");
      const want = mixedBatchReference(batch, { q, kCache: kc.deq, vCache: vc.deq, nh, nkv, d, window: 0 });
      const o = new CudaOps(k, "f16", kv, "f32");
      const scales = kv === "f16" ? {} : { kScale: ksb.ptr, vScale: vsb.ptr };
      const common = {
        q: qb.ptr,
        kCache: kb.ptr,
        vCache: vb.ptr,
        ...scales,
        blockTables: tb.ptr,
        positions: pb.ptr,
        nh,
        nkv,
        d,
      };
      const rest = { blockSize: bs, maxBlocks, window: 0, scale: 1 / Math.sqrt(d) };
      // Same dequantized numbers on both sides: only f32 vs f64 arithmetic (sums over <= 600 keys) differ. The
      // decode kernel runs on tensor cores with exact operands: K . q as exact s32 dot products of the stored q values
      // with q * scale in three s8 fixed-point pieces (2^-22 of the head's max |q|), p * vScale as hi + lo f16 pairs
      // (2^-22 relative) against V's q values as exact f16 subnormals: f32-exact products as before.
      const bound = 1e-5;
      for (const n of [1, T]) {
        const plan = attentionPlan(n, 600), splits = plan.splits + 1; // decode-sized and prefill-sized plans
        using out = poisoned(dev, T * nh * d, 4);
        const args = { ...common, ...rest, tokenSeq: sb.ptr };
        const got = await splitKReversed(o, dev, args, T, { splits, splitLen: plan.splitLen }, {
          buf: out,
          dtype: "f32",
        });
        const e = relErr(got, want);
        assert.ok(e < bound, `split-K attention (splits of ${plan.splitLen}) error ${e}`);
      }
      if (prefillKernelFits(nh / nkv, d)) {
        const per = Math.floor(PF_ROWS / (nh / nkv)), tl: number[] = [];
        seqs.forEach((s, b) => {
          for (let j = 0; j < s.n; j += per) tl.push(b, queryStarts[b]! + j, Math.min(per, s.n - j));
        });
        using out = poisoned(dev, T * nh * d, 4), tiles = upload(dev, Int32Array.from(tl), "i32");
        // f32 activations and quantized caches take the CUDA-core kernel (int8 / int4 dequantized on load); the
        // tensor-core one is f16 / bf16 only (tested in cuda_attention_test.ts).
        assert.equal(o.prefillKernel(nh / nkv, d), "cores");
        if (kv !== "f16") assert.ok(!prefillTcFits(kv, nh / nkv, d));
        o.attentionPrefill({ ...common, ...rest, tileList: tiles.ptr, tiles: tl.length / 3, out: out.ptr });
        const e = relErr(await download(dev, out, T * nh * d, "f32"), want);
        assert.ok(e < bound, `prefill attention error ${e}`);
      }
    },
  );
}

Deno.test("attentionPlan() gives int8 / int4 KV longer splits in batched steps, leaving at least 4", () => {
  assert.deepEqual(attentionPlan(16, 8192, "int4"), { splitLen: ATTN_SPLIT_QUANT, splits: 4 });
  assert.deepEqual(attentionPlan(16, 4096, "int8"), { splitLen: 1024, splits: 4 });
  assert.deepEqual(attentionPlan(16, 2047, "int8"), { splitLen: ATTN_SPLIT, splits: 4 });
  assert.deepEqual(attentionPlan(16, 1 << 17, "int4"), { splitLen: ATTN_SPLIT_QUANT, splits: 64 });
  // 16-bit KV and decode-sized steps keep their plans.
  assert.deepEqual(attentionPlan(16, 8192, "f16"), attentionPlan(16, 8192));
  assert.deepEqual(attentionPlan(4, 8192, "int4"), attentionPlan(4, 8192));
});

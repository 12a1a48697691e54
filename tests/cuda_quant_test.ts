// W4A16 / W8A16 / FP8 (e4m3) weights on CUDA (kernels/qgemm.cu, src/backends/cuda/qlinear.ts): qgemv / qgemm against
// a TypeScript matmul
// over dequantizeFused weights on fresh random inputs at awkward sizes, the synthetic fill kernel, and stories260K
// int4 g32 / int8 g64 / fp8 g32 on the CUDA backend against the reference backend with the same RTN weights. GPU tests are
// ignored (reason in the name) without an NVIDIA driver; the planning / stacking tests run everywhere.
import assert from "node:assert/strict";
import { f16ToF32 as f16, roundTo } from "../src/model/dtype.ts";
import { type MmaPacked, packFor } from "../src/quant/pack.ts";
import { dequantize } from "../src/quant/reference.ts";
import { type QuantBits, toF16 } from "../src/quant/types.ts";
import type { Backend, Precision } from "../src/core/types.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { generateSequence, sequenceLogits } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { CudaBackend } from "../src/backends/cuda/backend.ts";
import {
  allocQuantScratch,
  fillQuantMatrix,
  qgemvPlan,
  type QgemvTune,
  quantLinear,
  scratchNeed,
  stackQuantized,
  tileN,
  uploadQuantMatrix,
} from "../src/backends/cuda/qlinear.ts";
import {
  cudaKernelTest,
  cudaTest,
  DeviceArena,
  download,
  poisoned,
  relErr,
  upload,
} from "../src/backends/cuda/testing.ts";
import { loadStories } from "./helpers/models.ts";
import { qgemmSkinny, qgemmTiled, QS_TILES, qsConfig, qsPlan, qsSmem } from "../src/backends/cuda/qgemm_plan.ts";
import { randomFp8Linear, randomLinear, randomQuantLinear, reference, rnd } from "./helpers/quant_linear.ts";

const gpuTest = cudaTest;

Deno.test("qgemvPlan() covers K in one wave with block K-ranges that fit 4 blocks per SM and the scratch", () => {
  for (const bits of [4, 8] as const) {
    for (const [N, K] of [[6144, 4096], [4096, 4096], [28672, 4096], [4096, 14336], [172, 200], [200, 1000]] as const) {
      for (const M of [1, 8, 9, 16]) {
        for (const w of [16, 8, 1, 64]) {
          const p = qgemvPlan(bits, N, K, M, 132, Infinity, w);
          const KT = Math.ceil(K / 16), span = p.ksb * p.tps, what = `[${N}, ${K}] M=${M} w=${w} ${JSON.stringify(p)}`;
          assert.ok([1, 2, 4].includes(p.ksb), what);
          assert.ok(p.S * span >= KT && (p.S - 1) * span < KT, what);
          assert.ok(p.smem <= 55 * 1024, what);
          assert.equal(p.gridX, Math.ceil(N / tileN(bits) / (4 / p.ksb)), what);
          // One wave of at most w warps per SM (more rows: the staged K-range limit may add splits).
          if (M === 1 && w >= 8) assert.ok(p.gridX * p.S * 4 <= w * 132, what);
          const need = scratchNeed(bits, [[N, K]], 132, [w]);
          assert.ok(p.S === 1 || p.S * M * Math.ceil(N / tileN(bits)) * tileN(bits) <= need.floats, what);
          assert.ok(p.gridX <= need.slots, what);
        }
      }
    }
  }
  assert.throws(() => qgemvPlan(4, 4096, 14336, 16, 132, 1000), /scratch too small/);
});

Deno.test("stackQuantized() concatenates rows and refuses mismatched g_idx or formats", () => {
  const a = randomLinear(4, 24, 64, 32, false), b = randomLinear(4, 40, 64, 32, false);
  const s = stackQuantized([a, b]);
  assert.equal(s.outDim, 64);
  assert.deepEqual(dequantize(s), Float32Array.from([...dequantize(a), ...dequantize(b)]));
  assert.throws(() => stackQuantized([randomLinear(4, 8, 64, 32, true), randomLinear(4, 8, 64, 32, true)]), /g_idx/);
  const f = randomFp8Linear(24, 64, 32), g = randomFp8Linear(40, 64, 32), fg = stackQuantized([f, g]);
  assert.ok(fg.fp8);
  assert.deepEqual(dequantize(fg), Float32Array.from([...dequantize(f), ...dequantize(g)]));
  assert.throws(() => stackQuantized([f, randomLinear(8, 8, 64, 32, false)]), /fp8/);
});

// Bound: the reference multiplies the same f16 x by f16(dequantizeFused(W)) (qgemm's per-weight hfma2 rounds the
// same way, as does qgemv above 8 rows); qgemv at M <= 8 sums q · x exactly in f32 and applies the f32 scale and
// bias once per group, so it differs from the reference by the f16 rounding of each weight (<= 2^-11 relative,
// random in sign, so ~2^-11 / sqrt(3) of a typical |y| at most: max |error| / max |y| ~ 3e-4) plus the f32 summation
// order (~sqrt(K) * 2^-24). 1e-3 of max |y| leaves a margin, while a wrong nibble, scale column, bias or permutation
// gives O(1).
const CASES: [QuantBits | "fp8", number, number, number, boolean][] = [
  // bits (or fp8: e4m3 codes, scales 256 s), N, K, G, act-order
  [4, 172, 200, 32, false], // K not a multiple of 16: padded k-tile, partial last group
  [4, 200, 256, 32, true],
  [4, 200, 1000, 128, false], // one column group, 63 splits
  [4, 1000, 4096, 128, true],
  [8, 172, 320, 64, false],
  [8, 200, 448, 64, true],
  [8, 172, 204, 204, false], // per-channel, K % 8 != 0: scalar x staging
  [4, 4100, 520, 32, false], // 65 n-tiles: warpsPerSm 0.5 gives one warp per n-tile over 17 groups (ksb 1)
  [8, 2090, 1040, 64, true],
  ["fp8", 172, 320, 64, false],
  ["fp8", 200, 1000, 128, false],
  ["fp8", 172, 204, 204, false], // per-channel scales, scalar x staging
  ["fp8", 2090, 1040, 32, false],
];
cudaKernelTest(
  "quantLinear() qgemv and qgemm match x · f16(dequantizeFused(W))^T (int4 g32/g128, int8 g64, fp8, perm)",
  async (k, dev) => {
    using arena = new DeviceArena(dev);
    const alloc = arena.alloc;
    for (const [fmt, N, K, G, act] of CASES) {
      const bits = fmt === "fp8" ? 8 : fmt;
      const p = packFor({ kind: "cuda", sm: 90 }, randomQuantLinear(fmt, N, K, G, act)) as MmaPacked;
      assert.equal(p.layout, "mma-m16n8k16");
      assert.equal(p.fp8, fmt === "fp8");
      const need = scratchNeed(bits, [[N, K]], dev.smCount, [16, 0.5, 1, 3, 64]);
      const W = uploadQuantMatrix(dev, alloc, p, allocQuantScratch(dev, alloc, need.floats, need.slots), "test");
      assert.equal(W.perm !== 0n, act);
      const bias = rnd(N, 0.1);
      using bb = upload(dev, bias, "f32");
      for (const M of [1, 3, 8, 16, 77]) {
        const x = roundTo(rnd(M * K), "f16");
        const want = reference(p, x, bias, M);
        using xb = upload(dev, x, "f16");
        // gemv at the default split, at warpsPerSm 0.5 / 1 / 3 (fewer, longer warp runs: ksb 1 / 2 / 4, S 1) and
        // 64 (several waves), runs or interleaved tiles.
        const gemv: QgemvTune[] = [{}, { warpsPerSm: 0.5 }, { warpsPerSm: 1 }, { warpsPerSm: 3 }, { warpsPerSm: 64 }];
        const runs: ["gemv" | "gemm", QgemvTune][] = [["gemm", {}]];
        if (M <= 16) { for (const t of gemv) runs.push(["gemv", t], ["gemv", { ...t, interleave: true }]); }
        for (const [kind, tune] of runs) {
          using yb = poisoned(dev, M * N + 64, 4); // 64 guard floats after y catch stray writes of padded columns
          quantLinear(k, xb.ptr, W, bb.ptr, yb.ptr, M, kind, tune);
          const got = await download(dev, yb, M * N + 64, "f32");
          const e = relErr(got.subarray(0, M * N), want);
          const what = `${fmt === "fp8" ? "fp8" : `int${bits}`} g${G} ${
            act ? "act-order " : ""
          }[${N}, ${K}] M=${M} ${kind} ${JSON.stringify(tune)}`;
          assert.ok(e <= 1e-3, `${what}: error ${e}`);
          assert.ok(got.subarray(M * N).every(Number.isNaN), `${what}: wrote past y`);
        }
      }
    }
  },
);

Deno.test("qsPlan() covers K once, fits shared memory, and keeps the partials within the scratch", () => {
  for (const bits of [4, 8] as const) {
    for (const [N, K] of [[6144, 4096], [4096, 4096], [28672, 4096], [4096, 14336], [173, 200], [205, 204]] as const) {
      for (const M of [17, 31, 64, 100, 256, 2048]) {
        for (const tile of QS_TILES.filter((t) => bits === 4 || qsConfig(t).cw === 4)) {
          const p = qsPlan(bits, N, K, M, 128, 132, 1 << 20, tile);
          const nst = Math.ceil(Math.ceil(K / 16) / qsConfig(tile).ks);
          const what = `int${bits} [${N}, ${K}] M=${M} ${JSON.stringify(p)}`;
          assert.ok(p.S * p.tps >= nst && (p.S - 1) * p.tps < nst, what);
          assert.ok(p.S === 1 || p.S * M * N <= 1 << 20, what);
          assert.ok(p.smem === qsSmem(bits, tile) && p.smem <= 227 * 1024, what);
          assert.equal(p.gt, K <= 128 ? Math.ceil(K / 16) : 8, what);
        }
      }
    }
  }
});

// qgemms (every variant) and the tiled qgemm at 17..256 rows, odd N, K not a multiple of 16 or 8 (scalar x staging),
// group sizes 32 / 64 / 128 / K, act-order, bias; same reference and bound as above (the same per-weight hfma2).
// Split-K results must not depend on block arrival order: a second launch is compared bit for bit.
const SKINNY_CASES: [QuantBits | "fp8", number, number, number, boolean][] = [
  [4, 173, 200, 32, false],
  [4, 201, 1000, 128, true],
  [4, 521, 2048, 128, false],
  [4, 333, 528, 64, true],
  [8, 171, 320, 64, true],
  [8, 205, 204, 204, false],
  [8, 1003, 1040, 32, false],
  ["fp8", 171, 320, 64, false],
  ["fp8", 1003, 1040, 128, false],
];
cudaKernelTest("qgemmSkinny() / qgemmTiled() match x · f16(dequantizeFused(W))^T at M = 17..256", async (k, dev) => {
  using arena = new DeviceArena(dev);
  for (const [fmt, N, K, G, act] of SKINNY_CASES) {
    const bits = fmt === "fp8" ? 8 : fmt;
    const p = packFor({ kind: "cuda", sm: 90 }, randomQuantLinear(fmt, N, K, G, act)) as MmaPacked;
    const W = uploadQuantMatrix(dev, arena.alloc, p, allocQuantScratch(dev, arena.alloc, 16, 16), "test");
    const bias = rnd(N, 0.1);
    using bb = upload(dev, bias, "f32");
    for (const M of [17, 31, 64, 100, 256]) {
      const x = roundTo(rnd(M * K), "f16"), want = reference(p, x, bias, M);
      using xb = upload(dev, x, "f16");
      const runs: [string, () => void][] = [["tiled", () => qgemmTiled(k, xb.ptr, W, bb.ptr, yb.ptr, M)]];
      for (const t of QS_TILES.filter((t) => bits === 4 || qsConfig(t).cw === 4)) {
        runs.push([t, () => qgemmSkinny(k, xb.ptr, W, bb.ptr, yb.ptr, M, t)]);
      }
      using yb = poisoned(dev, M * N + 64, 4);
      for (const [name, run] of runs) {
        dev.memset(yb.ptr, 0xff, (M * N + 64) * 4);
        run();
        const got = await download(dev, yb, M * N + 64, "f32");
        const e = relErr(got.subarray(0, M * N), want);
        const what = `${fmt === "fp8" ? "fp8" : `int${bits}`} g${G} ${
          act ? "act-order " : ""
        }[${N}, ${K}] M=${M} ${name}`;
        assert.ok(e <= 1e-3, `${what}: error ${e}`);
        assert.ok(got.subarray(M * N).every(Number.isNaN), `${what}: wrote past y`);
        if (name === "tiled") continue;
        run();
        const again = await download(dev, yb, M * N, "f32");
        assert.ok(again.every((v, i) => Object.is(v, got[i])), `${what}: not deterministic`);
      }
    }
  }
});

cudaKernelTest(
  "fillQuantMatrix() writes random words and f16 (scale, bias = -z*s) pairs, zero on padded columns",
  async (k, dev) => {
    using arena = new DeviceArena(dev);
    const alloc = arena.alloc;
    for (const bits of [4, 8] as const) {
      const N = 200, K = 320, G = 64, amp = 0.05, qm = (1 << bits) - 1, z = (1 << (bits - 1)) + 1;
      const scratch = allocQuantScratch(dev, alloc, 16, 16);
      const W = fillQuantMatrix(k, alloc, { bits, N, K, group: G, seed: 7 + bits, amp, label: "t" }, scratch);
      const words = new Uint32Array((W.Np / tileN(bits)) * W.KT * 128), sb = new Uint32Array(Math.ceil(K / G) * W.Np);
      dev.download(words, W.qweight);
      dev.download(sb, W.scaleBias);
      await dev.sync();
      assert.ok(new Set(words).size > words.length * 0.99, "qweight words are not random");
      for (let i = 0; i < sb.length; i++) {
        const n = i % W.Np, s = sb[i]! & 0xffff, b = sb[i]! >>> 16;
        if (n >= N) {
          assert.equal(sb[i], 0, `padded column ${n}`);
          continue;
        }
        const sv = f16(s);
        assert.ok(sv >= (amp * 2 / qm) * 0.74 && sv <= (amp * 2 / qm) * 1.26, `scale ${sv}`);
        assert.equal(f16(b), toF16(-z * sv));
      }
    }
    // fp8: codes with exponent field <= 7 (never NaN), stored scales 256 s with s = amp / 2 * (0.75 .. 1.25), bias 0.
    const N = 200, K = 320, G = 64, amp = 0.05;
    const W = fillQuantMatrix(k, alloc, { bits: 8, fp8: true, N, K, group: G, seed: 9, amp, label: "f8" }, {
      ...allocQuantScratch(dev, alloc, 16, 16),
    });
    assert.ok(W.fp8);
    const words = new Uint32Array((W.Np / 32) * W.KT * 128), sb = new Uint32Array(Math.ceil(K / G) * W.Np);
    dev.download(words, W.qweight);
    dev.download(sb, W.scaleBias);
    await dev.sync();
    assert.ok(words.every((w) => (w & 0x40404040) === 0), "fp8 codes with exponent field > 7");
    assert.ok(new Set(words).size > words.length * 0.99, "fp8 words are not random");
    for (let i = 0; i < sb.length; i++) {
      if (i % W.Np >= N) continue;
      const sv = f16(sb[i]! & 0xffff) / 256;
      assert.ok(sv >= amp / 2 * 0.74 && sv <= amp / 2 * 1.26 && sb[i]! >>> 16 === 0, `fp8 scale ${sv}`);
    }
  },
);

const load = async <B extends Backend>(backend: B, precision: Precision): Promise<B> =>
  (await loadStories(backend, precision)).b;

// Both backends hold the same RTN weights (quantizeRtn is deterministic). The reference backend runs f32
// activations and exact (q - z) * s weights; CUDA rounds activations to f16 at each matmul input and the weights to
// f16(q * s + f16(-z * s)). With f16 activations on this 64-wide model the logits move by ~1e-3 .. 1e-2 relative
// (the same order as the bf16 backend's "half" activations at 8x coarser rounding, bounded there by 8e-2), so 3e-2.
const greedy = { ...defaultSamplingParams(), temperature: 0 };
for (const [weight, group] of [["int4", 32], ["int8", 64], ["fp8", 32]] as const) {
  gpuTest(
    `CudaBackend ${weight} g${group} stories260K matches the reference backend (logits 3e-2, 32 greedy ids)`,
    async () => {
      const precision: Precision = { weight, group, kv: "f16", compute: "f16" };
      await using oracle = await load(new ReferenceBackend(), precision);
      await using b = await load(await CudaBackend.create(), precision);
      for (const tokens of [[1, 403, 407, 261, 378, 1331, 440, 320], [1, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110]]) {
        const ids = tokens.map((t) => t % 512);
        const err = relErr(await sequenceLogits(b, ids, greedy), await sequenceLogits(oracle, ids, greedy));
        console.log(`  ${weight} g${group}, ${ids.length} tokens: logits vs reference backend ${err.toExponential(2)}`);
        assert.ok(err < 3e-2, `logits error ${err}`);
      }
      const opts = { maxTokens: 32, maxPositions: 512 };
      const want = (await generateSequence(oracle, [1], greedy, opts)).ids;
      for (const graphs of [true, false]) {
        b.graphsEnabled = graphs;
        const got = (await generateSequence(b, [1], greedy, opts)).ids;
        assert.deepEqual(got, want, `greedy ids (graphs ${graphs})`);
      }
    },
  );
}

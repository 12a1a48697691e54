// The fused ends of the quantized decode GEMV (kernels/qgemv.cu: RMSNorm finished in the prologue, residual add +
// next norm's x * gamma + partial sums of squares in the epilogue, SiLU-mul of a gate_up paired per n-tile, and
// that pairing itself on the CPU) against the same math in TypeScript, at the
// default split, one k-range per block and many block-level splits; and the fused quantized decode forward
// (forward_decode_quant.ts) against the unfused path on stories260K. GPU tests are ignored (reason in the name)
// without an NVIDIA driver.
import assert from "node:assert/strict";
import { roundTo } from "../src/model/dtype.ts";
import { type MmaPacked, packFor } from "../src/quant/pack.ts";
import type { QuantBits } from "../src/quant/types.ts";
import type { Precision } from "../src/core/types.ts";
import { generateSequence, sequenceLogits } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { CudaBackend } from "../src/backends/cuda/backend.ts";
import { fusedDecode } from "../src/backends/cuda/forward_decode.ts";
import {
  allocQuantScratch,
  qgemvPlan,
  type QgemvTune,
  quantLinear,
  scratchNeed,
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
import { randomLinear, reference, rnd } from "./helpers/quant_linear.ts";
import { pairBias, pairedRow, pairedRows, pairGateUp } from "../src/backends/cuda/gate_up.ts";
import { dequantize } from "../src/quant/reference.ts";

// Bounds: as tests/cuda_quant_test.ts (1e-3 of max |y|: f16 weight rounding in the reference, f32 summation order).
// The norm input is f16(xg * inv) on both sides (inv from the same partial sums, f32 vs f64: an input may round to
// the neighbouring f16 once in a while, one 2^-11 step of one term). The epilogue adds y to x in f32 on both sides,
// so x1 inherits y's error (relative to max |x1| it is smaller); the sum of squares of x1 carries twice that.
const CASES: [QuantBits, number, number, number, boolean][] = [
  // bits, N, K, G, act-order
  [4, 200, 1000, 128, false], // K % 16 != 0 (padded k-tile), one column group
  [4, 330, 512, 32, true], // act-order: the norm input read through perm
  [8, 172, 448, 64, false],
];
const TUNES: QgemvTune[] = [{}, { warpsPerSm: 0.5 }, { warpsPerSm: 64 }]; // default, S = 1 (ksb 1), many splits

cudaKernelTest(
  "quantLinear() fused norm prologue and residual epilogue match the same math in TypeScript",
  async (k, dev) => {
    using arena = new DeviceArena(dev);
    const alloc = arena.alloc;
    for (const [bits, N, K, G, act] of CASES) {
      const p = packFor({ kind: "cuda", sm: 90 }, randomLinear(bits, N, K, G, act)) as MmaPacked;
      const need = scratchNeed(bits, [[N, K]], dev.smCount, [16, 0.5, 64]);
      const W = uploadQuantMatrix(dev, alloc, p, allocQuantScratch(dev, alloc, need.floats, need.slots), "t");
      const bias = rnd(N, 0.1);
      using bb = upload(dev, bias, "f32");
      for (const M of [1, 3, 8]) {
        for (const tune of TUNES) {
          const what = `int${bits} [${N}, ${K}] M=${M} ${JSON.stringify(tune)}`;
          const plan = qgemvPlan(bits, N, K, M, dev.smCount, W.scratch.partFloats, tune.warpsPerSm ?? 16);
          // Norm prologue: x0 [M, K] residual rows, gamma [K]; ss split into 3 partials per row.
          const x0 = rnd(M * K, 2), gamma = rnd(K, 1.5), eps = 1e-5, parts = 3;
          const xg = x0.map((v, i) => v * gamma[i % K]!);
          const ss = new Float32Array(M * parts), xin = new Float32Array(M * K);
          for (let m = 0; m < M; m++) {
            let sum = 0;
            for (let kk = 0; kk < K; kk++) {
              const v = x0[m * K + kk]!;
              sum += v * v;
              ss[m * parts + (kk % parts)]! += v * v;
            }
            const inv = 1 / Math.sqrt(sum / K + eps);
            for (let kk = 0; kk < K; kk++) xin[m * K + kk] = xg[m * K + kk]! * inv;
          }
          using xgb = upload(dev, xg, "f32"), ssb = upload(dev, ss, "f32");
          using yb = poisoned(dev, M * N + 64, 4);
          const norm = { xg: xgb.ptr, ss: ssb.ptr, parts, eps };
          assert.equal(quantLinear(k, 0n, W, bb.ptr, yb.ptr, M, "gemv", tune, { norm }), 0);
          const got = await download(dev, yb, M * N + 64, "f32");
          const want = reference(p, roundTo(xin, "f16"), bias, M);
          const e = relErr(got.subarray(0, M * N), want);
          assert.ok(e <= 1e-3, `${what} norm: error ${e}`);
          assert.ok(got.subarray(M * N).every(Number.isNaN), `${what} norm: wrote past y`);

          // Residual epilogue: x1 = x0 + xin · W^T + bias, xg1 = x1 * gNext, ss1 = partial sums of x1^2.
          const xr = roundTo(rnd(M * K), "f16"), x0n = rnd(M * N, 2), gNext = rnd(N, 1.5);
          const y = reference(p, xr, bias, M), x1 = x0n.map((v, i) => v + y[i]!);
          using xrb = upload(dev, xr, "f16"), xb = upload(dev, x0n, "f32"), gb = upload(dev, gNext, "f32");
          using xgo = poisoned(dev, M * N, 4), sso = poisoned(dev, M * plan.gridX + 64, 4);
          const resid = { x: xb.ptr, gNext: gb.ptr, xg: xgo.ptr, ss: sso.ptr };
          const wrote = quantLinear(k, xrb.ptr, W, bb.ptr, 0n, M, "gemv", tune, { resid });
          assert.equal(wrote, plan.gridX, `${what}: partial sums per row`);
          const gx = await download(dev, xb, M * N, "f32");
          const ex = relErr(gx, x1);
          assert.ok(ex <= 1e-3, `${what} resid x: error ${ex}`);
          const eg = relErr(await download(dev, xgo, M * N, "f32"), x1.map((v, i) => v * gNext[i % N]!));
          assert.ok(eg <= 1e-3, `${what} resid xg: error ${eg}`);
          const gs = await download(dev, sso, M * wrote + 64, "f32");
          assert.ok(gs.subarray(M * wrote).every(Number.isNaN), `${what}: wrote past the partial sums`);
          for (let m = 0; m < M; m++) {
            let sum = 0, want2 = 0;
            for (let q = 0; q < wrote; q++) sum += gs[m * wrote + q]!;
            for (let n = 0; n < N; n++) want2 += x1[m * N + n]! ** 2;
            assert.ok(Math.abs(sum - want2) <= 2e-3 * want2, `${what} row ${m}: sum of squares ${sum} vs ${want2}`);
          }
        }
      }
    }
  },
);

Deno.test("pairGateUp() and pairBias() interleave gate and up rows per n-tile half, zero-padded", () => {
  for (const [bits, f, K, G, half] of [[4, 100, 64, 32, 32], [8, 172, 48, 16, 16], [4, 64, 32, 32, 32]] as const) {
    const gate = randomLinear(bits, f, K, G, false), up = randomLinear(bits, f, K, G, false);
    const p = pairGateUp(gate, up, half), N = pairedRows(f, half), W = dequantize(p);
    const wg = dequantize(gate), wu = dequantize(up);
    assert.equal(p.outDim, N);
    assert.equal(N % (2 * half), 0);
    const seen = new Set<number>();
    for (let r = 0; r < f; r++) {
      const rg = pairedRow(r, half), ru = rg + half;
      assert.ok(Math.floor(rg / (2 * half)) === Math.floor(ru / (2 * half)), "gate and up rows share a tile");
      assert.deepEqual(W.subarray(rg * K, (rg + 1) * K), wg.subarray(r * K, (r + 1) * K));
      assert.deepEqual(W.subarray(ru * K, (ru + 1) * K), wu.subarray(r * K, (r + 1) * K));
      seen.add(rg).add(ru);
    }
    for (let r = 0; r < N; r++) if (!seen.has(r)) assert.ok(W.subarray(r * K, (r + 1) * K).every((v) => v === 0));
    const bias = rnd(2 * f), pb = pairBias(bias, f, half);
    for (let r = 0; r < f; r++) {
      assert.equal(pb[pairedRow(r, half)], bias[r]);
      assert.equal(pb[pairedRow(r, half) + half], bias[f + r]);
    }
  }
});

cudaKernelTest(
  "quantLinear() SiLU epilogue on a paired gate_up matches silu(gate) * up in TypeScript",
  async (k, dev) => {
    using arena = new DeviceArena(dev);
    const alloc = arena.alloc;
    for (const [bits, f, K, G] of [[4, 172, 512, 128], [4, 1024, 256, 32], [8, 100, 448, 64]] as const) {
      const half = bits === 4 ? 32 : 16;
      const paired = pairGateUp(randomLinear(bits, f, K, G, false), randomLinear(bits, f, K, G, false), half);
      const p = packFor({ kind: "cuda", sm: 90 }, paired) as MmaPacked, N = p.outDim;
      const need = scratchNeed(bits, [[N, K]], dev.smCount, [16, 0.5, 64]);
      const W = {
        ...uploadQuantMatrix(dev, alloc, p, allocQuantScratch(dev, alloc, need.floats, need.slots), "gu"),
        pairs: { half, f },
      };
      const bias = pairBias(rnd(2 * f, 0.1), f, half);
      using bb = upload(dev, bias, "f32");
      using ab16 = poisoned(dev, 16 * f, 2);
      assert.throws(
        () => quantLinear(k, bb.ptr, W, bb.ptr, 0n, 16, "gemv", {}, { silu: { act: ab16.ptr } }),
        /SiLU epilogue takes at most 8 rows/,
      );
      for (const M of [1, 5, 8]) {
        for (const tune of TUNES) {
          const what = `int${bits} f=${f} K=${K} M=${M} ${JSON.stringify(tune)}`;
          const S = qgemvPlan(bits, N, K, M, dev.smCount, W.scratch.partFloats, tune.warpsPerSm ?? 16).S;
          const x = roundTo(rnd(M * K), "f16"), y = reference(p, x, bias, M);
          using xb = upload(dev, x, "f16"), ab = poisoned(dev, M * f + 64, 2);
          quantLinear(k, xb.ptr, W, bb.ptr, 0n, M, "gemv", tune, { silu: { act: ab.ptr } });
          const got = await download(dev, ab, M * f + 64, "f16");
          // |d act| <= (1.1 max|u| + max|silu g|) d + 2^-11 |act|, d = 1e-3 max|y| (the GEMV bound above; silu' <= 1.1).
          let maxY = 0, maxU = 0, maxS = 0;
          const want = new Float32Array(M * f);
          for (let m = 0; m < M; m++) {
            for (let c = 0; c < f; c++) {
              const g = y[m * N + pairedRow(c, half)]!, u = y[m * N + pairedRow(c, half) + half]!;
              const sg = g / (1 + Math.exp(-g));
              want[m * f + c] = sg * u;
              [maxY, maxU, maxS] = [
                Math.max(maxY, Math.abs(g), Math.abs(u)),
                Math.max(maxU, Math.abs(u)),
                Math.max(maxS, Math.abs(sg)),
              ];
            }
          }
          const d = 1e-3 * maxY;
          want.forEach((v, i) => {
            const bound = (1.1 * maxU + maxS) * d + Math.abs(v) * 2 ** -11 + 1e-7;
            assert.ok(Math.abs(got[i]! - v) <= bound, `${what} (S ${S}): act[${i}] ${got[i]} vs ${v} (bound ${bound})`);
          });
          assert.ok(got.subarray(M * f).every(Number.isNaN), `${what}: wrote past act`);
        }
      }
    }
  },
);

// The fused and unfused quantized paths run the same weights with f16 activations; they round the normalized
// input at the same point but compute 1 / rms and the residual sums in another order, so single f16 roundings
// differ (2^-11 relative) and this 64-wide model moves its logits by ~1e-4 .. 1e-3: bound 5e-3; greedy ids equal.
cudaTest("CudaBackend fused quantized decode matches the unfused path (stories260K int4 g32 / int8 g64)", async () => {
  const greedy = { ...defaultSamplingParams(), temperature: 0 };
  for (const [weight, group] of [["int4", 32], ["int8", 64]] as const) {
    const precision: Precision = { weight, group, kv: "f16", compute: "f16" };
    const { b, spec } = await loadStories(await CudaBackend.create(), precision);
    await using _ = b;
    const run = async (fused: boolean) => {
      fusedDecode.enabled = fused;
      b.graphs.clear();
      const logits = [], before = b.kernels.launches;
      for (const ids of [[1, 403, 407, 261, 378], [1, 20, 30, 40, 50, 60, 70, 80]]) {
        logits.push(await sequenceLogits(b, ids, greedy)); // 5 and 8 tokens: one fused step each
      }
      const launches = b.kernels.launches - before;
      const gen = await generateSequence(b, [1], greedy, { maxTokens: 24, maxPositions: 512 });
      return { logits, ids: gen.ids, launches };
    };
    try {
      const on = await run(true), off = await run(false);
      // Each of the two fused steps (5 and 8 logits rows) drops the two RMSNorm launches of every layer and
      // silu_mul; the final RMSNorm too when its LM head is dec_gemv_norm (fewer than lmGemmRows rows).
      const L = spec.numLayers, finalNorm = [5, 8].filter((rows) => rows < fusedDecode.lmGemmRows).length;
      assert.equal(
        off.launches - on.launches,
        2 * 3 * L + finalNorm,
        `${weight}: launches ${on.launches} vs ${off.launches}`,
      );
      on.logits.forEach((l, i) => {
        const e = relErr(l, off.logits[i]!);
        console.log(`  ${weight} g${group} prompt ${i}: fused vs unfused logits ${e.toExponential(2)}`);
        assert.ok(e < 5e-3, `${weight}: logits error ${e}`);
      });
      assert.deepEqual(on.ids, off.ids, `${weight}: greedy ids`);
    } finally {
      fusedDecode.enabled = true;
    }
  }
});

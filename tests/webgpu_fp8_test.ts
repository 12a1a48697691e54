// FP8 E4M3 weights on WebGPU: the e4m3 decode of gemv_q / gemm_q (FP8 1) against the TypeScript reference
// (dequantizeFused of the packed linear) on fresh random data, and the backend against ReferenceBackend with fp8
// weights quantized at load (stories260K) and read from fp8 checkpoints. Seeds: $WEBGPU_TEST_SEED or random.
import assert from "node:assert/strict";
import * as ops from "../src/backends/reference/ops.ts";
import { QuantLinearOp, uploadQuantMatrix } from "../src/backends/webgpu/qlinear.ts";
import { type Fp8Scales, writeFp8Checkpoint } from "../src/backends/webgpu/testing_quant.ts";
import { dequantizeFused, packFor, type RowsPacked } from "../src/quant/pack.ts";
import { e4m3IsNaN, e4m3ToF32, FP8_SCALE_MAX, FP8_SCALE_MIN, fp8Scale, quantizeFp8 } from "../src/quant/fp8.ts";
import { quantizeRtn } from "../src/quant/reference.ts";
import type { QuantizedLinear } from "../src/quant/types.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { createWebGpuBackend } from "../src/backends/webgpu/backend.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { generateSequence, sequenceLogits } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/sampler.ts";
import type { Precision, SamplingParams } from "../src/core/types.ts";
import { readReferenceLogits, STORIES_DIR } from "./helpers/models.ts";
import { randomCode } from "./helpers/fp8_fixtures.ts";
import { gpuTestSetup, randn, readF32, relError, rng, runPass } from "../src/backends/webgpu/testing.ts";

const { gpuTest, ctx, SEED, seedNote } = await gpuTestSetup();

/** The backend's packing (packFor webgpu: rows-k, f32 (256 s, 0) pairs). */
function packWebGpu(ql: QuantizedLinear): RowsPacked {
  const p = packFor({ kind: "webgpu" }, ql);
  if (p.layout !== "rows-k") throw new Error("webgpu packs rows-k");
  return p;
}

/** quantizeFp8 of random weights with 1 code in 8 replaced by a random finite code, so that every matrix holds
 * subnormal (e = 0), zero, negative and large codes as well as what the quantizer picks. */
function randomFp8(rand: () => number, N: number, K: number, group: number, amp: number): QuantizedLinear {
  const ql = quantizeFp8(randn(rand, N * K, amp), N, K, group);
  const q = ql.q.slice();
  for (let i = 0; i < q.length; i++) if (rand() < 1 / 8) q[i] = randomCode(rand);
  return { ...ql, q };
}

gpuTest(
  "QuantLinearOp.encode() behaviour: fp8 GEMV and GEMM equal x · dequantizeFused(packFor(webgpu))^T",
  async () => {
    const g = ctx!, rand = rng(SEED + 21);
    // [M, N, K, group, bias]: M <= 8 takes gemv_q, above gemm_q; N and K are no multiples of 8 or 64 (K % 4 == 0);
    // K = 172 and 100 leave a partial last group of 32; group 128 > K = 100 is one group per row.
    const cases = [
      [1, 37, 172, 32, true],
      [3, 13, 100, 128, false],
      [8, 70, 260, 32, true],
      [2, 45, 36, 32, false],
      [1, 21, 100, 32, false],
      [9, 37, 172, 128, true],
      [37, 70, 260, 128, false],
      [70, 13, 172, 32, true],
    ] as const;
    let worst = 0, subnormals = 0;
    for (const [M, N, K, group, bias] of cases) {
      const x = randn(rand, M * K), b = randn(rand, N);
      // Two stacked fp8 linears (as qkv and gate|up are) of different magnitudes, N1 + N2 = N rows.
      const N1 = Math.max(1, Math.floor(N / 3)), N2 = N - N1;
      const pa = packWebGpu(randomFp8(rand, N1, K, group, 0.5)), pb = packWebGpu(randomFp8(rand, N2, K, group, 3e-3));
      assert.ok(pa.fp8 && pb.fp8 && pa.scaleDType === "f32", "packFor keeps fp8 with f32 pairs");
      const mat = uploadQuantMatrix(g, "w", [pa, pb]);
      assert.ok(mat.fp8 && mat.bits === 8);
      const wRef = new Float32Array(N * K);
      wRef.set(dequantizeFused(pa));
      wRef.set(dequantizeFused(pb), N1 * K);
      subnormals += [pa, pb].reduce((a, p) => a + unpackCodes(p).filter((c) => (c & 0x78) === 0 && c & 7).length, 0);
      const op = await QuantLinearOp.create(g, `t.fp8.${group}`, 8, group, true);
      const y = g.pool.create("y", M * N * 4);
      op.prepare({ M, N, K, bias });
      const bb = bias ? g.pool.upload("b", b) : null;
      await runPass(g, (pass) => op.encode(pass, { x: g.pool.upload("x", x), w: mat, bias: bb, y }));
      const got = await readF32(g, y, M * N);
      // The decoded weight e4m3(c) 2^-8 times the stored 256 s is e4m3(c) s exactly in f32 (<= 4 + 11 significant
      // bits, never below 2^-31), the very value dequantizeFused() gives, so only the f32 accumulation order differs
      // from ops.linear()'s f64 sum: |error| <= K 2^-24 sum |x w|, ~sqrt(K) 2^-24 ~ 1e-6 of max |y| in practice at
      // K <= 260. Bound 1e-5, as for int8 / int4 (tests/webgpu_quant_test.ts).
      const err = relError(got, ops.linear(x, wRef, M, K, N, bias ? b : null));
      assert.ok(err < 1e-5, `fp8 g${group} M=${M} N=${N} K=${K}: error ${err} >= 1e-5 ${seedNote}`);
      worst = Math.max(worst, err);
    }
    assert.ok(subnormals > 0, `no subnormal codes were drawn ${seedNote}`);
  },
);

/** The codes of a packed fp8 linear, [N, K] row-major. */
function unpackCodes(p: RowsPacked): Uint8Array {
  const Kw = Math.ceil(p.inDim / 4), out = new Uint8Array(p.outDim * p.inDim);
  for (let n = 0; n < p.outDim; n++) {
    for (let k = 0; k < p.inDim; k++) out[n * p.inDim + k] = (p.qweight[n * Kw + (k >> 2)]! >>> (8 * (k & 3))) & 0xff;
  }
  return out;
}

gpuTest("QuantLinearOp.encode() behaviour: every finite e4m3 code at the extreme scales decodes exactly", async () => {
  const g = ctx!, rand = rng(SEED + 22);
  // Row n holds code c_n (all 254 finite codes, twice) in column n % 4 and code 0 elsewhere, with its own scale:
  // FP8_SCALE_MIN, FP8_SCALE_MAX, or log-uniform between them on the fp8Scale grid. Then y[m, n] is the single
  // product x[m, n % 4] e4m3(c_n) s_n (the other terms are 0 * x = 0), rounded once to f32 on both sides: equality.
  const codes = Array.from({ length: 256 }, (_, c) => c).filter((c) => !e4m3IsNaN(c));
  const N = 2 * codes.length, K = 4;
  const q = new Uint8Array(N * K), scales = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    q[n * K + (n % 4)] = codes[n % codes.length]!;
    const lo = Math.log2(FP8_SCALE_MIN), hi = Math.log2(FP8_SCALE_MAX);
    scales[n] = n % 7 === 0 ? FP8_SCALE_MIN : n % 7 === 1 ? FP8_SCALE_MAX : fp8Scale(2 ** (lo + rand() * (hi - lo)));
  }
  const ql: QuantizedLinear = {
    outDim: N,
    inDim: K,
    bits: 8,
    fp8: true,
    groupSize: K,
    q,
    scales,
    zeros: new Uint16Array(N),
    gIdx: null,
  };
  const mat = uploadQuantMatrix(g, "w", [packWebGpu(ql)]);
  const op = await QuantLinearOp.create(g, "t.fp8.codes", 8, K, true);
  for (const M of [1, 5, 11]) { // gemv_q, gemv_q, gemm_q
    const x = randn(rand, M * K);
    op.prepare({ M, N, K, bias: false });
    const y = g.pool.create("y", M * N * 4);
    await runPass(g, (pass) => op.encode(pass, { x: g.pool.upload("x", x), w: mat, y }));
    const got = await readF32(g, y, M * N);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        const c = q[n * K + (n % 4)]!, want = Math.fround(x[m * K + (n % 4)]! * e4m3ToF32(c) * scales[n]!);
        const at = `M=${M} row ${m}, code 0x${c.toString(16)} scale ${scales[n]}`;
        // === (not Object.is): code 0x80 is -0, and 0 + -0 sums to +0 on the GPU.
        assert.ok(got[m * N + n] === want, `${at}: ${got[m * N + n]} != ${want} ${seedNote}`);
      }
    }
  }
});

gpuTest("uploadQuantMatrix() and QuantLinearOp errors: fp8 and integer weights never mix", async () => {
  const g = ctx!, rand = rng(SEED + 23);
  const f8 = quantizeFp8(randn(rand, 8 * 64), 8, 64, 32), i8 = quantizeRtn(randn(rand, 8 * 64), 8, 64, 8, 32);
  // Stacked parts (q/k/v, gate/up) must agree on fp8.
  assert.throws(() => uploadQuantMatrix(g, "w", [packWebGpu(f8), packWebGpu(i8)]), /differ/);
  assert.throws(() => uploadQuantMatrix(g, "w", [{ ...packWebGpu(f8), bits: 4 }]), /8-bit/);
  await assert.rejects(() => QuantLinearOp.create(g, "t.fp8.bad", 4, 32, true), /fp8/);
  // An op made for one format refuses a matrix of the other.
  const fp8Op = await QuantLinearOp.create(g, "t.fp8.err", 8, 32, true);
  const intOp = await QuantLinearOp.create(g, "t.int8.err", 8, 32);
  const x = g.pool.create("x", 64 * 4), y = g.pool.create("y", 8 * 4);
  for (const [op, w] of [[fp8Op, packWebGpu(i8)], [intOp, packWebGpu(f8)]] as const) {
    op.prepare({ M: 1, N: 8, K: 64, bias: false });
    const mat = uploadQuantMatrix(g, "w", [w]);
    await runPass(g, (pass) => assert.throws(() => op.encode(pass, { x, w: mat, y }), /does not match/));
  }
});

const greedy: SamplingParams = { ...defaultSamplingParams(), temperature: 0 };

gpuTest(
  "WebGpuBackend.forward() behaviour: fp8 g32 and g128 weights equal ReferenceBackend on stories260K",
  async () => {
    const ref = await readReferenceLogits();
    for (const group of [32, 128]) {
      const precision: Precision = { weight: "fp8", group, kv: "f32", compute: "f32" };
      const ckpt = await openCheckpoint(STORIES_DIR);
      await using gpu = await createWebGpuBackend();
      await using host = new ReferenceBackend();
      await using dense = new ReferenceBackend();
      await gpu.load(ckpt.spec, ckpt.weights, precision);
      await host.load(ckpt.spec, ckpt.weights, precision);
      await dense.load(ckpt.spec, ckpt.weights, { ...precision, weight: "f32" });
      ckpt.weights.close();
      // Both backends multiply by the same weights: quantizeFp8 at load, e4m3(q) s exact in f32 on both (the kernels
      // are checked against dequantizeFused above); embedding and LM head unrounded f32 on both. What differs is f32
      // summation order (GPU) against the host's f64 sums, through 5 layers and the LM head, as for int8 / int4
      // (4e-6 measured there). Bound 1e-4, and it must stay a small fraction of what fp8 quantization itself does to
      // the logits (ReferenceBackend fp8 vs f32), so the comparison can tell a broken decode from rounding.
      let worst = 0, effect = 0;
      for (const c of ref.cases) {
        const want = await sequenceLogits(host, c.tokens, greedy);
        const err = relError(await sequenceLogits(gpu, c.tokens, greedy), want);
        assert.ok(err < 1e-4, `fp8 g${group}, case of ${c.tokens.length} tokens: ${err} >= 1e-4 ${seedNote}`);
        worst = Math.max(worst, err);
        effect = Math.max(effect, relError(want, await sequenceLogits(dense, c.tokens, greedy)));
      }
      assert.ok(worst < effect / 100, `fp8 g${group}: error ${worst} is not << the fp8 effect ${effect}`);
      const opts = { maxTokens: 32, maxPositions: 512 };
      const a = await generateSequence(gpu, [1], greedy, opts), b = await generateSequence(host, [1], greedy, opts);
      assert.deepEqual(a.ids, b.ids, `fp8 g${group}: greedy ids differ from the ReferenceBackend's`);
    }
  },
);

gpuTest(
  "WebGpuBackend.load() behaviour: fp8 checkpoints (block, channel, tensor scales) run like the reference",
  async () => {
    const tokens = [1, 5, 9, 33, 2, 17, 40, 8, 63, 0, 12];
    const kinds: Fp8Scales[] = [{ block: [16, 32] }, { block: [128, 128] }, "channel", "tensor"];
    for (const [i, scales] of kinds.entries()) {
      const dir = await writeFp8Checkpoint(scales, SEED + 24 + i);
      const ckpt = await openCheckpoint(dir);
      await using gpu = await createWebGpuBackend();
      await using host = new ReferenceBackend();
      const precision: Precision = { weight: "fp8", kv: "f32", compute: "f32" };
      // The checkpoint's format is fixed: int8 weights are refused before anything is read.
      await assert.rejects(() => gpu.load(ckpt.spec, ckpt.weights, { ...precision, weight: "int8" }), /does not match/);
      await gpu.load(ckpt.spec, ckpt.weights, precision);
      await host.load(ckpt.spec, ckpt.weights, precision);
      ckpt.weights.close();
      // Both multiply by exactly e4m3(q) s of the checkpoint; f32 sums in another order. Bound 1e-4 as above.
      const err = relError(await sequenceLogits(gpu, tokens, greedy), await sequenceLogits(host, tokens, greedy));
      assert.ok(err < 1e-4, `fp8 ${JSON.stringify(scales)}: logits differ by ${err} >= 1e-4 ${seedNote}`);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

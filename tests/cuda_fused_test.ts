// The fused decode kernels (kernels/decode.cu through src/backends/cuda/decode_ops.ts) against compositions of
// src/backends/reference/ops.ts on fresh random, never-zero inputs at awkward sizes: h / K in {64, 172, 4096}
// (172: the scalar path, K % 8 != 0), N in {172, 200, 201} (201: a two-row warp whose second row is past N),
// M in {1, 3, 5, 8}. Ignored, with the reason in the name,
// where no NVIDIA driver is present. The whole fused layer loop is checked by tests/cuda_model_test.ts (decode
// steps of <= 8 tokens take it) against the reference backend.
import assert from "node:assert/strict";
import * as ops from "../src/backends/reference/ops.ts";
import { roundTo } from "../src/model/dtype.ts";
import { CudaDevice } from "../src/backends/cuda/device.ts";
import { Kernels } from "../src/backends/cuda/kernels.ts";
import type { ActDType, Half } from "../src/backends/cuda/ops.ts";
import { DEC_VARIANTS, DEC_WARPS, DecodeOps, decParts } from "../src/backends/cuda/decode_ops.ts";
import { cudaKernelTest, download, poisoned, randomArray, relErr, upload } from "../src/backends/cuda/testing.ts";

let seed = Math.floor(Math.random() * 1e9);
const rnd = (n: number, scale = 1) => randomArray(n, ++seed, scale);
const EPS = 1e-5;
const COMBOS = [["bf16", "bf16"], ["f16", "f16"], ["bf16", "f32"], ["f16", "f32"]] as const;
const SHAPES: [number, number, number][] = [[1, 172, 64], [3, 200, 4096], [8, 172, 172], [1, 201, 4096], [5, 200, 64]];
/**
 * Bounds (max |diff| / max |ref|). f32 matmul of K <= 4096 terms: summation order only, ~K * 2^-24 worst case,
 * 1e-4 as the existing GEMV tests. A normalized input rounded to a 16-bit act dtype: the kernel forms (x*g)*inv,
 * the reference x*inv*g, an f32 ulp apart, which flips a few roundings by one 16-bit ulp (2^-8 bf16, 2^-11 f16) on
 * single terms of a K-term sum: 2e-3 for bf16, 5e-4 for f16. A 16-bit output (SiLU-mul): plus its own rounding
 * (1.6e-2 bf16, 2e-3 f16, as tests/cuda_kernels_test.ts).
 */
const IN_BOUND: Record<ActDType, number> = { f32: 1e-4, bf16: 2e-3, f16: 5e-4 };
const OUT_BOUND: Record<ActDType, number> = { f32: 1e-4, bf16: 1.6e-2, f16: 2e-3 };

const gpuTest = (name: string, fn: (d: DecodeOps, dev: CudaDevice, wt: Half, act: ActDType) => Promise<void>) => {
  for (const [wt, act] of COMBOS) {
    const full = `${name} (weights ${wt}, activations ${act})`;
    cudaKernelTest(full, (k, dev) => fn(new DecodeOps(k, wt, act), dev, wt, act));
  }
};

/** Sums of squares of x's rows [rows, K] split into `parts` uneven chunks per row: [rows, parts]. */
function splitSumsOfSquares(x: Float32Array, rows: number, K: number, parts: number): Float32Array {
  const out = new Float32Array(rows * parts);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < K; k++) out[r * parts + ((k * 7) % parts)]! += x[r * K + k]! ** 2;
  }
  return out;
}

/** Rows of x selected by idx. */
const pick = (x: Float32Array, idx: ArrayLike<number>, K: number) =>
  Float32Array.from({ length: idx.length * K }, (_, i) => x[idx[Math.floor(i / K)]! * K + (i % K)]!);

gpuTest("DecodeOps.gemvNorm() is rmsnorm then linear, with and without rowIdx", async (d8, dev, wt, act) => {
  // Every variant (M = 1 only; M > 1 falls back to r1) at 8 warps per block, r2 also at 4.
  const variants = [["r1", 8], ["r2", 8], ["u8", 8], ["r2", 4]] as const;
  const configs = SHAPES.flatMap((s) => variants.map((c) => [s, ...c] as const));
  for (const [[M, N, K], variant, warps] of configs) {
    const d = new DecodeOps(d8.k, wt, act, true, warps);
    const X = M + 2, parts = 5; // x has more rows than are used: rowIdx picks some of them
    const x = rnd(X * K, 3), g = rnd(K), w = roundTo(rnd(N * K), wt), bias = rnd(N);
    const xg = x.map((v, i) => v * g[i % K]!), ss = splitSumsOfSquares(x, X, K, parts);
    const idx = Int32Array.from({ length: M }, (_, m) => (m * 3 + 1) % X);
    using wb = upload(dev, w, wt), bb = upload(dev, bias, "f32"), xgb = upload(dev, xg, "f32");
    using sb = upload(dev, ss, "f32"), ib = upload(dev, idx, "i32"), yb = poisoned(dev, M * N, 4);
    for (const rowIdx of [0n, ib.ptr]) {
      const args = { W: wb.ptr, bias: bb.ptr, xg: xgb.ptr, ss: sb.ptr, parts, eps: EPS, rowIdx, y: yb.ptr, M, N, K };
      d.gemvNorm(args, variant);
      const rows = rowIdx === 0n ? x.subarray(0, M * K) : pick(x, idx, K);
      const xn = act === "f32" ? ops.rmsNorm(rows, g, M, K, EPS) : roundTo(ops.rmsNorm(rows, g, M, K, EPS), act);
      const e = relErr(await download(dev, yb, M * N, "f32"), ops.linear(xn, w, M, K, N, bias));
      const what = `M=${M} N=${N} K=${K} ${variant} warps ${warps} rowIdx ${rowIdx !== 0n}`;
      assert.ok(e < IN_BOUND[act], `${what}: error ${e}`);
    }
  }
});

gpuTest("DecodeOps.gemvSilu() is rmsnorm, the gate|up linear, then silu(gate) * up", async (d, dev, wt, act) => {
  for (const [M, F, K] of SHAPES) {
    const parts = 3, x = rnd(M * K, 2), g = rnd(K), w = roundTo(rnd(2 * F * K), wt), bias = rnd(2 * F);
    const xg = x.map((v, i) => v * g[i % K]!), ss = splitSumsOfSquares(x, M, K, parts);
    using wb = upload(dev, w, wt), bb = upload(dev, bias, "f32"), xgb = upload(dev, xg, "f32");
    using sb = upload(dev, ss, "f32"), ab = poisoned(dev, M * F, 4);
    d.gemvSilu({ W: wb.ptr, bias: bb.ptr, xg: xgb.ptr, ss: sb.ptr, parts, eps: EPS, act: ab.ptr, M, F, K });
    const xn0 = ops.rmsNorm(x, g, M, K, EPS), xn = act === "f32" ? xn0 : roundTo(xn0, act);
    const gu = ops.linear(xn, w, M, K, 2 * F, bias);
    const gate = new Float32Array(M * F), up = new Float32Array(M * F);
    for (let m = 0; m < M; m++) {
      gate.set(gu.subarray(m * 2 * F, m * 2 * F + F), m * F);
      up.set(gu.subarray(m * 2 * F + F, (m + 1) * 2 * F), m * F);
    }
    const e = relErr(await download(dev, ab, M * F, act), ops.siluMul(gate, up));
    assert.ok(e < IN_BOUND[act] + OUT_BOUND[act], `M=${M} F=${F} K=${K}: error ${e}`);
  }
});

gpuTest(
  "DecodeOps.gemvRes() adds the linear into x and writes x * gNext and partial sums",
  async (d8, dev, wt, act) => {
    const configs = SHAPES.flatMap((s) => DEC_WARPS.flatMap((w) => DEC_VARIANTS.map((v) => [s, w, v] as const)));
    for (const [[M, N, K], warps, variant] of configs) {
      const d = new DecodeOps(d8.k, wt, act, true, warps);
      const v = DecodeOps.variantFor(M, variant), block = warps * (v === "r2" ? 2 : 1); // outputs per partial sum
      const xin = act === "f32" ? rnd(M * K) : roundTo(rnd(M * K), act), w = roundTo(rnd(N * K), wt);
      const bias = rnd(N), x = rnd(M * N, 4), gNext = rnd(N), P = decParts(N, warps, v);
      using wb = upload(dev, w, wt), bb = upload(dev, bias, "f32"), ib = upload(dev, xin, act);
      using xb = upload(dev, x, "f32"), gb = upload(dev, gNext, "f32");
      using xgb = poisoned(dev, M * N, 4), sb = poisoned(dev, M * P, 4);
      const args = { W: wb.ptr, bias: bb.ptr, xin: ib.ptr, x: xb.ptr, gNext: gb.ptr, xg: xgb.ptr, ss: sb.ptr, M, N, K };
      d.gemvRes(args, variant);
      const lin = ops.linear(xin, w, M, K, N, bias), want = x.map((v, i) => v + lin[i]!);
      const got = await download(dev, xb, M * N, "f32");
      const e = relErr(got, want);
      assert.ok(e < 1e-4, `x: M=${M} N=${N} K=${K} warps ${warps} ${v}: error ${e}`);
      const eg = relErr(await download(dev, xgb, M * N, "f32"), want.map((v, i) => v * gNext[i % N]!));
      assert.ok(eg < 1e-4, `xg: error ${eg}`);
      // Partial p of row m: the sum of squares of x over one block's outputs [p * block, (p + 1) * block).
      const wantSs = new Float32Array(M * P);
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) wantSs[m * P + Math.floor(n / block)]! += got[m * N + n]! ** 2;
      }
      const es = relErr(await download(dev, sb, M * P, "f32"), wantSs);
      assert.ok(es < 1e-6, `partial sums: error ${es}`);
    }
  },
);

gpuTest("DecodeOps.embed() writes the row, row * g and its sum of squares", async (d, dev, wt) => {
  for (const h of [64, 172, 4096]) {
    const vocab = 37, n = 5, table = roundTo(rnd(vocab * h), wt), g = rnd(h);
    const ids = Int32Array.from({ length: n }, (_, i) => (i * 11 + 2) % vocab);
    using tb = upload(dev, table, wt), ib = upload(dev, ids, "i32"), gb = upload(dev, g, "f32");
    using xb = poisoned(dev, n * h, 4), xgb = poisoned(dev, n * h, 4), sb = poisoned(dev, n, 4);
    d.embed({ table: tb.ptr, ids: ib.ptr, g: gb.ptr, x: xb.ptr, xg: xgb.ptr, ss: sb.ptr, n, h, vocab });
    const x = ops.embed(table, ids, h, vocab);
    assert.equal(relErr(await download(dev, xb, n * h, "f32"), x), 0);
    assert.equal(relErr(await download(dev, xgb, n * h, "f32"), x.map((v, i) => v * g[i % h]!)), 0);
    const ss = Float32Array.from(
      { length: n },
      (_, t) => x.subarray(t * h, (t + 1) * h).reduce((a, v) => a + v * v, 0),
    );
    const e = relErr(await download(dev, sb, n, "f32"), ss);
    assert.ok(e < 1e-5, `h=${h}: sum of squares error ${e}`);
  }
});

Deno.test("DecodeOps launchers reject rows beyond the fused limit before launch", () => {
  // A Kernels stand-in that fails the test if anything is launched: validation must throw first.
  const k = { launch: () => assert.fail("launched") } as unknown as Kernels;
  const d = new DecodeOps(k, "bf16", "f32");
  const base = { W: 16n, bias: 0n, xg: 16n, ss: 16n, parts: 1, eps: EPS, rowIdx: 0n, y: 16n, N: 8, K: 8 };
  assert.throws(() => d.gemvNorm({ ...base, M: 9 }), /M=9/);
  assert.throws(() => d.gemvNorm({ ...base, M: 0 }), /M=0/);
  assert.throws(() => d.gemvNorm({ ...base, M: 1, parts: 0 }), /parts=0/);
  assert.throws(() => new DecodeOps(k, "bf16", "f16"), /must be f32 or the weight dtype/);
  assert.equal(decParts(4096), 512);
  assert.equal(decParts(4096, 8, "r2"), 256);
  assert.equal(decParts(4096, 4, "u8"), 1024);
  assert.equal(DecodeOps.variantFor(1, "r2"), "r2");
  assert.equal(DecodeOps.variantFor(3, "u8"), "r1");
  assert.throws(() => new DecodeOps(k, "bf16", "f32", true, 16 as 8), /16 warps/);
  assert.throws(() => d.gemvNorm({ ...base, M: 1 }, "r3" as "r2"), /variant r3/);
});

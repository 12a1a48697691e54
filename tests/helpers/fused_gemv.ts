// The fused decode GEMV (wgsl/gemv_fused.wgsl via FusedLinearOp) against the reference ops, for dense (f32 / f16) and
// quantized (int4 / int8 / fp8) weights: shared by tests/webgpu_fused_test.ts and tests/webgpu_fused_quant_test.ts.
import assert from "node:assert/strict";
import * as ops from "../../src/backends/reference/ops.ts";
import {
  DEFAULT_GEMV_SHAPE,
  type Epilogue,
  FusedLinearOp,
  type FusedQuant,
  type GemvShape,
  type Prologue,
} from "../../src/backends/webgpu/fused.ts";
import type { GpuContext } from "../../src/backends/webgpu/context.ts";
import { type Matrix, uploadQuantMatrix } from "../../src/backends/webgpu/qlinear.ts";
import type { StorageType } from "../../src/backends/webgpu/shaders.ts";
import { randn, readF32, relError, runPass, uploadAs } from "../../src/backends/webgpu/testing.ts";
import { createWebGpuBackend } from "../../src/backends/webgpu/backend.ts";
import type { ModelSpec, Precision, StepInputs, TensorSource } from "../../src/core/types.ts";
import { defaultSamplingParams } from "../../src/sampling/params.ts";
import { packFor } from "../../src/quant/pack.ts";
import { dequantize, quantizeAs } from "../../src/quant/reference.ts";

/** (M, N, K, prologue, epilogue, bias) of one fused GEMV call. */
export type Case = [number, number, number, Prologue, Epilogue, boolean];

/** The default shape with the two rows per group a silupair epilogue needs. */
export const PAIR_SHAPE: GemvShape = { ...DEFAULT_GEMV_SHAPE, r: 2 };

/** What the fused kernel computes, from the reference ops: y (=|+=) linear(prologue(x)) + bias (silupair: pairs). */
function reference(
  pro: Prologue,
  epi: Epilogue,
  x: Float32Array,
  w: Float32Array,
  nw: Float32Array,
  bias: Float32Array | null,
  M: number,
  N: number,
  K: number,
  eps: number,
): Float32Array {
  let input = x;
  // "prenorm" is handed r * nw and r itself (checkFusedCase): the reference norms r.
  if (pro === "norm" || pro === "prenorm") input = ops.rmsNorm(x, nw, M, K, eps);
  if (pro === "silu") input = silu(x, M, K);
  const out = ops.linear(input, w, M, K, N, bias);
  return epi === "silupair" ? silu(out, M, N / 2) : out;
}

/** silu(gate) * up over rows [gate (K) | up (K)] of a [M, 2K] matrix. */
function silu(x: Float32Array, M: number, K: number): Float32Array {
  const gate = new Float32Array(M * K), up = new Float32Array(M * K);
  for (let m = 0; m < M; m++) {
    gate.set(x.subarray(m * 2 * K, m * 2 * K + K), m * K);
    up.set(x.subarray(m * 2 * K + K, (m + 1) * 2 * K), m * K);
  }
  return ops.siluMul(gate, up);
}

/** A random [N, K] matrix on the GPU as `wt` stores it, and the values the kernel must multiply by (f16-rounded, or
 * the exact dequantized weights of its RTN / fp8 quantization). */
function randomMatrix(ctx: GpuContext, wt: StorageType | FusedQuant, N: number, K: number, rand: () => number) {
  const w = randn(rand, N * K);
  if (typeof wt !== "object") {
    const u = uploadAs(ctx, "w", w, wt);
    return { m: u.buf as Matrix, values: u.values };
  }
  const ql = quantizeAs(wt, w, N, K, wt.group);
  const packed = packFor({ kind: "webgpu" }, ql);
  if (packed.layout !== "rows-k") throw new Error("webgpu packs rows-k");
  return { m: uploadQuantMatrix(ctx, "w", [packed]) as Matrix, values: dequantize(ql) };
}

/** Name of a weight kind in messages. */
export function kindName(wt: StorageType | FusedQuant): string {
  return typeof wt === "object" ? `${wt.fp8 ? "fp8" : `int${wt.bits}`} g${wt.group}` : wt;
}

/**
 * Runs one case of the fused GEMV built with `shape` over weights of kind `wt` against the reference, and asserts
 * max |gpu - ref| / max |ref| < 1e-5: the reference multiplies by the very values the kernel does (the stored f16, or
 * the dequantized weights, exact in f32), so what differs is f32 summation order over K terms (~K * 2^-24 relative
 * worst case, ~1e-6 typical as the errors are random), the norm's inverse square root and exp() in SiLU (a few ulp).
 */
export async function checkFusedCase(
  ctx: GpuContext,
  wt: StorageType | FusedQuant,
  shape: GemvShape,
  c: Case,
  rand: () => number,
  seedNote: string,
): Promise<void> {
  const g = ctx, [M, N, K, pro, epi, hasBias] = c, eps = 1e-5;
  const xw = pro === "silu" ? 2 * K : K, yN = epi === "silupair" ? N / 2 : N;
  const x = randn(rand, M * xw, 2), w = randomMatrix(g, wt, N, K, rand);
  const nw = randn(rand, K), bias = hasBias ? randn(rand, N) : null, y0 = randn(rand, M * yN);
  const eg = randn(rand, N), xg = g.pool.upload("xg", new Float32Array(M * N));
  const y = g.pool.upload("y", y0);
  // prenorm: the kernel reads x * nw (what an addnorm producer writes) and the raw x for the sum of squares.
  const xs = pro === "prenorm" ? x.map((v, i) => Math.fround(v * nw[i % K]!)) : x;
  const tag = `${shape.wgs}.${shape.lanes}.${shape.r}.${shape.u}`;
  const op = await FusedLinearOp.create(g, `t.fused.${kindName(wt)}.${pro}.${epi}.${tag}`, wt, pro, epi, shape);
  op.prepare({ M, N, K, bias: hasBias, eps });
  await runPass(g, (pass) =>
    op.encode(pass, {
      x: g.pool.upload("x", xs),
      w: w.m,
      ...(pro === "norm" ? { norm: g.pool.upload("nw", nw) } : {}),
      ...(pro === "prenorm" ? { residual: g.pool.upload("r", x) } : {}),
      ...(bias ? { bias: g.pool.upload("bias", bias) } : {}),
      ...(epi === "addnorm" ? { nextNorm: g.pool.upload("eg", eg), xg } : {}),
      y,
    }));
  const want = reference(pro, epi, x, w.values, nw, bias, M, N, K, eps);
  if (epi === "add" || epi === "addnorm") { for (let i = 0; i < want.length; i++) want[i]! += y0[i]!; }
  const err = relError(await readF32(g, y, M * yN), want);
  const what = `${kindName(wt)} shape ${tag} M=${M} N=${N} K=${K} ${pro}/${epi}${hasBias ? " +bias" : ""}`;
  assert.ok(err < 1e-5, `${what}: error ${err} >= 1e-5 ${seedNote}`);
  if (epi === "addnorm") {
    // xg = y * eg, from the same y (one more rounding): same bound.
    const wantXg = want.map((v, i) => v * eg[i % N]!);
    const errXg = relError(await readF32(g, xg, M * N), wantXg);
    assert.ok(errXg < 1e-5, `${what}: xg error ${errXg} >= 1e-5 ${seedNote}`);
  }
}

/**
 * On a WebGPU backend with the fused decode layer on or off: the logits of ids[0..3) in one step (<= 8 rows: the
 * GEMV path), then of ids[3], ids[4], ... one decode step each, and the dispatches of the last step.
 */
export async function decodeLogits(
  spec: ModelSpec,
  weights: TensorSource,
  precision: Precision,
  fuse: boolean,
  ids: ArrayLike<number>,
): Promise<{ logits: Float32Array; dispatches: number }> {
  await using b = await createWebGpuBackend({ fuse });
  await b.load(spec, weights, precision);
  b.allocateKv(2, 16);
  const state = { params: defaultSamplingParams(), promptIds: [], outputIds: [], fallbackSeed: 0 };
  const all: number[] = [];
  const step = async (start: number, n: number) => {
    const s: StepInputs = {
      tokens: Int32Array.from({ length: n }, (_, i) => ids[start + i]!),
      positions: Int32Array.from({ length: n }, (_, i) => start + i),
      queryStarts: Int32Array.of(0, n),
      contextLens: Int32Array.of(start + n),
      blockTables: Int32Array.of(0, 1),
      maxBlocksPerSeq: 2,
      blockSize: 16,
      slots: Int32Array.from({ length: n }, (_, i) => start + i),
      sample: [true],
      sampling: [state],
      allLogits: true,
    };
    all.push(...(await b.forward(s)).logits!);
  };
  await step(0, 3);
  for (let t = 3; t < ids.length; t++) await step(t, 1);
  return { logits: Float32Array.from(all), dispatches: b.context.lastStep.dispatches };
}

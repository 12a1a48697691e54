// `deno task bench --suite kernels`: each hot kernel at the decode and prefill sizes of one model, timed on the GPU
// backend and compared with two ceilings measured in the same run: copy bandwidth (memory-bound kernels) and the
// rate of a large GEMM (compute-bound ones). The cases (sizes, bytes, FLOPs) are defined here; bench/kernels_webgpu.ts
// and bench/kernels_cuda.ts time them.
import type { ModelSpec } from "../src/core/types.ts";
import { UserError } from "../src/core/errors.ts";
import { buildSyntheticModel, isSynthetic } from "../src/model/synthetic.ts";
import type { Report } from "./report.ts";

export type KernelKind =
  | "embed"
  | "rmsnorm"
  | "gemv"
  | "gemm"
  | "rope_kv"
  | "attn_decode"
  | "attn_prefill"
  | "silu_mul"
  | "argmax";

/** One timed call. T: token rows; N x K: a matmul's output x input features; ctx: keys attended (decode). */
export interface KernelCase {
  readonly kind: KernelKind;
  readonly kernel: string;
  readonly shape: string;
  readonly T: number;
  readonly N: number;
  readonly K: number;
  readonly ctx: number;
  /** Least bytes the call must read + write, and its FLOPs. */
  readonly bytes: number;
  readonly flops: number;
}

export interface KernelOptions {
  /** synthetic:NAME; undefined: the backend picks (llama3-8b on a real GPU, tiny on a software adapter). */
  readonly model?: string;
  /** Most calls per timed batch. */
  readonly maxReps: number;
  /** Prefill rows; undefined: 2048 on a real GPU, 512 on a software adapter. */
  readonly prefill?: number;
  readonly quiet: boolean;
}

/** What a backend measured: the ceilings and the seconds per call of every case, in order. */
export interface KernelRun {
  readonly device: string;
  readonly model: string;
  readonly copyBytesPerS: number;
  readonly copyNote: string;
  readonly peakFlopsPerS: number;
  readonly peakNote: string;
  readonly seconds: readonly number[];
  readonly cases: readonly KernelCase[];
}

/** Storage bytes per element: weights, KV cache (activations are f32 in both GPU backends). */
export interface Widths {
  readonly w: number;
  readonly kv: number;
}

/** Shapes of a synthetic model (only the shapes are used; no weights are built). */
export function kernelModel(model: string): ModelSpec {
  if (!isSynthetic(model)) throw new UserError(`--suite kernels takes --model synthetic:NAME (got "${model}")`);
  return buildSyntheticModel(model).spec;
}

/** The cases at decode (T = 1, contexts 512 and 4096) and prefill (T = prefill) sizes of `s`. */
export function kernelCases(s: ModelSpec, prefill: number, b: Widths): KernelCase[] {
  const h = s.hiddenSize, F = s.intermediateSize, nh = s.numHeads, nkv = s.numKvHeads, d = s.headDim;
  const V = s.vocabSize, qkv = (nh + 2 * nkv) * d, P = prefill;
  const out: KernelCase[] = [];
  const add = (c: Omit<KernelCase, "T" | "N" | "K" | "ctx"> & Partial<KernelCase>) =>
    out.push({ T: 1, N: 0, K: 0, ctx: 0, ...c });
  for (const T of [1, P]) {
    add({ kind: "embed", kernel: "embedding", shape: `T=${T} h=${h}`, T, bytes: T * h * (b.w + 4), flops: 0 });
    add({
      kind: "rmsnorm",
      kernel: "rmsnorm+residual",
      shape: `T=${T} h=${h}`,
      T,
      bytes: 4 * T * h * 4 + h * 4, // x, r read; x, y written; w
      flops: 5 * T * h,
    });
  }
  const mm: [string, number, number][] = [["qkv", qkv, h], ["o", h, nh * d], ["gate_up", 2 * F, h], ["down", h, F]];
  const mat = (T: number, N: number, K: number) => N * K * b.w + T * (K + N) * 4;
  for (const [name, N, K] of [...mm, ["lm_head", V, h] as [string, number, number]]) {
    add({
      kind: "gemv",
      kernel: `${name} GEMV`,
      shape: `T=1 N=${N} K=${K}`,
      N,
      K,
      bytes: mat(1, N, K),
      flops: 2 * N * K,
    });
  }
  for (const [name, N, K] of mm) {
    add({
      kind: "gemm",
      kernel: `${name} GEMM`,
      shape: `T=${P} N=${N} K=${K}`,
      T: P,
      N,
      K,
      bytes: mat(P, N, K),
      flops: 2 * P * N * K,
    });
  }
  for (const T of [1, P]) {
    // qkv read, q and k written back (rotated), k and v appended to the cache, a (cos, sin) row per token.
    const bytes = T * (qkv * 4 + (nh + nkv) * d * 4 + 2 * nkv * d * b.kv + d * 4);
    add({
      kind: "rope_kv",
      kernel: "rope+KV write",
      shape: `T=${T} heads=${nh}/${nkv} d=${d}`,
      T,
      bytes,
      flops: 3 * T * (nh + nkv) * d,
    });
  }
  for (const ctx of [512, 4096]) {
    add({
      kind: "attn_decode",
      kernel: "decode attention",
      shape: `ctx=${ctx} heads=${nh}/${nkv} d=${d}`,
      ctx,
      bytes: 2 * ctx * nkv * d * b.kv + 2 * nh * d * 4,
      flops: 4 * nh * ctx * d,
    });
  }
  add({
    kind: "attn_prefill",
    kernel: "prefill attention",
    shape: `T=${P} causal heads=${nh}/${nkv} d=${d}`,
    T: P,
    ctx: P,
    bytes: 2 * P * nkv * d * b.kv + 2 * P * nh * d * 4,
    flops: 4 * nh * d * (P * (P + 1)) / 2,
  });
  for (const T of [1, P]) {
    add({ kind: "silu_mul", kernel: "silu_mul", shape: `T=${T} F=${F}`, T, bytes: 3 * T * F * 4, flops: 6 * T * F });
  }
  add({ kind: "argmax", kernel: "sampling (argmax)", shape: `T=1 vocab=${V}`, bytes: V * 4 + 4, flops: V });
  return out;
}

/**
 * Copies of a GEMV's weight matrix that the timed calls rotate over: back-to-back calls on one matrix that fits the
 * L2 cache (50 MB on an H100) would read it from cache, not memory as decode does. The copies total >= 256 MiB.
 */
export function weightCopies(bytes: number): number {
  return Math.max(1, Math.min(16, Math.ceil(2 ** 28 / bytes)));
}

/**
 * Seconds per call from two timed batches of r and 2r calls, which cancels the fixed cost of a batch (submit,
 * Deno's ~10 ms queue poll); falls back to the 2r batch alone (an upper bound) when noise makes the difference <= 0.
 */
export function perCall(msR: number, ms2R: number, r: number): number {
  const diff = (ms2R - msR) / r;
  return (diff > 0 ? diff : ms2R / (2 * r)) / 1000;
}

/**
 * Seconds per call of a timed batch runner (`run(r)` records r calls, submits, waits, returns wall ms): grows r
 * until a batch lasts about targetMs (at most maxReps), then times r and 2r calls (see perCall).
 */
export async function calibratedPerCall(
  run: (r: number) => Promise<number>,
  targetMs: number,
  maxReps: number,
): Promise<number> {
  await run(1); // warm-up: pipeline compile, first touch of the buffers
  let r = Math.min(2, maxReps);
  for (;;) {
    const ms = await run(r);
    if (ms >= targetMs || r >= maxReps) break;
    r = Math.min(maxReps, r * Math.min(16, Math.max(2, Math.ceil(targetMs / Math.max(ms, 1e-3)))));
  }
  const a = await run(r);
  const b = await run(2 * r);
  return perCall(a, b, r);
}

/** Kinds whose FLOPs are matrix math (compared with the GEMM peak); the others are elementwise: memory-bound. */
const MATRIX: ReadonlySet<KernelKind> = new Set(["gemv", "gemm", "attn_decode", "attn_prefill"]);

/**
 * One row per case. Roofline time = max(bytes / copy bandwidth, FLOPs / matrix peak), the second only for matrix
 * kinds; the matrix peak is the large GEMM's rate, or a GEMM row's when that is faster (so no GEMM exceeds 100%).
 * The copy reads and writes; a read-mostly stream can beat it slightly (lm_head GEMV: ~103% on an H100).
 */
export function kernelReport(run: KernelRun): Report {
  let peak = run.peakFlopsPerS;
  run.cases.forEach((c, i) => {
    if (c.kind === "gemm") peak = Math.max(peak, c.flops / run.seconds[i]!);
  });
  const rows = run.cases.map((c, i) => {
    const s = run.seconds[i]!;
    const memS = c.bytes / run.copyBytesPerS, compS = MATRIX.has(c.kind) ? c.flops / peak : 0;
    return {
      kernel: c.kernel,
      shape: c.shape,
      "us/call": s * 1e6,
      "GB/s": c.bytes / s / 1e9,
      "TFLOP/s": c.flops / s / 1e12,
      "% roofline": (100 * Math.max(memS, compS)) / s,
      bound: compS > memS ? "compute" : "memory",
    };
  });
  return {
    suite: "kernels",
    meta: {
      date: new Date().toISOString(),
      model: run.model,
      device: run.device,
      "copy GB/s": Number((run.copyBytesPerS / 1e9).toFixed(1)),
      copy: run.copyNote,
      "peak TFLOP/s": Number((peak / 1e12).toFixed(4)),
      peak: peak > run.peakFlopsPerS ? `the fastest GEMM row (faster than ${run.peakNote})` : run.peakNote,
    },
    columns: ["kernel", "shape", "us/call", "GB/s", "TFLOP/s", "% roofline", "bound"],
    rows,
    chart: {
      value: "% roofline",
      title: `Kernels, % of the roofline measured in the same run (${run.model}, ${run.device})`,
      label: (r) => `${r.kernel} ${String(r.shape).split(" ")[0]}`,
    },
  };
}

/** Runs the suite on `backend` (auto: CUDA when a driver is present, else WebGPU). */
export async function kernelsBenchmark(backend: string, o: KernelOptions): Promise<Report> {
  if (backend === "reference") {
    throw new UserError(
      "the reference backend has no GPU kernels to time (it runs the model in TypeScript on the CPU); " +
        "use --backend webgpu or --backend cuda",
    );
  }
  if (o.model !== undefined) kernelModel(o.model); // a bad --model fails before a device is opened
  if (backend === "auto") {
    const { cudaSkipReason } = await import("../src/backends/cuda/testing.ts");
    backend = cudaSkipReason() === null ? "cuda" : "webgpu";
  }
  if (backend === "webgpu") return kernelReport(await (await import("./kernels_webgpu.ts")).webgpuKernels(o));
  if (backend === "cuda") return kernelReport(await (await import("./kernels_cuda.ts")).cudaKernels(o));
  throw new UserError(`unknown backend "${backend}" (auto, cuda, webgpu, reference)`);
}

// The kernel table: every kernel's module and typed parameter list (the order of its C signature), argument
// packing with validation for cuLaunchKernel, and launch-dimension checks. Pure data and arithmetic (no FFI):
// tests/cuda_kernels_test.ts checks packing without a GPU.
import type { DevPtr } from "./ffi.ts";

export type ParamType = "ptr" | "optptr" | "i32" | "u32" | "f32";
export interface ParamSpec {
  readonly name: string;
  readonly type: ParamType;
}
export type ModuleName =
  | "elementwise"
  | "attn_decode"
  | "attn_prefill"
  | "gemm"
  | "gemm_skinny"
  | "qgemm"
  | "qgemv"
  | "decode"
  | "sample"
  | "gemm_wg";
export interface KernelSpec {
  readonly module: ModuleName;
  readonly params: readonly ParamSpec[];
}
/** Pointer params take a DevPtr (0n only where "optptr"); numeric params a number. */
export type KernelArgs = Readonly<Record<string, DevPtr | number>>;
export type Dim3 = readonly [number, number?, number?];

const p = (name: string): ParamSpec => ({ name, type: "ptr" });
const o = (name: string): ParamSpec => ({ name, type: "optptr" });
const i = (name: string): ParamSpec => ({ name, type: "i32" });
const f = (name: string): ParamSpec => ({ name, type: "f32" });
const u = (name: string): ParamSpec => ({ name, type: "u32" });

const SKINNY_INTS = [i("M"), i("N"), i("K"), i("tps")];
const SKINNY: KernelSpec = {
  module: "gemm_skinny",
  params: [p("A"), p("W"), o("bias"), p("C"), o("part"), o("counters"), ...SKINNY_INTS],
};
/** The operands qgemm.cu's kernels (qgemm_*, qgemms_*) begin with: x, its act-order permutation, the packed matrix, y. */
const QGEMM_IO = [p("x"), o("perm"), p("qweight"), p("scaleBias"), o("bias"), p("y")];
/** gemm.cu / gemm_wg.cu tensor-core GEMMs: C = A · W^T + bias. */
const MM_PARAMS = [p("A"), p("W"), o("bias"), p("C"), i("M"), i("N"), i("K")];
/** gemm.cu GEMVs (gemv_*, gemv1_*): y = x · W^T + bias. */
const GEMV: KernelSpec = { module: "gemm", params: [p("x"), p("W"), o("bias"), p("y"), i("M"), i("N"), i("K")] };
/** The operands the split-K decode and the CUDA-core prefill attention begin with: q and the paged cache. */
const ATTN_KV = [p("q"), p("kCache"), p("vCache"), o("kScale"), o("vScale"), p("blockTables")];

/** Parameter lists, keyed by the kernel's base name (the function is `${base}_${suffix}`, suffix bf16/f16/f32). */
export const KERNELS = {
  embed: { module: "elementwise", params: [p("table"), p("ids"), p("x"), i("n"), i("h"), i("vocab")] },
  rmsnorm: {
    module: "elementwise",
    params: [p("x"), o("res"), o("rowIdx"), p("w"), p("out"), i("h"), f("eps")],
  },
  silu_mul: { module: "elementwise", params: [p("gu"), p("out"), i("rows"), i("f"), i("half")] },
  synth_fill: { module: "elementwise", params: [p("dst"), i("n"), u("seed"), u("stream"), f("amp"), f("base")] },
  argmax: { module: "elementwise", params: [p("logits"), p("ids"), i("vocab")] },
  // sample.cu (suffix f32: one block per row, c8_f32 / c8t512_f32: a cluster of 8 per row): see cuda/sampling.ts.
  sample: { module: "sample", params: [p("logits"), p("cfg"), p("ids"), i("vocab"), i("cached")] },
  rope_kv: {
    module: "elementwise",
    params: [
      p("qkv"),
      p("cos"),
      p("sin"),
      o("qNorm"),
      o("kNorm"),
      p("positions"),
      p("slots"),
      p("q"),
      p("kCache"),
      p("vCache"),
      o("kScale"),
      o("vScale"),
      i("nh"),
      i("nkv"),
      i("d"),
      i("blockSize"),
      f("eps"),
    ],
  },
  // suffix <kv>_d<D>_g<GP> (ops.ts attention); kScale / vScale: int8 / int4 caches only.
  attn_split: {
    module: "attn_decode",
    params: [
      ...ATTN_KV,
      p("tokenSeq"),
      p("positions"),
      o("tokenList"),
      p("partO"),
      p("partML"),
      i("nh"),
      i("nkv"),
      i("blockSize"),
      i("maxBlocks"),
      i("splitLen"),
      i("window"),
      f("scale"),
    ],
  },
  attn_combine: {
    module: "attn_decode",
    params: [
      p("partO"),
      p("partML"),
      p("out"),
      p("positions"),
      o("tokenList"),
      i("nh"),
      i("d"),
      i("splits"),
      i("splitLen"),
      i("window"),
    ],
  },
  attn_prefill: {
    module: "attn_prefill",
    params: [
      ...ATTN_KV,
      p("positions"),
      p("tiles"),
      p("out"),
      i("nh"),
      i("nkv"),
      i("d"),
      i("blockSize"),
      i("maxBlocks"),
      i("window"),
      f("scale"),
    ],
  },
  // Tensor-core prefill (suffix <kv>_d<D>_<act>, kv bf16 / f16, D in ops.ts PFT_DIMS): same tiles as attn_prefill.
  attn_prefill_tc: {
    module: "attn_prefill",
    params: [
      p("q"),
      p("kCache"),
      p("vCache"),
      p("blockTables"),
      p("positions"),
      p("tiles"),
      p("out"),
      i("nh"),
      i("nkv"),
      i("blockSize"),
      i("maxBlocks"),
      i("window"),
      f("scale"),
    ],
  },
  gemv: GEMV,
  gemv1: GEMV,
  gemm: { module: "gemm", params: MM_PARAMS },
  gemm128: { module: "gemm", params: MM_PARAMS },
  // gemm_wg.cu (sm_90a wgmma, 16-bit activations = weight dtype; suffix bf16 / f16): see ops.ts linearWith.
  gemm_wg: { module: "gemm_wg", params: MM_PARAMS },
  // Skinny-M split-K GEMM (gemm_skinny.cu skinny<BM>[w8]; suffix act_weight): see src/backends/cuda/gemm_skinny.ts.
  skinny16: SKINNY,
  skinny32: SKINNY,
  skinny64: SKINNY,
  skinny16w8: SKINNY,
  skinny32w8: SKINNY,
  skinny64w8: SKINNY,
  // qgemv.cu / qgemm.cu (W4A16 / W8A16 / FP8 E4M3; suffix {w4,w8,f8}_m8, _m16 / w4, w8, f8): see src/backends/cuda/qlinear.ts.
  qgemv: {
    module: "qgemv",
    params: [
      o("x"),
      o("perm"),
      p("qweight"),
      p("scaleBias"),
      o("bias"),
      o("y"),
      o("part"),
      o("counters"),
      i("M"),
      i("N"),
      i("K"),
      i("Np"),
      i("KT"),
      i("G"),
      i("tps"),
      i("ksb"),
      i("il"),
      i("S"),
      o("xg"),
      o("ss"),
      i("parts"),
      f("eps"),
      o("rx"),
      o("gNext"),
      o("xgOut"),
      o("ssOut"),
      i("early"),
      o("act"),
      i("F"),
    ],
  },
  qgemm: {
    module: "qgemm",
    params: [
      ...QGEMM_IO,
      i("M"),
      i("N"),
      i("K"),
      i("Np"),
      i("KT"),
      i("G"),
    ],
  },
  // qgemm.cu skinny-M split-K GEMM (suffix w{4,8}_m{BM}c{CW}k{KS}s{STAGES}): see src/backends/cuda/qgemm_plan.ts.
  qgemms: {
    module: "qgemm",
    params: [
      ...QGEMM_IO,
      o("part"),
      o("counters"),
      i("M"),
      i("N"),
      i("K"),
      i("Np"),
      i("KT"),
      i("gt"),
      i("tps"),
    ],
  },
  qfill: {
    module: "qgemm",
    params: [p("qweight"), p("scaleBias"), i("words"), i("nG"), i("N"), i("Np"), u("seed"), f("amp")],
  },
  // decode.cu (fused decode step, src/backends/cuda/decode_ops.ts); suffix m1|m8|m1r2 _ <act> _ <weight>, embed <weight>.
  dec_embed: { module: "decode", params: [p("table"), p("ids"), p("g"), p("x"), p("xg"), p("ss"), i("h"), i("vocab")] },
  dec_gemv_norm: {
    module: "decode",
    params: [p("W"), o("bias"), p("xg"), p("ss"), o("rowIdx"), p("y"), i("M"), i("N"), i("K"), i("parts"), f("eps")],
  },
  dec_gemv_silu: {
    module: "decode",
    params: [p("W"), o("bias"), p("xg"), p("ss"), p("act"), i("M"), i("N"), i("K"), i("parts"), f("eps")],
  },
  dec_gemv_res: {
    module: "decode",
    params: [p("W"), o("bias"), p("xin"), p("x"), p("gNext"), p("xg"), p("ss"), i("M"), i("N"), i("K")],
  },
} as const satisfies Record<string, KernelSpec>;
export type KernelName = keyof typeof KERNELS;

/** Checks args against the spec; returns the packed 8-byte slots. Throws RangeError naming the kernel and param. */
export function packArgs(kernel: string, spec: KernelSpec, args: KernelArgs): ArrayBuffer {
  const buf = new ArrayBuffer(8 * spec.params.length);
  const view = new DataView(buf);
  for (const [k] of Object.entries(args)) {
    if (!spec.params.some((q) => q.name === k)) throw new RangeError(`${kernel}: unknown argument ${k}`);
  }
  spec.params.forEach((q, idx) => {
    const v = args[q.name];
    const where = `${kernel}(${q.name})`;
    if (v === undefined) throw new RangeError(`${where}: missing`);
    if (q.type === "ptr" || q.type === "optptr") {
      if (typeof v !== "bigint") throw new RangeError(`${where}: expected a device pointer (bigint)`);
      if (v < 0n || (q.type === "ptr" && v === 0n)) throw new RangeError(`${where}: null or negative pointer`);
      view.setBigUint64(8 * idx, v, true);
    } else if (typeof v !== "number") {
      throw new RangeError(`${where}: expected a number`);
    } else if (q.type === "f32") {
      if (!Number.isFinite(v)) throw new RangeError(`${where}: not finite (${v})`);
      view.setFloat32(8 * idx, v, true);
    } else {
      const [lo, hi] = q.type === "i32" ? [-(2 ** 31), 2 ** 31 - 1] : [0, 2 ** 32 - 1];
      if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`${where}: ${v} is not a ${q.type}`);
      if (q.type === "i32") view.setInt32(8 * idx, v, true);
      else view.setUint32(8 * idx, v, true);
    }
  });
  return buf;
}

export function checkLaunchDims(kernel: string, grid: Dim3, block: Dim3, smem: number): [number[], number[]] {
  const g = [grid[0], grid[1] ?? 1, grid[2] ?? 1], b = [block[0], block[1] ?? 1, block[2] ?? 1];
  const gmax = [2 ** 31 - 1, 65535, 65535];
  g.forEach((v, k) => {
    if (!Number.isInteger(v) || v <= 0 || v > gmax[k]!) throw new RangeError(`${kernel}: bad grid ${g.join("x")}`);
  });
  if (b.some((v) => !Number.isInteger(v) || v <= 0) || b[0]! * b[1]! * b[2]! > 1024) {
    throw new RangeError(`${kernel}: bad block ${b.join("x")}`);
  }
  if (!Number.isInteger(smem) || smem < 0 || smem > 227 * 1024) throw new RangeError(`${kernel}: bad smem ${smem}`);
  return [g, b];
}

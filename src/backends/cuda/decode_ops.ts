// Typed launchers for the fused decode kernels (kernels/decode.cu): RMSNorm finished in the next GEMV (1 / rms),
// residual add in the o / down epilogue, SiLU-mul in the gate_up epilogue. The GEMVs go out as programmatic
// dependent launches (sm_90+), so their first weight loads overlap the previous kernel's tail.
import type { DevPtr } from "./ffi.ts";
import type { Kernels } from "./kernels.ts";
import type { ActDType, Half } from "./ops.ts";

/** Token rows one fused launch takes (MAXM of decode.cu's widest variant). */
export const DEC_MAX_M = 8;
/** Warps per block allowed (MAX_DW in decode.cu, __launch_bounds__(256)). */
export const DEC_WARPS = [4, 8] as const;
export type DecWarps = typeof DEC_WARPS[number];
/**
 * GEMV shape of gemvNorm / gemvRes at M = 1 (M > 1 always takes "r1"): "r1" one output row per warp, four 16-byte
 * loads in flight per lane (48 registers); "r2" two rows per warp (each activation chunk read from L1 serves both;
 * qkv's 6144 rows fit one wave); "u8" one row, eight loads in flight (64 registers).
 */
export type DecVariant = "r1" | "r2" | "u8";
export const DEC_VARIANTS: readonly DecVariant[] = ["r1", "r2", "u8"];
const rowsOf = (v: DecVariant) => v === "r2" ? 2 : 1;

/**
 * Partial sums of squares per row that a residual epilogue over N outputs writes: one per block, which covers
 * warps * rows-per-warp outputs (variant: the one it ran with, DecodeOps.variantFor).
 */
export function decParts(N: number, warps: DecWarps = 8, variant: DecVariant = "r1"): number {
  return Math.ceil(N / (warps * rowsOf(variant)));
}

export interface DecEmbedArgs {
  /** [vocab, h] weight dtype */ readonly table: DevPtr;
  /** [n] i32 */ readonly ids: DevPtr;
  /** [h] f32 RMSNorm weight of the first layer's input norm */ readonly g: DevPtr;
  /** out [n, h] f32 residual stream */ readonly x: DevPtr;
  /** out [n, h] f32 x * g */ readonly xg: DevPtr;
  /** out [n, 1] f32 sum of x^2 per row */ readonly ss: DevPtr;
  readonly n: number;
  readonly h: number;
  readonly vocab: number;
}

/** Input of a GEMV whose RMSNorm is finished in its prologue. */
export interface DecNormInput {
  /** [*, K] f32 x * gamma */ readonly xg: DevPtr;
  /** [*, parts] f32 partial sums of squares of x's rows */ readonly ss: DevPtr;
  readonly parts: number;
  readonly eps: number;
}

export interface DecNormArgs extends DecNormInput {
  /** [N, K] weight dtype */ readonly W: DevPtr;
  /** [N] f32 or 0n */ readonly bias: DevPtr;
  /** [M] i32 input row of each output row, or 0n (row m) */ readonly rowIdx: DevPtr;
  /** out [M, N] f32 */ readonly y: DevPtr;
  readonly M: number;
  readonly N: number;
  readonly K: number;
}

export interface DecSiluArgs extends DecNormInput {
  /** [2F, K] weight dtype: gate rows, then up rows */ readonly W: DevPtr;
  /** [2F] f32 or 0n */ readonly bias: DevPtr;
  /** out [M, F] act dtype: silu(gate) * up */ readonly act: DevPtr;
  readonly M: number;
  readonly F: number;
  readonly K: number;
}

export interface DecResArgs {
  /** [N, K] weight dtype */ readonly W: DevPtr;
  /** [N] f32 or 0n */ readonly bias: DevPtr;
  /** [M, K] act dtype */ readonly xin: DevPtr;
  /** in/out [M, N] f32 residual stream: x += xin · W^T + bias */ readonly x: DevPtr;
  /** [N] f32 RMSNorm weight of the next norm */ readonly gNext: DevPtr;
  /** out [M, N] f32 x * gNext */ readonly xg: DevPtr;
  /** out [M, decParts(N, warps, variant)] f32 partial sums of x^2 */ readonly ss: DevPtr;
  readonly M: number;
  readonly N: number;
  readonly K: number;
}

function checkDims(what: string, M: number, N: number, K: number): void {
  if (!Number.isInteger(M) || M < 1 || M > DEC_MAX_M) throw new RangeError(`${what}: M=${M} outside [1, ${DEC_MAX_M}]`);
  if (!Number.isInteger(N) || N < 1 || !Number.isInteger(K) || K < 1) throw new RangeError(`${what}: N=${N} K=${K}`);
}

function checkNorm(what: string, a: DecNormInput): void {
  if (!Number.isInteger(a.parts) || a.parts < 1) throw new RangeError(`${what}: parts=${a.parts}`);
  if (!(a.eps > 0)) throw new RangeError(`${what}: eps=${a.eps}`);
}

export class DecodeOps {
  constructor(
    readonly k: Kernels,
    readonly wt: Half,
    readonly act: ActDType,
    readonly pdl = true,
    readonly warps: DecWarps = 8,
  ) {
    if (!DEC_WARPS.includes(warps)) throw new RangeError(`decode GEMV: ${warps} warps per block`);
    if (act !== "f32" && act !== wt) throw new Error(`activation dtype ${act} must be f32 or the weight dtype ${wt}`);
  }

  /** Kernel suffix and output rows per warp of `variant` for M token rows. */
  #variant(what: string, M: number, variant: DecVariant): [string, number] {
    if (!DEC_VARIANTS.includes(variant)) throw new RangeError(`${what}: variant ${variant}`);
    const v = DecodeOps.variantFor(M, variant);
    return [`m${M === 1 ? 1 : DEC_MAX_M}${v === "r1" ? "" : v}_${this.act}_${this.wt}`, rowsOf(v)];
  }

  /** The variant a launch of M token rows takes when asked for `variant` (what decParts needs). */
  static variantFor(M: number, variant: DecVariant): DecVariant {
    return M === 1 ? variant : "r1";
  }

  embed(a: DecEmbedArgs): void {
    const { n, ...args } = a;
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`dec_embed: n=${n}`);
    this.k.launch("dec_embed", this.wt, [n], [256], args);
  }

  /** y = rmsnorm(x) · W^T + bias (also the LM head, through rowIdx). */
  gemvNorm(a: DecNormArgs, variant: DecVariant = "r1"): void {
    checkDims("dec_gemv_norm", a.M, a.N, a.K);
    checkNorm("dec_gemv_norm", a);
    const [suffix, r] = this.#variant("dec_gemv_norm", a.M, variant);
    const grid = Math.ceil(a.N / (this.warps * r));
    this.k.launch("dec_gemv_norm", suffix, [grid], [32 * this.warps], { ...a }, 0, this.pdl);
  }

  /** act = silu(rmsnorm(x) · Wg^T + bg) * (rmsnorm(x) · Wu^T + bu) */
  gemvSilu(a: DecSiluArgs): void {
    checkDims("dec_gemv_silu", a.M, a.F, a.K);
    checkNorm("dec_gemv_silu", a);
    const { F, ...rest } = a;
    const grid = Math.ceil(F / this.warps);
    this.k.launch(
      "dec_gemv_silu",
      this.#variant("dec_gemv_silu", a.M, "r1")[0],
      [grid],
      [32 * this.warps],
      { ...rest, N: F },
      0,
      this.pdl,
    );
  }

  /** x += xin · W^T + bias; xg = x * gNext; ss = partial sums of x^2 (decParts(N, warps, variant) per row). */
  gemvRes(a: DecResArgs, variant: DecVariant = "r1"): void {
    checkDims("dec_gemv_res", a.M, a.N, a.K);
    const [suffix, r] = this.#variant("dec_gemv_res", a.M, variant);
    const grid = Math.ceil(a.N / (this.warps * r));
    this.k.launch("dec_gemv_res", suffix, [grid], [32 * this.warps], { ...a }, 0, this.pdl);
  }
}

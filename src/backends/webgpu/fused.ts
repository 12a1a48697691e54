// The fused decode GEMV (wgsl/gemv_fused.wgsl): wide weight loads, with an RMSNorm or SiLU-mul prologue and a
// store, residual-add or SiLU-pair epilogue, so a decode layer takes 5 dispatches instead of 9 (layers.ts).
import { dim, type GpuContext, need, type ParamSlot } from "./context.ts";
import { BYTES, GEMV_MAX_ROWS } from "./kernels.ts";
import { gemvLoop } from "./gemv_gen.ts";
import { isQuant, type Matrix, quantName } from "./qlinear.ts";
import type { Kernel, StorageType } from "./shaders.ts";
import type { QuantBits } from "../../quant/types.ts";

/** Quantized weights of a fused GEMV: "rows-k" QuantMatrix of these bits, fp8 and group (qlinear.ts). */
export interface FusedQuant {
  readonly bits: QuantBits;
  readonly fp8: boolean;
  readonly group: number;
}

/** Values per weight chunk (one 16-byte load): f16 8, f32 4, int4 32, int8 / fp8 16. */
export function gemvChunk(w: StorageType | FusedQuant): number {
  return typeof w === "object" ? 4 * (32 / w.bits) : w === "f16" ? 8 : 4;
}

/**
 * What the GEMV reads as its input: x itself, RMSNorm(x) (times the norm weight), silu(gate) * up, or "prenorm":
 * RMSNorm of a residual r whose product with the norm weight, x = r * nw, a producer already wrote ("addnorm").
 */
export type Prologue = "none" | "norm" | "silu" | "prenorm";
/**
 * What it does with the result: store it; add it into y (the residual stream); "addnorm": add it and also write
 * xg = y * eg (the next RMSNorm's pre-scaled input); "silupair": rows j and N/2 + j of the fused gate|up matrix
 * make y[j] = silu(gate) * up (y is [M, N/2]; the shape's R must be 2).
 */
export type Epilogue = "store" | "add" | "addnorm" | "silupair";

const PRO: Record<Prologue, number> = { none: 0, norm: 1, silu: 2, prenorm: 3 };
const EPI: Record<Epilogue, number> = { store: 0, add: 1, addnorm: 2, silupair: 3 };

/**
 * Shape of the GEMV's work: WGS threads per workgroup in row groups of LANES lanes, each group owning R adjacent
 * rows (R * WGS / LANES rows per workgroup), each lane keeping U 16-byte loads per row in flight (R * U <= 8).
 * R > 1 shares each input load and its prologue (norm scale, SiLU) between R rows. The 8-token-row builds
 * (MMAX 8) take R = 1 (their accumulators would not fit otherwise), except the silupair epilogue's R = 2.
 */
export interface GemvShape {
  readonly wgs: 64 | 128 | 256;
  readonly lanes: 8 | 16 | 32 | 64 | 128 | 256;
  readonly r: 1 | 2 | 3 | 4;
  readonly u: 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8;
}

/** The shape used where none is given (the original kernel's: 8 rows of 32 lanes, 4 loads each). */
export const DEFAULT_GEMV_SHAPE: GemvShape = { wgs: 256, lanes: 32, r: 1, u: 4 };

/** The decode GEMVs of a layer and the LM head. */
export type GemvRole = "qkv" | "o" | "gu" | "down" | "lm";

/**
 * Shapes of the decode GEMVs, tuned with bench/webgpu_gemv.ts on the H100 (Llama-3-8B sizes: K = 4096 is 512
 * chunks of 8 f16 per row, 14336 is 1792). Rows with few chunks shrink their lanes (fitGemvShape). Mutable so
 * that bench/webgpu_decode.ts --gemv-shapes can try others before a model is loaded.
 */
export const DECODE_GEMV_SHAPES: Record<GemvRole, GemvShape> = {
  // Best of 28 shapes swept on the H100 (bench/webgpu_gemv.ts, 2026-11-24, weights rotated so none comes from L2),
  // with the pre-scaled norm input and the SiLU pairs (layers.ts); the shapes of the measured decode run in
  // bench/RESULTS.md. Mostly two or four rows per group (one input read for all) with one 16-byte load per row in
  // flight. Run-to-run spread is ~10 points on the small matrices, so neighbours of these shapes are as good. % of
  // copy in that sweep: qkv 59, o 59, gate_up 85, down 82, lm_head 106.
  qkv: { wgs: 128, lanes: 64, r: 4, u: 1 },
  o: { wgs: 64, lanes: 64, r: 1, u: 2 },
  gu: { wgs: 256, lanes: 128, r: 2, u: 1 },
  down: { wgs: 128, lanes: 128, r: 2, u: 1 },
  lm: { wgs: 128, lanes: 64, r: 1, u: 2 },
};

/**
 * Shapes of the quantized decode GEMVs (int4 / int8 / fp8 chunks of 32 / 16 values per 16-byte load). On the H100
 * (bench/webgpu_decode.ts --weight, 2026-11-24) two rows and two loads per thread in 32-lane groups beat the f16
 * table above by 13% for int4 (7.2 vs 8.3 ms per 8B step) and by 7% for int8; four rows per group, 16 or 64 lanes
 * and double-buffered loads were slower. Mutable like DECODE_GEMV_SHAPES.
 */
export const DECODE_QGEMV_SHAPES: Record<Exclude<GemvRole, "lm">, GemvShape> = {
  qkv: { wgs: 256, lanes: 32, r: 2, u: 2 },
  o: { wgs: 256, lanes: 32, r: 2, u: 2 },
  gu: { wgs: 256, lanes: 32, r: 2, u: 2 },
  down: { wgs: 256, lanes: 32, r: 2, u: 2 },
};

/**
 * `s` with its lanes halved (down to 8) while half of them would still cover a row of K inputs (chunks of `chunk`
 * values) in one round.
 */
export function fitGemvShape(s: GemvShape, K: number, chunk = 8): GemvShape {
  const chunks = Math.ceil(K / chunk);
  let lanes: number = s.lanes;
  while (lanes > 8 && (lanes / 2) * s.u >= chunks) lanes /= 2;
  return { ...s, lanes: lanes as GemvShape["lanes"] };
}

/** Checks a shape (throws RangeError): wgs and lanes powers of two, lanes >= 8 dividing wgs, R * U <= 8. */
export function checkGemvShape(s: GemvShape): void {
  const pow2 = (v: number) => Number.isInteger(v) && v > 0 && (v & (v - 1)) === 0;
  const int = (v: number, lo: number, hi: number) => Number.isInteger(v) && v >= lo && v <= hi;
  if (
    !pow2(s.wgs) || s.wgs > 256 || !pow2(s.lanes) || s.lanes < 8 || s.wgs % s.lanes || !int(s.r, 1, 4) ||
    !int(s.u, 1, 8) || s.r * s.u > 8
  ) {
    throw new RangeError(
      `gemv shape ${JSON.stringify(s)}: wgs <= 256, lanes >= 8 powers of two, wgs % lanes == 0, R * U <= 8`,
    );
  }
}

/** Token-row bounds of the fused GEMV's builds (MMAX), ascending; the last is GEMV_MAX_ROWS. */
const FUSED_MMAX = [1, 2, 4, GEMV_MAX_ROWS] as const;

/** Weight rows per row group of a build: the shape's R up to 2 token rows (and for SiLU pairs), else up to 16 / MMAX
 * (the sums of R rows x MMAX token rows, at most 16, stay in registers). */
function fusedRowsPerGroup(shape: GemvShape, epilogue: Epilogue, mmax: number): number {
  return mmax <= 2 || epilogue === "silupair" ? shape.r : Math.min(shape.r, 16 / mmax);
}

export interface FusedLinearParams {
  /** Token rows (at most GEMV_MAX_ROWS). */
  readonly M: number;
  /** Output features. */
  readonly N: number;
  /** Input features (multiple of 4); for the SiLU prologue the width of each half of x. */
  readonly K: number;
  readonly bias: boolean;
  /** RMSNorm epsilon (used by the norm prologue). */
  readonly eps: number;
}

/** Whether an input width suits the kernel's vectorised loads: K % 4 == 0, and for quantized weights whole chunks
 * per row and per group (K and the group multiples of gemvChunk). */
export function fusedLinearFits(K: number, q?: FusedQuant): boolean {
  if (!Number.isInteger(K) || K <= 0 || K % 4 !== 0) return false;
  if (!q) return true;
  const ch = gemvChunk(q);
  return K % ch === 0 && q.group % ch === 0;
}

export class FusedLinearOp {
  #p: FusedLinearParams | null = null;
  private constructor(
    private readonly ctx: GpuContext,
    private readonly slot: ParamSlot,
    /** Builds by the token rows they hold (MMAX 1, 2, 4, 8; a step takes the smallest that fits M): wide, 16-byte
     * loads of 8 f16 (K % 8 == 0), 4 f32 or a quantized chunk; narrow, 8-byte loads of 4 f16 (f16 with K % 8 != 0). */
    private readonly k: ReadonlyMap<number, { wide: Kernel; narrow: Kernel }>,
    /** Dense storage, or the quantized matrices' format. */
    private readonly wt: StorageType | FusedQuant,
    readonly prologue: Prologue,
    readonly epilogue: Epilogue,
    readonly shape: GemvShape,
  ) {}

  /** wt: dense storage of the matrices, or their quantized format (FusedQuant: bits, fp8, group). */
  static async create(
    ctx: GpuContext,
    name: string,
    wt: StorageType | FusedQuant,
    prologue: Prologue,
    epilogue: Epilogue,
    shape: GemvShape = DEFAULT_GEMV_SHAPE,
  ): Promise<FusedLinearOp> {
    checkGemvShape(shape);
    if (epilogue === "silupair" && shape.r !== 2) {
      throw new RangeError(`gemv shape ${JSON.stringify(shape)}: the silupair epilogue needs r = 2`);
    }
    const q = typeof wt === "object" ? wt : null, ch = gemvChunk(wt);
    if (q) {
      if ((q.bits !== 4 && q.bits !== 8) || (q.fp8 && q.bits !== 8)) {
        throw new RangeError(`fused linear: bits ${q.bits}`);
      }
      if (!(q.group > 0 && q.group % ch === 0)) {
        throw new RangeError(`fused linear: group ${q.group} must be a multiple of ${ch} (whole chunks per group)`);
      }
    }
    const quantConsts: Record<string, number> = q ? { BITS: q.bits, FP8: q.fp8 ? 1 : 0, CPG: q.group / ch } : {};
    const variant = (file: string, MMAX: number, nv: number) => {
      const R = fusedRowsPerGroup(shape, epilogue, MMAX), U = shape.u;
      return ctx.pipelines.get("gemv_fused.wgsl", "gemv_fused", {
        consts: {
          WGS: shape.wgs,
          LANES: shape.lanes,
          R,
          U,
          MMAX,
          PRO: PRO[prologue],
          EPI: EPI[epilogue],
          ...quantConsts,
        },
        files: { "gemv_wload.wgsl": file },
        texts: { "gemv_fused_loop.wgsl": gemvLoop(R, U, nv, MMAX) },
      });
    };
    const wide = q ? "gemv_wload_q.wgsl" : wt === "f16" ? "gemv_wload_f16x8.wgsl" : "gemv_wload.wgsl";
    const narrow = wt === "f16" ? "gemv_wload_f16x4.wgsl" : wide;
    const nvWide = ch / 4, nvNarrow = wt === "f16" ? 1 : nvWide;
    // One build per token-row bound: every build's sums are unrolled over its MMAX rows, so a 2-row step should not
    // pay for 8 (on the H100, f16 batch 2 took 26 ms per 8B step through the 8-row build against 7.7 at batch 1).
    const k = new Map<number, { wide: Kernel; narrow: Kernel }>();
    for (const mmax of FUSED_MMAX) {
      k.set(mmax, { wide: await variant(wide, mmax, nvWide), narrow: await variant(narrow, mmax, nvNarrow) });
    }
    return new FusedLinearOp(ctx, ctx.slot(name, k.get(GEMV_MAX_ROWS)!.wide), k, wt, prologue, epilogue, shape);
  }

  prepare(p: FusedLinearParams): void {
    dim(p.M, "fused linear M");
    dim(p.N, "fused linear N");
    dim(p.K, "fused linear K");
    if (p.M > GEMV_MAX_ROWS) throw new RangeError(`fused linear: M=${p.M} > ${GEMV_MAX_ROWS} rows`);
    const q = typeof this.wt === "object" ? this.wt : null;
    if (!fusedLinearFits(p.K, q ?? undefined)) {
      throw new RangeError(`fused linear: K=${p.K} must be a multiple of ${q ? gemvChunk(q) : 4}`);
    }
    const normed = this.prologue === "norm" || this.prologue === "prenorm";
    if (normed && !(p.eps > 0)) throw new RangeError(`fused linear: eps must be > 0: ${p.eps}`);
    if (this.epilogue === "silupair" && p.N % 2 !== 0) throw new RangeError(`fused linear: silupair N=${p.N} is odd`);
    const eps = normed ? p.eps : 0;
    const nG = q ? Math.ceil(p.K / q.group) : 0;
    this.slot.write(this.ctx.device, { M: p.M, N: p.N, K: p.K, hasBias: p.bias ? 1 : 0, eps, nG, _b: 0, _c: 0 });
    this.#p = p;
  }

  /**
   * x [M, K] f32 ("silu": [M, 2K] gate | up; "prenorm": r * nw), w [N, K] WT or a QuantMatrix of the op's format
   * (codes [N, Kw] u32, pairs [N, nG] f32 x 2), norm [K] f32 (only "norm"),
   * residual [M, K] f32 (only "prenorm": the raw r), bias [N] f32, y [M, N] f32 (stored, or added to with "add" /
   * "addnorm"; "silupair": [M, N/2] stored), nextNorm [N] f32 and xg [M, N] f32 (only "addnorm": xg = y * nextNorm)
   */
  encode(
    pass: GPUComputePassEncoder,
    b: {
      x: GPUBuffer;
      w: Matrix;
      norm?: GPUBuffer | null;
      residual?: GPUBuffer;
      bias?: GPUBuffer | null;
      y: GPUBuffer;
      nextNorm?: GPUBuffer;
      xg?: GPUBuffer;
    },
  ): void {
    const p = this.#p;
    if (!p) throw new Error("FusedLinearOp: encode() before prepare()");
    const { M, N, K } = p;
    const pro = this.prologue, epi = this.epilogue, d = this.ctx.dummy;
    need(b.x, M * K * 4 * (pro === "silu" ? 2 : 1), "fused linear x");
    const wq = this.wt;
    let wbuf: GPUBuffer, sb: GPUBuffer | null = null;
    if (typeof wq === "object") {
      const m = b.w;
      if (!isQuant(m) || m.bits !== wq.bits || m.fp8 !== wq.fp8 || m.group !== wq.group || m.N !== N || m.K !== K) {
        const got = isQuant(m) ? `${quantName(m.bits, m.fp8)} g${m.group} [${m.N}, ${m.K}]` : "a dense matrix";
        throw new Error(`fused linear: ${got} given to a ${quantName(wq.bits, wq.fp8)} g${wq.group} [${N}, ${K}] op`);
      }
      need(m.w, N * m.Kw * 4, "fused linear codes");
      need(m.sb, N * m.nG * 8, "fused linear scale_bias");
      wbuf = m.w, sb = m.sb;
    } else {
      if (isQuant(b.w)) throw new Error("fused linear: a quantized matrix given to a dense op");
      wbuf = b.w;
      need(wbuf, N * K * BYTES[wq], "fused linear w");
    }
    need(b.y, M * (epi === "silupair" ? N / 2 : N) * 4, "fused linear y");
    if (pro === "norm") need(b.norm ?? d, K * 4, "fused linear norm");
    else if (b.norm) throw new Error(`fused linear: a norm weight was given to a "${pro}" prologue`);
    if (pro === "prenorm") {
      if (!b.residual) throw new Error("fused linear: the prenorm prologue needs the raw residual");
      need(b.residual, M * K * 4, "fused linear residual");
    } else if (b.residual) throw new Error(`fused linear: a residual was given to a "${pro}" prologue`);
    if (epi === "addnorm") {
      if (!b.nextNorm || !b.xg) throw new Error("fused linear: the addnorm epilogue needs nextNorm and xg");
      need(b.nextNorm, N * 4, "fused linear next norm");
      need(b.xg, M * N * 4, "fused linear xg");
    } else if (b.nextNorm || b.xg) throw new Error(`fused linear: nextNorm / xg given to a "${epi}" epilogue`);
    if (p.bias !== !!b.bias) {
      throw new Error(`fused linear: prepared bias=${p.bias} but bias ${b.bias ? "given" : "absent"}`);
    }
    if (b.bias) need(b.bias, N * 4, "fused linear bias");
    const outs = [b.y, ...(b.xg ? [b.xg] : [])];
    const ins = [b.x, wbuf, sb, b.norm, b.residual, b.bias, b.nextNorm];
    if (outs.some((o) => ins.includes(o)) || b.y === b.xg) {
      throw new Error("fused linear: y / xg must not alias each other or an input");
    }
    const narrow = wq === "f16" && K % 8 !== 0;
    const mmax = FUSED_MMAX.find((v) => v >= M)!;
    const build = this.k.get(mmax)!, k = narrow ? build.narrow : build.wide;
    const bufs = {
      p: this.slot.buffer,
      x: b.x,
      w: wbuf,
      ...(sb ? { sb } : {}),
      nw: b.norm ?? d,
      bias: b.bias ?? d,
      y: b.y,
      xr: b.residual ?? d,
      eg: b.nextNorm ?? d,
      xg: b.xg ?? this.ctx.pool.scratch("gemv.xg_unused", 256), // written only by "addnorm"; not the read-only dummy
    };
    const groups = this.shape.wgs / this.shape.lanes;
    const rows = epi === "silupair" ? N / 2 : N;
    const perGroup = epi === "silupair" ? groups : groups * fusedRowsPerGroup(this.shape, epi, mmax);
    this.ctx.dispatch(pass, k, bufs, this.ctx.grid2d(Math.ceil(rows / perGroup)));
  }
}

// The fused decode GEMV (wgsl/gemv_fused.wgsl): wide weight loads, with an RMSNorm or SiLU-mul prologue and a
// store or residual-add epilogue, so a decode layer takes 5 dispatches instead of 9 (layers.ts).
import { dim, type GpuContext, need, type ParamSlot } from "./context.ts";
import { BYTES, GEMV_MAX_ROWS } from "./kernels.ts";
import type { Kernel, StorageType } from "./shaders.ts";

/** Output rows per workgroup (32 lanes each). */
const ROWS = 8;

/** What the GEMV reads as its input: x itself, RMSNorm(x) (times the norm weight), or silu(gate) * up. */
export type Prologue = "none" | "norm" | "silu";
/** What it does with the result: store it, or add it into y (the residual stream). */
export type Epilogue = "store" | "add";

const PRO: Record<Prologue, number> = { none: 0, norm: 1, silu: 2 };
const EPI: Record<Epilogue, number> = { store: 0, add: 1 };

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

/** Whether an input width suits the kernel's vectorised loads. */
export function fusedLinearFits(K: number): boolean {
  return Number.isInteger(K) && K > 0 && K % 4 === 0;
}

export class FusedLinearOp {
  #p: FusedLinearParams | null = null;
  private constructor(
    private readonly ctx: GpuContext,
    private readonly slot: ParamSlot,
    /** k8: 16-byte loads of 8 f16 (K % 8 == 0) or 4 f32; k4: 8-byte loads of 4 f16 (f16 with K % 8 != 0);
     * the m1 builds for M = 1. */
    private readonly k: { k8: Kernel; k4: Kernel; k8m1: Kernel; k4m1: Kernel },
    private readonly wt: StorageType,
    readonly prologue: Prologue,
    readonly epilogue: Epilogue,
  ) {}

  static async create(
    ctx: GpuContext,
    name: string,
    wt: StorageType,
    prologue: Prologue,
    epilogue: Epilogue,
  ): Promise<FusedLinearOp> {
    const variant = (file: string, MMAX: number) =>
      ctx.pipelines.get("gemv_fused.wgsl", "gemv_fused", {
        consts: { ROWS, MMAX, PRO: PRO[prologue], EPI: EPI[epilogue] },
        files: { "gemv_wload.wgsl": file },
      });
    const wide = wt === "f16" ? "gemv_wload_f16x8.wgsl" : "gemv_wload.wgsl";
    const narrow = wt === "f16" ? "gemv_wload_f16x4.wgsl" : wide;
    // Batch-1 decode gets its own build with one accumulator row (MMAX 1): no per-row loop, no indexed arrays.
    const k = {
      k8: await variant(wide, GEMV_MAX_ROWS),
      k4: await variant(narrow, GEMV_MAX_ROWS),
      k8m1: await variant(wide, 1),
      k4m1: await variant(narrow, 1),
    };
    return new FusedLinearOp(ctx, ctx.slot(name, k.k8), k, wt, prologue, epilogue);
  }

  prepare(p: FusedLinearParams): void {
    dim(p.M, "fused linear M");
    dim(p.N, "fused linear N");
    dim(p.K, "fused linear K");
    if (p.M > GEMV_MAX_ROWS) throw new RangeError(`fused linear: M=${p.M} > ${GEMV_MAX_ROWS} rows`);
    if (!fusedLinearFits(p.K)) throw new RangeError(`fused linear: K=${p.K} must be a multiple of 4`);
    if (this.prologue === "norm" && !(p.eps > 0)) throw new RangeError(`fused linear: eps must be > 0: ${p.eps}`);
    const eps = this.prologue === "norm" ? p.eps : 0;
    this.slot.write(this.ctx.device, { M: p.M, N: p.N, K: p.K, hasBias: p.bias ? 1 : 0, eps, _a: 0, _b: 0, _c: 0 });
    this.#p = p;
  }

  /**
   * x [M, K] f32 ("silu": [M, 2K] gate | up), w [N, K] WT, norm [K] f32 (only "norm"), bias [N] f32,
   * y [M, N] f32 (stored, or added to with "add")
   */
  encode(
    pass: GPUComputePassEncoder,
    b: { x: GPUBuffer; w: GPUBuffer; norm?: GPUBuffer | null; bias?: GPUBuffer | null; y: GPUBuffer },
  ): void {
    const p = this.#p;
    if (!p) throw new Error("FusedLinearOp: encode() before prepare()");
    const { M, N, K } = p;
    need(b.x, M * K * 4 * (this.prologue === "silu" ? 2 : 1), "fused linear x");
    need(b.w, N * K * BYTES[this.wt], "fused linear w");
    need(b.y, M * N * 4, "fused linear y");
    if (this.prologue === "norm") need(b.norm ?? this.ctx.dummy, K * 4, "fused linear norm");
    else if (b.norm) throw new Error(`fused linear: a norm weight was given to a "${this.prologue}" prologue`);
    if (p.bias !== !!b.bias) {
      throw new Error(`fused linear: prepared bias=${p.bias} but bias ${b.bias ? "given" : "absent"}`);
    }
    if (b.bias) need(b.bias, N * 4, "fused linear bias");
    if (b.x === b.y || b.w === b.y) throw new Error("fused linear: y must not alias x or w");
    const d = this.ctx.dummy;
    const narrow = this.wt === "f16" && K % 8 !== 0;
    const k = M === 1 ? (narrow ? this.k.k4m1 : this.k.k8m1) : (narrow ? this.k.k4 : this.k.k8);
    const bufs = { p: this.slot.buffer, x: b.x, w: b.w, nw: b.norm ?? d, bias: b.bias ?? d, y: b.y };
    this.ctx.dispatch(pass, k, bufs, this.ctx.grid2d(Math.ceil(N / ROWS)));
  }
}

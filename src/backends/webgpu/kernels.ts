// Typed wrappers of the dense kernels (wgsl/{embed,rmsnorm,gemv,gemm,silu_mul,sample}.wgsl). Each op is one call
// site: prepare() validates the step's sizes and writes its uniform once per step (every layer shares it);
// encode() checks the buffers against those sizes and records the dispatch into the step's compute pass.
import { dim, type GpuContext, need, type ParamSlot } from "./context.ts";
import type { Kernel, StorageType } from "./shaders.ts";

export const BYTES: Record<StorageType, number> = { f32: 4, f16: 2 };

/** Token rows up to which linear layers take the GEMV path (decode); above it the tiled GEMM. */
export const GEMV_MAX_ROWS = 8;
/** Output rows per GEMV workgroup (32 lanes each). */
const GEMV_ROWS = 8;

type Bufs = Readonly<Record<string, GPUBuffer>>;

abstract class Op<P> {
  protected params: P | null = null;
  protected constructor(protected readonly ctx: GpuContext, protected readonly slot: ParamSlot) {}

  protected get p(): P {
    if (!this.params) throw new Error(`${this.constructor.name}: encode() before prepare()`);
    return this.params;
  }
}

export interface EmbedParams {
  readonly n: number;
  readonly h: number;
  readonly vocab: number;
}

export class EmbedOp extends Op<EmbedParams> {
  private constructor(ctx: GpuContext, slot: ParamSlot, private readonly k: Kernel, private readonly wt: StorageType) {
    super(ctx, slot);
  }
  static async create(ctx: GpuContext, name: string, wt: StorageType): Promise<EmbedOp> {
    const k = await ctx.pipelines.get("embed.wgsl", "embed", { wt });
    return new EmbedOp(ctx, ctx.slot(name, k), k, wt);
  }
  prepare(p: EmbedParams): void {
    dim(p.n, "embed n");
    dim(p.h, "embed h");
    dim(p.vocab, "embed vocab");
    this.slot.write(this.ctx.device, { n: p.n, h: p.h, vocab: p.vocab, _pad: 0 });
    this.params = p;
  }
  /** ids [n] i32, table [vocab, h] WT, x [n, h] f32 */
  encode(pass: GPUComputePassEncoder, b: { ids: GPUBuffer; table: GPUBuffer; x: GPUBuffer }): void {
    const { n, h, vocab } = this.p;
    need(b.ids, n * 4, "embed ids");
    need(b.table, vocab * h * BYTES[this.wt], "embed table");
    need(b.x, n * h * 4, "embed x");
    this.ctx.dispatch(pass, this.k, { p: this.slot.buffer, ...b }, [n]);
  }
}

export interface RmsNormParams {
  /** Output rows. */
  readonly n: number;
  readonly h: number;
  readonly eps: number;
  /** x[s] += r[s] before the norm. */
  readonly residual: boolean;
  /** Output row i normalises x[idx[i]] (the final norm on the rows that need logits). */
  readonly gather: boolean;
  /** Rows of x (and r); n when not gathering. */
  readonly rows: number;
}

export class RmsNormOp extends Op<RmsNormParams> {
  private constructor(ctx: GpuContext, slot: ParamSlot, private readonly k: Kernel) {
    super(ctx, slot);
  }
  static async create(ctx: GpuContext, name: string): Promise<RmsNormOp> {
    const k = await ctx.pipelines.get("rmsnorm.wgsl", "rmsnorm");
    return new RmsNormOp(ctx, ctx.slot(name, k), k);
  }
  prepare(p: RmsNormParams): void {
    dim(p.n, "rmsnorm n");
    dim(p.h, "rmsnorm h");
    dim(p.rows, "rmsnorm rows");
    if (!(p.eps > 0)) throw new RangeError(`rmsnorm eps must be > 0: ${p.eps}`);
    if (!p.gather && p.rows !== p.n) throw new RangeError("rmsnorm: rows must equal n without gather");
    const flags = (p.residual ? 1 : 0) | (p.gather ? 2 : 0);
    this.slot.write(this.ctx.device, { n: p.n, h: p.h, eps: p.eps, flags });
    this.params = p;
  }
  /** x [rows, h] f32 (updated with the residual), r [rows, h] f32, w [h] f32, idx [n] u32, y [n, h] f32 */
  encode(
    pass: GPUComputePassEncoder,
    b: { x: GPUBuffer; r?: GPUBuffer; w: GPUBuffer; idx?: GPUBuffer; y: GPUBuffer },
  ): void {
    const { n, h, rows, residual, gather } = this.p;
    need(b.x, rows * h * 4, "rmsnorm x");
    need(b.w, h * 4, "rmsnorm w");
    need(b.y, n * h * 4, "rmsnorm y");
    if (residual) need(b.r ?? this.ctx.dummy, rows * h * 4, "rmsnorm r");
    if (gather) need(b.idx ?? this.ctx.dummy, n * 4, "rmsnorm idx");
    const d = this.ctx.dummy;
    this.ctx.dispatch(pass, this.k, { p: this.slot.buffer, x: b.x, r: b.r ?? d, w: b.w, idx: b.idx ?? d, y: b.y }, [n]);
  }
}

export interface LinearParams {
  /** Token rows. */
  readonly M: number;
  /** Output features. */
  readonly N: number;
  /** Input features (multiple of 4). */
  readonly K: number;
  readonly bias: boolean;
}

/** y = x · w^T (+ bias): the GEMV kernel for M <= GEMV_MAX_ROWS (decode), the tiled GEMM above. */
export class LinearOp extends Op<LinearParams> {
  private constructor(
    ctx: GpuContext,
    slot: ParamSlot,
    private readonly gemv: Kernel,
    private readonly gemm: Kernel,
    private readonly wt: StorageType,
  ) {
    super(ctx, slot);
  }
  static async create(ctx: GpuContext, name: string, wt: StorageType): Promise<LinearOp> {
    const gemv = await ctx.pipelines.get("gemv.wgsl", "gemv", { wt, consts: { ROWS: GEMV_ROWS } });
    const gemm = await ctx.pipelines.get("gemm.wgsl", "gemm", { wt });
    return new LinearOp(ctx, ctx.slot(name, gemm), gemv, gemm, wt);
  }
  prepare(p: LinearParams): void {
    dim(p.M, "linear M");
    dim(p.N, "linear N");
    dim(p.K, "linear K");
    if (p.K % 4) throw new RangeError(`linear: K=${p.K} must be a multiple of 4 (vectorised loads)`);
    this.slot.write(this.ctx.device, { M: p.M, N: p.N, K: p.K, hasBias: p.bias ? 1 : 0 });
    this.params = p;
  }
  /** x [M, K] f32, w [N, K] WT, bias [N] f32, y [M, N] f32 */
  encode(pass: GPUComputePassEncoder, b: { x: GPUBuffer; w: GPUBuffer; bias?: GPUBuffer | null; y: GPUBuffer }): void {
    const { M, N, K, bias } = this.p;
    need(b.x, M * K * 4, "linear x");
    need(b.w, N * K * BYTES[this.wt], "linear w");
    need(b.y, M * N * 4, "linear y");
    if (bias !== !!b.bias) {
      throw new Error(`linear: prepared bias=${bias} but bias buffer ${b.bias ? "given" : "absent"}`);
    }
    if (b.bias) need(b.bias, N * 4, "linear bias");
    const bufs: Bufs = { p: this.slot.buffer, x: b.x, w: b.w, bias: b.bias ?? this.ctx.dummy, y: b.y };
    if (M <= GEMV_MAX_ROWS) this.ctx.dispatch(pass, this.gemv, bufs, this.ctx.grid2d(Math.ceil(N / GEMV_ROWS)));
    else this.ctx.dispatch(pass, this.gemm, bufs, [Math.ceil(N / 64), Math.ceil(M / 64)]);
  }
}

export class SiluMulOp extends Op<{ T: number; F: number }> {
  private constructor(ctx: GpuContext, slot: ParamSlot, private readonly k: Kernel) {
    super(ctx, slot);
  }
  static async create(ctx: GpuContext, name: string): Promise<SiluMulOp> {
    const k = await ctx.pipelines.get("silu_mul.wgsl", "silu_mul");
    return new SiluMulOp(ctx, ctx.slot(name, k), k);
  }
  prepare(p: { T: number; F: number }): void {
    dim(p.T, "silu T");
    dim(p.F, "silu F");
    this.slot.write(this.ctx.device, { T: p.T, F: p.F, _a: 0, _b: 0 });
    this.params = p;
  }
  /** gu [T, 2F] f32 (gate | up), act [T, F] f32 */
  encode(pass: GPUComputePassEncoder, b: { gu: GPUBuffer; act: GPUBuffer }): void {
    const { T, F } = this.p;
    need(b.gu, T * 2 * F * 4, "silu gu");
    need(b.act, T * F * 4, "silu act");
    this.ctx.dispatch(pass, this.k, { p: this.slot.buffer, ...b }, this.ctx.grid2d(Math.ceil((T * F) / 256)));
  }
}

export interface SampleParams {
  /** Rows sampled here. */
  readonly rows: number;
  readonly vocab: number;
  /** First sampled row within the logits buffer. */
  readonly row0: number;
}

/** Bytes of one RowCfg entry (temperature f32, topK u32, topP f32, u f32). */
export const SAMPLE_CFG_BYTES = 16;

export class SampleOp extends Op<SampleParams> {
  private constructor(ctx: GpuContext, slot: ParamSlot, private readonly k: Kernel) {
    super(ctx, slot);
  }
  static async create(ctx: GpuContext, name: string): Promise<SampleOp> {
    const k = await ctx.pipelines.get("sample.wgsl", "sample");
    return new SampleOp(ctx, ctx.slot(name, k), k);
  }
  prepare(p: SampleParams): void {
    dim(p.rows, "sample rows");
    dim(p.vocab, "sample vocab");
    dim(p.row0, "sample row0", true);
    this.slot.write(this.ctx.device, { rows: p.rows, vocab: p.vocab, row0: p.row0, _pad: 0 });
    this.params = p;
  }
  /** logits [row0 + rows, vocab] f32, cfg [rows] RowCfg, ids [rows] i32 */
  encode(pass: GPUComputePassEncoder, b: { logits: GPUBuffer; cfg: GPUBuffer; ids: GPUBuffer }): void {
    const { rows, vocab, row0 } = this.p;
    need(b.logits, (row0 + rows) * vocab * 4, "sample logits");
    need(b.cfg, rows * SAMPLE_CFG_BYTES, "sample cfg");
    need(b.ids, rows * 4, "sample ids");
    this.ctx.dispatch(pass, this.k, { p: this.slot.buffer, ...b }, [rows]);
  }
}

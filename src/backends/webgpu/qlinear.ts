// Quantized linear layers (W8A16 / W4A16 / FP8 W8A16): int8/int4 weights in the "rows-k" layout of src/quant/pack.ts,
// always with f32 (scale, bias) pairs, so the kernel's one-FMA dequantization q * s + b equals the reference's exact
// (q - z) * s bit for bit (q * s and the sum are both exact in f32: at most 9 + 11 significant bits). FP8 E4M3
// weights (fp8) hold e4m3 codes in the int8 positions with pairs (256 s, 0): the kernels decode a code to e4m3 * 2^-8
// in f32 bits and multiply by 256 s, e4m3 * s exactly (wgsl/qweight.wgsl; pipeline constant FP8). Activations and
// accumulation stay f32. wgsl/gemv_q.wgsl serves decode rows (M <= GEMV_MAX_ROWS) outside the fused decode layer
// (fused.ts with wgsl/gemv_wload_q.wgsl takes them where K and the group hold whole 16-byte chunks), wgsl/gemm_q.wgsl
// prefill. Act-order matrices (GPTQ g_idx; input channels sorted by group at packing) carry their permutation: the op
// first gathers x into the packed channel order (wgsl/gather_cols.wgsl), one more dispatch per linear.
import type { QuantBits } from "../../quant/types.ts";
import type { RowsPacked } from "../../quant/pack.ts";
import { dim, type GpuContext, need, type ParamSlot } from "./context.ts";
import { GEMV_MAX_ROWS, type LinearOp, type LinearParams } from "./kernels.ts";
import type { Kernel } from "./shaders.ts";

/** Output rows per GEMV workgroup (32 lanes each), as in kernels.ts. */
const GEMV_ROWS = 8;

/** One quantized matrix on the GPU (several packed linears with the same K, bits, group and fp8 stacked by rows). */
export interface QuantMatrix {
  readonly layout: "rows-k";
  readonly bits: QuantBits;
  /** FP8 E4M3 codes (bits 8) instead of unsigned integers; sb holds (256 s, 0). */
  readonly fp8: boolean;
  /** Output rows (sum over the stacked linears). */
  readonly N: number;
  readonly K: number;
  readonly group: number;
  /** u32 words per row: ceil(K / (32 / bits)). */
  readonly Kw: number;
  /** Groups per row: ceil(K / group). */
  readonly nG: number;
  /**
   * [N, Kw] u32: q of row n, value i of word w at bits [bits*i, bits*i + bits) is q[n, (32/bits) w + i] (fp8: byte i
   * is the e4m3 code of channel 4w + i); zero padding past K.
   */
  readonly w: GPUBuffer;
  /** [N, nG, 2] f32: (scale, bias = -zero * scale) per row and group; fp8: (256 scale, 0) */
  readonly sb: GPUBuffer;
  /** [K] i32: the original input channel of packed channel k' (act-order, shared by the stacked linears), or null */
  readonly perm: GPUBuffer | null;
}

export type Matrix = GPUBuffer | QuantMatrix;

export function isQuant(w: Matrix): w is QuantMatrix {
  return (w as Partial<QuantMatrix>).layout === "rows-k";
}

/** Bytes a QuantMatrix of these sizes holds. */
export function quantMatrixBytes(bits: QuantBits, N: number, K: number, group: number): number {
  return N * Math.ceil(K / (32 / bits)) * 4 + N * Math.ceil(K / group) * 8;
}

/** The weight format's name in messages: int8, int4 or fp8. */
export function quantName(bits: QuantBits, fp8: boolean): string {
  return fp8 ? "fp8" : `int${bits}`;
}

/** Uploads packed linears (same K, bits, group, fp8 and act-order permutation; f32 pairs) stacked by rows. */
export function uploadQuantMatrix(ctx: GpuContext, label: string, parts: readonly RowsPacked[]): QuantMatrix {
  const first = parts[0];
  if (!first) throw new Error(`${label}: no linears to stack`);
  const { bits, inDim: K, groupSize: group, fp8 } = first;
  for (const p of parts) {
    if (p.bits !== bits || p.inDim !== K || p.groupSize !== group || p.fp8 !== fp8) {
      throw new Error(`${label}: stacked linears differ in bits, K, group or fp8`);
    }
    if (p.fp8 && p.bits !== 8) throw new Error(`${label}: fp8 weights must be packed as 8-bit codes`);
    if (!samePerm(p.perm, first.perm)) {
      throw new Error(`${label}: stacked linears need one act-order order (the same g_idx), as they share an input`);
    }
    if (p.scaleDType !== "f32") throw new Error(`${label}: the WebGPU backend packs (scale, bias) in f32`);
  }
  const N = parts.reduce((a, p) => a + p.outDim, 0);
  const m = allocQuantMatrix(ctx, label, { bits, fp8, N, K, group }, first.perm);
  let wo = 0, so = 0;
  for (const p of parts) {
    ctx.pool.write(m.w, p.qweight, wo);
    ctx.pool.write(m.sb, p.scaleBias, so);
    wo += p.qweight.byteLength;
    so += p.scaleBias.byteLength;
  }
  return m;
}

/**
 * A QuantMatrix of these sizes with its code and pair buffers allocated (contents for the caller to write or fill),
 * refusing buffers beyond one storage binding; `perm` (act-order) is uploaded as given.
 */
export function allocQuantMatrix(
  ctx: GpuContext,
  label: string,
  d: { bits: QuantBits; fp8: boolean; N: number; K: number; group: number },
  perm: Int32Array | null,
): QuantMatrix {
  const { bits, fp8, N, K, group } = d;
  const Kw = Math.ceil(K / (32 / bits)), nG = Math.ceil(K / group);
  const binding = ctx.limits.maxStorageBufferBindingSize;
  for (const bytes of [N * Kw * 4, N * nG * 8]) {
    if (bytes > binding) throw new RangeError(`webgpu: ${label} needs ${bytes} bytes; one binding holds ${binding}`);
  }
  const w = ctx.pool.create(`${label}.qweight`, N * Kw * 4); // [N, Kw] u32
  const sb = ctx.pool.create(`${label}.scale_bias`, N * nG * 8); // [N, nG] vec2<f32>
  let pb: GPUBuffer | null = null;
  if (perm) {
    pb = ctx.pool.create(`${label}.perm`, K * 4); // [K] i32
    ctx.pool.write(pb, perm, 0);
  }
  return { layout: "rows-k", bits, fp8, N, K, group, Kw, nG, w, sb, perm: pb };
}

function samePerm(a: Int32Array | null, b: Int32Array | null): boolean {
  return a === b || (!!a && !!b && a.length === b.length && a.every((v, i) => v === b[i]));
}

/** y = x · W^T (+ bias) with W a QuantMatrix of `bits`, `group` and fp8, fixed at creation (one model's layers). */
export class QuantLinearOp {
  #p: LinearParams | null = null;
  private constructor(
    private readonly ctx: GpuContext,
    private readonly name: string,
    private readonly slot: ParamSlot,
    private readonly gemv: Kernel,
    private readonly gemm: Kernel,
    /** The act-order gather and its uniform slot, for ops created for permuted matrices. */
    private readonly gather: { k: Kernel; slot: ParamSlot } | null,
    readonly bits: QuantBits,
    readonly group: number,
    readonly fp8: boolean,
  ) {}

  /**
   * fp8: the matrices hold e4m3 codes (bits must be 8); one pipeline pair per (bits, fp8). actOrder: the matrices
   * carry an input permutation (QuantMatrix.perm), gathered before each matmul.
   */
  static async create(
    ctx: GpuContext,
    name: string,
    bits: QuantBits,
    group: number,
    fp8 = false,
    actOrder = false,
  ): Promise<QuantLinearOp> {
    if (bits !== 4 && bits !== 8) throw new RangeError(`quant linear: bits must be 4 or 8, got ${bits}`);
    if (fp8 && bits !== 8) throw new RangeError(`quant linear: fp8 weights are 8-bit codes, got bits ${bits}`);
    dim(group, "quant linear group");
    const FP8 = fp8 ? 1 : 0;
    const gemv = await ctx.pipelines.get("gemv_q.wgsl", "gemv_q", { consts: { ROWS: GEMV_ROWS, BITS: bits, FP8 } });
    const gemm = await ctx.pipelines.get("gemm_q.wgsl", "gemm_q", { consts: { BITS: bits, FP8 } });
    let gather = null;
    if (actOrder) {
      const k = await ctx.pipelines.get("gather_cols.wgsl", "gather_cols");
      gather = { k, slot: ctx.slot(`${name}.gather`, k) };
    }
    return new QuantLinearOp(ctx, name, ctx.slot(name, gemm), gemv, gemm, gather, bits, group, fp8);
  }

  prepare(p: LinearParams): void {
    dim(p.M, "quant linear M");
    dim(p.N, "quant linear N");
    dim(p.K, "quant linear K");
    if (p.K % 4) throw new RangeError(`quant linear: K=${p.K} must be a multiple of 4 (vectorised loads)`);
    const vpw = 32 / this.bits, Kw = Math.ceil(p.K / vpw), nG = Math.ceil(p.K / this.group);
    if (nG > 1 && this.group % vpw) {
      const what = quantName(this.bits, this.fp8);
      throw new RangeError(`quant linear: group ${this.group} must be a multiple of ${vpw} for ${what}`);
    }
    const gw = nG === 1 ? Kw : this.group / vpw;
    this.slot.write(this.ctx.device, { M: p.M, N: p.N, K: p.K, hasBias: p.bias ? 1 : 0, Kw, gw, nG, _pad: 0 });
    this.gather?.slot.write(this.ctx.device, { M: p.M, K: p.K, _a: 0, _b: 0 });
    this.#p = p;
  }

  /** x [M, K] f32 row-major, w QuantMatrix [N, K] (rows-k), bias [N] f32, y [M, N] f32 row-major */
  encode(pass: GPUComputePassEncoder, b: { x: GPUBuffer; w: QuantMatrix; bias?: GPUBuffer | null; y: GPUBuffer }) {
    const p = this.#p;
    if (!p) throw new Error("QuantLinearOp: encode() before prepare()");
    const { M, N, K, bias } = p;
    const w = b.w;
    if (w.bits !== this.bits || w.fp8 !== this.fp8 || w.group !== this.group || w.N !== N || w.K !== K) {
      throw new Error(
        `quant linear: matrix ${quantName(w.bits, w.fp8)} g${w.group} [${w.N}, ${w.K}] does not match the prepared ` +
          `${quantName(this.bits, this.fp8)} g${this.group} [${N}, ${K}]`,
      );
    }
    need(b.x, M * K * 4, "quant linear x");
    need(w.w, N * w.Kw * 4, "quant linear qweight");
    need(w.sb, N * w.nG * 8, "quant linear scale_bias");
    need(b.y, M * N * 4, "quant linear y");
    if (bias !== !!b.bias) {
      throw new Error(`quant linear: prepared bias=${bias} but bias buffer ${b.bias ? "given" : "absent"}`);
    }
    if (b.bias) need(b.bias, N * 4, "quant linear bias");
    let x = b.x;
    if (w.perm) {
      if (!this.gather) throw new Error(`quant linear: act-order matrix given to an op created without actOrder`);
      need(w.perm, K * 4, "quant linear perm");
      x = this.ctx.pool.scratch(`${this.name}.x_perm`, M * K * 4); // [M, K] f32 in the packed channel order
      const grid = this.ctx.grid2d(Math.ceil((M * K) / 256));
      this.ctx.dispatch(pass, this.gather.k, { p: this.gather.slot.buffer, x: b.x, perm: w.perm, y: x }, grid);
    }
    const bufs = { p: this.slot.buffer, x, w: w.w, sb: w.sb, bias: b.bias ?? this.ctx.dummy, y: b.y };
    if (M <= GEMV_MAX_ROWS) this.ctx.dispatch(pass, this.gemv, bufs, this.ctx.grid2d(Math.ceil(N / GEMV_ROWS)));
    else this.ctx.dispatch(pass, this.gemm, bufs, [Math.ceil(N / 64), Math.ceil(M / 64)]);
  }
}

export type AnyLinearOp = LinearOp | QuantLinearOp;

/** Encodes a linear layer whichever kind of matrix the model holds (forward.ts). */
export function encodeLinear(
  op: AnyLinearOp,
  pass: GPUComputePassEncoder,
  b: { x: GPUBuffer; w: Matrix; bias?: GPUBuffer | null; y: GPUBuffer },
): void {
  if (op instanceof QuantLinearOp) {
    if (!isQuant(b.w)) throw new Error("quant linear op given a dense matrix");
    op.encode(pass, { ...b, w: b.w });
  } else {
    if (isQuant(b.w)) throw new Error("dense linear op given a quantized matrix");
    op.encode(pass, { ...b, w: b.w });
  }
}

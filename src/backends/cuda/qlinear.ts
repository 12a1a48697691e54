// Quantized linear layers on CUDA (W4A16 / W8A16): weights in the "mma-m16n8k16" layout of src/quant/pack.ts,
// f16 activations, f32 output. kernels/qgemv.cu: qgemv_* for M <= QGEMV_MAX_M (weights as the MMA A operand,
// split-K inside the block and across blocks, deterministic in-kernel reduction of f32 partials, programmatic
// dependent launch); kernels/qgemm.cu: qgemm_* above. A linear on the device is a CudaLinear: a dense matrix pointer
// (weight dtype, [N, K] row-major) or a QuantMatrix.
import type { CudaDevice, DeviceBuffer } from "./device.ts";
import type { DevPtr } from "./ffi.ts";
import type { Kernels } from "./kernels.ts";
import type { MmaPacked } from "../../quant/pack.ts";
import type { QuantBits, QuantizedLinear } from "../../quant/types.ts";
import { QGEMV_MAX_M, QGEMV_SILU_MAX_M, qgemvDefaults, qgemvPlan, qName, tileN } from "./qgemv_plan.ts";
import { type GateUpPairs, pairHalf } from "./gate_up.ts";
import { qgemmIo, qgemmRouting, qgemmSkinny, qgemmTiled } from "./qgemm_plan.ts";

export * from "./qgemv_plan.ts";

/**
 * Split-K scratch of qgemv, shared by every quantized linear of a model (launches are serialized on one stream).
 * part: [S, M, Np] f32 partials; counters: [ceil(nTiles / 4)] u32, zero between launches (the last block of each
 * column group resets its own).
 */
export interface QuantScratch {
  readonly part: DevPtr;
  readonly partFloats: number;
  readonly counters: DevPtr;
  readonly counterSlots: number;
}

/** One quantized matrix on the device (several linears with the same K, bits and group may be stacked by rows). */
export interface QuantMatrix {
  readonly kind: "quant";
  readonly bits: QuantBits;
  /** FP8 E4M3 codes (bits 8; pack.ts "FP8": scales 256 s, biases 0), the f8 kernels */ readonly fp8: boolean;
  /** outputs and inputs */ readonly N: number;
  readonly K: number;
  /** N padded to the n-tile (64 int4, 32 int8) */ readonly Np: number;
  /** 16-wide k-tiles: ceil(K / 16) */ readonly KT: number;
  readonly group: number;
  /** [Np / T, KT, 32 lanes, 4] u32: MmaPacked.qweight */ readonly qweight: DevPtr;
  /** [nG, Np] u32 half2 (scale lo, bias hi) */ readonly scaleBias: DevPtr;
  /** [K] i32 original channel of each packed channel (act-order), or 0n */ readonly perm: DevPtr;
  /** gate_up rows paired per n-tile (gate_up.ts), or undefined */ readonly pairs?: GateUpPairs;
  readonly scratch: QuantScratch;
}

/** A linear layer's weight on the device: a dense [N, K] matrix in the weight dtype, or a quantized one. */
export type CudaLinear = DevPtr | QuantMatrix;

export function isQuant(w: CudaLinear): w is QuantMatrix {
  return typeof w !== "bigint";
}

/** Allocates a zeroed scratch (the counters must start at 0). */
export function allocQuantScratch(
  dev: CudaDevice,
  alloc: (bytes: number, label: string) => DeviceBuffer,
  floats: number,
  slots: number,
): QuantScratch {
  const part = alloc(floats * 4, "quant.part"), counters = alloc(slots * 4, "quant.counters");
  dev.memset(counters.ptr, 0, slots * 4);
  return { part: part.ptr, partFloats: floats, counters: counters.ptr, counterSlots: slots };
}

/** Packed linears stacked by rows (q, k, v or gate, up): same K, bits, group and act-order g_idx. */
export function stackQuantized(parts: readonly QuantizedLinear[]): QuantizedLinear {
  const first = parts[0];
  if (!first) throw new Error("stackQuantized: no linears");
  if (parts.length === 1) return first;
  const { inDim: K, bits, groupSize } = first, fp8 = !!first.fp8;
  for (const p of parts) {
    const sameG = p.gIdx === first.gIdx ||
      (!!p.gIdx && !!first.gIdx && p.gIdx.length === first.gIdx.length && p.gIdx.every((v, i) => v === first.gIdx![i]));
    if (p.inDim !== K || p.bits !== bits || !!p.fp8 !== fp8 || p.groupSize !== groupSize || !sameG) {
      throw new Error("stackQuantized: the stacked linears differ in K, bits, fp8, group size or g_idx");
    }
  }
  const cat = <T extends Uint8Array | Float32Array | Uint16Array>(arrs: T[], make: (n: number) => T): T => {
    const out = make(arrs.reduce((a, x) => a + x.length, 0));
    let off = 0;
    for (const a of arrs) {
      out.set(a as never, off);
      off += a.length;
    }
    return out;
  };
  return {
    outDim: parts.reduce((a, p) => a + p.outDim, 0),
    inDim: K,
    bits,
    ...(fp8 ? { fp8 } : {}),
    groupSize,
    q: cat(parts.map((p) => p.q), (n) => new Uint8Array(n)),
    scales: cat(parts.map((p) => p.scales), (n) => new Float32Array(n)),
    zeros: cat(parts.map((p) => p.zeros), (n) => new Uint16Array(n)),
    gIdx: first.gIdx,
  };
}

/** Uploads an MmaPacked linear (an identity act-order permutation is dropped). */
export function uploadQuantMatrix(
  dev: CudaDevice,
  alloc: (bytes: number, label: string) => DeviceBuffer,
  p: MmaPacked,
  scratch: QuantScratch,
  label: string,
): QuantMatrix {
  const qweight = alloc(p.qweight.byteLength, `${label}.qweight`);
  const scaleBias = alloc(p.scaleBias.byteLength, `${label}.scaleBias`);
  dev.upload(qweight.ptr, p.qweight);
  dev.upload(scaleBias.ptr, p.scaleBias);
  let perm = 0n;
  if (p.perm && !p.perm.every((v, i) => v === i)) {
    const b = alloc(p.perm.byteLength, `${label}.perm`);
    dev.upload(b.ptr, p.perm);
    perm = b.ptr;
  }
  const { bits, outDim: N, inDim: K, groupSize: group, paddedOut: Np, fp8 } = p;
  return {
    kind: "quant",
    bits,
    fp8,
    N,
    K,
    Np,
    KT: Math.ceil(K / 16),
    group,
    qweight: qweight.ptr,
    ...{ perm },
    scaleBias: scaleBias.ptr,
    scratch,
  };
}

/**
 * A synthetic quantized [N, K] matrix generated on the GPU (qfill): random q words and f16 (scale, bias) pairs
 * whose weights span about [-amp, amp]. No host copy of the weights.
 */
export function fillQuantMatrix(
  k: Kernels,
  alloc: (bytes: number, label: string) => DeviceBuffer,
  a: { bits: QuantBits; fp8?: boolean; N: number; K: number; group: number; seed: number; amp: number; label: string },
  scratch: QuantScratch,
): QuantMatrix {
  const T = tileN(a.bits), Np = Math.ceil(a.N / T) * T, KT = Math.ceil(a.K / 16);
  if (a.group % 16 !== 0 && a.group < a.K) throw new RangeError(`qfill: group ${a.group} is not a multiple of 16`);
  const nG = Math.ceil(a.K / Math.min(a.group, a.K)), words = (Np / T) * KT * 128;
  const qweight = alloc(words * 4, `${a.label}.qweight`), scaleBias = alloc(nG * Np * 4, `${a.label}.scaleBias`);
  const blocks = Math.min(65535, Math.ceil(Math.max(words, nG * Np) / 256));
  const fp8 = !!a.fp8;
  if (fp8 && a.bits !== 8) throw new RangeError("qfill: fp8 matrices have 8-bit codes");
  k.launch("qfill", qName({ bits: a.bits, fp8 }), [blocks], [256], {
    qweight: qweight.ptr,
    scaleBias: scaleBias.ptr,
    words,
    nG,
    N: a.N,
    Np,
    seed: a.seed >>> 0,
    amp: a.amp,
  });
  return {
    kind: "quant",
    bits: a.bits,
    fp8,
    N: a.N,
    K: a.K,
    Np,
    KT,
    group: a.group,
    qweight: qweight.ptr,
    scaleBias: scaleBias.ptr,
    perm: 0n,
    scratch,
  };
}

/** qgemv launch options (benchmarks sweep them); unset fields take qgemvDefaults. */
export interface QgemvTune {
  /** split target, warps per SM */ readonly warpsPerSm?: number;
  /** alternate tiles per warp instead of runs */ readonly interleave?: boolean;
  /** programmatic dependent launch on sm_90 */ readonly pdl?: boolean;
  /** let the next kernel launch once the weight copies are issued (it prefetches its own in the room left free) */
  readonly early?: boolean;
}

/**
 * Fused decode-step ends of a qgemv (the quantized counterpart of decode.cu's norm prologue and residual epilogue).
 * norm: the input is rmsnorm(x) = xg * 1 / rms, rounded to f16, instead of `x`: xg [M, K] f32 = x * gamma, ss
 * [M, parts] f32 partial sums of x^2 (summed in order). resid: instead of writing y, x [M, N] f32 += y; xg [M, N]
 * f32 = x * gNext; ss [M, parts] f32 = partial sums of x^2, parts = the returned count (one per block column).
 * silu (W: a gate_up matrix paired per n-tile, gate_up.ts): instead of writing y, act [M, f] f16 = silu(gate) * up.
 */
export interface QgemvFused {
  readonly norm?: { readonly xg: DevPtr; readonly ss: DevPtr; readonly parts: number; readonly eps: number };
  readonly resid?: { readonly x: DevPtr; readonly gNext: DevPtr; readonly xg: DevPtr; readonly ss: DevPtr };
  readonly silu?: { readonly act: DevPtr };
}

/**
 * y [M, N] f32 = x [M, K] f16 · W^T + bias [N] f32 (or 0n); `kind` forces a kernel (tests), else by M. Returns the
 * partial sums of squares per row a `fused.resid` launch wrote (0 without one).
 */
export function quantLinear(
  k: Kernels,
  x: DevPtr,
  W: QuantMatrix,
  bias: DevPtr,
  y: DevPtr,
  M: number,
  kind: "auto" | "gemv" | "gemm" = "auto",
  tune: QgemvTune = {},
  fused: QgemvFused = {},
): number {
  if (!Number.isInteger(M) || M <= 0) throw new RangeError(`quant linear: bad M ${M}`);
  const { bits, N, K, Np, KT, group: G } = W;
  const gemv = kind === "gemv" || (kind === "auto" && M <= QGEMV_MAX_M);
  if (!gemv && (fused.norm || fused.resid || fused.silu)) {
    throw new RangeError(`quant linear: fused ends need M <= ${QGEMV_MAX_M}`);
  }
  if (gemv) {
    if (M > QGEMV_MAX_M) throw new RangeError(`qgemv: M ${M} > ${QGEMV_MAX_M}`);
    if (G % 16 !== 0 && G < K) throw new RangeError(`qgemv: group ${G} is not a multiple of 16`);
    const p = qgemvPlan(
      bits,
      N,
      K,
      M,
      k.dev.smCount,
      W.scratch.partFloats,
      tune.warpsPerSm ?? qgemvDefaults.warpsPerSm,
    );
    if (p.gridX > W.scratch.counterSlots) {
      throw new RangeError(`qgemv: ${p.gridX} counters > scratch's ${W.scratch.counterSlots}`);
    }
    const suffix = `${qName(W)}_m${M <= 8 ? 8 : 16}`;
    const split = p.S > 1 ? { part: W.scratch.part, counters: W.scratch.counters } : { part: 0n, counters: 0n };
    const il = (tune.interleave ?? qgemvDefaults.interleave) ? 1 : 0;
    const { norm, resid, silu } = fused;
    if (!resid && !silu && y === 0n) throw new RangeError("qgemv: no output (y, residual or SiLU epilogue)");
    if (silu && M > QGEMV_SILU_MAX_M) {
      throw new RangeError(`qgemv: the SiLU epilogue takes at most ${QGEMV_SILU_MAX_M} rows (got ${M})`);
    }
    if (silu && (resid || !W.pairs || W.pairs.half !== pairHalf(bits) || silu.act === 0n)) {
      throw new RangeError(
        "qgemv: the SiLU epilogue needs a gate_up matrix paired per n-tile, an act buffer, no resid",
      );
    }
    if (norm && (!Number.isInteger(norm.parts) || norm.parts < 1 || !(norm.eps > 0))) {
      throw new RangeError(`qgemv: fused norm parts ${norm.parts} eps ${norm.eps}`);
    }
    const ends = {
      ...(norm
        ? { x: 0n, xg: norm.xg, ss: norm.ss, parts: norm.parts, eps: norm.eps }
        : { xg: 0n, ss: 0n, parts: 0, eps: 0 }),
      ...(resid
        ? { y: 0n, rx: resid.x, gNext: resid.gNext, xgOut: resid.xg, ssOut: resid.ss }
        : { rx: 0n, gNext: 0n, xgOut: 0n, ssOut: 0n }),
    };
    const early = (tune.early ?? qgemvDefaults.early) ? 1 : 0;
    const act = silu ? { y: 0n, act: silu.act, F: W.pairs!.f } : { act: 0n, F: 0 };
    const common = { ...qgemmIo(x, W, bias, y), M, N, K, Np, KT, G };
    const args = { ...common, ...split, tps: p.tps, ksb: p.ksb, il, S: p.S, ...ends, early, ...act };
    // The SiLU epilogue of a split launch pairs the finished sums of its 4 / ksb n-tiles in shared memory (`fin`).
    const smem = silu && p.S > 1 ? Math.max(p.smem, 16 + 2048 + M * (4 / p.ksb) * tileN(bits) * 4) : p.smem;
    k.launch("qgemv", suffix, [p.gridX, p.S], [128], args, smem, tune.pdl ?? qgemvDefaults.pdl);
    return resid ? p.gridX : 0;
  }
  // Above qgemv's rows: the skinny-M split-K qgemms (qgemm_plan.ts; the tiled qgemm where routed there).
  if (M <= qgemmRouting.skinnyMaxM) qgemmSkinny(k, x, W, bias, y, M);
  else qgemmTiled(k, x, W, bias, y, M);
  return 0;
}

// AWQ checkpoints, GEMM version (AutoAWQ WQLinear_GEMM, as vLLM and transformers read them). 4-bit only: the format
// does not define other widths. Tensors of one linear, for base name `model.layers.0.self_attn.q_proj`:
//   .qweight  I32 [K, N/8]   word (k, c) holds q[n = 8c + AWQ_ORDER[i], k] in bits 4i..4i+3 (i = 0..7)
//   .qzeros   I32 [K/G, N/8] zero points, packed exactly like qweight (no off-by-one)
//   .scales   F16 [K/G, N]
// with W[n, k] = (q - z[g, n]) * s[g, n], g = floor(k / G). K must be a multiple of G and N a multiple of 8.
import type { TensorSource } from "../core/types.ts";
import { CheckpointError } from "../core/errors.ts";
import { f16Tensor, i32Tensor, type OutTensor, readPackedI32, readScales } from "./tensors.ts";
import type { QuantizedLinear } from "./types.ts";

/** Nibble i of a packed word holds column AWQ_ORDER[i] of its 8 columns. */
export const AWQ_ORDER: readonly number[] = [0, 2, 4, 6, 1, 3, 5, 7];
/** Column j of a pack lives in nibble AWQ_REVERSE_ORDER[j]. */
export const AWQ_REVERSE_ORDER: readonly number[] = [0, 4, 1, 5, 2, 6, 3, 7];

/** Packs [rows, cols] small ints (row-major, cols % 8 == 0) along cols in AWQ order → u32 [rows, cols / 8]. */
export function packAwqRows(v: ArrayLike<number>, rows: number, cols: number): Uint32Array {
  if (cols % 8 !== 0) throw new Error(`AWQ packing needs a multiple of 8 columns, got ${cols}`);
  const out = new Uint32Array(rows * cols / 8);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols / 8; c++) {
      let word = 0;
      for (let i = 0; i < 8; i++) word |= (v[r * cols + 8 * c + AWQ_ORDER[i]!]! & 0xf) << (4 * i);
      out[r * cols / 8 + c] = word >>> 0;
    }
  }
  return out;
}

/** Inverse of packAwqRows: u32 [rows, cols / 8] → u8 [rows, cols]. */
export function unpackAwqRows(words: Uint32Array, rows: number, cols: number): Uint8Array {
  const out = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols / 8; c++) {
      const word = words[r * cols / 8 + c]!;
      for (let j = 0; j < 8; j++) out[r * cols + 8 * c + j] = (word >>> (4 * AWQ_REVERSE_ORDER[j]!)) & 0xf;
    }
  }
  return out;
}

export interface AwqTensors {
  /** [K, N/8] */ readonly qweight: Uint32Array;
  /** [K/G, N/8] */ readonly qzeros: Uint32Array;
  /** [K/G, N] f16 values */ readonly scales: Float32Array;
}

function checkAwq(bits: number, N: number, K: number, G: number, where: string): void {
  if (bits !== 4) throw new Error(`${where}: AWQ GEMM defines 4-bit weights only, not ${bits}-bit`);
  if (N % 8 !== 0) throw new Error(`${where}: AWQ needs out features divisible by 8, got ${N}`);
  if (K % G !== 0) throw new Error(`${where}: AWQ needs in features (${K}) divisible by the group size ${G}`);
}

/** QuantizedLinear (4-bit, no g_idx, K % G == 0, N % 8 == 0) → the three AWQ GEMM tensors. */
export function packAwq(ql: QuantizedLinear): AwqTensors {
  const { outDim: N, inDim: K, groupSize: G } = ql;
  checkAwq(ql.bits, N, K, G, "packAwq");
  if (ql.gIdx) throw new Error("packAwq: AWQ has no g_idx (act-order) support");
  const nG = K / G;
  const qT = new Uint8Array(K * N), zT = new Uint8Array(nG * N), sT = new Float32Array(nG * N);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) qT[k * N + n] = ql.q[n * K + k]!;
    for (let g = 0; g < nG; g++) {
      const z = ql.zeros[n * nG + g]!;
      if (z > 15) throw new Error(`packAwq: zero point ${z} does not fit 4 bits`);
      zT[g * N + n] = z;
      sT[g * N + n] = ql.scales[n * nG + g]!;
    }
  }
  return { qweight: packAwqRows(qT, K, N), qzeros: packAwqRows(zT, nG, N), scales: sT };
}

/** The three AWQ GEMM tensors → QuantizedLinear [N, K]. */
export function unpackAwq(t: AwqTensors, N: number, K: number, G: number): QuantizedLinear {
  checkAwq(4, N, K, G, "unpackAwq");
  const nG = K / G;
  const qT = unpackAwqRows(t.qweight, K, N), zT = unpackAwqRows(t.qzeros, nG, N);
  const q = new Uint8Array(N * K), zeros = new Uint16Array(N * nG), scales = new Float32Array(N * nG);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) q[n * K + k] = qT[k * N + n]!;
  for (let g = 0; g < nG; g++) {
    for (let n = 0; n < N; n++) {
      zeros[n * nG + g] = zT[g * N + n]!;
      scales[n * nG + g] = t.scales[g * N + n]!;
    }
  }
  return { outDim: N, inDim: K, bits: 4, groupSize: G, q, scales, zeros, gIdx: null };
}

/** Reads `${base}.qweight/.qzeros/.scales` of an [N, K] linear, checking dtypes and shapes. */
export async function readAwqLinear(
  src: TensorSource,
  base: string,
  N: number,
  K: number,
  bits: number,
  groupSize: number,
): Promise<QuantizedLinear> {
  const G = groupSize <= 0 ? K : groupSize;
  const file = src.has(`${base}.qweight`) ? src.info(`${base}.qweight`).file : undefined;
  try {
    checkAwq(bits, N, K, G, `${file ?? "checkpoint"}: tensor "${base}.qweight"`);
  } catch (e) {
    throw new CheckpointError((e as Error).message, file, `${base}.qweight`);
  }
  const qweight = await readPackedI32(src, `${base}.qweight`, [K, N / 8]);
  const qzeros = await readPackedI32(src, `${base}.qzeros`, [K / G, N / 8]);
  const scales = await readScales(src, `${base}.scales`, [K / G, N]);
  return unpackAwq({ qweight, qzeros, scales }, N, K, G);
}

/** Safetensors entries of one linear in AWQ GEMM layout. */
export function awqTensors(base: string, ql: QuantizedLinear): OutTensor[] {
  const t = packAwq(ql);
  const { outDim: N, inDim: K, groupSize: G } = ql;
  return [
    i32Tensor(`${base}.qweight`, [K, N / 8], t.qweight),
    i32Tensor(`${base}.qzeros`, [K / G, N / 8], t.qzeros),
    f16Tensor(`${base}.scales`, [K / G, N], t.scales),
  ];
}

// GPTQ checkpoints (AutoGPTQ / GPTQModel "gptq" format, as vLLM and transformers read them), 4 and 8 bits.
// pack = 32 / bits values per word, packed sequentially (value i in bits i*bits .. i*bits+bits-1).
// Tensors of one linear, for base name `model.layers.0.self_attn.q_proj`:
//   .qweight  I32 [K/pack, N]        word (r, n) holds q[n, r*pack + i], i = 0..pack-1   (packed along the input)
//   .qzeros   I32 [numGroups, N/pack] word (g, c) holds the stored zero of column c*pack + i (packed along the output)
//   .scales   F16 [numGroups, N]
//   .g_idx    I32 [K]                group of each input channel (act-order / desc_act; k / G otherwise)
// W[n, k] = (q - z) * s with g = g_idx[k]. Format v1 (the published default) stores zero - 1, so the real zero is
// stored + 1 (NOT masked: a stored 15 means zero 16 at 4 bits, as the reference kernels compute). v2 stores zero.
// Symmetric checkpoints store the constant zero 2^(bits-1) (v1: 2^(bits-1) - 1) like asymmetric ones.
import type { TensorSource } from "../core/types.ts";
import { CheckpointError } from "../core/errors.ts";
import {
  f16Tensor,
  i32Tensor,
  type OutTensor,
  quantTensorError,
  readGroupIndex,
  readPackedI32,
  readScales,
} from "./tensors.ts";
import { groupOf, numGroups, type QuantBits, type QuantizedLinear } from "./types.ts";

export type GptqVersion = 1 | 2;

export interface GptqTensors {
  /** [K/pack, N] */ readonly qweight: Uint32Array;
  /** [numGroups, N/pack] */ readonly qzeros: Uint32Array;
  /** [numGroups, N] f16 values */ readonly scales: Float32Array;
  /** [K] */ readonly gIdx: Int32Array;
}

function checkGptq(bits: number, N: number, K: number, where: string): number {
  if (bits !== 4 && bits !== 8) throw new Error(`${where}: GPTQ bits must be 4 or 8, got ${bits}`);
  const pack = 32 / bits;
  if (K % pack !== 0) throw new Error(`${where}: GPTQ needs in features (${K}) divisible by ${pack}`);
  if (N % pack !== 0) throw new Error(`${where}: GPTQ needs out features (${N}) divisible by ${pack}`);
  return pack;
}

/** QuantizedLinear → GPTQ tensors. g_idx is always written (k / G when the linear has none). */
export function packGptq(ql: QuantizedLinear, version: GptqVersion = 1): GptqTensors {
  const { outDim: N, inDim: K, bits } = ql;
  const pack = checkGptq(bits, N, K, "packGptq");
  const nG = numGroups(ql), mask = (1 << bits) - 1, off = version === 1 ? 1 : 0;
  const qweight = new Uint32Array((K / pack) * N);
  for (let r = 0; r < K / pack; r++) {
    for (let n = 0; n < N; n++) {
      let w = 0;
      for (let i = 0; i < pack; i++) w |= ql.q[n * K + r * pack + i]! << (bits * i);
      qweight[r * N + n] = w >>> 0;
    }
  }
  const qzeros = new Uint32Array(nG * (N / pack)), scales = new Float32Array(nG * N);
  for (let g = 0; g < nG; g++) {
    for (let n = 0; n < N; n++) {
      const stored = ql.zeros[n * nG + g]! - off;
      if (stored < 0 || stored > mask) {
        throw new Error(`packGptq: zero point ${stored + off} cannot be stored in GPTQ v${version} at ${bits} bits`);
      }
      qzeros[g * (N / pack) + Math.floor(n / pack)]! |= stored << (bits * (n % pack));
      scales[g * N + n] = ql.scales[n * nG + g]!;
    }
  }
  for (let i = 0; i < qzeros.length; i++) qzeros[i] = qzeros[i]! >>> 0;
  const gIdx = Int32Array.from({ length: K }, (_, k) => groupOf(ql, k));
  return { qweight, qzeros, scales, gIdx };
}

/** GPTQ tensors → QuantizedLinear. gIdx equal to k / G collapses to null. */
export function unpackGptq(
  t: GptqTensors,
  N: number,
  K: number,
  bits: QuantBits,
  groupSize: number,
  version: GptqVersion = 1,
): QuantizedLinear {
  const pack = checkGptq(bits, N, K, "unpackGptq");
  const mask = (1 << bits) - 1, off = version === 1 ? 1 : 0;
  const nG = t.scales.length / N;
  const q = new Uint8Array(N * K);
  for (let r = 0; r < K / pack; r++) {
    for (let n = 0; n < N; n++) {
      const w = t.qweight[r * N + n]!;
      for (let i = 0; i < pack; i++) q[n * K + r * pack + i] = (w >>> (bits * i)) & mask;
    }
  }
  const zeros = new Uint16Array(N * nG), scales = new Float32Array(N * nG);
  for (let g = 0; g < nG; g++) {
    for (let n = 0; n < N; n++) {
      zeros[n * nG + g] = ((t.qzeros[g * (N / pack) + Math.floor(n / pack)]! >>> (bits * (n % pack))) & mask) + off;
      scales[n * nG + g] = t.scales[g * N + n]!;
    }
  }
  const trivial = t.gIdx.every((g, k) => g === Math.floor(k / groupSize));
  return { outDim: N, inDim: K, bits, groupSize, q, scales, zeros, gIdx: trivial ? null : t.gIdx.slice() };
}

/** Reads `${base}.qweight/.qzeros/.scales[/.g_idx]` of an [N, K] linear, checking dtypes, shapes and g_idx. */
export async function readGptqLinear(
  src: TensorSource,
  base: string,
  N: number,
  K: number,
  bits: number,
  groupSize: number,
  version: GptqVersion = 1,
): Promise<QuantizedLinear> {
  const G = groupSize <= 0 ? K : groupSize;
  const name = `${base}.qweight`;
  let pack: number;
  try {
    pack = checkGptq(bits, N, K, `${src.has(name) ? src.info(name).file : "checkpoint"}: tensor "${name}"`);
  } catch (e) {
    throw new CheckpointError((e as Error).message, src.has(name) ? src.info(name).file : undefined, name);
  }
  const qweight = await readPackedI32(src, name, [K / pack, N]);
  let gIdx: Int32Array;
  let nG = Math.ceil(K / G);
  if (src.has(`${base}.g_idx`)) ({ gIdx, groups: nG } = await readGroupIndex(src, `${base}.g_idx`, K, G));
  else gIdx = Int32Array.from({ length: K }, (_, k) => Math.floor(k / G));
  const sInfo = src.info(`${base}.scales`);
  if (sInfo.shape.length === 2 && sInfo.shape[0] !== nG && src.has(`${base}.g_idx`)) {
    throw quantTensorError(src, `${base}.g_idx`, `refers to ${nG} groups but scales has ${sInfo.shape[0]}`);
  }
  const qzeros = await readPackedI32(src, `${base}.qzeros`, [nG, N / pack]);
  const scales = await readScales(src, `${base}.scales`, [nG, N]);
  return unpackGptq({ qweight, qzeros, scales, gIdx }, N, K, bits as QuantBits, G, version);
}

/** Safetensors entries of one linear in GPTQ layout (with g_idx). */
export function gptqTensors(base: string, ql: QuantizedLinear, version: GptqVersion = 1): OutTensor[] {
  const t = packGptq(ql, version);
  const { outDim: N, inDim: K, bits } = ql;
  const pack = 32 / bits, nG = numGroups(ql);
  return [
    i32Tensor(`${base}.qweight`, [K / pack, N], t.qweight),
    i32Tensor(`${base}.qzeros`, [nG, N / pack], t.qzeros),
    f16Tensor(`${base}.scales`, [nG, N], t.scales),
    i32Tensor(`${base}.g_idx`, [K], t.gIdx),
  ];
}

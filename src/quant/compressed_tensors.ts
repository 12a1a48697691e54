// compressed-tensors integer checkpoints (llm-compressor, as vLLM reads them): "pack-quantized" (W4A16 / W8A16) and
// "int-quantized" (W8A8: the signed values one per I8 in `.weight`, zero points unpacked I8 [N, nG]; read weights-only).
// pack-quantized tensors of one linear, for base name `model.layers.0.self_attn.q_proj` ([N, K], pf = 32 / bits):
//   .weight_packed      I32 [N, ceil(K / pf)]  value k of row n in bits bits * (k % pf) of word k / pf, stored unsigned:
//                                              the signed q plus 2^(bits-1)
//   .weight_shape       I64 (or I32) [2]       [N, K]
//   .weight_scale       F16 / BF16 / F32       [N, ceil(K / G)] (strategy "group") or [N, 1] ("channel")
//   .weight_zero_point  asymmetric only: I32 [ceil(N / pf), nG], the signed zero points plus 2^(bits-1), packed the
//                       same way along the output dimension (value n of column g in word n / pf)
//   .weight_g_idx       optional I32 [K]: the group of each input channel (activation order)
// W[n, k] = (q_signed - zp_signed) * s = (u - z) * s, with u the stored value and z = 2^(bits-1) (symmetric) or the
// stored zero point: exactly QuantizedLinear's (q - z) * s. Scales are rounded to f16 (what the kernels hold; BF16
// values are f16 values unless below 2^-14).
import type { QuantSpec, TensorSource } from "../core/types.ts";
import { linearBase } from "../model/weights.ts";
import { expectShapePair, quantTensorError, readGroupIndex, readPackedI32, readScales } from "./tensors.ts";
import { type QuantBits, type QuantizedLinear, toF16 } from "./types.ts";

/** Reads one pack-quantized linear (quant.method "compressed-tensors", integer weights). */
export async function readCtIntLinear(
  src: TensorSource,
  quant: QuantSpec,
  weightName: string,
  N: number,
  K: number,
): Promise<QuantizedLinear> {
  const base = linearBase(weightName), bits = quant.bits as QuantBits, pf = 32 / bits, mask = (1 << bits) - 1;
  const G = quant.groupSize > 0 ? quant.groupSize : K, half = 1 << (bits - 1);
  const q = new Uint8Array(N * K);
  if (quant.ctFormat === "int-quantized") {
    // One signed value per I8 (int-quantized): u = v + 2^(bits-1), in range for `bits`.
    const i = src.info(weightName);
    if (i.dtype !== "I8" || i.shape.length !== 2 || i.shape[0] !== N || i.shape[1] !== K) {
      throw quantTensorError(src, weightName, `${i.dtype}${JSON.stringify(i.shape)}, expected I8 [${N},${K}]`);
    }
    const v = new Int8Array((await src.bytes(weightName)).slice().buffer);
    const bad = v.findIndex((x) => x < -half || x >= half);
    if (bad >= 0) throw quantTensorError(src, weightName, `value ${v[bad]} at element ${bad} is not ${bits}-bit`);
    for (let j = 0; j < N * K; j++) q[j] = v[j]! + half;
  } else {
    await expectShapePair(src, `${base}.weight_shape`, N, K);
    const Kw = Math.ceil(K / pf);
    const packed = await readPackedI32(src, `${base}.weight_packed`, [N, Kw]);
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) q[n * K + k] = (packed[n * Kw + Math.floor(k / pf)]! >>> (bits * (k % pf))) & mask;
    }
  }
  let gIdx: Int32Array | null = null, nG = Math.ceil(K / G);
  const gName = `${base}.weight_g_idx`;
  if (src.has(gName)) {
    ({ gIdx, groups: nG } = await readGroupIndex(src, gName, K, G));
    if (gIdx.every((g, k) => g === Math.floor(k / G))) gIdx = null;
  }
  const raw = await readScales(src, `${base}.weight_scale`, [N, nG]);
  const scales = raw.map(toF16);
  const zeros = new Uint16Array(N * nG).fill(half);
  const zName = `${base}.weight_zero_point`;
  if (!quant.sym && quant.ctFormat === "int-quantized") {
    // Unpacked signed zero points, [N, nG] I8 (or I32).
    const zi = src.info(zName);
    if ((zi.dtype !== "I8" && zi.dtype !== "I32") || zi.shape.length !== 2 || zi.shape[0] !== N || zi.shape[1] !== nG) {
      throw quantTensorError(src, zName, `${zi.dtype}${JSON.stringify(zi.shape)}, expected I8 [${N},${nG}]`);
    }
    const raw = (await src.bytes(zName)).slice().buffer;
    const z = zi.dtype === "I8" ? new Int8Array(raw) : new Int32Array(raw);
    const bad = z.findIndex((x) => x < -half || x >= half);
    if (bad >= 0) throw quantTensorError(src, zName, `zero point ${z[bad]} at element ${bad} is not ${bits}-bit`);
    for (let j = 0; j < N * nG; j++) zeros[j] = z[j]! + half;
  } else if (!quant.sym) {
    const zp = await readPackedI32(src, zName, [Math.ceil(N / pf), nG]);
    for (let n = 0; n < N; n++) {
      for (let g = 0; g < nG; g++) zeros[n * nG + g] = (zp[Math.floor(n / pf) * nG + g]! >>> (bits * (n % pf))) & mask;
    }
  } else if (src.has(zName)) {
    // Symmetric checkpoints may still carry (unpacked) zero points: they must all be 0, in any dtype.
    const bad = (await src.bytes(zName)).findIndex((b) => b !== 0);
    if (bad >= 0) throw quantTensorError(src, zName, `non-zero byte ${bad} in a symmetric scheme's zero points`);
  }
  return { outDim: N, inDim: K, bits, groupSize: G, q, scales, zeros, gIdx };
}

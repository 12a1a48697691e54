// Reads one quantized linear of an AWQ, GPTQ, fp8 or compressed-tensors checkpoint, by its Hugging Face weight name.
import type { QuantSpec, TensorSource } from "../core/types.ts";
import { linearBase } from "../model/weights.ts";
import { readAwqLinear } from "./awq.ts";
import { readGptqLinear } from "./gptq.ts";
import { readFp8Linear } from "./fp8_checkpoint.ts";
import { readCtIntLinear } from "./compressed_tensors.ts";
import type { QuantizedLinear } from "./types.ts";

/**
 * `weightName` is the unquantized name ("model.layers.0.self_attn.q_proj.weight"); [N, K] its shape.
 * Throws CheckpointError naming file and tensor for missing, mis-shaped or corrupt tensors.
 */
export function readQuantizedLinear(
  src: TensorSource,
  quant: QuantSpec,
  weightName: string,
  N: number,
  K: number,
): Promise<QuantizedLinear> {
  if (quant.method === "fp8") return readFp8Linear(src, quant, weightName, N, K);
  if (quant.method === "compressed-tensors") return readCtIntLinear(src, quant, weightName, N, K);
  const base = linearBase(weightName);
  if (quant.method === "awq") {
    if (quant.sym) throw new Error(`AWQ without zero points (zero_point: false) is not supported`);
    return readAwqLinear(src, base, N, K, quant.bits, quant.groupSize);
  }
  return readGptqLinear(src, base, N, K, quant.bits, quant.groupSize, quant.gptqVersion ?? 1);
}

// Loads a checkpoint into f32 arrays for the reference backend, shape-checking every tensor.
// Quantized weights (int8 / int4 / fp8) are held dequantized, W = (q - z) * s (fp8: e4m3(q) * s) in f32 exactly as
// the kernels compute it: read from a quantized checkpoint, or quantized at load from a float one (quantizeAs in
// src/quant/reference.ts: RTN, or fp8 per row and group).
import {
  type ModelSpec,
  type Precision,
  type ProgressFn,
  quantGroup,
  type TensorSource,
  type WeightDType,
} from "../../core/types.ts";
import { roundTo } from "../../model/dtype.ts";
import {
  EMBED,
  expectedTensors,
  FINAL_NORM,
  layerNames,
  linearWeightNames,
  LM_HEAD,
  quantizedTensorNames,
} from "../../model/weights.ts";
import { readQuantizedLinear } from "../../quant/checkpoint.ts";
import { dequantize, quantizeAs } from "../../quant/reference.ts";
import { quantFormat } from "../../quant/types.ts";

export interface ReferenceLayer {
  /** [h] */ readonly inputNorm: Float32Array;
  /** [numHeads*d, h] */ readonly q: Float32Array;
  /** [kvHeads*d, h] */ readonly k: Float32Array;
  /** [kvHeads*d, h] */ readonly v: Float32Array;
  /** [h, numHeads*d] */ readonly o: Float32Array;
  readonly qBias: Float32Array | null;
  readonly kBias: Float32Array | null;
  readonly vBias: Float32Array | null;
  readonly oBias: Float32Array | null;
  /** [d] (Qwen3) */ readonly qNorm: Float32Array | null;
  /** [d] (Qwen3) */ readonly kNorm: Float32Array | null;
  /** [h] */ readonly postNorm: Float32Array;
  /** [ffn, h] */ readonly gate: Float32Array;
  /** [ffn, h] */ readonly up: Float32Array;
  /** [h, ffn] */ readonly down: Float32Array;
  readonly gateBias: Float32Array | null;
  readonly upBias: Float32Array | null;
  readonly downBias: Float32Array | null;
}

export interface ReferenceWeights {
  /** [vocab, h] */ readonly embed: Float32Array;
  readonly layers: ReferenceLayer[];
  /** [h] */ readonly finalNorm: Float32Array;
  /** [vocab, h] (the embedding when tied) */ readonly lmHead: Float32Array;
}

export async function loadReferenceWeights(
  spec: ModelSpec,
  src: TensorSource,
  weightOrPrecision: WeightDType | Precision,
  onProgress?: ProgressFn,
): Promise<ReferenceWeights> {
  const weight = typeof weightOrPrecision === "string" ? weightOrPrecision : weightOrPrecision.weight;
  const group = typeof weightOrPrecision === "string" ? undefined : weightOrPrecision.group;
  const quant = spec.quantization;
  const format = quantFormat(weight, quant); // refuses a quantized precision other than the checkpoint's
  const expected = expectedTensors(spec);
  const shapes = new Map(expected.map((e) => [e.name, e.shape]));
  const linears = linearWeightNames(spec);
  // The tensors actually read: a quantized checkpoint holds qweight / qzeros / scales instead of each linear weight.
  const stored = (name: string) => (quant && linears.has(name) ? quantizedTensorNames(name, quant) : [name]);
  // Check presence of everything first, so a missing tensor fails before any big read.
  for (const e of expected) for (const n of stored(e.name)) src.info(n);
  const bytesOf = (name: string) => stored(name).reduce((a, n) => a + src.info(n).byteLength, 0);
  const total = expected.reduce((a, e) => a + bytesOf(e.name), 0);
  let done = 0;
  const get = async (name: string): Promise<Float32Array> => {
    const shape = shapes.get(name)!;
    let data: Float32Array;
    if (quant && linears.has(name)) {
      // Dequantized exactly; no further rounding (the values are what the kernels compute).
      data = dequantize(await readQuantizedLinear(src, quant, name, shape[0]!, shape[1]!));
    } else {
      data = await src.f32(name, shape);
      if (weight === "f16" || weight === "bf16") data = roundTo(data, weight);
      else if (format && linears.has(name)) {
        const [N, K] = shape as [number, number], G = quantGroup({ group });
        data = dequantize(quantizeAs(format, data, N, K, G));
      }
    }
    done += bytesOf(name);
    onProgress?.(done, total, name);
    return data;
  };
  const opt = (name: string, on: boolean) => (on ? get(name) : Promise.resolve(null));
  const embed = await get(EMBED);
  const layers: ReferenceLayer[] = [];
  for (let i = 0; i < spec.numLayers; i++) {
    const n = layerNames(i);
    layers.push({
      inputNorm: await get(n.inputNorm),
      q: await get(n.q),
      k: await get(n.k),
      v: await get(n.v),
      o: await get(n.o),
      qBias: await opt(n.qBias, spec.attentionBias),
      kBias: await opt(n.kBias, spec.attentionBias),
      vBias: await opt(n.vBias, spec.attentionBias),
      oBias: await opt(n.oBias, spec.outputBias),
      qNorm: await opt(n.qNorm, spec.qkNorm),
      kNorm: await opt(n.kNorm, spec.qkNorm),
      postNorm: await get(n.postNorm),
      gate: await get(n.gate),
      up: await get(n.up),
      down: await get(n.down),
      gateBias: await opt(n.gateBias, spec.mlpBias),
      upBias: await opt(n.upBias, spec.mlpBias),
      downBias: await opt(n.downBias, spec.mlpBias),
    });
  }
  const finalNorm = await get(FINAL_NORM);
  const lmHead = spec.tieEmbeddings ? embed : await get(LM_HEAD);
  return { embed, layers, finalNorm, lmHead };
}

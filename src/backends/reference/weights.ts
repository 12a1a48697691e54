// Loads a checkpoint into f32 arrays for the reference backend, shape-checking every tensor.
import type { ModelSpec, ProgressFn, TensorSource, WeightDType } from "../../core/types.ts";
import { roundTo } from "../../model/dtype.ts";
import { EMBED, expectedTensors, FINAL_NORM, layerNames, LM_HEAD } from "../../model/weights.ts";

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
  weight: WeightDType,
  onProgress?: ProgressFn,
): Promise<ReferenceWeights> {
  const expected = expectedTensors(spec);
  const shapes = new Map(expected.map((e) => [e.name, e.shape]));
  // Check presence of everything first, so a missing tensor fails before any big read.
  for (const e of expected) src.info(e.name);
  const total = expected.reduce((a, e) => a + src.info(e.name).byteLength, 0);
  let done = 0;
  const get = async (name: string): Promise<Float32Array> => {
    const data = await src.f32(name, shapes.get(name));
    done += src.info(name).byteLength;
    onProgress?.(done, total, name);
    return weight === "f16" || weight === "bf16" ? roundTo(data, weight) : data;
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

// Hugging Face tensor names and expected shapes for the supported architectures.
import type { ModelSpec, QuantSpec } from "../core/types.ts";

export interface LayerNames {
  readonly inputNorm: string;
  readonly q: string;
  readonly k: string;
  readonly v: string;
  readonly o: string;
  readonly qBias: string;
  readonly kBias: string;
  readonly vBias: string;
  readonly oBias: string;
  readonly qNorm: string;
  readonly kNorm: string;
  readonly postNorm: string;
  readonly gate: string;
  readonly up: string;
  readonly down: string;
  readonly gateBias: string;
  readonly upBias: string;
  readonly downBias: string;
}

export function layerNames(i: number): LayerNames {
  const p = `model.layers.${i}`;
  return {
    inputNorm: `${p}.input_layernorm.weight`,
    q: `${p}.self_attn.q_proj.weight`,
    k: `${p}.self_attn.k_proj.weight`,
    v: `${p}.self_attn.v_proj.weight`,
    o: `${p}.self_attn.o_proj.weight`,
    qBias: `${p}.self_attn.q_proj.bias`,
    kBias: `${p}.self_attn.k_proj.bias`,
    vBias: `${p}.self_attn.v_proj.bias`,
    oBias: `${p}.self_attn.o_proj.bias`,
    qNorm: `${p}.self_attn.q_norm.weight`,
    kNorm: `${p}.self_attn.k_norm.weight`,
    postNorm: `${p}.post_attention_layernorm.weight`,
    gate: `${p}.mlp.gate_proj.weight`,
    up: `${p}.mlp.up_proj.weight`,
    down: `${p}.mlp.down_proj.weight`,
    gateBias: `${p}.mlp.gate_proj.bias`,
    upBias: `${p}.mlp.up_proj.bias`,
    downBias: `${p}.mlp.down_proj.bias`,
  };
}

export const EMBED = "model.embed_tokens.weight";
export const FINAL_NORM = "model.norm.weight";
export const LM_HEAD = "lm_head.weight";

/** Every tensor the forward pass needs, with its [out, in] (or [n]) shape. */
export function expectedTensors(spec: ModelSpec): { name: string; shape: number[] }[] {
  const { hiddenSize: h, numHeads, numKvHeads, headDim: d, intermediateSize: f, vocabSize: v } = spec;
  const out: { name: string; shape: number[] }[] = [{ name: EMBED, shape: [v, h] }];
  for (let i = 0; i < spec.numLayers; i++) {
    const n = layerNames(i);
    out.push(
      { name: n.inputNorm, shape: [h] },
      { name: n.q, shape: [numHeads * d, h] },
      { name: n.k, shape: [numKvHeads * d, h] },
      { name: n.v, shape: [numKvHeads * d, h] },
      { name: n.o, shape: [h, numHeads * d] },
      { name: n.postNorm, shape: [h] },
      { name: n.gate, shape: [f, h] },
      { name: n.up, shape: [f, h] },
      { name: n.down, shape: [h, f] },
    );
    if (spec.attentionBias) {
      out.push({ name: n.qBias, shape: [numHeads * d] }, { name: n.kBias, shape: [numKvHeads * d] }, {
        name: n.vBias,
        shape: [numKvHeads * d],
      });
    }
    if (spec.outputBias) out.push({ name: n.oBias, shape: [h] });
    if (spec.mlpBias) {
      out.push({ name: n.gateBias, shape: [f] }, { name: n.upBias, shape: [f] }, { name: n.downBias, shape: [h] });
    }
    if (spec.qkNorm) out.push({ name: n.qNorm, shape: [d] }, { name: n.kNorm, shape: [d] });
  }
  out.push({ name: FINAL_NORM, shape: [h] });
  if (!spec.tieEmbeddings) out.push({ name: LM_HEAD, shape: [v, h] });
  return out;
}

/** The seven linear projections of a layer (the tensors AWQ / GPTQ quantize). */
export const LINEAR_KEYS = ["q", "k", "v", "o", "gate", "up", "down"] as const;
export type LinearKey = typeof LINEAR_KEYS[number];

/** "model.layers.0.self_attn.q_proj.weight" → "model.layers.0.self_attn.q_proj" (the prefix of quantized tensors). */
export function linearBase(weightName: string): string {
  return weightName.endsWith(".weight") ? weightName.slice(0, -".weight".length) : weightName;
}

/**
 * Tensors that replace `${base}.weight` in a quantized checkpoint (optional ones: optionalQuantTensorNames): AWQ / GPTQ
 * qweight, qzeros and scales; fp8 the F8_E4M3 weight and its scales (weight_scale_inv per block, else weight_scale);
 * compressed-tensors pack-quantized weight_packed, weight_shape and weight_scale, int-quantized I8 weight and
 * weight_scale.
 */
export function quantizedTensorNames(weightName: string, quant: QuantSpec): string[] {
  const b = linearBase(weightName);
  if (quant.method === "fp8") return [weightName, `${b}.${fp8ScaleName(quant)}`];
  if (quant.method === "compressed-tensors") {
    return quant.ctFormat === "int-quantized"
      ? [weightName, `${b}.weight_scale`]
      : [`${b}.weight_packed`, `${b}.weight_shape`, `${b}.weight_scale`];
  }
  return [`${b}.qweight`, `${b}.qzeros`, `${b}.scales`];
}

/** Tensors a quantized linear may have besides quantizedTensorNames (act-order, zero points). */
export function optionalQuantTensorNames(weightName: string, quant: QuantSpec): string[] {
  const b = linearBase(weightName);
  if (quant.method === "compressed-tensors") return [`${b}.weight_zero_point`, `${b}.weight_g_idx`];
  return quant.method === "fp8" ? [`${b}.weight_shape_original`] : [`${b}.g_idx`];
}

/** The scale tensor suffix of an fp8 checkpoint. */
export function fp8ScaleName(quant: QuantSpec): string {
  return quant.scaleName ?? (quant.block ? "weight_scale_inv" : "weight_scale");
}

/** Names of every linear weight of the model (quantized in AWQ / GPTQ checkpoints). */
export function linearWeightNames(spec: ModelSpec): Set<string> {
  const out = new Set<string>();
  for (let i = 0; i < spec.numLayers; i++) {
    const n = layerNames(i);
    for (const key of LINEAR_KEYS) out.add(n[key]);
  }
  return out;
}

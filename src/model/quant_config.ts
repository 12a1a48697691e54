// config.json's quantization_config → QuantSpec: AWQ, GPTQ (v1 / v2 checkpoint formats), Hugging Face / vLLM fp8 and
// compressed-tensors (FP8 float-quantized, pack- and int-quantized integers). Unsupported settings are refused here,
// naming config.json, rather than failing later on a tensor.
import type { QuantSpec } from "../core/types.ts";
import { CheckpointError } from "../core/errors.ts";
import { layerNames, LINEAR_KEYS } from "./weights.ts";

type Json = Record<string, unknown>;

/** config.json's quantization_config (null without one); `file` names config.json in errors. */
export function parseQuantConfig(cfg: Json, file: string): QuantSpec | null {
  const q = cfg.quantization_config as Json | undefined;
  if (!q) return null;
  const method = q.quant_method;
  const layers = Number.isInteger(cfg.num_hidden_layers) ? cfg.num_hidden_layers as number : 0;
  if (method === "compressed-tensors") return parseCompressedTensors(q, file, layers);
  if (method !== "fp8" && method !== "awq" && method !== "gptq") {
    throw new CheckpointError(`${file}: unsupported quantization method ${JSON.stringify(method)}`, file);
  }
  // transformers skips the modules whose names contain an entry of modules_to_not_convert (fp8, AWQ): those must lie
  // outside the decoder layers' linears (lm_head, a vision tower), which this server runs quantized.
  const keep = Array.isArray(q.modules_to_not_convert) ? q.modules_to_not_convert : [];
  const linears = decoderLinearModules(layers);
  const kept = keep.filter((e) => typeof e !== "string" || linears.some((n) => n.includes(e)));
  if (kept.length > 0) {
    throw new CheckpointError(
      `${file}: modules_to_not_convert ${JSON.stringify(kept)} leaves decoder linears unquantized (not supported)`,
      file,
    );
  }
  if (method === "fp8") return parseFp8(q, file);
  const bits = q.bits ?? q.w_bit;
  if (bits !== 4 && bits !== 8) throw new CheckpointError(`${file}: quantization bits must be 4 or 8`, file);
  const groupSize = q.group_size ?? q.q_group_size ?? 128;
  // -1: one group per row (GPTQ's per-channel scales); AWQ GEMM needs real groups.
  if (!Number.isInteger(groupSize) || !((groupSize as number) > 0 || (method === "gptq" && groupSize === -1))) {
    throw new CheckpointError(`${file}: ${method} group_size ${JSON.stringify(groupSize)}`, file);
  }
  if (method === "awq") checkAwqConfig(q, bits, file);
  const spec = {
    method,
    bits,
    groupSize: groupSize as number,
    sym: method === "gptq" ? q.sym !== false : q.zero_point === false,
    descAct: q.desc_act === true,
  } as const;
  return Object.freeze(method === "gptq" ? { ...spec, gptqVersion: gptqVersion(q, file) } : spec);
}

/**
 * AutoAWQ's layout is named by `version`: only GEMM ("gemm", the default; as vLLM reads) packs qweight as [K, N/8].
 * GEMV, GEMV-fast, Marlin and ExLlama folders pack other orders, and AWQ defines 4-bit weights only.
 */
function checkAwqConfig(q: Json, bits: number, file: string): void {
  const version = q.version ?? "gemm";
  if (typeof version !== "string" || version.toLowerCase() !== "gemm") {
    throw new CheckpointError(
      `${file}: AWQ version ${JSON.stringify(version)} (only the GEMM layout, "gemm", is supported)`,
      file,
    );
  }
  if (bits !== 4) throw new CheckpointError(`${file}: AWQ bits ${bits} (AWQ GEMM defines 4-bit weights only)`, file);
}

/**
 * GPTQ's zero-point convention from checkpoint_format (GPTQModel; vLLM reads the same key): "gptq" (or none, AutoGPTQ)
 * stores zero - 1, "gptq_v2" the zero itself. Kernel-specific layouts (marlin, bitblas, ...) are refused.
 */
function gptqVersion(q: Json, file: string): 1 | 2 {
  const f = q.checkpoint_format ?? "gptq";
  if (f === "gptq") return 1;
  if (f === "gptq_v2") return 2;
  throw new CheckpointError(
    `${file}: GPTQ checkpoint_format ${JSON.stringify(f)} (only "gptq" and "gptq_v2" are supported)`,
    file,
  );
}

/** [a, b] of two positive integers (a block size), or null for anything else. */
function positivePair(v: unknown): [number, number] | null {
  return Array.isArray(v) && v.length === 2 && v.every((x) => Number.isInteger(x) && (x as number) > 0)
    ? [v[0] as number, v[1] as number]
    : null;
}

/**
 * Hugging Face / vLLM "fp8" (FineGrainedFP8, DeepSeek-V3 style): F8_E4M3 weights with weight_scale_inv per block of
 * weight_block_size [rows, cols], or without a block size weight_scale per tensor or per output channel. Only the
 * weights are used in fp8: activations stay 16-bit (activation_scheme and any input_scale are not applied).
 */
function parseFp8(q: Json, file: string): QuantSpec {
  const fmt = q.fmt ?? "e4m3";
  if (fmt !== "e4m3") throw new CheckpointError(`${file}: fp8 format ${JSON.stringify(fmt)} (only e4m3)`, file);
  const bs = q.weight_block_size;
  let block: [number, number] | null = null;
  if (bs !== undefined && bs !== null) {
    block = positivePair(bs);
    if (!block) throw new CheckpointError(`${file}: bad fp8 weight_block_size ${JSON.stringify(bs)}`, file);
  }
  return Object.freeze({ method: "fp8", bits: 8, groupSize: block ? block[1] : 0, sym: true, descAct: false, block });
}

/**
 * compressed-tensors (llm-compressor, as vLLM reads it), "float-quantized" FP8 E4M3 weights only: one config group
 * whose weights are { type: "float", num_bits: 8, strategy: tensor | channel | block (block_structure) | group
 * (group_size) }, every scale named weight_scale. Input activation settings are not applied (weights-only), and no
 * linear of the layers may be left out (`ignore` may name lm_head, and hold "re:" patterns that match none of the
 * `layers` decoder layers' linears, e.g. a multimodal tower's or an MoE router's).
 */
function parseCompressedTensors(q: Json, file: string, layers: number): QuantSpec {
  const bad = (why: string) => new CheckpointError(`${file}: compressed-tensors ${why}`, file);
  if (q.format !== "float-quantized" && q.format !== "pack-quantized" && q.format !== "int-quantized") {
    throw bad(
      `format ${
        JSON.stringify(q.format)
      } (float-quantized FP8, pack-quantized and int-quantized integers are supported)`,
    );
  }
  const groups = Object.values((q.config_groups ?? {}) as Json) as Json[];
  if (groups.length !== 1) throw bad(`with ${groups.length} config groups (one is supported)`);
  const w = (groups[0]!.weights ?? {}) as Json;
  const ignore = Array.isArray(q.ignore) ? q.ignore : [];
  const other = ignore.filter((n) => leavesLayerLinear(n, layers));
  if (other.length > 0) {
    throw bad(
      `leaves ${JSON.stringify(other)} unquantized (only lm_head, or modules outside the decoder layers, may be)`,
    );
  }
  if (q.format !== "float-quantized") return parseCtInt(q.format, w, bad);
  if (w.type !== "float" || w.num_bits !== 8 || w.dynamic === true) {
    throw bad(`weights ${JSON.stringify(w)} (only static 8-bit float, i.e. FP8 E4M3, weights are supported)`);
  }
  let block: [number, number] | null;
  switch (w.strategy) {
    case "tensor":
    case "channel":
      block = null;
      break;
    case "block":
      block = positivePair(w.block_structure);
      if (!block) throw bad(`block_structure ${JSON.stringify(w.block_structure)}`);
      break;
    case "group":
      block = Number.isInteger(w.group_size) && (w.group_size as number) > 0 ? [1, w.group_size as number] : null;
      if (!block) throw bad(`group_size ${JSON.stringify(w.group_size)}`);
      break;
    default:
      throw bad(`weight strategy ${JSON.stringify(w.strategy)}`);
  }
  return Object.freeze({
    method: "fp8",
    bits: 8,
    groupSize: block ? block[1] : 0,
    sym: true,
    descAct: false,
    block,
    scaleName: "weight_scale",
  });
}

/**
 * Whether compressed-tensors `ignore` entry e may leave a decoder layer's linear unquantized: an exact module name
 * other than lm_head, or a "re:" pattern (matched as Python's re.match does, from the start of the module name) that
 * matches a linear of one of the `layers` layers. Entries of other types, and patterns JavaScript cannot compile,
 * count as such.
 */
function leavesLayerLinear(e: unknown, layers: number): boolean {
  if (typeof e !== "string") return true;
  if (!e.startsWith("re:")) return !/(^|\.)lm_head$/.test(e);
  let re: RegExp;
  try {
    re = new RegExp(`^(?:${e.slice(3)})`);
  } catch {
    return true;
  }
  return decoderLinearModules(layers).some((n) => re.test(n));
}

/** Module names of the decoder layers' linears ("model.layers.3.mlp.down_proj"), layers 0 .. layers - 1. */
function decoderLinearModules(layers: number): string[] {
  const out: string[] = [];
  for (let l = 0; l < layers; l++) {
    const names = layerNames(l);
    for (const k of LINEAR_KEYS) out.push(names[k].slice(0, -".weight".length));
  }
  return out;
}

/**
 * compressed-tensors integer weights, packed (pack-quantized) or one per I8 (int-quantized, e.g. W8A8 checkpoints,
 * whose activation quantization is not applied: weights only): static int4 / int8, per group (group_size) or per
 * output channel.
 */
function parseCtInt(format: unknown, w: Json, bad: (why: string) => CheckpointError): QuantSpec {
  if (w.type !== "int" || (w.num_bits !== 4 && w.num_bits !== 8) || w.dynamic === true) {
    throw bad(`weights ${JSON.stringify(w)} (${format}: static 4- or 8-bit integers)`);
  }
  if (w.strategy !== "group" && w.strategy !== "channel") throw bad(`weight strategy ${JSON.stringify(w.strategy)}`);
  const G = w.strategy === "group" ? w.group_size : 0;
  if (!Number.isInteger(G) || (G as number) < 0 || (w.strategy === "group" && G === 0)) {
    throw bad(`group_size ${JSON.stringify(w.group_size)}`);
  }
  return Object.freeze({
    method: "compressed-tensors",
    bits: w.num_bits,
    groupSize: G as number,
    sym: w.symmetric !== false,
    descAct: typeof w.actorder === "string",
    ctFormat: format === "int-quantized" ? "int-quantized" : "pack-quantized",
  });
}

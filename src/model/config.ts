// config.json (Hugging Face) → ModelSpec. Parsed once; everything downstream reads the frozen spec.
import type { Architecture, ModelSpec, QuantSpec, RopeSpec } from "../core/types.ts";
import { CheckpointError } from "../core/errors.ts";
import { layerNames, LINEAR_KEYS } from "./weights.ts";

type Json = Record<string, unknown>;

const ARCHITECTURES: Record<string, Architecture> = {
  LlamaForCausalLM: "llama",
  MistralForCausalLM: "mistral",
  Qwen2ForCausalLM: "qwen2",
  Qwen3ForCausalLM: "qwen3",
};

export const SUPPORTED_ARCHITECTURES: readonly string[] = Object.keys(ARCHITECTURES);

function num(cfg: Json, key: string, file: string, fallback?: number): number {
  const v = cfg[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new CheckpointError(`${file}: missing required field "${key}"`, file);
  }
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new CheckpointError(`${file}: field "${key}" must be a number, got ${JSON.stringify(v)}`, file);
  }
  return v;
}

function posInt(cfg: Json, key: string, file: string, fallback?: number): number {
  const v = num(cfg, key, file, fallback);
  if (!Number.isInteger(v) || v <= 0) {
    throw new CheckpointError(`${file}: field "${key}" must be a positive integer, got ${v}`, file);
  }
  return v;
}

function optNum(obj: Json | undefined, key: string): number | undefined {
  const v = obj?.[key];
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function parseRope(cfg: Json, file: string, maxPositions: number): RopeSpec {
  const params = (cfg.rope_parameters ?? null) as Json | null;
  const scaling = (cfg.rope_scaling ?? null) as Json | null;
  const theta = optNum(cfg, "rope_theta") ?? optNum(params ?? undefined, "rope_theta") ?? 10000;
  // transformers 5.x folds rope_scaling into rope_parameters; 4.x keeps rope_scaling separate.
  const s: Json | null = scaling ?? params;
  const rawType = s ? (s.rope_type ?? s.type ?? "default") : "default";
  if (typeof rawType !== "string") throw new CheckpointError(`${file}: rope type must be a string`, file);
  const type = rawType === "default" ? "default" : rawType;
  if (type !== "default" && type !== "linear" && type !== "llama3" && type !== "yarn") {
    throw new CheckpointError(
      `${file}: unsupported rope scaling type "${type}" (supported: default, linear, llama3, yarn)`,
      file,
    );
  }
  const sj = s ?? undefined;
  const factor = type === "default" ? 1 : optNum(sj, "factor");
  if (factor === undefined || factor <= 0) {
    throw new CheckpointError(`${file}: rope scaling "${type}" needs a positive "factor"`, file);
  }
  const originalMax = optNum(sj, "original_max_position_embeddings") ?? maxPositions;
  // yarn's default attention factor (mscale) is 0.1 ln(factor) + 1, as in the YaRN paper and transformers.
  const yarnScale = (f: number, m = 1) => (f <= 1 ? 1 : 0.1 * m * Math.log(f) + 1);
  let attentionFactor = optNum(sj, "attention_factor") ?? 1;
  if (type === "yarn" && optNum(sj, "attention_factor") === undefined) {
    const m = optNum(sj, "mscale"), mAll = optNum(sj, "mscale_all_dim");
    attentionFactor = m && mAll ? yarnScale(factor, m) / yarnScale(factor, mAll) : yarnScale(factor);
  }
  return Object.freeze({
    type,
    theta,
    factor,
    lowFreqFactor: optNum(sj, "low_freq_factor") ?? 1,
    highFreqFactor: optNum(sj, "high_freq_factor") ?? 4,
    originalMaxPositions: originalMax,
    betaFast: optNum(sj, "beta_fast") ?? 32,
    betaSlow: optNum(sj, "beta_slow") ?? 1,
    attentionFactor,
  });
}

function parseQuant(cfg: Json, file: string): QuantSpec | null {
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
  const groupSize = (q.group_size ?? q.q_group_size ?? 128) as number;
  return Object.freeze({
    method,
    bits,
    groupSize,
    sym: method === "gptq" ? q.sym !== false : q.zero_point === false,
    descAct: q.desc_act === true,
  });
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
 * Whether compressed-tensors `ignore` entry e may leave a decoder layer's linear unquantized: an exact module name other
 * than lm_head, or a "re:" pattern (matched as Python's re.match does, from the start of the module name) that matches
 * a linear of one of the `layers` layers. Entries of other types, and patterns JavaScript cannot compile, count as such.
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
 * compressed-tensors integer weights, packed (pack-quantized) or one per I8 (int-quantized, e.g. W8A8 checkpoints, whose
 * activation quantization is not applied: weights only): static int4 / int8, per group (group_size) or per output
 * channel.
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

function eosList(v: unknown): number[] {
  if (typeof v === "number") return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number");
  return [];
}

/** Parses config.json content. `file` is used in error messages. */
export function parseModelConfig(cfg: Json, file = "config.json"): ModelSpec {
  const archs = cfg.architectures;
  const hfArchitecture = Array.isArray(archs) && typeof archs[0] === "string" ? archs[0] : undefined;
  if (!hfArchitecture) throw new CheckpointError(`${file}: missing "architectures"`, file);
  const architecture = ARCHITECTURES[hfArchitecture];
  if (!architecture) {
    throw new CheckpointError(
      `${file}: architecture ${hfArchitecture} is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(", ")})`,
      file,
    );
  }
  const hiddenSize = posInt(cfg, "hidden_size", file);
  const numHeads = posInt(cfg, "num_attention_heads", file);
  const numKvHeads = posInt(cfg, "num_key_value_heads", file, numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new CheckpointError(`${file}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads`);
  }
  const headDim = cfg.head_dim == null ? hiddenSize / numHeads : posInt(cfg, "head_dim", file);
  if (!Number.isInteger(headDim)) throw new CheckpointError(`${file}: hidden_size not divisible by heads`, file);
  const maxPositions = posInt(cfg, "max_position_embeddings", file, 2048);
  const dt = (cfg.torch_dtype ?? cfg.dtype ?? "float32") as string;
  const checkpointDType = dt === "bfloat16" ? "bf16" : dt === "float16" ? "f16" : "f32";
  const sw = cfg.sliding_window;
  const useSw = architecture === "mistral" || cfg.use_sliding_window === true;
  return Object.freeze({
    architecture,
    hfArchitecture,
    hiddenSize,
    numLayers: posInt(cfg, "num_hidden_layers", file),
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: posInt(cfg, "intermediate_size", file),
    vocabSize: posInt(cfg, "vocab_size", file),
    maxPositions,
    rmsEps: num(cfg, "rms_norm_eps", file, 1e-6),
    rope: parseRope(cfg, file, maxPositions),
    tieEmbeddings: cfg.tie_word_embeddings === true,
    attentionBias: architecture === "qwen2" || cfg.attention_bias === true,
    outputBias: architecture !== "qwen2" && cfg.attention_bias === true,
    mlpBias: cfg.mlp_bias === true,
    qkNorm: architecture === "qwen3",
    slidingWindow: useSw && typeof sw === "number" && sw > 0 && sw < maxPositions ? sw : null,
    bosTokenId: typeof cfg.bos_token_id === "number" ? cfg.bos_token_id : null,
    eosTokenIds: Object.freeze(eosList(cfg.eos_token_id)),
    quantization: parseQuant(cfg, file),
    checkpointDType,
  });
}

/** Reads and parses DIR/config.json. */
export async function readModelConfig(dir: string): Promise<ModelSpec> {
  const file = `${dir}/config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new CheckpointError(`${file}: cannot read (${(e as Error).message})`, file);
  }
  let cfg: unknown;
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON (${(e as Error).message})`, file);
  }
  if (typeof cfg !== "object" || cfg === null || Array.isArray(cfg)) {
    throw new CheckpointError(`${file}: expected a JSON object`, file);
  }
  return parseModelConfig(cfg as Json, file);
}

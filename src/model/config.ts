// config.json (Hugging Face) → ModelSpec. Parsed once; everything downstream reads the frozen spec.
import type { Architecture, ModelSpec, RopeSpec } from "../core/types.ts";
import { CheckpointError } from "../core/errors.ts";
import { parseQuantConfig } from "./quant_config.ts";

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
    quantization: parseQuantConfig(cfg, file),
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

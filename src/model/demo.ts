// The built-in demo model: a tiny Llama with deterministic random weights and a byte-level tokenizer, so the
// whole pipeline (server, scheduler, backends) runs on a fresh machine with no checkpoint. It says nothing useful.
import type { ModelSpec } from "../core/types.ts";
import { parseModelConfig } from "./config.ts";
import { MemoryTensorSource } from "./memory_source.ts";
import { expectedTensors } from "./weights.ts";
import { mulberry32 } from "../core/prng.ts";

export const DEMO_MODEL_ID = "demo-tiny-llama-random";
export const DEMO_MODEL_DESCRIPTION =
  "Built-in demo: a tiny Llama with deterministic RANDOM weights and a byte-level tokenizer. Its output is noise; " +
  "pass --model to serve a real checkpoint.";

export function demoConfig(vocabSize: number, eosIds: number[], bosId: number): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    hidden_size: 64,
    intermediate_size: 160,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
    vocab_size: vocabSize,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: bosId,
    eos_token_id: eosIds,
    torch_dtype: "float32",
  };
}

/** Builds the demo model's spec and weights (about 0.1 M parameters, uniform in ±0.5/sqrt(fan_in), norms near 1). */
export function buildDemoModel(
  vocabSize: number,
  eosIds: number[],
  bosId: number,
): { spec: ModelSpec; weights: MemoryTensorSource } {
  const spec = parseModelConfig(demoConfig(vocabSize, eosIds, bosId), "demo config");
  const rand = mulberry32(0x5eed);
  const weights = new MemoryTensorSource(DEMO_MODEL_ID);
  for (const { name, shape } of expectedTensors(spec)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (shape.length === 1) { for (let i = 0; i < n; i++) data[i] = 0.8 + 0.4 * rand(); }
    else {
      const amp = name.includes("embed") ? 1 : 1.5 / Math.sqrt(shape[1]!);
      for (let i = 0; i < n; i++) data[i] = (rand() * 2 - 1) * amp;
    }
    weights.addF32(name, shape, data);
  }
  return { spec, weights };
}

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

const CARRIER = 3; // value of hidden dimension 0 in every embedding row
const PREFER = 2; // LM-head weight on dimension 0: +PREFER for preferred ids, -PREFER otherwise

/** Wires the constant carrier in dimension 0 (see buildDemoModel). Matrices are [out, in] row-major. */
function steer(name: string, shape: readonly number[], data: Float32Array, preferred: ReadonlySet<number>): void {
  const [rows, cols] = shape as [number, number];
  if (name.endsWith("embed_tokens.weight")) { for (let r = 0; r < rows; r++) data[r * cols] = CARRIER; }
  else if (name.endsWith("lm_head.weight")) {
    for (let r = 0; r < rows; r++) data[r * cols] = preferred.has(r) ? PREFER : -PREFER;
  } else if (name.endsWith("o_proj.weight") || name.endsWith("down_proj.weight")) data.fill(0, 0, cols); // row 0
}

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

/**
 * Builds the demo model's spec and weights (about 0.1 M parameters, uniform in ±1.5/sqrt(fan_in), norms near 1).
 * `preferred` ids (the byte tokenizer's printable ASCII) get a constant logit bonus so the demo prints readable
 * characters: hidden dimension 0 carries a constant (set by the embedding, never written by o_proj or down_proj),
 * and the LM head reads it with +PREFER for preferred ids and -PREFER for the rest. Everything else is random.
 */
export function buildDemoModel(
  vocabSize: number,
  eosIds: number[],
  bosId: number,
  preferred: ReadonlySet<number> = new Set(),
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
    if (preferred.size > 0) steer(name, shape, data, preferred);
    weights.addF32(name, shape, data);
  }
  return { spec, weights };
}

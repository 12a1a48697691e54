// Synthetic models (`--model synthetic:llama3-8b`): real model shapes with random, non-zero weights, for
// performance work without checkpoints. The weights are a pure function of (seed, tensor name, element index), so a
// GPU backend can generate them directly on the device (see `SyntheticTensorSource.synthetic`) and the host path
// (`f32()` / `bytes()`) gives the same values for tests.
import type { ModelSpec, SafetensorsDType, TensorInfo, TensorSource } from "../core/types.ts";
import { CheckpointError, UserError } from "../core/errors.ts";
import { parseModelConfig } from "./config.ts";
import { fromF32 } from "./dtype.ts";
import { expectedTensors } from "./weights.ts";
import { DTYPE_BYTES } from "./safetensors.ts";

const SHAPES: Record<string, Record<string, unknown>> = {
  "llama3-8b": {
    architectures: ["LlamaForCausalLM"],
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    vocab_size: 128256,
    max_position_embeddings: 8192,
    rope_theta: 500000,
    rms_norm_eps: 1e-5,
    bos_token_id: 128000,
    eos_token_id: 128001,
    torch_dtype: "bfloat16",
  },
  "llama2-7b": {
    architectures: ["LlamaForCausalLM"],
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    vocab_size: 32000,
    max_position_embeddings: 4096,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float16",
  },
  "qwen2.5-7b": {
    architectures: ["Qwen2ForCausalLM"],
    hidden_size: 3584,
    intermediate_size: 18944,
    num_hidden_layers: 28,
    num_attention_heads: 28,
    num_key_value_heads: 4,
    vocab_size: 152064,
    max_position_embeddings: 32768,
    rope_theta: 1000000,
    rms_norm_eps: 1e-6,
    bos_token_id: 151643,
    eos_token_id: 151645,
    torch_dtype: "bfloat16",
  },
  tiny: {
    architectures: ["LlamaForCausalLM"],
    hidden_size: 128,
    intermediate_size: 344,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 1000,
    max_position_embeddings: 2048,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float32",
  },
};

export const SYNTHETIC_MODELS: readonly string[] = Object.keys(SHAPES);
export const SYNTHETIC_PREFIX = "synthetic:";

export function isSynthetic(model: string): boolean {
  return model.startsWith(SYNTHETIC_PREFIX);
}

/** FNV-1a of a tensor name: the per-tensor stream id. */
export function tensorStream(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * Element i of a synthetic tensor: uniform in [-amp, amp], never zero. A 32-bit integer hash of
 * (seed, stream, i) that a GPU kernel reproduces exactly in u32 arithmetic.
 */
export function syntheticValue(seed: number, stream: number, i: number, amp: number): number {
  let x = (Math.imul(i, 0x9e3779b1) ^ stream ^ Math.imul(seed, 0x85ebca6b)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  // 24 random bits mapped to (-1, 1) excluding 0: (2k + 1) / 2^24 - 1
  return (((x >>> 8) * 2 + 1) / 16777216 - 1) * amp;
}

export interface SyntheticFill {
  readonly seed: number;
  /** Amplitude of the uniform distribution of each tensor (norm weights are 1 ± amp around 1: `offset`). */
  amplitude(name: string): { amp: number; offset: number };
}

export class SyntheticTensorSource implements TensorSource {
  readonly #shapes = new Map<string, readonly number[]>();
  readonly synthetic: SyntheticFill;

  constructor(spec: ModelSpec, readonly dtype: SafetensorsDType, seed = 1) {
    for (const t of expectedTensors(spec)) this.#shapes.set(t.name, t.shape);
    this.synthetic = {
      seed,
      amplitude: (name) => {
        const shape = this.#shapes.get(name)!;
        if (shape.length === 1) return { amp: 0.1, offset: 1 };
        return { amp: name.includes("embed") ? 0.5 : 1 / Math.sqrt(shape[1]!), offset: 0 };
      },
    };
  }

  names(): string[] {
    return [...this.#shapes.keys()];
  }

  has(name: string): boolean {
    return this.#shapes.has(name);
  }

  info(name: string): TensorInfo {
    const shape = this.#shapes.get(name);
    if (!shape) throw new CheckpointError(`missing tensor "${name}" (not in the synthetic model)`, "synthetic", name);
    const n = shape.reduce((a, b) => a * b, 1);
    return { name, dtype: this.dtype, shape, file: "synthetic", byteLength: n * DTYPE_BYTES[this.dtype] };
  }

  f32(name: string): Promise<Float32Array> {
    const { shape } = this.info(name);
    const n = shape.reduce((a, b) => a * b, 1);
    const { amp, offset } = this.synthetic.amplitude(name);
    const stream = tensorStream(name);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = offset + syntheticValue(this.synthetic.seed, stream, i, amp);
    return Promise.resolve(out);
  }

  async bytes(name: string): Promise<Uint8Array> {
    const dt = this.dtype === "F16" || this.dtype === "BF16" ? this.dtype : "F32";
    return fromF32(await this.f32(name), dt);
  }

  close(): void {}
}

/** `synthetic:NAME[:dtype]` → spec and a synthetic weight source. */
export function buildSyntheticModel(model: string): { spec: ModelSpec; weights: SyntheticTensorSource } {
  const [name, dt] = model.slice(SYNTHETIC_PREFIX.length).split(":");
  const cfg = SHAPES[name ?? ""];
  if (!cfg) {
    throw new UserError(
      `unknown synthetic model "${name}" (choose ${SYNTHETIC_MODELS.map((m) => SYNTHETIC_PREFIX + m).join(", ")})`,
    );
  }
  const spec = parseModelConfig(cfg, `${model} config`);
  const dtype: SafetensorsDType = dt === "f16" ? "F16" : dt === "f32" ? "F32" : dt === "bf16" ? "BF16" : (
    spec.checkpointDType === "bf16" ? "BF16" : spec.checkpointDType === "f16" ? "F16" : "F32"
  );
  return { spec, weights: new SyntheticTensorSource(spec, dtype) };
}

// Shared CLI pieces: model + backend loading with a progress bar, id lists, precision flags.
import {
  type Backend,
  isQuantizedWeight,
  type KvDType,
  type ModelSpec,
  type Precision,
  quantWeight,
  type TensorSource,
  type WeightDType,
} from "../core/types.ts";
import { UserError } from "../core/errors.ts";
import { ProgressBar } from "../core/progress.ts";
import { createBackend } from "../backends/select.ts";
import { openCheckpoint } from "../model/checkpoint.ts";
import { resolveModelPath } from "../model/resolve.ts";
import { buildDemoModel, DEMO_MODEL_ID } from "../model/demo.ts";
import { buildSyntheticModel, isSynthetic } from "../model/synthetic.ts";
import type { TextTokenizer } from "../tokenizer/mod.ts";
import { BYTE_IM_END_ID, BYTE_OFFSET, createByteTokenizer, loadTokenizer } from "../tokenizer/mod.ts";

/** The demo model leans towards printable ASCII, newlines and <|im_end|>, so its noise is readable. */
const DEMO_PREFERRED_IDS: ReadonlySet<number> = new Set([
  BYTE_OFFSET + 0x0a,
  ...Array.from({ length: 0x7f - 0x20 }, (_, i) => BYTE_OFFSET + 0x20 + i),
  BYTE_IM_END_ID,
]);

export interface LoadedModel {
  /** The id /v1/models reports. */
  readonly id: string;
  readonly spec: ModelSpec;
  readonly backend: Backend;
  readonly tokenizer: TextTokenizer | null;
  readonly precision: Precision;
  readonly isDemo: boolean;
}

export const MODEL_FLAGS_HELP =
  `  --model DIR|ORG/NAME   Hugging Face model folder, a Hub id in the local HF cache, or synthetic:NAME
                         (llama3-8b, llama2-7b, qwen2.5-7b, tiny; random weights); default: built-in demo
  --backend NAME         auto (default), cuda, webgpu or reference
  --dtype D              weight precision: auto (the checkpoint's), f32, f16, bf16, int8, int4, fp8 (e4m3)
                         (int8/int4 on a float checkpoint: RTN-quantized at load, see --group-size)
  --group-size N         quantization group along the input dimension (default 128, or the checkpoint's)
  --kv-dtype D           KV cache precision: auto, f32, f16, bf16, int8, int4 (default auto)
  --activations A        matmul inputs on the CUDA backend: half (default: the 16-bit weight dtype, as vLLM and
                         LMDeploy run) or f32 (closer to an f32 reference; GEMMs do twice the tensor-core work)
  --quiet                no progress bar`;

export const MODEL_FLAG_OPTIONS = {
  model: { type: "string" },
  backend: { type: "string", default: "auto" },
  dtype: { type: "string", default: "auto" },
  "kv-dtype": { type: "string", default: "auto" },
  "group-size": { type: "string" },
  activations: { type: "string", default: "half" },
  quiet: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

export function parseIds(text: string | undefined, flag = "--ids"): number[] {
  if (!text) throw new UserError(`${flag} is required (comma-separated token ids, e.g. ${flag} 1,461,401)`);
  const ids = text.split(",").map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  if (ids.length === 0 || ids.some((x) => !Number.isInteger(x) || x < 0)) {
    throw new UserError(`${flag} must be comma-separated non-negative integers, got "${text}"`);
  }
  return ids;
}

function choosePrecision(
  backend: Backend,
  spec: ModelSpec,
  dtype: string,
  kvDtype: string,
  group?: string,
  activations = "half",
): Precision {
  if (activations !== "half" && activations !== "f32") {
    throw new UserError(`--activations must be half or f32, got ${activations}`);
  }
  const all: readonly string[] = ["f32", "f16", "bf16", "int8", "int4"];
  const weights = [...all, "fp8"];
  if (dtype !== "auto" && !weights.includes(dtype)) throw new UserError(`--dtype must be auto, ${weights.join(", ")}`);
  if (kvDtype !== "auto" && !all.includes(kvDtype)) throw new UserError(`--kv-dtype must be auto, ${all.join(", ")}`);
  const q = spec.quantization;
  const fromCheckpoint = q ? quantWeight(q) : spec.checkpointDType;
  let weight = (dtype === "auto" ? fromCheckpoint : dtype) as WeightDType;
  if (!backend.supports.weight.includes(weight)) {
    if (dtype !== "auto") throw new UserError(`backend ${backend.name} does not support --dtype ${dtype}`);
    if (q) throw new UserError(`backend ${backend.name} cannot run ${q.method} ${quantWeight(q)} weights`);
    weight = backend.supports.weight[0]!;
  }
  // 0 (fp8 per-tensor / per-channel scales) or -1 (GPTQ per-channel): one group per row, read from the checkpoint.
  let groupSize = q && q.groupSize > 0 ? q.groupSize : undefined;
  if (group !== undefined) {
    groupSize = Number(group);
    if (!Number.isInteger(groupSize) || groupSize < 1) throw new UserError(`--group-size must be a positive integer`);
  }
  const quantized = isQuantizedWeight(weight);
  let kv = (kvDtype === "auto" ? (weight === "f32" ? "f32" : "f16") : kvDtype) as KvDType;
  if (!backend.supports.kv.includes(kv)) {
    if (kvDtype !== "auto") throw new UserError(`backend ${backend.name} does not support --kv-dtype ${kvDtype}`);
    kv = backend.supports.kv[0]!;
  }
  return {
    weight,
    ...(quantized ? { group: groupSize ?? 128 } : {}),
    kv,
    // Matmul input precision (CUDA): 16-bit unless the weights are f32 or --activations f32 asks for it.
    compute: weight === "f32" || activations === "f32" ? "f32" : "f16",
  };
}

/** --model (a folder, a Hub id, synthetic:NAME) or the built-in demo: its spec, weights and tokenizer. */
async function openModel(model: string | undefined): Promise<{
  id: string;
  spec: ModelSpec;
  weights: TensorSource;
  tokenizer: TextTokenizer | null;
  isDemo: boolean;
  verb: string;
}> {
  if (!model) {
    const tokenizer = createByteTokenizer();
    const stops = [...tokenizer.stopTokenIds];
    const { spec, weights } = buildDemoModel(tokenizer.vocabSize, stops, tokenizer.bosTokenId ?? 0, DEMO_PREFERRED_IDS);
    return { id: DEMO_MODEL_ID, spec, weights, tokenizer, isDemo: true, verb: "building" };
  }
  if (isSynthetic(model)) {
    const { spec, weights } = buildSyntheticModel(model);
    return { id: model, spec, weights, tokenizer: null, isDemo: false, verb: "building" };
  }
  const dir = await resolveModelPath(model);
  const ckpt = await openCheckpoint(dir);
  const tokenizer = await loadTokenizer(dir);
  return { id: model, spec: ckpt.spec, weights: ckpt.weights, tokenizer, isDemo: false, verb: "loading" };
}

/** Resolves --model (or the demo model), starts the backend and loads the weights with a progress bar. */
export async function loadModel(flags: {
  model?: string;
  backend: string;
  dtype: string;
  "kv-dtype": string;
  "group-size"?: string;
  activations?: string;
  quiet: boolean;
}): Promise<LoadedModel> {
  const backend = await createBackend(flags.backend);
  try {
    const m = await openModel(flags.model);
    const precision = choosePrecision(
      backend,
      m.spec,
      flags.dtype,
      flags["kv-dtype"],
      flags["group-size"],
      flags.activations,
    );
    let bar: ProgressBar | null = null;
    try {
      await backend.load(m.spec, m.weights, precision, (done, total, label) => {
        bar ??= new ProgressBar(`${m.verb} ${m.id} on ${backend.name}`, total, "bytes", flags.quiet || m.isDemo);
        bar.update(done, label);
      });
    } finally {
      m.weights.close();
    }
    (bar as ProgressBar | null)?.done();
    return { id: m.id, spec: m.spec, backend, tokenizer: m.tokenizer, precision, isDemo: m.isDemo };
  } catch (e) {
    await backend[Symbol.asyncDispose]();
    throw e;
  }
}

// `eval-ppl`: perplexity over a token-id file, and top-1 agreement / mean KL against an f32 reference run.
import { parseArgs } from "node:util";
import { type KvDType, type Precision, quantWeight, type WeightDType } from "../core/types.ts";
import { UserError } from "../core/errors.ts";
import { createBackend } from "../backends/select.ts";
import { ReferenceBackend } from "../backends/reference/backend.ts";
import { openCheckpoint } from "../model/checkpoint.ts";
import { readModelConfig } from "../model/config.ts";
import { readTokenFile } from "../quant/calib.ts";
import { compareLogits, windowedLogits } from "../quant/eval.ts";
import type { Backend, ModelSpec } from "../core/types.ts";

export const EVAL_PPL_HELP = `Usage: main.ts eval-ppl --model DIR --ids-file F [options]

Prints JSON: perplexity over the ids and, against an f32 reference-backend run, top-1 agreement and mean
KL(ref || test) of the next-token distributions over every position.
  --model DIR            model folder (float, AWQ, GPTQ, fp8 or compressed-tensors)
  --ids-file F           token ids, one per line or comma-separated
  --backend NAME         backend under test: reference (default), cuda, webgpu, auto
  --dtype D              weights: auto (default), f32, f16, bf16, fp8 (e4m3, per row and --group-size)
  --kv-dtype D           KV cache: f32 (default), f16, bf16, int8, int4
  --w-bits N             quantize a float checkpoint at load with RTN: 4 or 8
  --group-size G         group size for --w-bits (default 128)
  --reference-model DIR  model of the reference run (default: --model, dequantized, in f32)
  --no-reference         skip the reference run
  --window N             score in independent windows of N tokens (default: the model's context, at most 512)`;

function precisionFor(spec: ModelSpec, f: Record<string, string | boolean | undefined>): Precision {
  const kv = (f["kv-dtype"] as string) ?? "f32";
  if (!["f32", "f16", "bf16", "int8", "int4"].includes(kv)) throw new UserError(`bad --kv-dtype ${kv}`);
  let weight: WeightDType;
  let group: number | undefined;
  if (f["w-bits"] !== undefined) {
    const bits = Number(f["w-bits"]);
    if (bits !== 4 && bits !== 8) throw new UserError(`--w-bits must be 4 or 8`);
    weight = bits === 4 ? "int4" : "int8";
    group = Number(f["group-size"] ?? "128");
    if (!Number.isInteger(group) || group <= 0) throw new UserError("--group-size must be a positive integer");
  } else if (spec.quantization) weight = quantWeight(spec.quantization);
  else {
    const d = (f.dtype as string) ?? "auto";
    if (!["auto", "f32", "f16", "bf16", "fp8"].includes(d)) throw new UserError(`bad --dtype ${d}`);
    weight = (d === "auto" ? spec.checkpointDType : d) as WeightDType;
    if (weight === "fp8") {
      group = Number(f["group-size"] ?? "128");
      if (!Number.isInteger(group) || group <= 0) throw new UserError("--group-size must be a positive integer");
    }
  }
  return { weight, group, kv: kv as KvDType, compute: weight === "f32" ? "f32" : "f16" };
}

async function loadInto(backend: Backend, dir: string, precision: Precision | null): Promise<ModelSpec> {
  const ckpt = await openCheckpoint(dir);
  try {
    const p = precision ?? { weight: "f32", kv: "f32", compute: "f32" };
    if (!backend.supports.weight.includes(p.weight) || !backend.supports.kv.includes(p.kv)) {
      throw new UserError(`backend ${backend.name} does not support weights ${p.weight} with KV ${p.kv}`);
    }
    await backend.load(ckpt.spec, ckpt.weights, p);
  } finally {
    ckpt.weights.close();
  }
  return ckpt.spec;
}

export async function evalPplCommand(args: string[]): Promise<void> {
  const { values: f } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      "ids-file": { type: "string" },
      backend: { type: "string", default: "reference" },
      dtype: { type: "string", default: "auto" },
      "kv-dtype": { type: "string", default: "f32" },
      "w-bits": { type: "string" },
      "group-size": { type: "string" },
      "reference-model": { type: "string" },
      "no-reference": { type: "boolean", default: false },
      window: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (f.help) return console.log(EVAL_PPL_HELP);
  if (!f.model || !f["ids-file"]) throw new UserError("--model and --ids-file are required");
  const spec0 = await readModelConfig(f.model);
  const precision = precisionFor(spec0, f);
  const ids = await readTokenFile(f["ids-file"], null, spec0.vocabSize);
  const window = f.window ? Number(f.window) : Math.min(spec0.maxPositions, 512);
  if (!Number.isInteger(window) || window < 2 || window > spec0.maxPositions) {
    throw new UserError(`--window must be an integer in [2, ${spec0.maxPositions}]`);
  }
  let test: Float32Array;
  {
    await using backend = await createBackend(f.backend);
    await loadInto(backend, f.model, precision);
    test = await windowedLogits(backend, ids, spec0.vocabSize, window);
  }
  let ref: Float32Array | null = null;
  const refModel = f["reference-model"] ?? f.model;
  if (!f["no-reference"]) {
    await using rb = new ReferenceBackend({});
    const rspec = await loadInto(rb, refModel, null);
    if (rspec.vocabSize !== spec0.vocabSize) throw new UserError("the reference model has another vocabulary size");
    ref = await windowedLogits(rb, ids, spec0.vocabSize, window);
  }
  const r = compareLogits(ids, spec0.vocabSize, window, test, ref);
  console.log(JSON.stringify({
    model: f.model,
    reference_model: ref ? refModel : null,
    backend: f.backend,
    precision,
    window,
    tokens: ids.length,
    ...r,
  }));
}

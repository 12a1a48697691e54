// `generate`: one prompt (token ids or text) → generated ids and text.
import { parseArgs } from "node:util";
import { UserError } from "../core/errors.ts";
import { generateSequence } from "../engine/sequential.ts";
import { defaultSamplingParams, validateSamplingParams } from "../sampling/params.ts";
import { loadModel, MODEL_FLAG_OPTIONS, MODEL_FLAGS_HELP, parseIds } from "./common.ts";

export const GENERATE_HELP = `Usage: main.ts generate [--model DIR] (--ids 1,2,3 | --prompt TEXT) [options]

Generates a continuation of one prompt.
${MODEL_FLAGS_HELP}
  --ids LIST             prompt as comma-separated token ids
  --prompt TEXT          prompt as text (needs a tokenizer)
  --max-tokens N         tokens to generate (default 64)
  --temperature T        0 for greedy (default 0)
  --top-p P, --top-k K, --min-p P, --seed N
  --ignore-eos           do not stop at end-of-sequence tokens
  --json                 print {"ids": [...], "text": "..."} (ids: the generated ids only)`;

function numFlag(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UserError(`--${name} must be a number, got "${v}"`);
  return n;
}

export async function generateCommand(args: string[]): Promise<void> {
  const { values: f } = parseArgs({
    args,
    options: {
      ...MODEL_FLAG_OPTIONS,
      ids: { type: "string" },
      prompt: { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      "top-p": { type: "string" },
      "top-k": { type: "string" },
      "min-p": { type: "string" },
      seed: { type: "string" },
      "ignore-eos": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  if (f.help) return console.log(GENERATE_HELP);
  const maxTokens = numFlag(f["max-tokens"], "max-tokens", 64);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new UserError("--max-tokens must be a positive integer");
  const sampling = {
    ...defaultSamplingParams(),
    temperature: numFlag(f.temperature, "temperature", 0),
    topP: numFlag(f["top-p"], "top-p", 1),
    topK: numFlag(f["top-k"], "top-k", 0),
    minP: numFlag(f["min-p"], "min-p", 0),
    seed: f.seed === undefined ? null : numFlag(f.seed, "seed", 0),
  };
  const bad = validateSamplingParams(sampling);
  if (bad) throw new UserError(bad);
  if ((f.ids === undefined) === (f.prompt === undefined)) throw new UserError("give exactly one of --ids or --prompt");
  const m = await loadModel(f);
  await using _backend = m.backend;
  let prompt: number[];
  if (f.ids !== undefined) prompt = parseIds(f.ids);
  else {
    if (!m.tokenizer) throw new UserError("--prompt needs a model with a tokenizer; this one has none (use --ids)");
    prompt = m.tokenizer.encode(f.prompt!, { addSpecialTokens: true });
  }
  const bad2 = prompt.find((id) => id >= m.spec.vocabSize);
  if (bad2 !== undefined) throw new UserError(`token id ${bad2} is outside the vocabulary (size ${m.spec.vocabSize})`);
  const stopIds = f["ignore-eos"] ? [] : [...(m.tokenizer?.stopTokenIds ?? m.spec.eosTokenIds)];
  const detok = m.tokenizer?.createDetokenizer({ skipSpecialTokens: true });
  const enc = new TextEncoder();
  const out = await generateSequence(m.backend, prompt, sampling, {
    maxTokens,
    stopIds,
    maxPositions: m.spec.maxPositions,
    onToken: f.json || !detok ? undefined : (id) => Deno.stdout.writeSync(enc.encode(detok.push(id))),
  });
  const text = m.tokenizer ? m.tokenizer.decode(out.ids, { skipSpecialTokens: true }) : "";
  if (f.json) console.log(JSON.stringify({ ids: out.ids, text, finish_reason: out.finishReason }));
  else if (detok) console.log(detok.flush());
  else console.log(out.ids.join(","));
}

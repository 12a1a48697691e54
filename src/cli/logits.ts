// `logits`: the logits of every position of a prompt, as JSON.
import { parseArgs } from "node:util";
import { UserError } from "../core/errors.ts";
import { sequenceLogits } from "../engine/sequential.ts";
import { defaultSamplingParams } from "../sampling/params.ts";
import { loadModel, MODEL_FLAG_OPTIONS, MODEL_FLAGS_HELP, parseIds } from "./common.ts";

export const LOGITS_HELP = `Usage: main.ts logits --model DIR --ids 1,461,401 [options]

Prints {"logits": [[...], ...]}: one row of vocab_size floats per input position.
${MODEL_FLAGS_HELP}
  --ids LIST             comma-separated token ids`;

export async function logitsCommand(args: string[]): Promise<void> {
  const { values: f } = parseArgs({ args, options: { ...MODEL_FLAG_OPTIONS, ids: { type: "string" } } });
  if (f.help) return console.log(LOGITS_HELP);
  const ids = parseIds(f.ids);
  const m = await loadModel(f);
  await using _backend = m.backend;
  const bad = ids.find((id) => id >= m.spec.vocabSize);
  if (bad !== undefined) throw new UserError(`token id ${bad} is outside the vocabulary (size ${m.spec.vocabSize})`);
  if (ids.length > m.spec.maxPositions) {
    throw new UserError(`${ids.length} ids exceed the context ${m.spec.maxPositions}`);
  }
  const logits = await sequenceLogits(m.backend, ids, { ...defaultSamplingParams(), temperature: 0 });
  const v = m.spec.vocabSize;
  const rows = Array.from({ length: ids.length }, (_, i) => Array.from(logits.subarray(i * v, (i + 1) * v)));
  console.log(JSON.stringify({ model: m.id, backend: m.backend.name, ids, logits: rows }));
}

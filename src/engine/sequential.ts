// Runs one sequence through a backend without the scheduler: contiguous blocks, one prefill step, then decode.
// Used by the `logits` and `generate` commands, where a single prompt needs no batching.
import type { Backend, SampledLogprobs, SamplingParams, StepInputs } from "../core/types.ts";

export interface SequentialOptions {
  readonly blockSize?: number;
}

function stepFor(
  ids: ArrayLike<number>,
  start: number,
  blockSize: number,
  table: Int32Array,
  sample: boolean,
  sampling: StepInputs["sampling"][number],
  allLogits: boolean,
): StepInputs {
  const n = ids.length;
  const tokens = Int32Array.from(ids);
  const positions = new Int32Array(n);
  const slots = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const p = start + i;
    positions[i] = p;
    slots[i] = table[Math.floor(p / blockSize)]! * blockSize + (p % blockSize);
  }
  return {
    tokens,
    positions,
    queryStarts: Int32Array.of(0, n),
    contextLens: Int32Array.of(start + n),
    blockTables: table,
    maxBlocksPerSeq: table.length,
    blockSize,
    slots,
    sample: [sample],
    sampling: [sampling],
    allLogits,
  };
}

function prepare(backend: Backend, total: number, blockSize: number): Int32Array {
  const blocks = Math.ceil(total / blockSize);
  backend.allocateKv(blocks, blockSize);
  return Int32Array.from({ length: blocks }, (_, i) => i);
}

/** Logits of every position of `ids`: [ids.length, vocab] f32. */
export async function sequenceLogits(
  backend: Backend,
  ids: readonly number[],
  sampling: SamplingParams,
  opts: SequentialOptions = {},
): Promise<Float32Array> {
  const bs = opts.blockSize ?? 16;
  const table = prepare(backend, ids.length, bs);
  const state = { params: sampling, promptIds: ids, outputIds: [], fallbackSeed: 0 };
  const res = await backend.forward(stepFor(ids, 0, bs, table, true, state, true));
  if (!res.logits) throw new Error(`${backend.name} backend returned no logits`);
  return res.logits;
}

export interface GenerateResult {
  readonly ids: number[];
  readonly logprobs: (SampledLogprobs | null)[];
  readonly finishReason: "stop" | "length";
}

/** Generates up to maxTokens ids after `prompt`, stopping at a stop id (which is included, as OpenAI does not). */
export async function generateSequence(
  backend: Backend,
  prompt: readonly number[],
  sampling: SamplingParams,
  o: {
    maxTokens: number;
    stopIds?: readonly number[];
    seed?: number;
    maxPositions: number;
    onToken?: (id: number) => void;
  } & SequentialOptions,
): Promise<GenerateResult> {
  const bs = o.blockSize ?? 16;
  const total = Math.min(prompt.length + o.maxTokens, o.maxPositions);
  if (prompt.length === 0) throw new Error("the prompt is empty");
  if (prompt.length >= o.maxPositions) {
    throw new Error(`the prompt has ${prompt.length} tokens; the model's context is ${o.maxPositions}`);
  }
  const table = prepare(backend, total, bs);
  const out: number[] = [];
  const logprobs: (SampledLogprobs | null)[] = [];
  const stop = new Set(o.stopIds ?? []);
  const state = { params: sampling, promptIds: prompt, outputIds: out, fallbackSeed: o.seed ?? 0 };
  let next: readonly number[] = prompt;
  let pos = 0;
  while (out.length < o.maxTokens && pos + next.length <= total) {
    const res = await backend.forward(stepFor(next, pos, bs, table, true, state, false));
    pos += next.length;
    const id = res.tokens[0]!;
    out.push(id);
    logprobs.push(res.logprobs[0] ?? null);
    o.onToken?.(id);
    if (stop.has(id)) return { ids: out, logprobs, finishReason: "stop" };
    next = [id];
  }
  return { ids: out, logprobs, finishReason: "length" };
}

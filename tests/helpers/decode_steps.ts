// Step inputs for the multi-step decode tests (tests/*_multistep_test.ts): B sequences, sequence s owning blocks
// [4s, 4s + 4) of 16 slots.
import type {
  Backend,
  ModelSpec,
  Precision,
  SamplingParams,
  SequenceSamplingState,
  StepInputs,
} from "../../src/core/types.ts";
import { Engine } from "../../src/engine/engine.ts";
import { defaultSamplingParams } from "../../src/sampling/params.ts";

export const BS = 16;
const greedy: SamplingParams = { ...defaultSamplingParams(), temperature: 0 };

/** One decode token per sequence b at position pos[b], sequence b owning blocks [4b, 4b + 4). */
export function decodeStep(tokens: number[], pos: number[], states: SequenceSamplingState[]): StepInputs {
  const B = tokens.length;
  return {
    tokens: Int32Array.from(tokens),
    positions: Int32Array.from(pos),
    queryStarts: Int32Array.from({ length: B + 1 }, (_, i) => i),
    contextLens: Int32Array.from(pos, (p) => p + 1),
    blockTables: Int32Array.from({ length: B * 4 }, (_, i) => i),
    maxBlocksPerSeq: 4,
    blockSize: BS,
    slots: Int32Array.from(pos, (p, b) => 4 * b * BS + p),
    sample: new Array(B).fill(true),
    sampling: states,
  };
}

/** Prefills sequence s's prompt into its blocks (no sampling). */
export async function prefill(b: Backend, prompts: number[][]): Promise<void> {
  for (let s = 0; s < prompts.length; s++) {
    const p = prompts[s]!, n = p.length;
    await b.forward({
      tokens: Int32Array.from(p),
      positions: Int32Array.from({ length: n }, (_, i) => i),
      queryStarts: Int32Array.of(0, n),
      contextLens: Int32Array.of(n),
      blockTables: Int32Array.from({ length: 4 }, (_, i) => 4 * s + i),
      maxBlocksPerSeq: 4,
      blockSize: BS,
      slots: Int32Array.from({ length: n }, (_, i) => 4 * s * BS + i),
      sample: [false],
      sampling: [{ params: greedy, promptIds: p, outputIds: [], fallbackSeed: 0 }],
    });
  }
}

/**
 * Three sequences with random prompts of 9, 13 and 5 tokens (the run crosses a block boundary): k single forward()
 * decode steps, then the same prompts prefilled again (the same KV: the run recomputes every position it reads) and
 * one decodeSteps(k). Returns both, as ids per sequence.
 */
export async function singleVsMulti(
  b: Backend & { decodeSteps(step: StepInputs, k: number): Promise<Int32Array> },
  vocab: number,
  rand: () => number,
  params: SamplingParams,
  k: number,
): Promise<{ single: number[][]; multi: number[][] }> {
  const prompts = [9, 13, 5].map((n) => Array.from({ length: n }, () => 1 + Math.floor(rand() * (vocab - 1))));
  const seeds = prompts.map(() => Math.floor(rand() * 2 ** 31));
  const single: number[][] = prompts.map(() => []);
  await prefill(b, prompts);
  for (let j = 0; j < k; j++) {
    const tokens = prompts.map((p, s) => j === 0 ? p.at(-1)! : single[s]!.at(-1)!);
    const states = prompts.map((p, s) => ({
      params,
      promptIds: p,
      outputIds: single[s]!.slice(),
      fallbackSeed: seeds[s]!,
    }));
    const r = await b.forward(decodeStep(tokens, prompts.map((p) => p.length - 1 + j), states));
    r.tokens.forEach((t, s) => single[s]!.push(t));
  }
  await prefill(b, prompts);
  const states = prompts.map((p, s) => ({ params, promptIds: p, outputIds: [], fallbackSeed: seeds[s]! }));
  const ids = await b.decodeSteps(
    decodeStep(prompts.map((p) => p.at(-1)!), prompts.map((p) => p.length - 1), states),
    k,
  );
  const multi = prompts.map((_, s) => Array.from({ length: k }, (_, j) => ids[j * prompts.length + s]!));
  return { single, multi };
}

/**
 * An engine over `b` (40 blocks of BS, batches of 8) with multi-step decode runs of up to `multiStep` steps (1: off);
 * the k of every decodeSteps() call it makes is appended to `runs`.
 */
export function multiStepEngine(
  b: Backend & { decodeSteps(step: StepInputs, k: number): Promise<Int32Array> },
  spec: ModelSpec,
  precision: Precision,
  multiStep: number,
  runs: number[],
): Engine {
  const run = b.decodeSteps.bind(b);
  b.decodeSteps = (step, k) => {
    runs.push(k);
    return run(step, k);
  };
  const config = {
    blockSize: BS,
    maxBatchedTokens: 256,
    maxBatchSize: 8,
    cacheFraction: 0.5,
    enablePrefixCache: true,
    numBlocks: 40,
    multiStep,
  };
  return new Engine(b, spec, precision, null, config);
}

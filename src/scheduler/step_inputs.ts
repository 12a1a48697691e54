// Turns a ScheduledBatch into the flat typed arrays a backend consumes (core/types StepInputs).

import type { SequenceSamplingState, StepInputs } from "../core/types.ts";
import type { ScheduledBatch } from "./batch.ts";

export interface BuildStepInputsOptions {
  /** Ask the backend for the logits of every new token. */
  readonly allLogits?: boolean;
  /** Block tables cover this many more tokens per sequence (a multi-step decode run of 1 + lookahead steps). */
  readonly lookahead?: number;
}

/**
 * Row b of every per-sequence array is batch.seqs[b]. Positions are absolute; contextLens count cached + new tokens;
 * block tables hold the blocks covering each context (-1 padded to the widest); slots = block * blockSize + offset.
 */
export function buildStepInputs(
  batch: ScheduledBatch,
  blockSize: number,
  options: BuildStepInputsOptions = {},
): StepInputs {
  const rows = batch.seqs;
  const lookahead = options.lookahead ?? 0;
  const numSeqs = rows.length;
  let numTokens = 0;
  let maxBlocksPerSeq = 1;
  for (const r of rows) {
    numTokens += r.numNewTokens;
    maxBlocksPerSeq = Math.max(maxBlocksPerSeq, Math.ceil((r.start + r.numNewTokens + lookahead) / blockSize));
  }
  const tokens = new Int32Array(numTokens);
  const positions = new Int32Array(numTokens);
  const slots = new Int32Array(numTokens);
  const queryStarts = new Int32Array(numSeqs + 1);
  const contextLens = new Int32Array(numSeqs);
  const blockTables = new Int32Array(numSeqs * maxBlocksPerSeq).fill(-1);
  const sample: boolean[] = [];
  const sampling: SequenceSamplingState[] = [];

  let t = 0;
  for (let b = 0; b < numSeqs; b++) {
    const { seq, start, numNewTokens } = rows[b]!;
    const table = seq.blockTable;
    const ctx = start + numNewTokens;
    const blocks = Math.ceil((ctx + lookahead) / blockSize);
    if (table.length < blocks) {
      throw new Error(`buildStepInputs: sequence ${seq.id} has ${table.length} blocks for a context of ${ctx}`);
    }
    for (let i = 0; i < blocks; i++) blockTables[b * maxBlocksPerSeq + i] = table[i]!;
    for (let pos = start; pos < ctx; pos++, t++) {
      tokens[t] = seq.tokenAt(pos);
      positions[t] = pos;
      slots[t] = table[Math.floor(pos / blockSize)]! * blockSize + (pos % blockSize);
    }
    queryStarts[b + 1] = t;
    contextLens[b] = ctx;
    sample.push(rows[b]!.sample);
    sampling.push(seq);
  }
  if (t !== numTokens || batch.numTokens !== numTokens) {
    throw new Error(`buildStepInputs: batch says ${batch.numTokens} tokens, rows hold ${numTokens}`);
  }

  return {
    tokens,
    positions,
    queryStarts,
    contextLens,
    blockTables,
    maxBlocksPerSeq,
    blockSize,
    slots,
    sample,
    sampling,
    ...(options.allLogits ? { allLogits: true } : {}),
  };
}

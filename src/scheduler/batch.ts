// What one engine step computes, as decided by Scheduler.schedule().

import type { FinishReason, Sequence } from "./sequence.ts";

export interface ScheduledSeq {
  readonly seq: Sequence;
  /** Position of the first new token: the sequence's numComputedTokens when scheduled. */
  readonly start: number;
  /** New tokens computed this step: 1 for decode, a chunk of the prompt (plus output after preemption) for prefill. */
  readonly numNewTokens: number;
  /** The step ends this sequence's pending tokens, so a token is sampled (false for a non-final prefill chunk). */
  readonly sample: boolean;
}

export interface ScheduledBatch {
  /** Sequences of the step, in row order b = 0..B-1 of StepInputs and of the sampled-token array. */
  readonly seqs: readonly ScheduledSeq[];
  /** Total new tokens (T). */
  readonly numTokens: number;
  /** Copy-on-write pairs: Backend.copyBlocks(copySrc, copyDst) must run before forward when non-empty. */
  readonly copySrc: Int32Array;
  readonly copyDst: Int32Array;
  /** Sequences preempted while building this batch (back in the waiting queue; informational). */
  readonly preempted: readonly Sequence[];
}

/** One sampled token handed back by Scheduler.postprocess(). */
export interface SeqUpdate {
  readonly seq: Sequence;
  readonly token: number;
  /** Set when this token ended the sequence; its blocks are already freed. */
  readonly finishReason: FinishReason | null;
}

// Host-side checks and bookkeeping of one engine step, done before anything is encoded: every index the kernels
// will follow (token ids, positions, slots, block table entries) is validated here, because a shader cannot throw.
import type { ModelSpec, SequenceSamplingState, StepInputs } from "../../core/types.ts";
import { type AttentionPlan, planAttention } from "./attention.ts";
import { needsHostSampling } from "./sampling.ts";

export interface StepPlan {
  /** New tokens and sequences in the step. */
  readonly T: number;
  readonly B: number;
  readonly attention: AttentionPlan;
  /** [R] u32 token rows whose logits are computed: rows read back for the host come first. */
  readonly rows: Uint32Array;
  /** rows[0 .. nHost) are read back (all of them with allLogits); rows[nHost ..) are sampled on the GPU. */
  readonly nHost: number;
  /** [B] index into rows of each sampled sequence's last token, -1 where sample[b] is false. */
  readonly rowOf: Int32Array;
  /** Sampling state of each GPU row, in row order. */
  readonly gpuStates: readonly SequenceSamplingState[];
  /** LM head passes over rows [r0, r1), each small enough for one logits binding. */
  readonly chunks: readonly { readonly r0: number; readonly r1: number }[];
}

/** The most tokens one step may carry (grid y of the per-token kernels). */
export const MAX_STEP_TOKENS = 65535;

export function validateStep(step: StepInputs, spec: ModelSpec, numBlocks: number, blockSize: number): void {
  const T = step.tokens.length, B = step.queryStarts.length - 1;
  const fail = (msg: string): never => {
    throw new RangeError(`webgpu forward: ${msg}`);
  };
  if (numBlocks === 0) fail("allocateKv() was not called");
  if (step.blockSize !== blockSize) fail(`step block size ${step.blockSize} != allocated ${blockSize}`);
  if (T > MAX_STEP_TOKENS) fail(`${T} tokens in one step; at most ${MAX_STEP_TOKENS}`);
  if (step.positions.length !== T || step.slots.length !== T) fail("tokens, positions and slots differ in length");
  if (B < 1 || step.queryStarts[0] !== 0 || step.queryStarts[B] !== T) fail("queryStarts must run from 0 to T");
  if (step.sample.length !== B || step.contextLens.length !== B) fail("sample / contextLens must have B entries");
  const mb = step.maxBlocksPerSeq;
  if (!(mb >= 1) || step.blockTables.length < B * mb) fail(`blockTables needs ${B} x ${mb} entries`);
  for (let t = 0; t < T; t++) {
    const id = step.tokens[t]!, pos = step.positions[t]!, slot = step.slots[t]!;
    if (!(id >= 0 && id < spec.vocabSize)) fail(`token id ${id} is outside the vocabulary [0, ${spec.vocabSize})`);
    if (!(pos >= 0 && pos < spec.maxPositions)) fail(`position ${pos} outside [0, ${spec.maxPositions})`);
    if (slot >= numBlocks * blockSize) fail(`slot ${slot} outside the KV pool`);
  }
  for (let b = 0; b < B; b++) {
    const s = step.queryStarts[b]!, e = step.queryStarts[b + 1]!;
    if (e < s) fail(`queryStarts decreases at sequence ${b}`);
    if (step.sample[b] && e === s) fail(`sequence ${b} is sampled but has no tokens in the step`);
    if (step.sample[b] && !step.sampling[b]) fail(`sequence ${b} is sampled but has no sampling state`);
    let maxPos = -1, minPos = Infinity;
    for (let t = s; t < e; t++) {
      maxPos = Math.max(maxPos, step.positions[t]!);
      minPos = Math.min(minPos, step.positions[t]!);
    }
    const first = spec.slidingWindow && maxPos >= 0 ? Math.max(0, minPos - spec.slidingWindow + 1) : 0;
    for (let j = Math.floor(first / blockSize); j <= Math.floor(maxPos / blockSize); j++) {
      if (j >= mb) fail(`sequence ${b}: position ${maxPos} needs block ${j} beyond maxBlocksPerSeq ${mb}`);
      const blk = step.blockTables[b * mb + j]!;
      if (!(blk >= 0 && blk < numBlocks)) fail(`sequence ${b}: block table entry ${j} is ${blk}`);
    }
  }
}

/** Plans a validated step. `maxChunkRows` is how many logits rows fit one binding. */
export function planStep(step: StepInputs, spec: ModelSpec, maxChunkRows: number, partition?: number): StepPlan {
  const T = step.tokens.length, B = step.queryStarts.length - 1;
  const attention = planAttention(step.queryStarts, step.positions, spec.numHeads, spec.slidingWindow, { partition });
  const rowOf = new Int32Array(B).fill(-1);
  const host: number[] = [], gpu: number[] = [];
  const gpuStates: SequenceSamplingState[] = [];
  let rows: number[];
  if (step.allLogits) {
    rows = Array.from({ length: T }, (_, t) => t);
    for (let b = 0; b < B; b++) if (step.sample[b]) rowOf[b] = step.queryStarts[b + 1]! - 1;
  } else {
    for (let b = 0; b < B; b++) {
      if (!step.sample[b]) continue;
      if (needsHostSampling(step.sampling[b]!.params)) host.push(b);
      else gpu.push(b);
    }
    rows = [];
    for (const b of [...host, ...gpu]) {
      rowOf[b] = rows.length;
      rows.push(step.queryStarts[b + 1]! - 1);
    }
    for (const b of gpu) gpuStates.push(step.sampling[b]!);
  }
  const nHost = step.allLogits ? rows.length : host.length;
  const chunks: { r0: number; r1: number }[] = [];
  const per = Math.max(1, maxChunkRows);
  for (let r0 = 0; r0 < rows.length; r0 += per) chunks.push({ r0, r1: Math.min(rows.length, r0 + per) });
  return { T, B, attention, rows: Uint32Array.from(rows), nHost, rowOf, gpuStates, chunks };
}

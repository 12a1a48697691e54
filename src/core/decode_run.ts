// Geometry of a multi-step decode run (Backend.decodeSteps), shared by the GPU backends: step j of a run is step 0
// shifted by j positions, and a run needs one sampled token per sequence, all sampled on the device.
import type { SamplingParams, StepInputs } from "./types.ts";

/** Step j of a run that starts with `step`: positions + j, the slots they map to, contexts + j. */
export function shiftDecodeStep(step: StepInputs, j: number): StepInputs {
  if (j === 0) return step;
  const B = step.queryStarts.length - 1, bs = step.blockSize, mb = step.maxBlocksPerSeq;
  const positions = step.positions.map((p) => p + j);
  const slots = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    const p = positions[b]!, blk = step.blockTables[b * mb + Math.floor(p / bs)];
    slots[b] = blk === undefined || blk < 0 ? -1 : blk * bs + (p % bs);
  }
  return { ...step, positions, slots, contextLens: step.contextLens.map((c) => c + j) };
}

/**
 * Checks that `step` can start a k-step run on `backend` (at most maxSteps steps, every sequence sampled on the
 * device: needsHost(params) false); throws RangeError naming what is wrong.
 */
export function checkDecodeRun(
  backend: string,
  step: StepInputs,
  k: number,
  maxSteps: number,
  needsHost: (p: SamplingParams) => boolean,
): void {
  const B = step.queryStarts.length - 1;
  const fail = (msg: string): never => {
    throw new RangeError(`${backend} decodeSteps: ${msg}`);
  };
  if (!Number.isInteger(k) || k < 1 || k > maxSteps) fail(`k=${k} must be an integer in [1, ${maxSteps}]`);
  if (B < 1 || step.tokens.length !== B) {
    fail(`needs one token per sequence (${step.tokens.length} tokens, ${B} sequences)`);
  }
  if (step.allLogits) fail("allLogits is not supported");
  for (let b = 0; b < B; b++) {
    if (step.queryStarts[b + 1] !== b + 1) fail("needs one token per sequence");
    if (!step.sample[b]) fail(`sequence ${b} is not sampled`);
    const s = step.sampling[b];
    if (!s || needsHost(s.params)) fail(`sequence ${b} needs host sampling (penalties, logprobs, min-p or seed)`);
  }
}

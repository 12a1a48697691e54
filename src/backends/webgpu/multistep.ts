// Multi-step decode (Backend.decodeSteps, vLLM-style multi-step scheduling): k decode steps of the same sequences
// submitted back to back without waiting. Step j's sampled ids ([B] i32, the GPU sampler's output) are copied on
// the GPU into step j + 1's token input, and into slot j of one staging buffer [k, B] i32 that is mapped once, when
// all k steps are in the queue. Each step is its own command buffer: its uniforms, positions, slots and sampling
// draws are written with queue.writeBuffer between submits, which the queue orders after the previous step and
// before this one, so the host encodes step j + 1 while the GPU runs step j.
// Requirements (checked): one token per sequence, every sequence sampled on the GPU (sampling.ts), no allLogits,
// block tables covering all k positions, one LM-head chunk.
import type { StepInputs } from "../../core/types.ts";
import { MAP_READ, USAGE } from "./buffers.ts";
import { encodeStep, planFor, upload } from "./forward.ts";
import type { ModelState } from "./layers.ts";
import { validateStep } from "./plan.ts";
import { MAX_DECODE_STEPS, needsHostSampling } from "./sampling.ts";

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

/** Checks that `step` can start a k-step run; throws RangeError naming what is wrong. */
export function checkDecodeRun(step: StepInputs, k: number): void {
  const B = step.queryStarts.length - 1;
  const fail = (msg: string): never => {
    throw new RangeError(`webgpu decodeSteps: ${msg}`);
  };
  if (!Number.isInteger(k) || k < 1 || k > MAX_DECODE_STEPS) {
    fail(`k=${k} must be an integer in [1, ${MAX_DECODE_STEPS}]`);
  }
  if (B < 1 || step.tokens.length !== B) {
    fail(`needs one token per sequence (${step.tokens.length} tokens, ${B} sequences)`);
  }
  if (step.allLogits) fail("allLogits is not supported");
  for (let b = 0; b < B; b++) {
    if (step.queryStarts[b + 1] !== b + 1) fail("needs one token per sequence");
    if (!step.sample[b]) fail(`sequence ${b} is not sampled`);
    const s = step.sampling[b];
    if (!s || needsHostSampling(s.params)) {
      fail(`sequence ${b} needs host sampling (penalties, logprobs, min-p or seed)`);
    }
  }
}

export async function runDecodeSteps(m: ModelState, step: StepInputs, k: number): Promise<Int32Array> {
  const { ctx, spec } = m;
  const t0 = performance.now(), d0 = ctx.dispatches;
  checkDecodeRun(step, k);
  const B = step.tokens.length;
  // Every step is validated before anything is submitted (slots -1 there mean an unreserved block: refused).
  const steps = Array.from({ length: k }, (_, j) => shiftDecodeStep(step, j));
  for (const s of steps) {
    validateStep(s, spec, m.numBlocks, m.blockSize);
    if (s.slots.some((v) => v < 0)) throw new RangeError("webgpu decodeSteps: block tables do not cover all k steps");
  }
  const prof = ctx.profiler;
  const idsBytes = k * B * 4, extra = prof ? k * 16 : 0;
  // [k, B] i32 ids, then (profiling) [k, 2] u64 ns start / end of each step's pass.
  const staging = ctx.pool.scratch("staging_multi", idsBytes + extra, USAGE.MAP_READ | USAGE.COPY_DST);
  const device = ctx.device;
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  const tok = upload(ctx, "tokens", step.tokens); // [B] i32: step 0 from the host, later steps from the sampler
  for (let j = 0; j < k; j++) {
    const s = steps[j]!;
    const plan = await planFor(m, s);
    if (plan.chunks.length !== 1 || plan.nHost !== 0 || plan.rows.length !== B) {
      throw new RangeError("webgpu decodeSteps: the step must sample every row on the GPU in one LM-head chunk");
    }
    const enc = device.createCommandEncoder({ label: `decode step ${j}` });
    const ids = encodeStep(m, s, plan, enc, tok, {
      staging,
      base: j * B * 4,
      query: prof ? 2 * j : -1,
      drawOffset: j,
    })!; // [B] i32, row b = sequence b (every row sampled on the GPU, in batch order)
    if (j + 1 < k) enc.copyBufferToBuffer(ids, 0, tok, 0, B * 4);
    if (prof && j === k - 1) {
      enc.resolveQuerySet(prof.querySet, 0, 2 * k, prof.resolve, 0);
      enc.copyBufferToBuffer(prof.resolve, 0, staging, idsBytes, k * 16);
    }
    device.queue.submit([enc.finish()]);
  }
  const t1 = performance.now();
  const valErr = await device.popErrorScope();
  const memErr = await device.popErrorScope();
  if (valErr || memErr) throw new Error(`webgpu decodeSteps failed: ${(valErr ?? memErr)!.message}`);
  await staging.mapAsync(MAP_READ, 0, idsBytes + extra);
  const raw = staging.getMappedRange(0, idsBytes + extra).slice(0);
  staging.unmap();
  let gpuMs = NaN;
  if (prof) {
    const v = new DataView(raw, idsBytes, k * 16);
    let ns = 0n;
    for (let j = 0; j < k; j++) ns += v.getBigUint64(16 * j + 8, true) - v.getBigUint64(16 * j, true);
    gpuMs = Number(ns) / 1e6 / k;
  }
  const tEnd = performance.now();
  ctx.lastStep = {
    encodeMs: (t1 - t0) / k,
    waitMs: (tEnd - t1) / k,
    gpuMs,
    dispatches: (ctx.dispatches - d0) / k,
    steps: k,
  };
  return new Int32Array(raw, 0, k * B);
}

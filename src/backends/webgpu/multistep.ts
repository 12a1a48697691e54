// Multi-step decode (Backend.decodeSteps, vLLM-style multi-step scheduling): k decode steps of the same sequences
// submitted back to back without waiting. Step j's sampled ids ([B] i32, the GPU sampler's output) are copied on
// the GPU into step j + 1's token input, and into slot j of one staging buffer [k, B] i32 that is mapped once, when
// all k steps are in the queue. Each step is its own command buffer: its uniforms, positions, slots and sampling
// draws are written with queue.writeBuffer between submits, which the queue orders after the previous step and
// before this one, so the host encodes step j + 1 while the GPU runs step j.
// Requirements (checked): one token per sequence, every sequence sampled on the GPU (sampling.ts), no allLogits,
// block tables covering all k positions, one LM-head chunk.
import type { StepInputs } from "../../core/types.ts";
import { checkDecodeRun as checkRun, shiftDecodeStep } from "../../core/decode_run.ts";
import { MAP_READ, USAGE } from "./buffers.ts";
import { encodeStep, planFor, upload } from "./forward.ts";
import type { ModelState } from "./layers.ts";
import { validateStep } from "./plan.ts";
import { MAX_DECODE_STEPS, needsHostSampling } from "./sampling.ts";
import { GREEDY_EPSILON } from "../../sampling/sampler.ts";

/** Checks that `step` can start a k-step run; throws RangeError naming what is wrong. */
export function checkDecodeRun(step: StepInputs, k: number): void {
  checkRun("webgpu", step, k, MAX_DECODE_STEPS, needsHostSampling);
}

/**
 * Look-ahead (double-buffered staging): after submitting a run of k steps, the first LOOK_AHEAD.steps steps (0: off)
 * of the run that would follow (positions + k, tokens = this run's last ids, already on the GPU) are submitted too,
 * writing the other of two staging buffers, while this run's ids are being mapped. When the next call asks for
 * exactly that run, its first steps are already on the GPU and the host only encodes the rest, so the GPU does not
 * idle while the host maps ids, hands them to the engine and encodes. Otherwise the look-ahead is dropped: its KV
 * writes went to positions at or past every sequence's end (the call that follows rewrites any it keeps), and
 * only into blocks its block table lists past the tail that this run wrote, which the scheduler reserved for that
 * sequence alone (shared prefix blocks lie before the tail). Anything else that touches the token buffer or
 * the KV pool (forward(), copyBlocks(), allocateKv(), load()) drops it first (dropLookAhead).
 * Deno 2.9's mapAsync blocks until the queue is idle, then sleeps 10 ms before it resolves; so the look-ahead is
 * submitted right after the mapAsync call (its first step encoded before it), not before: submitted before, the
 * map waited for it too and nothing was gained (H100, context 128, k = 8: 10.45 ms per step without, 10.49 with).
 * A dropped look-ahead costs its steps' GPU time ahead of whatever comes next (a prefill, say).
 */
export const LOOK_AHEAD = { steps: 2 };

interface LookAhead {
  /** The first step of the run it predicts, and that run's length. */
  readonly step: StepInputs;
  readonly k: number;
  /** Steps of that run already submitted, and the staging buffer they write. */
  readonly submitted: number;
  readonly staging: GPUBuffer;
  /** Which of the two staging buffers it is. */
  readonly parity: number;
}

const lookAheads = new WeakMap<object, LookAhead>();
/** Look-aheads submitted and used so far (tests and benchmarks read them). */
export const lookAheadStats = { submitted: 0, used: 0 };
let nextParity = 0;

/** Forgets a pending look-ahead of this context (its submitted steps still run; their results go unread). */
export function dropLookAhead(ctx: object): void {
  lookAheads.delete(ctx);
}

/** Whether `step` is the run `a` predicted: same sequences, tokens, positions, blocks, sampling and length. */
function matches(a: LookAhead, step: StepInputs, k: number, bs: number): boolean {
  const p = a.step, B = p.tokens.length;
  if (k !== a.k || step.tokens.length !== B || step.blockSize !== p.blockSize || step.allLogits) return false;
  for (let b = 0; b < B; b++) {
    if (step.tokens[b] !== p.tokens[b] || step.positions[b] !== p.positions[b]) return false;
    if (step.contextLens[b] !== p.contextLens[b] || !step.sample[b]) return false;
    for (let j = 0; j < a.submitted; j++) {
      const blk = (q: StepInputs) => q.blockTables[b * q.maxBlocksPerSeq + Math.floor((q.positions[b]! + j) / bs)];
      if (blk(step) !== blk(p)) return false;
    }
    const s = step.sampling[b], t = p.sampling[b];
    if (!s || !t) return false;
    const x = s.params, y = t.params;
    if (x.temperature !== y.temperature || x.topK !== y.topK || x.topP !== y.topP || x.seed !== y.seed) return false;
    // Sampled rows drew uniform(seed, outputIds.length + offset): the look-ahead assumed k more output ids.
    const sampled = x.temperature >= GREEDY_EPSILON;
    if (sampled && (s.fallbackSeed !== t.fallbackSeed || s.outputIds.length !== t.outputIds.length + a.k)) return false;
  }
  return true;
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
  const ahead = lookAheads.get(ctx);
  lookAheads.delete(ctx);
  const hit = ahead !== undefined && matches(ahead, step, k, m.blockSize);
  if (hit) lookAheadStats.used++;
  const prof = ctx.profiler;
  const idsBytes = k * B * 4, extra = prof ? k * 16 : 0;
  // Two staging buffers, each [k, B] i32 ids, then (profiling) [k, 2] u64 ns start / end of each step's pass.
  const parity = hit ? ahead.parity : nextParity;
  const staging = hit
    ? ahead.staging
    : ctx.pool.scratch(`staging_multi.${parity}`, idsBytes + extra, USAGE.MAP_READ | USAGE.COPY_DST);
  nextParity = 1 - parity;
  const device = ctx.device;
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  // [B] i32: step 0 from the host (unless the look-ahead already runs it), later steps from the sampler
  const tok = hit ? ctx.pool.scratch("tokens", B * 4) : upload(ctx, "tokens", step.tokens);
  /** Encodes step j of a run writing staging buffer `out` into its own command buffer (not yet submitted). */
  const encodeOne = async (s: StepInputs, j: number, out: GPUBuffer, drawBase: number) => {
    const plan = await planFor(m, s);
    if (plan.chunks.length !== 1 || plan.nHost !== 0 || plan.rows.length !== B) {
      throw new RangeError("webgpu decodeSteps: the step must sample every row on the GPU in one LM-head chunk");
    }
    const enc = device.createCommandEncoder({ label: `decode step ${j}` });
    const ids = encodeStep(m, s, plan, enc, tok, {
      staging: out,
      base: j * B * 4,
      query: prof ? 2 * j : -1,
      drawOffset: drawBase + j,
    })!; // [B] i32, row b = sequence b (every row sampled on the GPU, in batch order)
    enc.copyBufferToBuffer(ids, 0, tok, 0, B * 4); // the next step's (or the look-ahead's) tokens
    if (prof && j === k - 1) {
      enc.resolveQuerySet(prof.querySet, 0, 2 * k, prof.resolve, 0);
      enc.copyBufferToBuffer(prof.resolve, 0, out, idsBytes, k * 16);
    }
    return enc.finish();
  };
  const encodeRun = async (run: StepInputs[], from: number, to: number, out: GPUBuffer, drawBase: number) => {
    for (let j = from; j < to; j++) device.queue.submit([await encodeOne(run[j]!, j, out, drawBase)]);
  };
  await encodeRun(steps, hit ? ahead.submitted : 0, k, staging, 0);
  const t1 = performance.now();
  // The look-ahead: the next run's first steps, same sampling states (their draws continue at offset k).
  const next = Array.from({ length: Math.min(LOOK_AHEAD.steps, k) }, (_, j) => shiftDecodeStep(step, k + j));
  const bs = m.blockSize;
  const covered = next.every((s) => {
    if (s.slots.some((v) => v < 0)) return false;
    try {
      validateStep(s, spec, m.numBlocks, bs);
      return true;
    } catch {
      return false;
    }
  });
  let la: LookAhead | null = null;
  const other = next.length > 0 && covered
    ? ctx.pool.scratch(`staging_multi.${1 - parity}`, idsBytes + extra, USAGE.MAP_READ | USAGE.COPY_DST)
    : null;
  // Its first step is encoded now, while the GPU still runs this run; its uniform and index writes wait in the
  // queue for the submit that follows.
  const first = other ? await encodeOne(next[0]!, 0, other, k) : null;
  // mapAsync blocks this thread until the queue is idle and then resolves ~10 ms later (Deno 2.9 polls the device
  // once, then sleeps 10 ms). Work submitted after the call runs during that sleep without delaying the map: the
  // look-ahead goes in right after it, so the GPU idles only for one submit between runs.
  const mapped = staging.mapAsync(MAP_READ, 0, idsBytes + extra);
  if (other && first) {
    device.queue.submit([first]);
    await encodeRun(next, 1, next.length, other, k);
    la = { step: next[0]!, k, submitted: next.length, staging: other, parity: 1 - parity };
    lookAheadStats.submitted++;
  }
  const valErr = await device.popErrorScope();
  const memErr = await device.popErrorScope();
  if (valErr || memErr) {
    await mapped.then(() => staging.unmap(), () => {}); // leave the staging buffer usable
    throw new Error(`webgpu decodeSteps failed: ${(valErr ?? memErr)!.message}`);
  }
  await mapped;
  const raw = staging.getMappedRange(0, idsBytes + extra).slice(0);
  staging.unmap();
  let gpuMs = NaN;
  if (prof) {
    const v = new DataView(raw, idsBytes, k * 16);
    let ns = 0n;
    for (let j = 0; j < k; j++) ns += v.getBigUint64(16 * j + 8, true) - v.getBigUint64(16 * j, true);
    gpuMs = Number(ns) / 1e6 / k;
  }
  const ids = new Int32Array(raw, 0, k * B);
  if (la) {
    // The predicted run starts from this run's last ids, with k more output ids per sequence.
    const last = ids.slice((k - 1) * B, k * B);
    const sampling = la.step.sampling.map((s) => ({ ...s, outputIds: Array.from(s.outputIds) }));
    lookAheads.set(ctx, { ...la, step: { ...la.step, tokens: last, sampling } });
  }
  const tEnd = performance.now();
  ctx.lastStep = {
    encodeMs: (t1 - t0) / k,
    waitMs: (tEnd - t1) / k,
    gpuMs,
    dispatches: (ctx.dispatches - d0) / k,
    steps: k,
  };
  return ids;
}

// Where each sequence's next token is chosen. The GPU sampler (wgsl/sample.wgsl) does greedy argmax and
// temperature + top-k + top-p, so only a token id comes back. Everything else reads that row's logits back and
// runs the host sampler (src/sampling/sampler.ts), which is the behaviour of record.
import type { MultiStepDecode, SamplingParams, SequenceSamplingState } from "../../core/types.ts";
import { GREEDY_EPSILON, uniform } from "../../sampling/sampler.ts";
import { TIMESTAMP_QUERIES } from "./context.ts";
import { SAMPLE_CFG_BYTES } from "./kernels.ts";

/**
 * True when the host sampler must pick this sequence's token, i.e. the request uses something the GPU sampler
 * does not implement:
 *   - logprobs (they need the full row's log-softmax),
 *   - repetition / presence / frequency penalties (they need the prompt and output ids),
 *   - min-p,
 *   - a user seed with temperature > 0: seeded requests must reproduce the host sampler's draws exactly, and the
 *     GPU's f32 arithmetic could pick a neighbouring token when the draw lands within rounding of a boundary.
 * Greedy rows without penalties or logprobs stay on the GPU (argmax is exact there).
 */
export function needsHostSampling(p: SamplingParams): boolean {
  if (p.logprobs) return true;
  if (p.repetitionPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0) return true;
  if (p.temperature < GREEDY_EPSILON) return false;
  if (p.minP > 0) return true;
  return p.seed !== null;
}

/**
 * Packs the GPU sampler's per-row settings, [rows] x (temperature f32, topK u32, topP f32, u f32). The draw u is
 * the one the host sampler would use for this token, uniform(fallbackSeed, outputIds.length), so GPU and host
 * sampling of an unseeded request walk the same random stream. `drawOffset` is the step within a multi-step decode
 * run (multistep.ts): step j samples output token outputIds.length + j.
 */
export function packSampleConfig(states: readonly SequenceSamplingState[], drawOffset = 0): ArrayBuffer {
  const buf = new ArrayBuffer(Math.max(1, states.length) * SAMPLE_CFG_BYTES);
  const v = new DataView(buf);
  states.forEach((s, i) => {
    const p = s.params;
    const o = i * SAMPLE_CFG_BYTES;
    const greedy = p.temperature < GREEDY_EPSILON;
    v.setFloat32(o, greedy ? 0 : p.temperature, true);
    v.setUint32(o + 4, p.topK > 0 ? p.topK : 0, true);
    v.setFloat32(o + 8, p.topP > 0 && p.topP < 1 ? p.topP : 1, true);
    v.setFloat32(
      o + 12,
      greedy ? 0 : Math.fround(uniform(s.params.seed ?? s.fallbackSeed, s.outputIds.length + drawOffset)),
      true,
    );
  });
  return buf;
}

/** Most steps one multi-step decode call takes (the profiler's timestamp queries hold two per step). */
export const MAX_DECODE_STEPS = TIMESTAMP_QUERIES / 2;

/** Backend.multiStep of the WebGPU backends: a run needs every sequence sampled on the GPU. */
export const WEBGPU_MULTI_STEP: MultiStepDecode = Object.freeze({
  maxSteps: MAX_DECODE_STEPS,
  canSampleOnDevice: (p: SamplingParams) => !needsHostSampling(p),
});

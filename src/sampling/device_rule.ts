// Where each sequence's next token is chosen, shared by the GPU backends (CUDA kernels/sample.cu, WebGPU
// wgsl/sample.wgsl). The device samplers do greedy argmax and temperature + top-k + top-p, so only a token id comes
// back; everything else reads that row's logits back and runs the host sampler (sampler.ts, the behaviour of record).
// Pure TypeScript: no FFI or WebGPU imports, so both backends and their tests can use it.
import type { SamplingParams, SequenceSamplingState } from "../core/types.ts";
import { GREEDY_EPSILON } from "./sampler.ts";
import { uniform } from "./rng.ts";

/** Bytes of one device sampler row config: temperature f32, topK u32, topP f32, u f32 (little endian). */
export const SAMPLE_CFG_BYTES = 16;

/**
 * True when the host sampler must pick this sequence's token, i.e. the request uses something the device
 * samplers do not implement:
 *   - logprobs (they need the full row's log-softmax),
 *   - repetition / presence / frequency penalties (they need the prompt and output ids),
 *   - min-p,
 *   - a user seed with temperature > 0: seeded requests must reproduce the host sampler's draws exactly, and the
 *     device's f32 arithmetic could pick a neighbouring token when the draw lands within rounding of a boundary.
 * Greedy rows without penalties or logprobs stay on the device (argmax is exact there).
 */
export function needsHostSampling(p: SamplingParams): boolean {
  if (p.logprobs || p.topLogprobs > 0) return true;
  if (p.repetitionPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0) return true;
  if (p.temperature < GREEDY_EPSILON) return false;
  if (p.minP > 0) return true;
  return p.seed !== null;
}

/**
 * Writes row `row` of a device sampler config, [rows] x (temperature f32, topK u32, topP f32, u f32). The draw u is
 * the one the host sampler would use for this token, uniform(seed ?? fallbackSeed, outputIds.length + drawOffset),
 * so device and host sampling of an unseeded request walk the same random stream. `drawOffset` is the step within a
 * multi-step decode run: step j samples output token outputIds.length + j. A null state writes a greedy row
 * (temperature 0), used for padding rows and rows whose device result is not used.
 */
export function writeSampleConfig(
  view: DataView,
  row: number,
  s: SequenceSamplingState | null,
  drawOffset = 0,
): void {
  const o = row * SAMPLE_CFG_BYTES;
  const p = s?.params;
  const greedy = !p || p.temperature < GREEDY_EPSILON;
  view.setFloat32(o, greedy ? 0 : p.temperature, true);
  view.setUint32(o + 4, p && p.topK > 0 ? p.topK : 0, true);
  view.setFloat32(o + 8, p && p.topP > 0 && p.topP < 1 ? p.topP : 1, true);
  const u = greedy ? 0 : Math.fround(uniform(p.seed ?? s!.fallbackSeed, s!.outputIds.length + drawOffset));
  view.setFloat32(o + 12, u, true);
}

/**
 * Packs one config row per state (null: a greedy row), padded with greedy rows up to `rows`; at least one row, so
 * the buffer is never empty.
 */
export function packSampleConfig(
  states: readonly (SequenceSamplingState | null)[],
  drawOffset = 0,
  rows = states.length,
): ArrayBuffer {
  const buf = new ArrayBuffer(Math.max(1, rows) * SAMPLE_CFG_BYTES);
  const v = new DataView(buf);
  for (let r = 0; r < rows; r++) writeSampleConfig(v, r, states[r] ?? null, drawOffset);
  return buf;
}

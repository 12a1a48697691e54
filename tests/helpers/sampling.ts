// Shared by the device sampler tests (tests/cuda_sampler_test.ts, tests/webgpu_sampler_test.ts).
import type { SamplingParams } from "../../src/core/types.ts";

/** True when the top-p cut falls within `eps` of a token's cumulative mass (device and host could disagree). */
export function topPAmbiguous(row: Float32Array, p: SamplingParams, eps: number): boolean {
  if (!(p.topP < 1)) return false;
  const x = Array.from(row, (v) => v / p.temperature).sort((a, b) => b - a);
  const kept = p.topK > 0 ? x.slice(0, p.topK) : x;
  const w = kept.map((v) => Math.exp(v - kept[0]!));
  const z = w.reduce((a, b) => a + b, 0);
  let c = 0;
  return w.some((wi) => Math.abs((c += wi) / z - p.topP) < eps);
}

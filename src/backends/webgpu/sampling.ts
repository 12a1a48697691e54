// Where each sequence's next token is chosen: the rule (needsHostSampling) and the per-row config of the GPU
// sampler (packSampleConfig, wgsl/sample.wgsl) live in src/sampling/device_rule.ts, shared with the CUDA backend.
import type { MultiStepDecode, SamplingParams } from "../../core/types.ts";
import { needsHostSampling, packSampleConfig } from "../../sampling/device_rule.ts";
import { TIMESTAMP_QUERIES } from "./context.ts";

export { needsHostSampling, packSampleConfig };

/** Most steps one multi-step decode call takes (the profiler's timestamp queries hold two per step). */
export const MAX_DECODE_STEPS = TIMESTAMP_QUERIES / 2;

/** Backend.multiStep of the WebGPU backends: a run needs every sequence sampled on the GPU. */
export const WEBGPU_MULTI_STEP: MultiStepDecode = Object.freeze({
  maxSteps: MAX_DECODE_STEPS,
  canSampleOnDevice: (p: SamplingParams) => !needsHostSampling(p),
});

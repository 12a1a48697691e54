// The one rule for where a sequence's next token is chosen: greedy rows with nothing that reads the whole
// distribution take the GPU argmax; every other row downloads its logits and goes through the host sampler.
import type { SamplingParams } from "../../core/types.ts";
import { GREEDY_EPSILON } from "../../sampling/sampler.ts";

export function needsHostSampling(p: SamplingParams): boolean {
  const greedy = p.temperature < GREEDY_EPSILON;
  const penalties = p.repetitionPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0;
  return !greedy || penalties || p.logprobs || p.topLogprobs > 0;
}

// Host sampler speed on a Llama-3-sized vocabulary: `deno bench -A bench/sampling_bench.ts`.
import { sampleToken } from "../src/sampling/sampler.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import type { SamplingParams } from "../src/core/types.ts";

const vocab = 128256;
let s = 78;
const row = Float32Array.from({ length: vocab }, () => {
  s = (s * 1103515245 + 12345) >>> 0;
  return ((s / 2 ** 32) * 2 - 1) * 4;
});
const prompt = Array.from({ length: 2000 }, (_, i) => (i * 7919) % vocab);
const settings: [string, Partial<SamplingParams>][] = [
  ["greedy", { temperature: 0 }],
  ["plain", {}],
  ["top-k 50", { topK: 50 }],
  ["top-k 50 + top-p 0.9", { topK: 50, topP: 0.9 }],
  ["top-p 0.9", { topP: 0.9 }],
  ["min-p 0.05", { minP: 0.05 }],
  ["penalties + logprobs", { repetitionPenalty: 1.1, frequencyPenalty: 0.2, logprobs: true, topLogprobs: 5 }],
];
for (const [name, over] of settings) {
  const state = {
    params: { ...defaultSamplingParams(), ...over },
    promptIds: prompt,
    outputIds: prompt.slice(0, 500),
    fallbackSeed: 1,
  };
  Deno.bench(`sampleToken() vocab 128k, ${name}`, () => {
    sampleToken(row, state);
  });
}

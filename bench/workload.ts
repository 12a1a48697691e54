// A fixed-seed, ShareGPT-like request length distribution: log-normal input and output lengths with long tails
// (input mean about 220 tokens, output mean about 200), clamped to [4, maxLen].
import { mulberry32 } from "../src/core/prng.ts";

export interface WorkItem {
  readonly promptIds: number[];
  readonly outputLen: number;
}

/** Log-normal with the given mean and sigma of the underlying normal: mean = exp(mu + sigma^2 / 2). */
function logNormal(rand: () => number, mean: number, sigma: number): number {
  const u1 = Math.max(rand(), 1e-12), u2 = rand();
  const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  const mu = Math.log(mean) - (sigma * sigma) / 2;
  return Math.exp(mu + sigma * z);
}

export function shareGptLike(
  n: number,
  opts: { seed?: number; vocab: number; maxLen: number; inputMean?: number; outputMean?: number; scale?: number },
): WorkItem[] {
  const rand = mulberry32(opts.seed ?? 2024);
  const scale = opts.scale ?? 1;
  const clamp = (x: number, max: number) => Math.max(4, Math.min(max, Math.round(x)));
  return Array.from({ length: n }, () => {
    const input = clamp(logNormal(rand, (opts.inputMean ?? 220) * scale, 0.9), Math.floor(opts.maxLen / 2));
    const outputLen = clamp(logNormal(rand, (opts.outputMean ?? 200) * scale, 0.8), opts.maxLen - input - 1);
    // Ids 3.. avoid the usual special ids at the bottom of a vocabulary.
    const promptIds = Array.from({ length: input }, () => 3 + Math.floor(rand() * (opts.vocab - 3)));
    return { promptIds, outputLen };
  });
}

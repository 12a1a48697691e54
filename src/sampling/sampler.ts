// Picks the next token of one sequence from its logits row, in vLLM's order:
//   penalties (repetition, then frequency / presence) -> greedy when temperature ~ 0, else
//   temperature -> top-k -> top-p (over the top-k survivors, renormalised) -> min-p -> draw.
// The draw uses uniform(seed ?? fallbackSeed, outputIds.length), so it depends only on the request and the position.
// Nothing sorts the whole vocabulary unless top-p keeps most of it: top-k is a heap selection, min-p a threshold,
// and top-p first drops every token that provably lies outside the nucleus (see nucleusFloor) before sorting the rest.

import type { SampledLogprobs, SamplingParams, SequenceSamplingState } from "../core/types.ts";
import { applyPenalties } from "./penalties.ts";
import { uniform } from "./rng.ts";
import { argmax, kthLargest, tokenLogprobs } from "./select.ts";

export { argmax, logSoftmax, logSumExp } from "./select.ts";
export { defaultSamplingParams, validateSamplingParams } from "./params.ts";
export { uniform } from "./rng.ts";

/** Temperatures below this are greedy (vLLM's _SAMPLING_EPS). */
export const GREEDY_EPSILON = 1e-5;

export interface SampledToken {
  id: number;
  logprobs: SampledLogprobs | null;
}

// Scratch reused across calls (the input row is never written): penalised / scaled logits, then weights.
let scratch = new Float64Array(0);
// Surviving token ids.
let cand = new Int32Array(0);

export function sampleToken(logits: Float32Array, state: SequenceSamplingState): SampledToken {
  const p = state.params;
  const vocab = penalised(logits, state);
  let id: number;
  if (p.temperature < GREEDY_EPSILON) {
    id = argmax(scratch.subarray(0, vocab));
  } else {
    const kept = filter(scratch, vocab, p);
    id = draw(kept, uniform(p.seed ?? state.fallbackSeed, state.outputIds.length));
  }
  const logprobs = p.logprobs ? tokenLogprobs(logits, id, p.topLogprobs) : null;
  return { id, logprobs };
}

/**
 * The distribution sampleToken draws from for this row and state: token ids (in draw order) and their
 * probabilities, summing to 1. Greedy gives the argmax with probability 1. For tests and debugging.
 */
export function samplingDistribution(
  logits: Float32Array,
  state: SequenceSamplingState,
): { ids: number[]; probs: number[] } {
  const vocab = penalised(logits, state);
  if (state.params.temperature < GREEDY_EPSILON) return { ids: [argmax(scratch.subarray(0, vocab))], probs: [1] };
  const kept = filter(scratch, vocab, state.params);
  const ids: number[] = [];
  const w: number[] = [];
  let total = 0;
  for (let j = 0; j < kept; j++) {
    const i = cand[j]!;
    ids.push(i);
    w.push(scratch[i]!);
    total += scratch[i]!;
  }
  return { ids, probs: w.map((v) => v / total) };
}

/** Copies the row into scratch (NaN -> -Infinity) and applies the penalties there. Returns the vocab size. */
function penalised(logits: Float32Array, state: SequenceSamplingState): number {
  const vocab = logits.length;
  if (vocab === 0) throw new Error("sampleToken: empty logits row");
  if (scratch.length < vocab) {
    scratch = new Float64Array(vocab);
    cand = new Int32Array(vocab);
  }
  const x = scratch;
  for (let i = 0; i < vocab; i++) {
    const v = logits[i]!;
    x[i] = v === v ? v : -Infinity; // NaN never gets sampled
  }
  applyPenalties(x, vocab, state);
  return vocab;
}

/** Draws from cand[0..kept) with unnormalised weights scratch[id]; `u` is in [0, 1). */
function draw(kept: number, u: number): number {
  let total = 0;
  for (let j = 0; j < kept; j++) total += scratch[cand[j]!]!;
  const t = u * total;
  let cum = 0;
  for (let j = 0; j < kept; j++) {
    const i = cand[j]!;
    cum += scratch[i]!;
    if (t < cum) return i;
  }
  return cand[kept - 1]!;
}

/**
 * Temperature, top-k, top-p and min-p over x[0..vocab). Leaves the surviving ids in cand[0..kept) and their
 * unnormalised weights in x[id]; returns kept (>= 1).
 */
function filter(x: Float64Array, vocab: number, p: SamplingParams): number {
  const invT = 1 / p.temperature;
  let m = -Infinity;
  for (let i = 0; i < vocab; i++) {
    const v = x[i]! * invT;
    x[i] = v;
    if (v > m) m = v;
  }
  // Everything masked, or an infinite logit that dominates: the argmax is the only candidate.
  if (m === -Infinity || m === Infinity) {
    const a = argmax(x.subarray(0, vocab));
    cand[0] = a;
    x[a] = 1;
    return 1;
  }

  // top-k keeps every token >= the k-th largest value (ties at the boundary are kept, as in vLLM).
  const kth = p.topK > 0 && p.topK < vocab ? kthLargest(x, vocab, p.topK) : -Infinity;
  // min-p keeps prob >= minP * maxProb, i.e. exp(x - m) >= minP. The max token survives every filter, so this
  // test does not depend on the renormalisation done by top-k / top-p.
  const minP = p.minP > 0 ? p.minP : 0;

  if (!(p.topP < 1)) {
    // No nucleus: every filter is a threshold, so keep tokens in id order without sorting.
    let kept = 0;
    for (let i = 0; i < vocab; i++) {
      const v = x[i]!;
      if (v >= kth && v > -Infinity) {
        const w = Math.exp(v - m);
        if (w >= minP && w > 0) {
          x[i] = w;
          cand[kept++] = i;
        }
      }
    }
    return kept;
  }

  // Mass of the top-k survivors (the distribution top-p renormalises over).
  let z = 0;
  let n = 0;
  for (let i = 0; i < vocab; i++) {
    const v = x[i]!;
    if (v >= kth && v > -Infinity) {
      z += Math.exp(v - m);
      n++;
    }
  }
  const floor = Math.max(
    kth,
    minP > 0 ? m + Math.log(minP) - 1e-6 : -Infinity,
    nucleusFloor(m, z, n, p.topP),
  );
  let c = 0;
  for (let i = 0; i < vocab; i++) {
    const v = x[i]!;
    if (v >= floor && v > -Infinity) cand[c++] = i;
  }
  const sorted = cand.subarray(0, c).sort((a, b) => x[b]! - x[a]! || a - b);

  // From the most likely down, a token is in the nucleus while the mass ranked before it is < topP * z.
  // Tokens under the min-p floor all rank after the candidates, so leaving them out cannot change this walk.
  const stop = p.topP * z;
  let before = 0;
  let kept = 0;
  for (let j = 0; j < c; j++) {
    if (j > 0 && before >= stop) break;
    const i = sorted[j]!;
    const w = Math.exp(x[i]! - m);
    before += w;
    if (w >= minP) {
      sorted[kept++] = i;
      x[i] = w;
    }
  }
  return kept;
}

/**
 * A logit below which no token can be in the nucleus. A token is kept only if the mass of the tokens ranked at or
 * below it exceeds 1 - topP. Every token with probability < eps = (1 - topP) / n ranks below all tokens with larger
 * probability, and those below-eps tokens together hold < n * eps = 1 - topP, so none of them is kept.
 * prob = exp(x - m) / z, hence the floor x < m + log(z * eps); halved for rounding slack.
 */
function nucleusFloor(m: number, z: number, n: number, topP: number): number {
  const eps = ((1 - topP) / Math.max(n, 1)) * 0.5;
  return eps > 0 ? m + Math.log(z * eps) : -Infinity;
}

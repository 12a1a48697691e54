// Picks the next token of one sequence from its logits row, in vLLM's order:
//   penalties (repetition, then frequency / presence) -> greedy when temperature ~ 0, else
//   temperature -> top-k -> top-p (over the top-k survivors, renormalised) -> min-p -> draw.
// The draw uses uniform(seed ?? fallbackSeed, outputIds.length), so it depends only on the request and the position.
// Nothing sorts the whole vocabulary unless top-p keeps most of it: top-k is a heap selection, min-p a threshold,
// and top-p sorts only the tokens of one histogram bucket, the one where the nucleus ends (see nucleus).

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
// Surviving token ids; the top-p edge bucket and each token's bucket.
let cand = new Int32Array(0);
let boundary = new Int32Array(0);
let bucketOf = new Uint8Array(0);

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
    boundary = new Int32Array(vocab);
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

  return nucleus(x, vocab, m, kth, minP, p.topP);
}

/** Width in nats of one bucket of the top-p mass histogram, and the bucket count (the last one is open-ended). */
const BUCKET_WIDTH = 0.25;
const BUCKETS = 128;
const NONE = 255;
const bucketMass = new Float64Array(BUCKETS);

/**
 * top-p (then min-p) over the tokens with x >= kth, without sorting them all. One pass files each token's weight
 * exp(x - m) into a histogram by distance below the max. With B the first bucket where the cumulative mass reaches
 * topP * z, every token in a bucket before B has less than topP * z ranked before it and is kept, every token after
 * B has at least that much before it and is dropped; only bucket B is sorted to find where the nucleus ends.
 */
function nucleus(x: Float64Array, vocab: number, m: number, kth: number, minP: number, topP: number): number {
  if (bucketOf.length < vocab) bucketOf = new Uint8Array(vocab);
  bucketMass.fill(0);
  let z = 0;
  for (let i = 0; i < vocab; i++) {
    const v = x[i]!;
    if (v >= kth && v > -Infinity) {
      const w = Math.exp(v - m);
      const b = Math.min(BUCKETS - 1, Math.floor((m - v) / BUCKET_WIDTH));
      x[i] = w;
      bucketOf[i] = b;
      bucketMass[b]! += w;
      z += w;
    } else {
      bucketOf[i] = NONE;
    }
  }
  const stop = topP * z;
  let before = 0;
  let edge = 0;
  while (edge < BUCKETS - 1 && before + bucketMass[edge]! < stop) before += bucketMass[edge++]!;

  let kept = 0;
  let n = 0;
  for (let i = 0; i < vocab; i++) {
    const b = bucketOf[i]!;
    if (b < edge) {
      if (x[i]! >= minP) cand[kept++] = i;
    } else if (b === edge) {
      boundary[n++] = i;
    }
  }
  // Walk the edge bucket from its most likely token while the mass ranked before it is < stop (the overall
  // most likely token is always kept). Equal weights go by lowest id.
  const sorted = boundary.subarray(0, n).sort((a, b) => x[b]! - x[a]! || a - b);
  for (let j = 0; j < n; j++) {
    if (before >= stop && (kept > 0 || j > 0)) break;
    const i = sorted[j]!;
    const w = x[i]!;
    before += w;
    if (w >= minP) cand[kept++] = i;
  }
  return kept;
}

// Accuracy of a (quantized) run against a reference run over the same token ids: perplexity, top-1 agreement of
// the next-token argmax, and mean KL(ref || test) of the next-token distributions.
import type { Backend } from "../core/types.ts";
import { sequenceLogits } from "../engine/sequential.ts";
import { defaultSamplingParams } from "../sampling/params.ts";
import { argmax, logSumExp } from "../sampling/select.ts";

/** log softmax of one row, in f64. */
export function logSoftmax(row: Float32Array | Float64Array): Float64Array {
  const lse = logSumExp(row);
  return Float64Array.from(row, (v) => v - lse);
}

/** KL(p || q) = sum p (log p - log q) from log-probabilities. */
export function klDivergence(logP: Float64Array, logQ: Float64Array): number {
  let kl = 0;
  for (let i = 0; i < logP.length; i++) {
    const p = Math.exp(logP[i]!);
    if (p > 0) kl += p * (logP[i]! - logQ[i]!);
  }
  return Math.max(0, kl);
}

/** Logits of every position, scoring `ids` in independent windows of at most `window` tokens: [ids.length, vocab]. */
export async function windowedLogits(backend: Backend, ids: readonly number[], vocab: number, window: number) {
  const out = new Float32Array(ids.length * vocab);
  const greedy = { ...defaultSamplingParams(), temperature: 0 };
  for (let s = 0; s < ids.length; s += window) {
    const chunk = ids.slice(s, s + window);
    out.set(await sequenceLogits(backend, chunk, greedy), s * vocab);
  }
  return out;
}

export interface AccuracyReport {
  /** positions with a next token inside their window (perplexity is over these) */
  readonly scoredPositions: number;
  readonly perplexity: number;
  readonly referencePerplexity: number | null;
  /** positions compared with the reference (every position) */
  readonly comparedPositions: number;
  readonly top1Agreement: number | null;
  readonly meanKl: number | null;
  readonly maxKl: number | null;
}

/**
 * test, ref: [ids.length, vocab] logits from windowedLogits (ref may be null). A position p is scored for
 * perplexity when p + 1 is in the same window.
 */
export function compareLogits(
  ids: readonly number[],
  vocab: number,
  window: number,
  test: Float32Array,
  ref: Float32Array | null,
): AccuracyReport {
  let nll = 0, refNll = 0, scored = 0, agree = 0, klSum = 0, klMax = 0;
  for (let p = 0; p < ids.length; p++) {
    const lt = logSoftmax(test.subarray(p * vocab, (p + 1) * vocab));
    const lr = ref ? logSoftmax(ref.subarray(p * vocab, (p + 1) * vocab)) : null;
    if (p + 1 < ids.length && (p + 1) % window !== 0) {
      nll -= lt[ids[p + 1]!]!;
      if (lr) refNll -= lr[ids[p + 1]!]!;
      scored++;
    }
    if (lr) {
      if (argmax(lt) === argmax(lr)) agree++;
      const kl = klDivergence(lr, lt);
      klSum += kl;
      klMax = Math.max(klMax, kl);
    }
  }
  const n = ids.length;
  return {
    scoredPositions: scored,
    perplexity: Math.exp(nll / scored),
    referencePerplexity: ref ? Math.exp(refNll / scored) : null,
    comparedPositions: ref ? n : 0,
    top1Agreement: ref ? agree / n : null,
    meanKl: ref ? klSum / n : null,
    maxKl: ref ? klMax : null,
  };
}

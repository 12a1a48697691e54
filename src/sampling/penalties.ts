// Repetition penalty (HF / vLLM: over prompt and output ids, each distinct id once: positive logits are divided by
// the penalty, negative ones multiplied) followed by frequency and presence penalties (OpenAI: over output ids,
// logit -= frequency * count + presence * (count > 0)). Ids outside [0, vocab) are ignored.

import type { SequenceSamplingState } from "../core/types.ts";

// Per-id generation stamps dedupe ids without a Set; counts are valid only where the stamp is current.
let stamp = new Uint32Array(0);
let counts = new Int32Array(0);
let gen = 0;

function nextGen(vocab: number): number {
  if (stamp.length < vocab) {
    stamp = new Uint32Array(vocab);
    counts = new Int32Array(vocab);
    gen = 0;
  }
  gen++;
  if (gen >= 0xffffffff) {
    stamp.fill(0);
    gen = 1;
  }
  return gen;
}

function inRange(id: number, vocab: number): boolean {
  return Number.isInteger(id) && id >= 0 && id < vocab;
}

/** Applies the penalties of `state.params` to x[0..vocab) in place. */
export function applyPenalties(x: Float64Array, vocab: number, state: SequenceSamplingState): void {
  const p = state.params;
  const out = state.outputIds;
  if (p.repetitionPenalty !== 1) {
    const g = nextGen(vocab);
    const r = p.repetitionPenalty;
    for (const ids of [state.promptIds, out]) {
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i] ?? -1;
        if (!inRange(id, vocab) || stamp[id] === g) continue;
        stamp[id] = g;
        const v = x[id]!;
        x[id] = v > 0 ? v / r : v * r;
      }
    }
  }
  const freq = p.frequencyPenalty;
  const pres = p.presencePenalty;
  if ((freq !== 0 || pres !== 0) && out.length > 0) {
    const g = nextGen(vocab);
    for (let i = 0; i < out.length; i++) {
      const id = out[i] ?? -1;
      if (!inRange(id, vocab)) continue;
      if (stamp[id] !== g) {
        stamp[id] = g;
        counts[id] = 0;
      }
      counts[id]!++;
    }
    const g2 = nextGen(vocab);
    for (let i = 0; i < out.length; i++) {
      const id = out[i] ?? -1;
      if (!inRange(id, vocab) || stamp[id] === g2) continue;
      stamp[id] = g2;
      x[id] = x[id]! - (freq * counts[id]! + pres);
    }
  }
}

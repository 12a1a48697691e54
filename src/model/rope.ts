// RoPE frequencies for every supported scaling type. Every backend builds its cos/sin tables from these,
// so the scaling math lives in one place. Layout is "half split" (rotate_half), as Hugging Face Llama uses.
import type { RopeSpec } from "../core/types.ts";

export interface RopeFreqs {
  /** [rotaryDim/2] f64 inverse frequency of each rotary pair */
  readonly invFreq: Float64Array;
  /** multiplier on cos and sin (yarn mscale; 1 otherwise) */
  readonly scale: number;
}

function yarnCorrectionDim(rotations: number, dim: number, base: number, maxPos: number): number {
  return (dim * Math.log(maxPos / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
}

export function ropeFrequencies(rope: RopeSpec, headDim: number): RopeFreqs {
  const half = headDim / 2;
  const base = new Float64Array(half);
  for (let i = 0; i < half; i++) base[i] = 1 / Math.pow(rope.theta, (2 * i) / headDim);
  switch (rope.type) {
    case "default":
      return { invFreq: base, scale: 1 };
    case "linear":
      return { invFreq: base.map((f) => f / rope.factor), scale: 1 };
    case "llama3": {
      const lowWavelen = rope.originalMaxPositions / rope.lowFreqFactor;
      const highWavelen = rope.originalMaxPositions / rope.highFreqFactor;
      const out = base.map((f) => {
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < highWavelen) return f;
        if (wavelen > lowWavelen) return f / rope.factor;
        const smooth = (rope.originalMaxPositions / wavelen - rope.lowFreqFactor) /
          (rope.highFreqFactor - rope.lowFreqFactor);
        return (1 - smooth) * (f / rope.factor) + smooth * f;
      });
      return { invFreq: out, scale: 1 };
    }
    case "yarn": {
      let low = Math.floor(yarnCorrectionDim(rope.betaFast, headDim, rope.theta, rope.originalMaxPositions));
      let high = Math.ceil(yarnCorrectionDim(rope.betaSlow, headDim, rope.theta, rope.originalMaxPositions));
      low = Math.max(low, 0);
      high = Math.min(high, headDim - 1);
      if (low === high) high += 0.001;
      const out = base.map((f, i) => {
        const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
        const extrapolation = 1 - ramp;
        return (f / rope.factor) * (1 - extrapolation) + f * extrapolation;
      });
      return { invFreq: out, scale: rope.attentionFactor };
    }
  }
}

/** [positions, headDim/2] f32 cos and sin tables (scale applied), for positions 0..n-1. */
export function ropeTables(rope: RopeSpec, headDim: number, n: number): { cos: Float32Array; sin: Float32Array } {
  const { invFreq, scale } = ropeFrequencies(rope, headDim);
  const half = headDim / 2;
  const cos = new Float32Array(n * half);
  const sin = new Float32Array(n * half);
  for (let p = 0; p < n; p++) {
    for (let i = 0; i < half; i++) {
      // f32 angle, as transformers computes position * inv_freq in float32
      const angle = Math.fround(p * Math.fround(invFreq[i]!));
      cos[p * half + i] = Math.cos(angle) * scale;
      sin[p * half + i] = Math.sin(angle) * scale;
    }
  }
  return { cos, sin };
}

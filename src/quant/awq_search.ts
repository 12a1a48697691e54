// AWQ activation-aware scale search (Lin et al., 2023), as AutoAWQ does it without weight clipping:
// for the linears sharing one input x [T, K], find per-input-channel scales s = mean_t |x[t, :]|^alpha (normalised
// by sqrt(max s * min s)), alpha on a grid in [0, 1), minimising sum over the linears of
// mean((x W^T - x (Q(W diag s) diag 1/s)^T)^2), Q = group RTN. The caller folds 1/s into the op before the linears
// (a norm weight or the previous linear's rows) and quantizes W diag s.
import { dequantize, quantizeRtn } from "./reference.ts";
import type { QuantBits } from "./types.ts";

export interface SearchTarget {
  /** [N, K] f32 */ readonly w: Float32Array;
  readonly outDim: number;
}

export interface ScaleSearchResult {
  /** [K] f32 per-input-channel scales (all ones when alpha = 0 wins) */ readonly scales: Float32Array;
  readonly alpha: number;
  /** the loss at the chosen alpha and at alpha = 0 (plain RTN) */ readonly loss: number;
  readonly rtnLoss: number;
}

/** y[T, N] = x[T, K] W[N, K]^T */
function matmulT(x: Float32Array, T: number, K: number, w: Float32Array, N: number): Float64Array {
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[t * K + k]! * w[n * K + k]!;
      y[t * N + n] = acc;
    }
  }
  return y;
}

/** Rows of x to search on: at most maxRows, evenly spaced. */
function subsample(x: Float32Array, T: number, K: number, maxRows: number): { x: Float32Array; T: number } {
  if (T <= maxRows) return { x, T };
  const out = new Float32Array(maxRows * K);
  for (let i = 0; i < maxRows; i++) {
    out.set(x.subarray(Math.floor(i * T / maxRows) * K, (Math.floor(i * T / maxRows) + 1) * K), i * K);
  }
  return { x: out, T: maxRows };
}

export function searchScales(
  xIn: Float32Array,
  Tin: number,
  K: number,
  targets: readonly SearchTarget[],
  bits: QuantBits,
  group: number,
  opts: { grid?: number; maxRows?: number } = {},
): ScaleSearchResult {
  const { x, T } = subsample(xIn, Tin, K, opts.maxRows ?? 256);
  const grid = opts.grid ?? 20;
  const mean = new Float64Array(K);
  for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) mean[k] = mean[k]! + Math.abs(x[t * K + k]!) / T;
  const refs = targets.map((tg) => matmulT(x, T, K, tg.w, tg.outDim));
  let best: ScaleSearchResult | null = null;
  let rtnLoss = Infinity;
  for (let i = 0; i < grid; i++) {
    const alpha = i / grid;
    const s = new Float32Array(K);
    let mx = 0, mn = Infinity;
    for (let k = 0; k < K; k++) {
      s[k] = Math.max(mean[k]! ** alpha, 1e-4);
      mx = Math.max(mx, s[k]!);
      mn = Math.min(mn, s[k]!);
    }
    const norm = Math.sqrt(mx * mn);
    for (let k = 0; k < K; k++) s[k] = s[k]! / norm;
    let loss = 0;
    targets.forEach((tg, j) => {
      const N = tg.outDim;
      const scaled = new Float32Array(N * K);
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) scaled[n * K + k] = tg.w[n * K + k]! * s[k]!;
      const dq = dequantize(quantizeRtn(scaled, N, K, bits, group));
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) dq[n * K + k] = dq[n * K + k]! / s[k]!;
      const y = matmulT(x, T, K, dq, N), ref = refs[j]!;
      let se = 0;
      for (let m = 0; m < y.length; m++) se += (y[m]! - ref[m]!) ** 2;
      loss += se / y.length;
    });
    if (i === 0) rtnLoss = loss;
    if (!best || loss < best.loss) best = { scales: s, alpha, loss, rtnLoss: 0 };
  }
  return { ...best!, rtnLoss };
}

// GPTQ (Frantar et al., 2022) for our quantizer: quantizes the input channels of W [N, K] one after another and
// spreads each column's rounding error over the channels not yet quantized, weighted by the inverse Hessian of the
// layer's calibration inputs, so that ||X W^T - X W_q^T|| (not ||W - W_q||) is what gets minimized.
//
//   H    = 2/T X^T X + damp * mean(diag) * I        X: [T, K] calibration inputs of this linear
//   U    = upper Cholesky factor of H^-1            (H^-1 = U^T U)
//   for k = 0..K-1:   (group parameters are fixed from the current, already-updated weights when k starts a group)
//     q[:, k] = clamp(round(W[:, k] / s) + z);  e = (W[:, k] - (q - z) * s) / U[k, k]
//     W[:, j] -= e * U[k, j]   for every j > k
// Group parameters use the same rule as quantizeRtn (reference.ts), so the result is an ordinary QuantizedLinear
// that every format writer and kernel handles. Cost: O(K^3 + N K^2) in f64 on the CPU.
import { groupParams } from "./reference.ts";
import type { QuantBits, QuantizedLinear } from "./types.ts";
import { qMax } from "./types.ts";

export interface GptqOptions {
  /** Dampening as a fraction of the mean Hessian diagonal (default 0.01, as the paper). */
  readonly damp?: number;
  /** Smallest zero point (1 for GPTQ v1 storage), as quantizeRtn. */
  readonly minZero?: number;
}

/** H = 2/T X^T X over the rows of X [T, K], f64 [K, K]. */
export function hessian(x: Float32Array, T: number, K: number): Float64Array {
  if (x.length !== T * K) throw new Error(`hessian: ${x.length} values for [${T}, ${K}]`);
  const H = new Float64Array(K * K);
  const row = new Float64Array(K);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < K; i++) row[i] = x[t * K + i]!;
    for (let i = 0; i < K; i++) {
      const a = row[i]!;
      if (a === 0) continue;
      const off = i * K;
      for (let j = i; j < K; j++) H[off + j]! += a * row[j]!;
    }
  }
  const f = 2 / Math.max(1, T);
  for (let i = 0; i < K; i++) {
    for (let j = i; j < K; j++) {
      const v = H[i * K + j]! * f;
      H[i * K + j] = v;
      H[j * K + i] = v;
    }
  }
  return H;
}

/** In-place lower Cholesky factor of a symmetric positive definite A [K, K] (upper triangle zeroed). */
function choleskyLower(A: Float64Array, K: number): void {
  for (let j = 0; j < K; j++) {
    let d = A[j * K + j]!;
    for (let p = 0; p < j; p++) d -= A[j * K + p]! ** 2;
    if (!(d > 0)) throw new Error(`gptq: the Hessian is not positive definite at channel ${j}; raise the dampening`);
    const ljj = Math.sqrt(d);
    A[j * K + j] = ljj;
    for (let i = j + 1; i < K; i++) {
      let s = A[i * K + j]!;
      for (let p = 0; p < j; p++) s -= A[i * K + p]! * A[j * K + p]!;
      A[i * K + j] = s / ljj;
    }
    for (let i = 0; i < j; i++) A[i * K + j] = 0;
  }
}

/** U with H^-1 = U^T U, from H [K, K] (not modified). */
export function inverseCholeskyUpper(H: Float64Array, K: number): Float64Array {
  const L = H.slice();
  choleskyLower(L, K); // H = L L^T
  // Linv = L^-1 (lower), by forward substitution column by column.
  const Li = new Float64Array(K * K);
  for (let c = 0; c < K; c++) {
    Li[c * K + c] = 1 / L[c * K + c]!;
    for (let i = c + 1; i < K; i++) {
      let s = 0;
      for (let p = c; p < i; p++) s += L[i * K + p]! * Li[p * K + c]!;
      Li[i * K + c] = -s / L[i * K + i]!;
    }
  }
  // H^-1 = Linv^T Linv; its lower Cholesky factor M gives U = M^T.
  const Hi = new Float64Array(K * K);
  for (let i = 0; i < K; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let p = i; p < K; p++) s += Li[p * K + i]! * Li[p * K + j]!;
      Hi[i * K + j] = s;
      Hi[j * K + i] = s;
    }
  }
  choleskyLower(Hi, K);
  const U = new Float64Array(K * K);
  for (let i = 0; i < K; i++) for (let j = 0; j <= i; j++) U[j * K + i] = Hi[i * K + j]!;
  return U;
}

/** GPTQ-quantizes w [N, K] f32 with calibration inputs x [T, K]. */
export function quantizeGptq(
  w: Float32Array,
  N: number,
  K: number,
  bits: QuantBits,
  group: number,
  x: Float32Array,
  T: number,
  opts: GptqOptions = {},
): QuantizedLinear {
  if (w.length !== N * K) throw new Error(`quantizeGptq: ${w.length} values for [${N}, ${K}]`);
  if (!Number.isInteger(group) || group <= 0) throw new Error(`quantizeGptq: bad group size ${group}`);
  const bad = w.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`quantizeGptq: non-finite weight at row ${Math.floor(bad / K)}, column ${bad % K}`);
  const H = hessian(x, T, K);
  const W = Float64Array.from(w);
  let mean = 0;
  for (let i = 0; i < K; i++) mean += H[i * K + i]!;
  mean /= K;
  for (let i = 0; i < K; i++) {
    if (H[i * K + i] === 0) {
      // A channel the calibration never excites: its weights cannot matter there; quantize them plainly.
      H[i * K + i] = 1;
    }
    H[i * K + i]! += (opts.damp ?? 0.01) * (mean > 0 ? mean : 1);
  }
  const U = inverseCholeskyUpper(H, K);
  const qm = qMax(bits), nG = Math.ceil(K / group);
  const q = new Uint8Array(N * K), scales = new Float32Array(N * nG), zeros = new Uint16Array(N * nG);
  for (let k = 0; k < K; k++) {
    const g = Math.floor(k / group);
    if (k % group === 0) {
      const end = Math.min(K, k + group);
      for (let n = 0; n < N; n++) {
        const { s, z } = groupParams(W.subarray(n * K + k, n * K + end), bits, opts.minZero ?? 0);
        scales[n * nG + g] = s;
        zeros[n * nG + g] = z;
      }
    }
    const ukk = U[k * K + k]!;
    for (let n = 0; n < N; n++) {
      const s = scales[n * nG + g]!, z = zeros[n * nG + g]!;
      const v = W[n * K + k]!;
      const qi = Math.min(qm, Math.max(0, Math.round(v / s) + z));
      q[n * K + k] = qi;
      const e = (v - (qi - z) * s) / ukk;
      if (e === 0) continue;
      const row = n * K, urow = k * K;
      for (let j = k + 1; j < K; j++) W[row + j]! -= e * U[urow + j]!;
    }
  }
  return { outDim: N, inDim: K, bits, groupSize: group, q, scales, zeros, gIdx: null };
}

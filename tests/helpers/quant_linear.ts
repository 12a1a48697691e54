// Random quantized linears and the TypeScript matmul the CUDA quantized kernels are checked against.
import { roundTo } from "../../src/model/dtype.ts";
import { dequantizeFused, type MmaPacked } from "../../src/quant/pack.ts";
import { type QuantBits, type QuantizedLinear, toF16 } from "../../src/quant/types.ts";
import { randomArray } from "../../src/backends/cuda/testing.ts";
import { quantizeFp8 } from "../../src/quant/fp8.ts";

let seed = Math.floor(Math.random() * 1e9);
/** Fresh random values in [-scale, scale) (a new seed per call). */
export const rnd = (n: number, scale = 1): Float32Array => randomArray(n, ++seed, scale);

/** A random group-quantized [N, K] linear; with actOrder, g_idx assigns a random permutation's runs of G. */
export function randomLinear(bits: QuantBits, N: number, K: number, G: number, actOrder: boolean): QuantizedLinear {
  const qm = (1 << bits) - 1, nG = Math.ceil(K / G);
  const u = rnd(N * K + 2 * N * nG + K);
  const at = (i: number) => (u[i]! + 1) / 2; // [0, 1)
  const q = Uint8Array.from({ length: N * K }, (_, i) => Math.min(qm, Math.floor(at(i) * (qm + 1))));
  const scales = Float32Array.from({ length: N * nG }, (_, i) => toF16((0.5 + at(N * K + i)) / qm / Math.sqrt(K)));
  const zeros = Uint16Array.from({ length: N * nG }, (_, i) => Math.floor(at(N * K + N * nG + i) * (qm + 1)));
  let gIdx: Int32Array | null = null;
  if (actOrder) {
    const order = Array.from({ length: K }, (_, k) => k).sort((a, b) =>
      u[N * K + 2 * N * nG + a]! - u[N * K + 2 * N * nG + b]!
    );
    gIdx = new Int32Array(K);
    order.forEach((k, i) => (gIdx![k] = Math.floor(i / G)));
  }
  return { outDim: N, inDim: K, bits, groupSize: G, q, scales, zeros, gIdx };
}

/**
 * A random FP8 E4M3 [N, K] linear (quantizeFp8 per row and group G) whose rows span scales from ~1e-6 to ~1, so the
 * kernels' 256 s scales and e4m3 * 2^-8 codes (subnormals included) are exercised far from 1.
 */
export function randomFp8Linear(N: number, K: number, G: number): QuantizedLinear {
  const w = rnd(N * K), mag = rnd(N);
  for (let n = 0; n < N; n++) {
    const f = 10 ** (-6 * Math.abs(mag[n]!)) / Math.sqrt(K);
    for (let k = 0; k < K; k++) w[n * K + k]! *= f;
  }
  return quantizeFp8(w, N, K, G);
}

/** randomLinear, or randomFp8Linear for "fp8" (no act-order). */
export function randomQuantLinear(
  fmt: QuantBits | "fp8",
  N: number,
  K: number,
  G: number,
  actOrder: boolean,
): QuantizedLinear {
  return fmt === "fp8" ? randomFp8Linear(N, K, G) : randomLinear(fmt, N, K, G, actOrder);
}

/**
 * y [M, N] = x [M, K] · W^T + bias in f64, W = f16(dequantizeFused(p)) (the kernel's hfma2 result) in packed channel
 * order, x read through perm as the kernel does.
 */
export function reference(p: MmaPacked, x: Float32Array, bias: Float32Array, M: number): Float32Array {
  const { outDim: N, inDim: K } = p;
  const w = roundTo(dequantizeFused(p), "f16");
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    const xr = Float64Array.from({ length: K }, (_, k) => x[m * K + (p.perm ? p.perm[k]! : k)]!);
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += xr[k]! * w[n * K + k]!;
      y[m * N + n] = s + bias[n]!;
    }
  }
  return y;
}

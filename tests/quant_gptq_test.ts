// GPTQ solver (src/quant/gptq_solve.ts): the inverse-Hessian factor, the per-linear objective it minimizes, and the
// whole-model path of `quantize --method gptq` on stories260K with self-generated calibration text.
import assert from "node:assert/strict";
import type { Precision } from "../src/core/types.ts";
import { hessian, inverseCholeskyUpper, quantizeGptq } from "../src/quant/gptq_solve.ts";
import { dequantize, quantizeRtn } from "../src/quant/reference.ts";
import { quantizeModel } from "../src/quant/quantize.ts";
import { compareLogits, windowedLogits } from "../src/quant/eval.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { generateSequence } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { mulberry32 } from "../src/core/prng.ts";
import { STORIES_DIR } from "./helpers/models.ts";

/** Correlated inputs [T, K]: a few shared factors plus per-channel noise of varying size (like real activations). */
function correlatedInputs(T: number, K: number, seed: number): Float32Array {
  const r = mulberry32(seed), F = 4;
  const mix = Float64Array.from({ length: F * K }, () => r() * 2 - 1);
  const gain = Float64Array.from({ length: K }, () => 0.2 + 3 * r() ** 3);
  const x = new Float32Array(T * K);
  for (let t = 0; t < T; t++) {
    const f = Array.from({ length: F }, () => r() * 2 - 1);
    for (let k = 0; k < K; k++) {
      let v = 0.3 * (r() * 2 - 1);
      for (let j = 0; j < F; j++) v += f[j]! * mix[j * K + k]!;
      x[t * K + k] = v * gain[k]!;
    }
  }
  return x;
}

/** sum over t, n of (x_t . (w_n - v_n))^2 */
function outputError(x: Float32Array, T: number, K: number, w: Float32Array, v: Float32Array, N: number): number {
  let e = 0;
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[t * K + k]! * (w[n * K + k]! - v[n * K + k]!);
      e += s * s;
    }
  }
  return e;
}

Deno.test("inverseCholeskyUpper() gives U with U^T U H = I", () => {
  const K = 37, T = 90;
  const H = hessian(correlatedInputs(T, K, 3), T, K);
  for (let i = 0; i < K; i++) H[i * K + i]! += 0.01;
  const U = inverseCholeskyUpper(H, K);
  for (let i = 0; i < K; i++) for (let j = 0; j < i; j++) assert.equal(U[i * K + j], 0, "U is upper triangular");
  let worst = 0;
  for (let i = 0; i < K; i++) {
    for (let j = 0; j < K; j++) {
      // (U^T U H)[i, j]
      let s = 0;
      for (let p = 0; p < K; p++) {
        let hinv = 0;
        for (let q = 0; q < K; q++) hinv += U[q * K + i]! * U[q * K + p]!;
        s += hinv * H[p * K + j]!;
      }
      worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
    }
  }
  assert.ok(worst < 1e-8, `max |U^T U H - I| = ${worst}`);
});

Deno.test("quantizeGptq() lowers the calibration output error below RTN's, with the same group grid", () => {
  const r = mulberry32(11);
  for (const [bits, G, N, K] of [[4, 32, 24, 96], [8, 16, 17, 80], [4, 64, 9, 172]] as const) {
    const T = 3 * K;
    const x = correlatedInputs(T, K, 7 + K);
    const w = Float32Array.from({ length: N * K }, () => (r() * 2 - 1) * 0.1);
    const rtn = quantizeRtn(w, N, K, bits, G);
    const gq = quantizeGptq(w, N, K, bits, G, x, T);
    for (const [i, v] of gq.q.entries()) assert.ok(v < 2 ** bits, `q[${i}] = ${v}`);
    assert.equal(gq.scales.length, N * Math.ceil(K / G));
    const eRtn = outputError(x, T, K, w, dequantize(rtn), N);
    const eGptq = outputError(x, T, K, w, dequantize(gq), N);
    // GPTQ minimizes exactly this objective greedily; on correlated inputs it is well below RTN (measured 0.2-0.5x).
    assert.ok(
      eGptq < 0.8 * eRtn,
      `int${bits} g${G} [${N}x${K}]: GPTQ ${eGptq.toExponential(3)} vs RTN ${eRtn.toExponential(3)}`,
    );
  }
});

async function backendFor(dir: string, p: Precision): Promise<ReferenceBackend> {
  const ck = await openCheckpoint(dir);
  const b = new ReferenceBackend();
  await b.load(ck.spec, ck.weights, p);
  ck.weights.close();
  return b;
}

Deno.test("quantizeModel() --method gptq beats RTN's mean KL on held-out stories260K text", async () => {
  await using f32 = await backendFor(STORIES_DIR, { weight: "f32", kv: "f32", compute: "f32" });
  const sample = async (seed: number) => {
    const params = { ...defaultSamplingParams(), temperature: 1, seed };
    const r = await generateSequence(f32, [1], params, { maxTokens: 255, maxPositions: 512, seed });
    return [1, ...r.ids];
  };
  // Calibration and evaluation text are the f32 model's own samples, from disjoint seeds.
  const calib = [...await sample(5000), ...await sample(5001), ...await sample(5002)];
  const held = [await sample(1000), await sample(1001), await sample(1002)];
  const ref = await Promise.all(held.map((s) => windowedLogits(f32, s, 512, 512)));
  const kl: Record<string, number> = {};
  for (const method of ["rtn", "gptq"] as const) {
    const out = await Deno.makeTempDir({ prefix: `q8_${method}_` });
    await quantizeModel({ model: STORIES_DIR, out, bits: 8, groupSize: 32, method, calibIds: calib, quiet: true });
    await using b = await backendFor(out, { weight: "int8", kv: "f32", compute: "f32" });
    let sum = 0, n = 0;
    for (const [i, s] of held.entries()) {
      const rep = compareLogits(s, 512, 512, await windowedLogits(b, s, 512, 512), ref[i]!);
      sum += rep.meanKl! * rep.comparedPositions;
      n += rep.comparedPositions;
    }
    kl[method] = sum / n;
    await Deno.remove(out, { recursive: true });
  }
  // Measured: RTN 2.0e-2, GPTQ 1.5e-2 (int8 g32). Require a real gain, not noise: at least 10% lower.
  assert.ok(kl.gptq! < 0.9 * kl.rtn!, `mean KL: gptq ${kl.gptq!.toExponential(3)} vs rtn ${kl.rtn!.toExponential(3)}`);
  console.log(`int8 g32 mean KL on held-out text: rtn ${kl.rtn!.toExponential(3)}, gptq ${kl.gptq!.toExponential(3)}`);
});

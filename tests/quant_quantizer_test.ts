import assert from "node:assert/strict";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { layerNames, LINEAR_KEYS } from "../src/model/weights.ts";
import { loadReferenceWeights } from "../src/backends/reference/weights.ts";
import { readAwqLinear } from "../src/quant/awq.ts";
import { readGptqLinear } from "../src/quant/gptq.ts";
import { quantizeModel } from "../src/quant/quantize.ts";
import { dequantize, kvHeadBytes, kvRoundTrip } from "../src/quant/reference.ts";
import { collectActivations } from "../src/quant/calib.ts";
import { applyAwqScales } from "../src/quant/awq_apply.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { readReferenceLogits, STORIES_DIR } from "./helpers/models.ts";

Deno.test("quantizeModel() output reloads through the AWQ / GPTQ readers within the RTN bound |w - dq| <= s/2", async () => {
  const orig = await openCheckpoint(STORIES_DIR);
  const w0 = await loadReferenceWeights(orig.spec, orig.weights, "f32");
  orig.weights.close();
  for (const [bits, G] of [[4, 32], [8, 64]] as const) {
    const out = await Deno.makeTempDir({ prefix: "quantized_" });
    const rep = await quantizeModel({ model: STORIES_DIR, out, bits, groupSize: G, method: "rtn", quiet: true });
    assert.equal(rep.format, bits === 4 ? "awq" : "gptq");
    assert.equal(rep.paddedIntermediateSize, 192); // 172 padded to a multiple of the group
    const cfg = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
    assert.equal(cfg.quantization_config.quant_method, bits === 4 ? "awq" : "gptq");
    await Deno.stat(`${out}/generation_config.json`);
    const ck = await openCheckpoint(out);
    const f = ck.spec.intermediateSize;
    for (let l = 0; l < ck.spec.numLayers; l++) {
      const n = layerNames(l);
      for (const key of LINEAR_KEYS) {
        const orig = w0.layers[l]![key];
        const K0 = key === "down" ? 172 : 64, N0 = orig.length / K0;
        const N = key === "gate" || key === "up" ? f : N0, K = key === "down" ? f : K0;
        const base = n[key].slice(0, -".weight".length);
        const ql = bits === 4
          ? await readAwqLinear(ck.weights, base, N, K, 4, G)
          : await readGptqLinear(ck.weights, base, N, K, 8, G);
        const dq = dequantize(ql), nG = K / G;
        for (let r = 0; r < N; r++) {
          for (let k = 0; k < K; k++) {
            const x = r < N0 && k < K0 ? orig[r * K0 + k]! : 0; // padding must dequantize to 0
            const s = ql.scales[r * nG + Math.floor(k / G)]!;
            assert.ok(
              Math.abs(x - dq[r * K + k]!) <= s / 2 + 1e-7,
              `int${bits} ${base}[${r}, ${k}]: ${x} vs ${dq[r * K + k]}`,
            );
          }
        }
      }
    }
    ck.weights.close();
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("applyAwqScales() folds 1/s so the f32 model computes the same function", async () => {
  const ref = await readReferenceLogits();
  const ck = await openCheckpoint(STORIES_DIR);
  const w = await loadReferenceWeights(ck.spec, ck.weights, "f32");
  ck.weights.close();
  const acts = collectActivations(ck.spec, w, ref.greedy_from_bos);
  const rep = applyAwqScales(ck.spec, w, acts.layers, 4, 32, acts.tokens);
  assert.ok(rep.some((r) => r.groups.some((g) => g.alpha !== null && g.alpha > 0)), "no layer chose scales");
  for (const r of rep) for (const g of r.groups) if (g.alpha !== null) assert.ok(g.loss <= g.rtnLoss);
  const after = collectActivations(ck.spec, w, ref.greedy_from_bos);
  // The last layer's attention output depends on every earlier layer (norms, v, up and down all rescaled).
  const o1 = acts.layers[4]!.oIn, o2 = after.layers[4]!.oIn;
  let oe = 0;
  for (let i = 0; i < o1.length; i++) oe = Math.max(oe, Math.abs(o1[i]! - o2[i]!));
  assert.ok(oe < 1e-4, `attention output changed by ${oe}`);
});

Deno.test("kvRoundTrip() keeps every value within scale/2 and kvHeadBytes() counts the f16 scale and zero", () => {
  let seed = 3;
  const r = () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 8;
  for (const bits of [8, 4] as const) {
    for (let t = 0; t < 50; t++) {
      const x = Float32Array.from({ length: 16 }, r);
      const y = x.slice();
      const s = kvRoundTrip(y, bits);
      for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - y[i]!) <= s / 2 + 1e-6, `int${bits}`);
    }
  }
  assert.deepEqual([128, 8].map((d) => kvHeadBytes(d, "int8")), [132, 12]);
  assert.deepEqual([128, 8].map((d) => kvHeadBytes(d, "int4")), [68, 8]);
});

Deno.test("ReferenceBackend.kvBytesPerBlock() is 2 * layers * block * kvHeads * (headDim * bits/8 + 4) for int KV", async () => {
  const ck = await openCheckpoint(STORIES_DIR);
  await using b = new ReferenceBackend();
  await b.load(ck.spec, ck.weights, { weight: "f32", kv: "int8", compute: "f32" });
  ck.weights.close();
  const { numLayers: L, numKvHeads: kvh, headDim: d } = ck.spec;
  const per = 2 * L * 16 * kvh;
  assert.equal(b.kvBytesPerBlock(16, "f16"), per * d * 2);
  assert.equal(b.kvBytesPerBlock(16, "int8"), per * (d + 4)); // f16 / 2 + the (scale, zero) pair
  assert.equal(b.kvBytesPerBlock(16, "int4"), per * (d / 2 + 4)); // f16 / 4 + the pair
  // At a head dim of 128 the overhead is small: int8 ≈ 1.94x and int4 ≈ 3.76x fewer bytes than f16.
  assert.ok(Math.abs(2 * 128 / kvHeadBytes(128, "int8") - 1.94) < 0.01);
  assert.ok(Math.abs(2 * 128 / kvHeadBytes(128, "int4") - 3.76) < 0.01);
});

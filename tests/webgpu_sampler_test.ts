// GPU token selection (wgsl/sample.wgsl) against the host sampler (src/sampling/sampler.ts), and the routing
// between the two (needsHostSampling).
import assert from "node:assert/strict";
import { SampleOp } from "../src/backends/webgpu/kernels.ts";
import { needsHostSampling, packSampleConfig } from "../src/backends/webgpu/sampling.ts";
import { argmax, defaultSamplingParams, samplingDistribution, uniform } from "../src/sampling/sampler.ts";
import type { SamplingParams } from "../src/core/types.ts";
import { gpuTestSetup, randn, readI32, rng, runPass } from "../src/backends/webgpu/testing.ts";
import { topPAmbiguous } from "./helpers/sampling.ts";

const { gpuTest, ctx, SEED, seedNote } = await gpuTestSetup();
const V = 1000; // not a multiple of the 256-thread workgroup

/** Runs the sampler over `rows` logits rows with explicit (temperature, topK, topP, u) per row. */
async function sampleRows(logits: Float32Array, cfg: [number, number, number, number][]): Promise<Int32Array> {
  const g = ctx!;
  const raw = new DataView(new ArrayBuffer(cfg.length * 16));
  cfg.forEach(([t, k, p, u], i) => {
    raw.setFloat32(i * 16, t, true);
    raw.setUint32(i * 16 + 4, k, true);
    raw.setFloat32(i * 16 + 8, p, true);
    raw.setFloat32(i * 16 + 12, u, true);
  });
  const op = await SampleOp.create(g, `t.sample.${cfg.length}`);
  const ids = g.pool.create("ids", cfg.length * 4);
  op.prepare({ rows: cfg.length, vocab: V, row0: 0 });
  await runPass(g, (pass) => {
    op.encode(pass, { logits: g.pool.upload("logits", logits), cfg: g.pool.upload("cfg", raw), ids });
  });
  return await readI32(g, ids, cfg.length);
}

gpuTest("SampleOp.encode() behaviour: greedy rows pick the argmax, lowest id on ties", async () => {
  const rand = rng(SEED);
  const rows = 4, logits = randn(rand, rows * V, 5);
  logits[1 * V + 7] = 9, logits[1 * V + 500] = 9; // tie: id 7 wins
  logits[2 * V + V - 1] = 9; // max in the last, partial chunk
  const got = await sampleRows(
    logits,
    Array.from({ length: rows }, () => [0, 0, 1, 0.5] as [number, number, number, number]),
  );
  const want = Array.from({ length: rows }, (_, r) => argmax(logits.subarray(r * V, (r + 1) * V)));
  assert.deepEqual([...got], want, seedNote);
  assert.equal(got[1], 7);
});

function params(temperature: number, topK: number, topP: number): SamplingParams {
  return { ...defaultSamplingParams(), temperature, topK, topP };
}

gpuTest("SampleOp.encode() behaviour: top-k/top-p draws walk the host sampler's kept set in id order", async () => {
  const rand = rng(SEED + 1);
  const settings = [params(1, 0, 1), params(0.7, 5, 1), params(1.3, 0, 0.9), params(0.8, 50, 0.8), params(1, 1, 1)];
  const us = Array.from({ length: 12 }, (_, i) => Math.fround((i + rand()) / 12));
  const base = settings.map(() => randn(rand, V, 4));
  const logits = new Float32Array(settings.length * us.length * V);
  const cfg: [number, number, number, number][] = [];
  settings.forEach((p, s) =>
    us.forEach((u) => {
      logits.set(base[s]!, cfg.length * V);
      cfg.push([p.temperature, p.topK, p.topP, u]);
    })
  );
  const got = await sampleRows(logits, cfg);
  let checked = 0;
  settings.forEach((p, s) => {
    const row = base[s]!;
    if (topPAmbiguous(row, p, 1e-5)) return; // the nucleus edge is within rounding: both answers are right
    const state = { params: p, promptIds: [], outputIds: [], fallbackSeed: 0 };
    const dist = samplingDistribution(row, state);
    const kept = dist.ids.map((id, i) => ({ id, prob: dist.probs[i]! })).sort((a, b) => a.id - b.id);
    us.forEach((u, j) => {
      // The GPU walks the kept ids in id order until the running mass exceeds u. A draw within 1e-5 of a
      // boundary may go either way in f32, so only clear-cut draws are compared (f32 mass sums: ~1e-6 error).
      let cum = 0, want = kept[kept.length - 1]!.id, near = false;
      for (const k of kept) {
        cum += k.prob;
        if (Math.abs(cum - u) < 1e-5) near = true;
        if (u < cum) {
          want = k.id;
          break;
        }
      }
      if (near) return;
      const id = got[s * us.length + j]!;
      assert.equal(id, want, `setting ${JSON.stringify(p)} u=${u}: GPU ${id}, host walk ${want} ${seedNote}`);
      checked++;
    });
  });
  assert.ok(checked >= 30, `only ${checked} clear-cut draws were compared ${seedNote}`);
});

Deno.test("needsHostSampling() behaviour: GPU for greedy and plain top-k/top-p, host for the rest", () => {
  const d = defaultSamplingParams();
  assert.equal(needsHostSampling({ ...d, temperature: 0 }), false);
  assert.equal(needsHostSampling({ ...d, temperature: 0, seed: 5 }), false); // greedy ignores the seed
  assert.equal(needsHostSampling({ ...d, topK: 40, topP: 0.9 }), false);
  assert.equal(needsHostSampling({ ...d, temperature: 0, logprobs: true }), true);
  assert.equal(needsHostSampling({ ...d, temperature: 0, repetitionPenalty: 1.1 }), true);
  assert.equal(needsHostSampling({ ...d, presencePenalty: 0.5 }), true);
  assert.equal(needsHostSampling({ ...d, frequencyPenalty: -0.5 }), true);
  assert.equal(needsHostSampling({ ...d, minP: 0.05 }), true);
  assert.equal(needsHostSampling({ ...d, seed: 42 }), true);
});

Deno.test("packSampleConfig() behaviour: rows carry the host sampler's draw for the next output token", () => {
  const p = { ...defaultSamplingParams(), temperature: 0.5, topK: 7, topP: 0.25 };
  const buf = packSampleConfig([
    { params: p, promptIds: [1], outputIds: [3, 4], fallbackSeed: 99 },
    { params: { ...p, temperature: 0, topK: -1, topP: 1 }, promptIds: [1], outputIds: [], fallbackSeed: 1 },
  ]);
  const v = new DataView(buf);
  assert.deepEqual([v.getFloat32(0, true), v.getUint32(4, true), v.getFloat32(8, true)], [0.5, 7, 0.25]);
  assert.equal(v.getFloat32(12, true), Math.fround(uniform(99, 2)));
  assert.deepEqual([v.getFloat32(16, true), v.getUint32(20, true), v.getFloat32(24, true)], [0, 0, 1]);
});

// WebGpuBackend end to end on stories260K (shared/models): logits against transformers, greedy decoding, f16
// storage, batching of mixed prefill and decode, copy-on-write, and the KV binding limit.
import assert from "node:assert/strict";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { createWebGpuBackend, type WebGpuBackend, type WebGpuOptions } from "../src/backends/webgpu/backend.ts";
import { probeWebGpu } from "../src/backends/webgpu/device.ts";
import { gpuTestRegistrar, relError } from "../src/backends/webgpu/testing.ts";
import { generateSequence, sequenceLogits } from "../src/engine/sequential.ts";
import { argmax, defaultSamplingParams, sampleToken } from "../src/sampling/sampler.ts";
import type { Precision, SamplingParams, StepInputs } from "../src/core/types.ts";
import { readReferenceLogits, STORIES_DIR } from "./helpers/models.ts";

const probe = await probeWebGpu();
const gpuTest = gpuTestRegistrar(probe);
const greedy: SamplingParams = { ...defaultSamplingParams(), temperature: 0 };
const F32: Precision = { weight: "f32", kv: "f32", compute: "f32" };
const V = 512;

/** Loads stories260K; a 16-bit precision gets f16 KV where the device has shader-f16. */
async function loadStories(precision = F32, opts: WebGpuOptions = {}): Promise<WebGpuBackend> {
  const ckpt = await openCheckpoint(STORIES_DIR);
  const backend = await createWebGpuBackend(opts);
  const kv = precision.kv === "f16" && !backend.supports.kv.includes("f16") ? "f32" : precision.kv;
  await backend.load(ckpt.spec, ckpt.weights, { ...precision, kv });
  ckpt.weights.close();
  return backend;
}

async function greedyAgreement(backend: WebGpuBackend, expected: number[]): Promise<number> {
  const out = await generateSequence(backend, [1], greedy, { maxTokens: expected.length, maxPositions: 512 });
  let n = 0;
  while (n < expected.length && out.ids[n] === expected[n]) n++;
  return n;
}

gpuTest("WebGpuBackend.forward() behaviour: f32 logits match transformers on stories260K", async () => {
  const ref = await readReferenceLogits();
  await using backend = await loadStories();
  for (const c of ref.cases) {
    const err = relError(await sequenceLogits(backend, c.tokens, greedy), c.logits.flat());
    // f32 end to end; the reference logits are transformers f32 (5e-6 from f64). Bound 1e-4 as for the reference.
    assert.ok(err < 1e-4, `case of ${c.tokens.length} tokens: max relative error ${err} >= 1e-4`);
  }
});

gpuTest("generateSequence() behaviour on WebGpuBackend: f32 greedy ids equal greedy_from_bos (64 tokens)", async () => {
  const ref = await readReferenceLogits();
  await using backend = await loadStories();
  const expected = ref.greedy_from_bos.slice(1);
  assert.equal(await greedyAgreement(backend, expected), expected.length, "greedy ids diverge");
});

gpuTest("WebGpuBackend.forward() behaviour: f16 weights and KV stay within 2e-2 of transformers", async () => {
  const ref = await readReferenceLogits();
  await using backend = await loadStories({ weight: "f16", kv: "f16", compute: "f32" });
  for (const c of ref.cases) {
    const err = relError(await sequenceLogits(backend, c.tokens, greedy), c.logits.flat());
    // f16 rounds each weight (and cached K/V) by <= 2^-11 relative; through 5 layers the logits move by about
    // 5e-3 of their scale (measured). Bound 2e-2.
    assert.ok(err < 2e-2, `f16 case of ${c.tokens.length} tokens: max relative error ${err} >= 2e-2`);
  }
  const n = await greedyAgreement(backend, ref.greedy_from_bos.slice(1));
  assert.ok(n >= 32, `f16 greedy ids agree for ${n} tokens, expected >= 32`);
  // Against the reference backend's own f16 emulation (same rounded weights): what is left is K/V elements
  // rounding to a neighbouring f16 (2^-10) and f32 summation order, ~1e-4 measured. Bound 1e-3.
  const ckpt = await openCheckpoint(STORIES_DIR);
  const host = new ReferenceBackend();
  const kv = backend.supports.kv.includes("f16") ? "f16" : "f32";
  await host.load(ckpt.spec, ckpt.weights, { weight: "f16", kv, compute: "f32" });
  for (const c of ref.cases) {
    const err = relError(await sequenceLogits(backend, c.tokens, greedy), await sequenceLogits(host, c.tokens, greedy));
    assert.ok(err < 1e-3, `f16 case of ${c.tokens.length} tokens vs ReferenceBackend f16: ${err} >= 1e-3`);
  }
});

interface Chunk {
  readonly ids: readonly number[];
  readonly start: number;
  readonly table: readonly number[];
  readonly sample: boolean;
}

/** StepInputs for several sequences, each adding `ids` at positions start.. through its block table. */
function buildStep(chunks: readonly Chunk[], bs: number, allLogits: boolean, params = greedy): StepInputs {
  const tokens: number[] = [], positions: number[] = [], slots: number[] = [], qs = [0];
  const mb = Math.max(...chunks.map((c) => c.table.length));
  const bt = new Int32Array(chunks.length * mb).fill(-1);
  chunks.forEach((c, b) => {
    bt.set(c.table, b * mb);
    c.ids.forEach((id, i) => {
      const p = c.start + i;
      tokens.push(id);
      positions.push(p);
      slots.push(c.table[Math.floor(p / bs)]! * bs + (p % bs));
    });
    qs.push(tokens.length);
  });
  return {
    tokens: Int32Array.from(tokens),
    positions: Int32Array.from(positions),
    queryStarts: Int32Array.from(qs),
    contextLens: Int32Array.from(chunks.map((c) => c.start + c.ids.length)),
    blockTables: bt,
    maxBlocksPerSeq: mb,
    blockSize: bs,
    slots: Int32Array.from(slots),
    sample: chunks.map((c) => c.sample),
    sampling: chunks.map((c) => ({ params, promptIds: c.ids, outputIds: [], fallbackSeed: 7 })),
    allLogits,
  };
}

gpuTest(
  "WebGpuBackend.forward() behaviour: a mixed prefill + decode batch equals the sequences run alone",
  async () => {
    const ref = await readReferenceLogits();
    const a = ref.cases[0]!.tokens, b = ref.cases[1]!.tokens;
    await using backend = await loadStories();
    const bs = 4, blocks = 40;
    // Each sequence: its earlier chunk (already cached when the batch runs) and its chunk in the batched step.
    const seqs: { history: Chunk | null; now: Chunk }[] = [
      { history: null, now: { ids: b.slice(0, 8), start: 0, table: [3, 17], sample: true } }, // whole prompt
      {
        history: { ids: b.slice(0, 11), start: 0, table: [20, 1, 9], sample: true },
        now: { ids: [b[11]!], start: 11, table: [20, 1, 9], sample: true },
      }, // decode
      { history: null, now: { ids: a.slice(0, 5), start: 0, table: [30, 31], sample: false } }, // unsampled chunk
      {
        history: { ids: b.slice(0, 5), start: 0, table: [8, 2, 33, 34, 35, 36], sample: false },
        now: { ids: b.slice(5, 23), start: 5, table: [8, 2, 33, 34, 35, 36], sample: true },
      }, // 2nd chunk, 2 tiles
    ];
    const histories = seqs.flatMap((s) => (s.history ? [s.history] : []));
    backend.allocateKv(blocks, bs);
    await backend.forward(buildStep(histories, bs, false));
    const batched = await backend.forward(buildStep(seqs.map((s) => s.now), bs, true));
    const sampled = await backend.forward(buildStep(seqs.map((s) => s.now), bs, false)); // same KV writes again
    let row = 0;
    for (const [i, s] of seqs.entries()) {
      backend.allocateKv(blocks, bs);
      if (s.history) await backend.forward(buildStep([s.history], bs, false));
      const alone = (await backend.forward(buildStep([s.now], bs, true))).logits!;
      const n = s.now.ids.length;
      const mine = batched.logits!.subarray(row * V, (row + n) * V);
      // f32 both ways; batching only changes GEMV vs GEMM summation order (~1e-6 measured). Bound 1e-5.
      const err = relError(mine, alone);
      assert.ok(err < 1e-5, `sequence ${i}: batched vs alone logits differ by ${err} >= 1e-5`);
      const last = argmax(alone.subarray((n - 1) * V, n * V));
      assert.equal(batched.tokens[i], s.now.sample ? last : -1, `sequence ${i}: host-sampled id`);
      assert.equal(sampled.tokens[i], s.now.sample ? last : -1, `sequence ${i}: GPU-sampled id`);
      row += n;
    }
  },
);

gpuTest("WebGpuBackend.copyBlocks() behaviour: copied blocks give the same logits as the originals", async () => {
  const ids = (await readReferenceLogits()).cases[1]!.tokens.slice(0, 11);
  await using backend = await loadStories();
  const bs = 4;
  backend.allocateKv(8, bs);
  await backend.forward(buildStep([{ ids: ids.slice(0, 10), start: 0, table: [0, 1, 2], sample: false }], bs, false));
  backend.copyBlocks(Int32Array.of(0, 1, 2), Int32Array.of(5, 6, 7));
  const next = (table: number[]) =>
    backend.forward(buildStep([{ ids: [ids[10]!], start: 10, table, sample: true }], bs, true));
  const orig = (await next([0, 1, 2])).logits!, copy = (await next([5, 6, 7])).logits!;
  assert.deepEqual(copy, orig, "identical K/V and identical kernels must give bitwise equal logits");
});

gpuTest("WebGpuBackend.allocateKv() behaviour: sizes memory(), refuses a layer beyond the binding limit", async () => {
  await using backend = await loadStories();
  const before = backend.memory().freeBytes;
  backend.allocateKv(64, 16);
  const perLayer = 64 * 16 * 4 * 8 * 4; // blocks x blockSize x kvHeads x headDim x f32
  assert.ok(backend.memory().freeBytes <= before - 2 * 5 * perLayer, "allocated KV must reduce freeBytes");
  assert.throws(() => backend.allocateKv(2 ** 30, 16), /maxStorageBufferBindingSize/);
  // A second load() frees the first model's weights and KV: the budget is back where it was.
  const ckpt = await openCheckpoint(STORIES_DIR);
  await backend.load(ckpt.spec, ckpt.weights, F32);
  assert.equal(backend.memory().freeBytes, before, "reloading must not leak buffers");
});

gpuTest(
  "WebGpuBackend.forward() behaviour: GPU top-k and host penalty sampling pick what sampleToken() picks",
  async () => {
    const ids = (await readReferenceLogits()).cases[1]!.tokens.slice(0, 9);
    await using backend = await loadStories();
    const bs = 4;
    backend.allocateKv(16, bs);
    const topK = { ...defaultSamplingParams(), temperature: 0.9, topK: 20, topP: 0.95 };
    const penal = { ...greedy, repetitionPenalty: 1.3 };
    const chunks: Chunk[] = [0, 1, 2].map((b) => ({
      ids,
      start: 0,
      table: [b * 3, b * 3 + 1, b * 3 + 2],
      sample: true,
    }));
    const step = buildStep(chunks, bs, false);
    const withParams = {
      ...step,
      sampling: [topK, penal, greedy].map((p) => ({ params: p, promptIds: ids, outputIds: [], fallbackSeed: 11 })),
    };
    const res = await backend.forward(withParams);
    const logits = (await backend.forward({ ...withParams, allLogits: true })).logits!;
    const last = logits.subarray((ids.length - 1) * V, ids.length * V);
    withParams.sampling.forEach((st, b) => assert.equal(res.tokens[b], sampleToken(last, st).id, `sequence ${b}`));
  },
);

// WorkerBackend: the WebGPU backend on a worker thread gives the same results as in-thread, refuses bad KV calls
// synchronously, and leaves the main event loop free while the GPU works.
import assert from "node:assert/strict";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { probeWebGpu } from "../src/backends/webgpu/device.ts";
import { gpuTestRegistrar, relError } from "../src/backends/webgpu/testing.ts";
import { createWebGpuWorkerBackend, type WorkerBackend } from "../src/backends/webgpu/worker_backend.ts";
import { generateSequence, sequenceLogits } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/sampler.ts";
import { readReferenceLogits, STORIES_DIR } from "./helpers/models.ts";
import type { StepInputs } from "../src/core/types.ts";

const probe = await probeWebGpu();
const gpuTest = gpuTestRegistrar(probe);
const greedy = { ...defaultSamplingParams(), temperature: 0 };

async function loadStories(): Promise<WorkerBackend> {
  const ckpt = await openCheckpoint(STORIES_DIR);
  const backend = await createWebGpuWorkerBackend();
  let calls = 0;
  await backend.load(ckpt.spec, ckpt.weights, { weight: "f32", kv: "f32", compute: "f32" }, () => calls++);
  ckpt.weights.close();
  assert.ok(calls > 0, "load progress must reach the main thread");
  return backend;
}

gpuTest("WorkerBackend.forward() behaviour: stories260K logits and greedy ids as in-thread", async () => {
  const ref = await readReferenceLogits();
  await using backend = await loadStories();
  assert.match(backend.device, /in a worker/);
  for (const c of ref.cases) {
    const err = relError(await sequenceLogits(backend, c.tokens, greedy), c.logits.flat());
    // The same f32 kernels as in-thread (bound 1e-4, see webgpu_model_test.ts).
    assert.ok(err < 1e-4, `case of ${c.tokens.length} tokens: max relative error ${err} >= 1e-4`);
  }
  const expected = ref.greedy_from_bos.slice(1, 17);
  const out = await generateSequence(backend, [1], greedy, { maxTokens: 16, maxPositions: 512 });
  assert.deepEqual(out.ids, expected);
});

gpuTest("WorkerBackend.decodeSteps() behaviour: runs in the worker equal single forward() steps", async () => {
  await using backend = await loadStories();
  backend.allocateKv(8, 16);
  const ref = await readReferenceLogits();
  const prompts = [ref.cases[0]!.tokens.slice(0, 7), ref.cases[1]!.tokens.slice(0, 12)];
  const sampled = { ...defaultSamplingParams(), temperature: 0.8, topK: 50, topP: 0.9 };
  // Sequence s owns blocks [4s, 4s + 4) of 16 positions.
  const step = (tokens: number[], pos: number[], outs: number[][], sample = true): StepInputs => ({
    tokens: Int32Array.from(tokens),
    positions: Int32Array.from(pos),
    queryStarts: Int32Array.from({ length: tokens.length + 1 }, (_, i) => i),
    contextLens: Int32Array.from(pos, (p) => p + 1),
    blockTables: Int32Array.from({ length: 8 }, (_, i) => i),
    maxBlocksPerSeq: 4,
    blockSize: 16,
    slots: Int32Array.from(pos, (p, s) => 64 * s + p),
    sample: tokens.map(() => sample),
    sampling: outs.map((o, s) => ({
      params: sampled,
      promptIds: prompts[s]!,
      outputIds: o.slice(),
      fallbackSeed: 11 + s,
    })),
  });
  const prefill = async () => {
    for (const [s, p] of prompts.entries()) {
      await backend.forward({
        ...step(p, p.map((_, i) => i), [[]], false),
        queryStarts: Int32Array.of(0, p.length),
        contextLens: Int32Array.of(p.length),
        blockTables: Int32Array.from({ length: 4 }, (_, i) => 4 * s + i),
        slots: Int32Array.from(p, (_, i) => 64 * s + i),
        sample: [false],
        sampling: [{ params: greedy, promptIds: p, outputIds: [], fallbackSeed: 0 }],
      });
    }
  };
  const k = 5, runs = 2; // two back-to-back runs: the second starts from the first one's look-ahead
  await prefill();
  const single: number[][] = [[], []];
  for (let j = 0; j < k * runs; j++) {
    const tokens = prompts.map((p, s) => single[s]!.at(-1) ?? p.at(-1)!);
    const r = await backend.forward(step(tokens, prompts.map((p) => p.length - 1 + j), single));
    r.tokens.forEach((t, s) => single[s]!.push(t));
  }
  await prefill();
  const multi: number[][] = [[], []];
  for (let i = 0; i < runs; i++) {
    const tokens = prompts.map((p, s) => multi[s]!.at(-1) ?? p.at(-1)!);
    const ids = await backend.decodeSteps(step(tokens, prompts.map((p) => p.length - 1 + i * k), multi), k);
    for (let j = 0; j < k; j++) multi.forEach((m, s) => m.push(ids[2 * j + s]!));
  }
  assert.deepEqual(multi, single);
  await assert.rejects(() => backend.decodeSteps(step([1], [62], [[]]), 4), RangeError); // past the block table
});

gpuTest("WorkerBackend.allocateKv() behaviour: refuses bad sizes synchronously and updates memory()", async () => {
  await using backend = await loadStories();
  const before = backend.memory().freeBytes;
  assert.ok(before > 0);
  assert.throws(() => backend.allocateKv(2 ** 30, 16), /maxStorageBufferBindingSize/);
  backend.allocateKv(32, 16);
  assert.ok(backend.memory().freeBytes < before);
  assert.throws(() => backend.copyBlocks(Int32Array.of(0), Int32Array.of(32)), /outside/);
});

gpuTest("WorkerBackend.forward() behaviour: the main event loop keeps running during a GPU step", async () => {
  const ref = await readReferenceLogits();
  await using backend = await loadStories();
  const ids = Array.from({ length: 480 }, (_, i) => ref.cases[1]!.tokens[i % 32]!); // a long prefill
  await sequenceLogits(backend, ids.slice(0, 8), greedy); // warm up (pipeline compiles)
  let last = performance.now(), maxGap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 1);
  const t0 = performance.now();
  await sequenceLogits(backend, ids, greedy);
  const stepMs = performance.now() - t0;
  clearInterval(timer);
  // In-thread, Deno blocks the loop for the whole GPU wait (gap ~ stepMs). A worker leaves only the
  // message handling and the logits copy on this thread.
  assert.ok(
    maxGap < Math.max(50, stepMs / 2),
    `event loop stalled ${maxGap.toFixed(1)} ms of a ${stepMs.toFixed(1)} ms step`,
  );
});

// Engine behaviour over the reference backend: capacity follows the KV precision, stop strings, aborts free blocks.
import assert from "node:assert/strict";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { Engine } from "../src/engine/engine.ts";
import type { KvDType } from "../src/core/types.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { createByteTokenizer } from "../src/tokenizer/mod.ts";
import { buildDemoModel } from "../src/model/demo.ts";
import { readReferenceLogits, STORIES_DIR } from "./helpers/models.ts";

const greedy = { ...defaultSamplingParams(), temperature: 0 };
const config = { blockSize: 16, maxBatchedTokens: 256, maxBatchSize: 32, cacheFraction: 0.5, enablePrefixCache: true };

async function storiesEngine(kv: KvDType, memoryBytes = 8 << 20): Promise<Engine> {
  const ck = await openCheckpoint(STORIES_DIR);
  const backend = new ReferenceBackend({ memoryBytes });
  const precision = { weight: "f32", kv, compute: "f32" } as const;
  await backend.load(ck.spec, ck.weights, precision);
  ck.weights.close();
  return new Engine(backend, ck.spec, precision, null, config);
}

Deno.test("Engine sizes the KV pool from free memory and the KV precision", async () => {
  const blocks: Record<string, number> = {};
  for (const kv of ["f32", "f16", "int8", "int4"] as const) {
    await using e = await storiesEngine(kv);
    blocks[kv] = e.kv.numFreeBlocks();
    // 8 MiB * 0.5 / bytes per block
    assert.equal(blocks[kv], Math.floor((8 << 20) * 0.5 / e.backend.kvBytesPerBlock(16, kv)));
  }
  assert.ok(Math.abs(blocks.f16! - 2 * blocks.f32!) <= 1, "f16 holds twice the tokens of f32");
  // head_dim 8: int8 stores 8 + 4 scale/zero bytes per head (vs 16), int4 stores 4 + 4.
  assert.ok(blocks.int8! / blocks.f16! > 1.3, `int8 holds more tokens than f16 (${blocks.int8} vs ${blocks.f16})`);
  assert.ok(blocks.int4! > blocks.int8!);
});

Deno.test("Engine.submit() streams the greedy continuation and frees every block afterwards", async () => {
  const ref = await readReferenceLogits();
  await using e = await storiesEngine("f32");
  const idle = e.kv.numFreeBlocks();
  const h = e.submit({ promptIds: [1], sampling: greedy, maxTokens: 64 });
  const ids: number[] = [];
  for await (const d of h) ids.push(...d.ids);
  const r = await h.result;
  assert.deepEqual(ids, ref.greedy_from_bos.slice(1));
  assert.equal(r.finishReason, "length");
  assert.equal(r.completionTokens, 64);
  assert.equal(e.kv.numFreeBlocks(), idle);
  e.kv.checkIntegrity();
});

Deno.test("Engine.abort() ends a running request at once and returns its blocks", async () => {
  await using e = await storiesEngine("f32");
  const idle = e.kv.numFreeBlocks();
  const h = e.submit({ promptIds: [1, 2, 3], sampling: greedy, maxTokens: 200, ignoreEos: true });
  let n = 0;
  for await (const d of h) {
    n += d.ids.length;
    if (n >= 5) break; // leaving the loop aborts the request
  }
  const r = await h.result;
  assert.equal(r.finishReason, "abort");
  assert.equal(e.numRequests, 0);
  assert.equal(e.kv.numFreeBlocks(), idle);
  e.kv.checkIntegrity();
});

Deno.test("Engine stop strings cut the text before the match and end the request", async () => {
  const tok = createByteTokenizer();
  const { spec, weights } = buildDemoModel(tok.vocabSize, [...tok.stopTokenIds], tok.bosTokenId ?? 0);
  const backend = new ReferenceBackend();
  const precision = { weight: "f32", kv: "f32", compute: "f32" } as const;
  await backend.load(spec, weights, precision);
  await using e = new Engine(backend, spec, precision, tok, config);
  const prompt = tok.encode("hello", { addSpecialTokens: false });
  // First learn what the model says, then stop on a piece of it.
  const free = e.submit({ promptIds: prompt, sampling: greedy, maxTokens: 24, ignoreEos: true });
  let full = "";
  for await (const d of free) full += d.text;
  const stop = full.slice(6, 9);
  assert.ok(stop.length === 3 && !full.slice(0, 6).includes(stop), `usable stop string in ${JSON.stringify(full)}`);
  const h = e.submit({ promptIds: prompt, sampling: greedy, maxTokens: 24, ignoreEos: true, stopStrings: [stop] });
  let text = "";
  for await (const d of h) text += d.text;
  const r = await h.result;
  assert.equal(text, full.slice(0, full.indexOf(stop)));
  assert.equal(r.finishReason, "stop");
  assert.equal(r.stopReason, stop);
});

import assert from "node:assert/strict";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { generateSequence, sequenceLogits } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { maxRelError, readReferenceLogits, STORIES_DIR } from "./helpers/models.ts";

const greedy = { ...defaultSamplingParams(), temperature: 0 };

async function loadStories(): Promise<ReferenceBackend> {
  const ckpt = await openCheckpoint(STORIES_DIR);
  const backend = new ReferenceBackend();
  await backend.load(ckpt.spec, ckpt.weights, { weight: "f32", kv: "f32", compute: "f32" });
  ckpt.weights.close();
  return backend;
}

Deno.test("ReferenceBackend.forward() matches transformers logits on stories260K", async () => {
  const ref = await readReferenceLogits();
  await using backend = await loadStories();
  assert.ok(ref.cases.length > 0);
  for (const c of ref.cases) {
    const logits = await sequenceLogits(backend, c.tokens, greedy);
    const vocab = 512;
    assert.equal(logits.length, c.tokens.length * vocab);
    const err = maxRelError(logits, c.logits.flat());
    assert.ok(err < 1e-4, `case of ${c.tokens.length} tokens: max relative error ${err} >= 1e-4`);
  }
});

Deno.test("generateSequence() reproduces the greedy continuation of stories260K", async () => {
  const ref = await readReferenceLogits();
  await using backend = await loadStories();
  const expected = ref.greedy_from_bos.slice(1);
  const out = await generateSequence(backend, [1], greedy, {
    maxTokens: expected.length,
    maxPositions: backend.spec.maxPositions,
  });
  assert.deepEqual(out.ids, expected);
});

Deno.test("ReferenceBackend.forward() gives the same logits with small blocks and chunked prefill", async () => {
  const ref = await readReferenceLogits();
  const c = ref.cases.reduce((a, b) => (b.tokens.length > a.tokens.length ? b : a));
  await using backend = await loadStories();
  // One pass with block size 16 vs. the prompt split over two steps with block size 3 and a scattered table.
  const whole = await sequenceLogits(backend, c.tokens, greedy, { blockSize: 16 });
  const bs = 3;
  const nBlocks = Math.ceil(c.tokens.length / bs);
  backend.allocateKv(nBlocks * 2 + 1, bs);
  const table = Int32Array.from({ length: nBlocks }, (_, i) => 2 * nBlocks - 2 * i); // reversed, sparse
  const split = Math.floor(c.tokens.length / 2);
  const rows: Float32Array[] = [];
  for (const [a, b] of [[0, split], [split, c.tokens.length]] as const) {
    const n = b - a;
    const positions = Int32Array.from({ length: n }, (_, i) => a + i);
    const res = await backend.forward({
      tokens: Int32Array.from(c.tokens.slice(a, b)),
      positions,
      queryStarts: Int32Array.of(0, n),
      contextLens: Int32Array.of(b),
      blockTables: table,
      maxBlocksPerSeq: table.length,
      blockSize: bs,
      slots: positions.map((p) => table[Math.floor(p / bs)]! * bs + (p % bs)),
      sample: [true],
      sampling: [{ params: greedy, promptIds: c.tokens, outputIds: [], fallbackSeed: 0 }],
      allLogits: true,
    });
    rows.push(res.logits!);
  }
  const joined = new Float32Array(whole.length);
  joined.set(rows[0]!, 0);
  joined.set(rows[1]!, rows[0]!.length);
  assert.ok(maxRelError(joined, whole) < 1e-5, `chunked prefill differs: ${maxRelError(joined, whole)}`);
});

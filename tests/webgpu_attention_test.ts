// Paged attention on WebGPU (decode with and without split-K, chunked prefill mixed with decode) against
// ops.pagedAttention() on fresh random caches, queries and scattered block tables.
import assert from "node:assert/strict";
import * as ops from "../src/backends/reference/ops.ts";
import { AttentionOp, planAttention } from "../src/backends/webgpu/attention.ts";
import type { StorageType } from "../src/backends/webgpu/shaders.ts";
import {
  gpuTestSetup,
  randn,
  readF32,
  relError,
  rng,
  runPass,
  toPagedLayout,
  uploadAs,
} from "../src/backends/webgpu/testing.ts";

const { gpuTest, ctx, SEED, seedNote } = await gpuTestSetup();
const kvTypes: StorageType[] = ctx?.hasF16 ? ["f32", "f16"] : ["f32"];

interface Case {
  readonly d: number;
  readonly nh: number;
  readonly nkv: number;
  /** Per sequence: context length after the step, and new (query) tokens. */
  readonly seqs: readonly { ctx: number; q: number }[];
  readonly window?: number;
  readonly partition?: number;
}

/** Runs one case on the GPU and on the host; returns max |gpu - ref| / max |ref|. */
async function runCase(c: Case, kt: StorageType, rand: () => number): Promise<number> {
  const g = ctx!;
  const { d, nh, nkv } = c, bs = 5; // block size 5: contexts are not block multiples
  const B = c.seqs.length;
  const need = c.seqs.map((s) => Math.ceil(s.ctx / bs));
  const numBlocks = need.reduce((a, b) => a + b, 0) + 3;
  const maxBlocks = Math.max(...need) + 1; // one -1 pad column
  const perm = Array.from({ length: numBlocks }, (_, i) => i).sort(() => rand() - 0.5);
  const bt = new Int32Array(B * maxBlocks).fill(-1);
  let next = 0;
  c.seqs.forEach((_s, b) => {
    for (let j = 0; j < need[b]!; j++) bt[b * maxBlocks + j] = perm[next++]!;
  });
  const qs = [0];
  const positions: number[] = [];
  for (const s of c.seqs) {
    for (let p = s.ctx - s.q; p < s.ctx; p++) positions.push(p);
    qs.push(positions.length);
  }
  const T = positions.length, stride = (nh + 2 * nkv) * d;
  const qkv = randn(rand, T * stride, 1.5);
  const q = new Float32Array(T * nh * d);
  for (let t = 0; t < T; t++) q.set(qkv.subarray(t * stride, t * stride + nh * d), t * nh * d);
  const elems = numBlocks * bs * nkv * d;
  const kRef = randn(rand, elems, 1.5), vRef = randn(rand, elems);
  const kc = uploadAs(g, "kc", toPagedLayout(kRef, numBlocks, bs, nkv, d), kt);
  const vc = uploadAs(g, "vc", toPagedLayout(vRef, numBlocks, bs, nkv, d), kt);
  const queryStarts = Int32Array.from(qs), pos = Int32Array.from(positions);
  const window = c.window ?? null;
  const want = ops.pagedAttention({
    q,
    // The reference reads what the GPU holds: f16-rounded caches in the f16 case (re-laid out back).
    kCache: kt === "f16" ? fromPaged(kc.values, numBlocks, bs, nkv, d) : kRef,
    vCache: kt === "f16" ? fromPaged(vc.values, numBlocks, bs, nkv, d) : vRef,
    positions: pos,
    queryStarts,
    blockTables: bt,
    maxBlocksPerSeq: maxBlocks,
    blockSize: bs,
    numHeads: nh,
    kvHeads: nkv,
    headDim: d,
    scale: 1 / Math.sqrt(d),
    slidingWindow: window,
  });
  const plan = planAttention(queryStarts, pos, nh, window, { partition: c.partition });
  if (c.partition) assert.ok(plan.maxSplits > 1, "the case must exercise split-K");
  const op = await AttentionOp.create(g, `t.attn.${kt}.${d}`, kt, d);
  op.prepare({
    numHeads: nh,
    kvHeads: nkv,
    headDim: d,
    blockSize: bs,
    numBlocks,
    maxBlocks,
    qStride: stride,
    window,
    scale: 1 / Math.sqrt(d),
  }, plan);
  const out = g.pool.create("out", T * nh * d * 4);
  const u = (label: string, a: ArrayBufferView) => g.pool.upload(label, a.byteLength ? a : new Uint32Array(1));
  await runPass(g, (pass) =>
    op.encode(pass, {
      qkv: g.pool.upload("qkv", qkv),
      kc: kc.buf,
      vc: vc.buf,
      bt: u("bt", bt),
      items: u("items", plan.items),
      tiles: u("tiles", plan.tiles),
      pos: u("pos", pos),
      out,
      part: g.pool.create("part", AttentionOp.partialBytes(plan, nh, d)),
    }));
  return relError(await readF32(g, out, T * nh * d), want);
}

function fromPaged(p: Float32Array, numBlocks: number, bs: number, kvHeads: number, d: number): Float32Array {
  const out = new Float32Array(p.length);
  for (let b = 0; b < numBlocks; b++) {
    for (let o = 0; o < bs; o++) {
      for (let h = 0; h < kvHeads; h++) {
        const src = ((b * kvHeads + h) * bs + o) * d;
        out.set(p.subarray(src, src + d), ((b * bs + o) * kvHeads + h) * d);
      }
    }
  }
  return out;
}

// GQA ratios 1, 2 and 4 at head_dim 8 and 128.
const SHAPES = [{ d: 8, nh: 4, nkv: 4 }, { d: 8, nh: 8, nkv: 2 }, { d: 128, nh: 4, nkv: 2 }, { d: 128, nh: 4, nkv: 1 }];

// Bound for both tests: softmax and the weighted V sum in f32 over <= 64 keys, ~1e-7 relative expected; 1e-5.
// With f16 KV the reference runs on the same f16-rounded caches, so the bound stays 1e-5.
const BOUND = 1e-5;

gpuTest("AttentionOp.encode() behaviour: decode matches ops.pagedAttention(), direct and split-K", async () => {
  const rand = rng(SEED);
  const seqs = [{ ctx: 1, q: 1 }, { ctx: 17, q: 1 }, { ctx: 50, q: 1 }, { ctx: 33, q: 1 }];
  for (const kt of kvTypes) {
    for (const s of SHAPES) {
      for (const extra of [{}, { partition: 16 }, { partition: 8, window: 13 }, { window: 7 }]) {
        const err = await runCase({ ...s, seqs, ...extra }, kt, rand);
        const tag = `${kt} d=${s.d} heads ${s.nh}/${s.nkv} ${JSON.stringify(extra)} ${seedNote}`;
        assert.ok(err < BOUND, `decode attention error ${err} >= ${BOUND}: ${tag}`);
      }
    }
  }
});

gpuTest("AttentionOp.encode() behaviour: chunked prefill mixed with decode matches ops.pagedAttention()", async () => {
  const rand = rng(SEED + 1);
  // A chunk over 13 cached tokens, a decode, a first chunk, and a 37-token prompt (three query tiles).
  const seqs = [{ ctx: 33, q: 20 }, { ctx: 41, q: 1 }, { ctx: 5, q: 5 }, { ctx: 37, q: 37 }];
  for (const kt of kvTypes) {
    for (const s of SHAPES) {
      for (const extra of [{}, { window: 7 }]) {
        const err = await runCase({ ...s, seqs, ...extra }, kt, rand);
        const tag = `${kt} d=${s.d} heads ${s.nh}/${s.nkv} ${JSON.stringify(extra)} ${seedNote}`;
        assert.ok(err < BOUND, `prefill attention error ${err} >= ${BOUND}: ${tag}`);
      }
    }
  }
});

Deno.test("planAttention() behaviour: single-token sequences decode, longer ones tile by 16", () => {
  const qs = Int32Array.of(0, 1, 38, 39), pos = Int32Array.from([99, ...Array.from({ length: 37 }, (_, i) => i), 7]);
  const p = planAttention(qs, pos, 8, null);
  assert.deepEqual([...p.items], [0, 0, 38, 2]);
  assert.equal(p.nTiles, 3);
  assert.deepEqual([...p.tiles.subarray(16, 24)], [1, 33, 5, 0, 0, 37, 0, 0]);
  assert.equal(p.maxSplits, 1); // 100 keys fit one partition of >= 256
  const split = planAttention(qs, pos, 8, null, { partition: 32 });
  assert.equal(split.maxSplits, 4);
  const windowed = planAttention(qs, pos, 8, 10);
  assert.deepEqual([...windowed.tiles.subarray(0, 8)], [1, 1, 16, 0, 0, 16, 0, 0]);
  assert.deepEqual([...windowed.tiles.subarray(8, 16)], [1, 17, 16, 0, 7, 32, 0, 0]);
});

// Mixed precision on WebGPU: int8/int4 weight kernels (W8A16 / W4A16) against the reference math on fresh random
// data, and the backend against ReferenceBackend at the same Precision. Seeds: $WEBGPU_TEST_SEED or random.
import assert from "node:assert/strict";
import * as ops from "../src/backends/reference/ops.ts";
import { QuantLinearOp, uploadQuantMatrix } from "../src/backends/webgpu/qlinear.ts";
import { AttentionOp, kvLayerBytes, planAttention, RopeKvOp } from "../src/backends/webgpu/attention.ts";
import { readBuffer } from "../src/backends/webgpu/buffers.ts";
import { kvStoreOf } from "../src/backends/webgpu/kv.ts";
import { decodeQuantCache, writeQuantCheckpoint } from "../src/backends/webgpu/testing_quant.ts";
import { writeFixture } from "./helpers/quant_fixtures.ts";
import { packFor, type RowsPacked } from "../src/quant/pack.ts";
import { dequantize, kvRoundTripHeads, quantizeRtn } from "../src/quant/reference.ts";
import type { QuantBits } from "../src/quant/types.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { createWebGpuBackend, type WebGpuBackend } from "../src/backends/webgpu/backend.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { generateSequence, sequenceLogits } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/sampler.ts";
import type { Precision, SamplingParams, StepInputs } from "../src/core/types.ts";
import { readReferenceLogits, STORIES_DIR } from "./helpers/models.ts";
import { gpuTestSetup, randn, readF32, relError, rng, runPass } from "../src/backends/webgpu/testing.ts";

const { gpuTest, ctx, SEED, seedNote } = await gpuTestSetup();

function packWebGpu(ql: ReturnType<typeof quantizeRtn>): RowsPacked {
  const p = packFor({ kind: "webgpu" }, ql);
  if (p.layout !== "rows-k") throw new Error("webgpu packs rows-k");
  return p;
}

gpuTest("QuantLinearOp.encode() behaviour: int8/int4 GEMV and GEMM equal dequantize() then ops.linear()", async () => {
  const g = ctx!, rand = rng(SEED + 11);
  // [M, N, K, group, bias]: M <= 8 takes gemv_q, above gemm_q; N is never a multiple of 8; K = 172 leaves half a
  // padding word per int4 row and a partial last group; group 128 > K = 64 is one group per row.
  const cases = [
    [1, 37, 64, 32, true],
    [3, 13, 192, 64, false],
    [8, 70, 344, 128, true],
    [2, 45, 172, 32, false],
    [1, 21, 64, 128, false],
    [9, 37, 344, 32, true],
    [37, 70, 192, 128, false],
    [70, 13, 172, 64, true],
  ] as const;
  for (const bits of [8, 4] as QuantBits[]) {
    for (const [M, N, K, group, bias] of cases) {
      const x = randn(rand, M * K), b = randn(rand, N);
      // Two stacked linears (as qkv and gate|up are), of N1 + N2 = N rows.
      const N1 = Math.max(1, Math.floor(N / 3)), N2 = N - N1;
      const qa = quantizeRtn(randn(rand, N1 * K, 0.5), N1, K, bits, group);
      const qb = quantizeRtn(randn(rand, N2 * K, 0.3), N2, K, bits, group);
      const mat = uploadQuantMatrix(g, "w", [packWebGpu(qa), packWebGpu(qb)]);
      const wRef = new Float32Array(N * K);
      wRef.set(dequantize(qa));
      wRef.set(dequantize(qb), N1 * K);
      const op = await QuantLinearOp.create(g, `t.qlinear.${bits}.${group}`, bits, group);
      const y = g.pool.create("y", M * N * 4);
      op.prepare({ M, N, K, bias });
      const bb = bias ? g.pool.upload("b", b) : null;
      await runPass(g, (pass) => op.encode(pass, { x: g.pool.upload("x", x), w: mat, bias: bb, y }));
      const got = await readF32(g, y, M * N);
      // The kernel's q * s + b with f32 (s, b = -z s) is (q - z) * s exactly (pack.ts), so the GPU multiplies the
      // very weights dequantize() gives. What is left is f32 accumulation in another order than ops.linear()'s f64
      // sum: |error| <= K 2^-24 sum |x w|, ~sqrt(K) 2^-24 ~ 1e-6 of max |y| in practice at K <= 344. Bound 1e-5.
      const err = relError(got, ops.linear(x, wRef, M, K, N, bias ? b : null));
      assert.ok(err < 1e-5, `int${bits} g${group} M=${M} N=${N} K=${K}: error ${err} >= 1e-5 ${seedNote}`);
    }
  }
});

gpuTest(
  "QuantLinearOp.prepare() and encode() errors: bad K, group, mismatched matrices and act-order orders are refused",
  async () => {
    const g = ctx!, rand = rng(SEED + 12);
    const op4 = await QuantLinearOp.create(g, "t.qlinear.err4", 4, 12);
    assert.throws(() => op4.prepare({ M: 1, N: 8, K: 64, bias: false }), /multiple of 8/);
    op4.prepare({ M: 1, N: 8, K: 8, bias: false }); // one group: any group size >= K is fine
    const op8 = await QuantLinearOp.create(g, "t.qlinear.err8", 8, 32);
    assert.throws(() => op8.prepare({ M: 1, N: 8, K: 66, bias: false }), /multiple of 4/);
    await assert.rejects(() => QuantLinearOp.create(g, "t.qlinear.bad", 3 as QuantBits, 32), /bits must be 4 or 8/);
    const mat = uploadQuantMatrix(g, "w", [packWebGpu(quantizeRtn(randn(rand, 8 * 64), 8, 64, 4, 32))]);
    op8.prepare({ M: 1, N: 8, K: 64, bias: false });
    const x = g.pool.create("x", 64 * 4), y = g.pool.create("y", 8 * 4);
    await runPass(g, (pass) => {
      assert.throws(() => op8.encode(pass, { x, w: mat, y }), /does not match/);
    });
    const q8 = quantizeRtn(randn(rand, 8 * 64), 8, 64, 8, 32);
    assert.throws(() => uploadQuantMatrix(g, "w", [packWebGpu(q8), packWebGpu({ ...q8, bits: 4 })]), /differ/);
    // Stacked act-order linears read one gathered input: their permutations must agree.
    const perm = Int32Array.from({ length: 64 }, (_, k) => 63 - k);
    const p8 = packWebGpu(q8);
    assert.throws(() => uploadQuantMatrix(g, "w", [{ ...p8, perm }, p8]), /one act-order order/);
    const permuted = uploadQuantMatrix(g, "w", [{ ...p8, perm }, { ...p8, perm: perm.slice() }]);
    await runPass(g, (pass) => {
      assert.throws(() => op8.encode(pass, { x, w: permuted, y }), /does not match/);
    });
    op8.prepare({ M: 1, N: 16, K: 64, bias: false });
    const y16 = g.pool.create("y16", 16 * 4);
    await runPass(g, (pass) => {
      assert.throws(() => op8.encode(pass, { x, w: permuted, y: y16 }), /created without actOrder/);
    });
  },
);

const greedy: SamplingParams = { ...defaultSamplingParams(), temperature: 0 };

async function loadBoth(precision: Precision): Promise<{ gpu: WebGpuBackend; host: ReferenceBackend }> {
  const ckpt = await openCheckpoint(STORIES_DIR);
  const gpu = await createWebGpuBackend();
  await gpu.load(ckpt.spec, ckpt.weights, precision);
  const host = new ReferenceBackend();
  await host.load(ckpt.spec, ckpt.weights, precision);
  ckpt.weights.close();
  return { gpu, host };
}

/** Compares logits on the reference cases and 32 greedy ids; returns the largest relative logits error. */
async function compareBackends(precision: Precision, bound: number): Promise<number> {
  const ref = await readReferenceLogits();
  const { gpu, host } = await loadBoth(precision);
  await using _gpu = gpu;
  await using _host = host;
  const name = `weight ${precision.weight} g${precision.group} kv ${precision.kv}`;
  // KV capacity follows precision: the bytes a block claims are the bytes allocated, and the reference's count.
  const s = gpu.spec, dims = { numHeads: s.numHeads, kvHeads: s.numKvHeads, headDim: s.headDim, blockSize: 16 };
  const layerBlock = kvLayerBytes({ ...dims, numBlocks: 1 }, kvStoreOf(precision.kv));
  assert.equal(gpu.kvBytesPerBlock(16, precision.kv), 2 * s.numLayers * layerBlock, `${name}: kvBytesPerBlock`);
  assert.equal(gpu.kvBytesPerBlock(16, precision.kv), host.kvBytesPerBlock(16, precision.kv), `${name}: vs reference`);
  let worst = 0;
  for (const c of ref.cases) {
    const err = relError(await sequenceLogits(gpu, c.tokens, greedy), await sequenceLogits(host, c.tokens, greedy));
    assert.ok(err < bound, `${name}, case of ${c.tokens.length} tokens: ${err} >= ${bound}`);
    worst = Math.max(worst, err);
  }
  const opts = { maxTokens: 32, maxPositions: 512 };
  const a = await generateSequence(gpu, [1], greedy, opts), b = await generateSequence(host, [1], greedy, opts);
  assert.deepEqual(a.ids, b.ids, `${name}: greedy ids differ from the ReferenceBackend's`);
  return worst;
}

gpuTest(
  "WebGpuBackend.forward() behaviour: int8 and int4 g32 weights equal ReferenceBackend on stories260K",
  async () => {
    for (const weight of ["int8", "int4"] as const) {
      // Both backends multiply by the same dequantized weights (RTN at load, exact (q - z) * s in f32; qlinear.ts),
      // embedding and LM head unrounded f32 on both. What differs is f32 summation order (GPU) against the host's f64
      // sums, carried through 5 layers and the LM head: 4e-6 measured (int8 and int4). Bound 1e-4.
      await compareBackends({ weight, group: 32, kv: "f32", compute: "f32" }, 1e-4);
    }
  },
);

gpuTest("WebGpuBackend.load() errors: a precision the quantized path cannot take is refused", async () => {
  const ckpt = await openCheckpoint(STORIES_DIR);
  await using gpu = await createWebGpuBackend();
  // Group 12 is no multiple of 8 values per int4 word: packRows refuses it with the group size in the message.
  await assert.rejects(
    () => gpu.load(ckpt.spec, ckpt.weights, { weight: "int4", group: 12, kv: "f32", compute: "f32" }),
    /12/,
  );
  ckpt.weights.close();
});

gpuTest(
  "WebGpuBackend.forward() behaviour: int8 and int4 KV caches track ReferenceBackend on stories260K",
  async () => {
    for (const [weight, kv] of [["f32", "int8"], ["f32", "int4"], ["int4", "int4"]] as const) {
      const precision: Precision = { weight, group: 32, kv, compute: "f32" };
      // The caches hold the same dequantized values (kv_write_q.wgsl is kvRoundTrip, the load is its FMA) as long as
      // both backends feed the same K / V. They do not quite: K and V come out of f32 sums in another order (~1e-7
      // relative), and an element that lies that close to a rounding boundary of round((x - zero) / scale) lands on
      // the neighbouring level, moving by one quantization step. So the honest bound is a fraction of what KV
      // quantization itself does to the logits (ReferenceBackend at kv f32 vs kv int8/int4, 2e-2 for int8 and 0.4-0.5
      // for int4 on this head_dim 8 model): measured 1.7e-4 (int8), 2e-6 (int4), 4e-3 (int4 weights + int4 KV), i.e.
      // <= 1.1% of it. Bound 5% of it, and the 32 greedy ids must agree.
      const effect = await kvQuantEffect(precision);
      await compareBackends(precision, 0.05 * effect);
    }
  },
);

/** Max relative logits change ReferenceBackend sees from quantizing the KV cache at `precision` (vs kv f32). */
async function kvQuantEffect(precision: Precision): Promise<number> {
  const ref = await readReferenceLogits();
  const ckpt = await openCheckpoint(STORIES_DIR);
  await using q = new ReferenceBackend();
  await using f = new ReferenceBackend();
  await q.load(ckpt.spec, ckpt.weights, precision);
  await f.load(ckpt.spec, ckpt.weights, { ...precision, kv: "f32" });
  ckpt.weights.close();
  let worst = 0;
  for (const c of ref.cases) {
    const err = relError(await sequenceLogits(q, c.tokens, greedy), await sequenceLogits(f, c.tokens, greedy));
    worst = Math.max(worst, err);
  }
  return worst;
}

gpuTest(
  "RopeKvOp + AttentionOp behaviour: int8/int4 quantize-on-write is kvRoundTrip, attention dequantizes",
  async () => {
    const g = ctx!, rand = rng(SEED + 13);
    const bs = 16, nkv = 2, ropeRows = 64;
    // Sequences: a whole prompt (prefill tile), a decode step over 40 cached tokens (2 splits of 32), and a second
    // prefill chunk over 5 cached tokens. Every context token is written to the cache first.
    const seqs = [{ ctx: 23, q: 23 }, { ctx: 41, q: 1 }, { ctx: 9, q: 4 }];
    const stats = { n: 0, off: 0 };
    for (const bits of [8, 4] as QuantBits[]) {
      for (const d of [8, 128]) {
        for (const gqa of [1, 2, 4]) {
          const nh = nkv * gqa, stride = (nh + 2 * nkv) * d, kt = bits === 8 ? "int8" : "int4";
          const maxBlocks = 3, numBlocks = seqs.length * maxBlocks;
          const bt = Int32Array.from({ length: numBlocks }, (_, i) => (i * 5 + 2) % numBlocks); // shuffled blocks
          const all = seqs.flatMap((s, b) => Array.from({ length: s.ctx }, (_, p) => ({ b, p })));
          const slotOf = (b: number, p: number) => bt[b * maxBlocks + Math.floor(p / bs)]! * bs + (p % bs);
          const qkvAll = randn(rand, all.length * stride, 2);
          const dims = { numHeads: nh, kvHeads: nkv, headDim: d, blockSize: bs, numBlocks };
          const kc = g.pool.create("kc", kvLayerBytes(dims, kt)), vc = g.pool.create("vc", kvLayerBytes(dims, kt));
          const rope = g.pool.upload("rope", Float32Array.from({ length: ropeRows * d }, (_, i) => (i % 2 ? 0 : 1)));
          const rop = await RopeKvOp.create(g, `t.rope.${kt}.${d}`, kt, d);
          rop.prepare({ ...dims, T: all.length, qkNorm: false, eps: 1e-6, ropeRows }); // identity RoPE: K as given
          await runPass(g, (pass) =>
            rop.encode(pass, {
              qkv: g.pool.upload("qkv_all", qkvAll),
              pos: g.pool.upload("pos_all", Int32Array.from(all, (t) => t.p)),
              slots: g.pool.upload("slots_all", Int32Array.from(all, (t) => slotOf(t.b, t.p))),
              rope,
              kc,
              vc,
            }));
          const tag = `int${bits} d=${d} gqa ${gqa} ${seedNote}`;
          const caches = [];
          for (const [c, off] of [[kc, nh], [vc, nh + nkv]] as const) {
            const words = new Uint32Array(await readBuffer(g.device, c, kvLayerBytes(dims, kt)));
            const got = decodeQuantCache(words, bits, numBlocks, bs, nkv, d);
            // kv_write_q is kvRoundTrip bit for bit (exact f16 roundings and exactly corrected f32 estimates), and
            // the load is the same single rounding of q * scale + zero: equality, no tolerance.
            all.forEach((t, r) => {
              const row = qkvAll.subarray(r * stride + off * d, r * stride + (off + nkv) * d);
              const want = kvRoundTripHeads(row, nkv, d, bits), s0 = slotOf(t.b, t.p) * nkv * d;
              stats.n++;
              if (!got.subarray(s0, s0 + nkv * d).every((v, i) => v === want[i])) stats.off++;
            });
            caches.push(got);
          }
          // Attention over the GPU's own cache, against ops.pagedAttention() on the same dequantized values.
          const steps = seqs.flatMap((s, b) => Array.from({ length: s.q }, (_, i) => ({ b, p: s.ctx - s.q + i })));
          const rowOf = (b: number, p: number) => all.findIndex((t) => t.b === b && t.p === p);
          const qkv = new Float32Array(steps.length * stride), q = new Float32Array(steps.length * nh * d);
          steps.forEach((t, i) => {
            qkv.set(qkvAll.subarray(rowOf(t.b, t.p) * stride, (rowOf(t.b, t.p) + 1) * stride), i * stride);
            q.set(qkv.subarray(i * stride, i * stride + nh * d), i * nh * d);
          });
          const pos = Int32Array.from(steps, (t) => t.p);
          const queryStarts = Int32Array.from([0, 23, 24, 28]);
          const plan = planAttention(queryStarts, pos, nh, null, { partition: 32 });
          const a = { ...dims, maxBlocks, qStride: stride, window: null, scale: 1 / Math.sqrt(d) };
          const op = await AttentionOp.create(g, `t.attn.${kt}.${d}`, kt, d);
          op.prepare(a, plan);
          const out = g.pool.create("out", steps.length * nh * d * 4);
          await runPass(g, (pass) =>
            op.encode(pass, {
              qkv: g.pool.upload("qkv", qkv),
              kc,
              vc,
              bt: g.pool.upload("bt", bt),
              items: g.pool.upload("items", plan.items),
              tiles: g.pool.upload("tiles", plan.tiles),
              pos: g.pool.upload("pos", pos),
              out,
              part: g.pool.create("part", AttentionOp.partialBytes(plan, nh, d)),
            }));
          const want = ops.pagedAttention({
            q,
            kCache: caches[0]!,
            vCache: caches[1]!,
            positions: pos,
            queryStarts,
            blockTables: bt,
            maxBlocksPerSeq: maxBlocks,
            blockSize: bs,
            numHeads: nh,
            kvHeads: nkv,
            headDim: d,
            scale: a.scale,
            slidingWindow: null,
          });
          // Same cached values on both sides; f32 softmax and sums in another order: as the dense attention tests.
          const err = relError(await readF32(g, out, steps.length * nh * d), want);
          assert.ok(err < 1e-5, `${tag}: attention error ${err} >= 1e-5`);
        }
      }
    }
    assert.equal(
      stats.off,
      0,
      `${stats.off} of ${stats.n} cached (token, K|V) rows differ from kvRoundTrip ${seedNote}`,
    );
  },
);

gpuTest(
  "WebGpuBackend.load() behaviour: AWQ and GPTQ (v1, v2, per-channel, act-order) checkpoints run on the packed kernels like the reference",
  async () => {
    const tokens = [1, 5, 9, 33, 2, 17, 40, 8, 63, 0, 12];
    // writeQuantCheckpoint's AWQ / GPTQ v1 folders, then quant_fixtures' GPTQ v2 (zeros stored as is, zero 0
    // included), per-channel (group_size -1) and act-order (g_idx shuffled, shared by the linears of one input) ones.
    const folders: (readonly [string, 4 | 8, () => Promise<string>])[] = [
      ...([["awq", 4, 32], ["gptq", 4, 64], ["gptq", 8, 32]] as const).map(([method, bits, G]) =>
        [`${method} int${bits} g${G}`, bits, () => writeQuantCheckpoint(method, bits, G, SEED + G + bits)] as const
      ),
      ["gptq_v2 int4 g64", 4, async () => (await writeFixture("gptq-v2", 4, 64)).dir],
      ["gptq per-channel int8", 8, async () => (await writeFixture("gptq-asym", 8, -1)).dir],
      ["gptq act-order int4 g32", 4, async () => (await writeFixture("gptq-act", 4, 32)).dir],
      ["gptq act-order int8 g32", 8, async () => (await writeFixture("gptq-act", 8, 32)).dir],
    ];
    for (const [label, bits, write] of folders) {
      const dir = await write();
      const ckpt = await openCheckpoint(dir);
      await using gpu = await createWebGpuBackend();
      await using host = new ReferenceBackend();
      const precision: Precision = { weight: bits === 4 ? "int4" : "int8", kv: "f32", compute: "f32" };
      await gpu.load(ckpt.spec, ckpt.weights, precision);
      await host.load(ckpt.spec, ckpt.weights, precision);
      ckpt.weights.close();
      // Both multiply by exactly (q - z) * s of the checkpoint; f32 sums in another order: 4e-7 measured. Bound 1e-4
      // as for the RTN weights. 11 tokens take the GEMM kernels, 5 the GEMV ones (decode rows).
      for (const ids of [tokens, tokens.slice(0, 5)]) {
        const err = relError(await sequenceLogits(gpu, ids, greedy), await sequenceLogits(host, ids, greedy));
        assert.ok(err < 1e-4, `${label}, ${ids.length} tokens: logits differ by ${err} >= 1e-4 ${seedNote}`);
      }
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** StepInputs adding `ids` at positions start.. of one sequence through block table `table`. */
function oneSequenceStep(ids: readonly number[], start: number, table: readonly number[], bs: number): StepInputs {
  const positions = ids.map((_, i) => start + i);
  return {
    tokens: Int32Array.from(ids),
    positions: Int32Array.from(positions),
    queryStarts: Int32Array.of(0, ids.length),
    contextLens: Int32Array.of(start + ids.length),
    blockTables: Int32Array.from(table),
    maxBlocksPerSeq: table.length,
    blockSize: bs,
    slots: Int32Array.from(positions, (p) => table[Math.floor(p / bs)]! * bs + (p % bs)),
    sample: [true],
    sampling: [{ params: greedy, promptIds: ids, outputIds: [], fallbackSeed: 7 }],
    allLogits: true,
  };
}

gpuTest(
  "WebGpuBackend.copyBlocks() behaviour: copied int8/int4 KV blocks (values and scales) give equal logits",
  async () => {
    const ids = (await readReferenceLogits()).cases[1]!.tokens.slice(0, 11);
    for (const kv of ["int8", "int4"] as const) {
      const ckpt = await openCheckpoint(STORIES_DIR);
      await using gpu = await createWebGpuBackend();
      await gpu.load(ckpt.spec, ckpt.weights, { weight: "f32", kv, compute: "f32" });
      ckpt.weights.close();
      const bs = 4;
      gpu.allocateKv(8, bs);
      await gpu.forward(oneSequenceStep(ids.slice(0, 10), 0, [0, 1, 2], bs));
      gpu.copyBlocks(Int32Array.of(0, 1, 2), Int32Array.of(5, 6, 7));
      const orig = (await gpu.forward(oneSequenceStep([ids[10]!], 10, [0, 1, 2], bs))).logits!;
      const copy = (await gpu.forward(oneSequenceStep([ids[10]!], 10, [5, 6, 7], bs))).logits!;
      assert.deepEqual(copy, orig, `${kv}: identical cache bytes and kernels must give bitwise equal logits`);
    }
  },
);

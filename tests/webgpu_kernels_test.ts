// The dense WebGPU kernels against the reference math (src/backends/reference/ops.ts) on fresh random data.
// Error measure: max |gpu - ref| / max |ref| over the output. Seeds: $WEBGPU_TEST_SEED or random, shown on failure.
import assert from "node:assert/strict";
import * as ops from "../src/backends/reference/ops.ts";
import { EmbedOp, LinearOp, RmsNormOp, SiluMulOp } from "../src/backends/webgpu/kernels.ts";
import { RopeKvOp } from "../src/backends/webgpu/attention.ts";
import { composeWgsl, type StorageType } from "../src/backends/webgpu/shaders.ts";
import type { RopeSpec } from "../src/core/types.ts";
import { f16ToF32, roundTo } from "../src/model/dtype.ts";
import { readBuffer } from "../src/backends/webgpu/buffers.ts";
import { ropeTables } from "../src/model/rope.ts";
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
const types: StorageType[] = ctx?.hasF16 ? ["f32", "f16"] : ["f32"];

Deno.test("composeWgsl() behaviour: expands includes once and prepends the variant header", async () => {
  const code = await composeWgsl("attn_prefill.wgsl", { kt: "f16", consts: { HEAD_DIM: 8, KV_TILE: 16 } });
  assert.ok(code.startsWith("enable f16;\nalias WT = f32;\nalias KT = f16;\nconst HEAD_DIM: u32 = 8u;"));
  assert.equal(code.match(/fn wg_index/g)?.length, 1);
  assert.ok(!code.includes("#include"));
});

gpuTest("EmbedOp.encode() behaviour: gathers rows exactly like ops.embed()", async () => {
  const g = ctx!, rand = rng(SEED);
  for (const wt of types) {
    const vocab = 37, h = 20, ids = Int32Array.from({ length: 9 }, () => Math.floor(rand() * vocab));
    const table = uploadAs(g, "table", randn(rand, vocab * h), wt);
    const op = await EmbedOp.create(g, `t.embed.${wt}`, wt);
    const x = g.pool.create("x", ids.length * h * 4);
    op.prepare({ n: ids.length, h, vocab });
    await runPass(g, (pass) => op.encode(pass, { ids: g.pool.upload("ids", ids), table: table.buf, x }));
    // A gather copies stored values: the bound is exact equality (f16 storage: the f16-rounded table).
    assert.deepEqual(await readF32(g, x, ids.length * h), ops.embed(table.values, ids, h, vocab), `${wt} ${seedNote}`);
  }
});

gpuTest("RmsNormOp.encode() behaviour: matches ops.addRmsNorm(), with residual and row gather", async () => {
  const g = ctx!, rand = rng(SEED + 1);
  const rows = 7, h = 172, eps = 1e-5, idx = Uint32Array.of(6, 0, 3);
  const x = randn(rand, rows * h, 3), r = randn(rand, rows * h), w = randn(rand, h);
  const xb = g.pool.upload("x", x), y = g.pool.create("y", rows * h * 4);
  const first = await RmsNormOp.create(g, "t.norm.plain"), gather = await RmsNormOp.create(g, "t.norm.gather");
  first.prepare({ n: rows, h, eps, residual: false, gather: false, rows });
  await runPass(g, (pass) => first.encode(pass, { x: xb, w: g.pool.upload("w", w), y }));
  // f32 sums over 172 squares: 1e-5 relative covers the different summation order (about 1e-7 expected).
  const plain = relError(await readF32(g, y, rows * h), ops.rmsNorm(x, w, rows, h, eps));
  assert.ok(plain < 1e-5, `rmsnorm error ${plain} >= 1e-5 ${seedNote}`);
  gather.prepare({ n: idx.length, h, eps, residual: true, gather: true, rows });
  await runPass(g, (pass) => {
    gather.encode(pass, { x: xb, r: g.pool.upload("r", r), w: g.pool.upload("w", w), idx: g.pool.upload("i", idx), y });
  });
  const xs = new Float32Array(idx.length * h), rs = new Float32Array(idx.length * h);
  idx.forEach((s, i) => {
    xs.set(x.subarray(s * h, (s + 1) * h), i * h);
    rs.set(r.subarray(s * h, (s + 1) * h), i * h);
  });
  const want = ops.addRmsNorm(xs, rs, w, idx.length, h, eps);
  const err = relError(await readF32(g, y, idx.length * h), want);
  assert.ok(err < 1e-5, `add+rmsnorm (gathered) error ${err} >= 1e-5 ${seedNote}`);
  const xAfter = await readF32(g, xb, rows * h);
  idx.forEach((s, i) => assert.deepEqual(xAfter.subarray(s * h, (s + 1) * h), xs.subarray(i * h, (i + 1) * h)));
});

gpuTest("LinearOp.encode() behaviour: GEMV and GEMM paths match ops.linear() (f32 and f16 weights)", async () => {
  const g = ctx!, rand = rng(SEED + 2);
  // [M, N, K, bias]: M <= 8 runs the GEMV kernel, larger M the tiled GEMM; N and K are not tile multiples.
  const cases = [[1, 172, 64, true], [3, 64, 172, false], [8, 37, 64, true], [9, 172, 64, false], [37, 64, 172, true], [
    70,
    33,
    4096,
    true,
  ]] as const;
  for (const wt of types) {
    for (const [M, N, K, bias] of cases) {
      const x = randn(rand, M * K), w = randn(rand, N * K, 0.5), b = randn(rand, N);
      const wu = uploadAs(g, "w", w, wt), y = g.pool.create("y", M * N * 4);
      const op = await LinearOp.create(g, `t.linear.${wt}.${M}`, wt);
      op.prepare({ M, N, K, bias });
      const bb = bias ? g.pool.upload("b", b) : null;
      await runPass(g, (pass) => op.encode(pass, { x: g.pool.upload("x", x), w: wu.buf, bias: bb, y }));
      const got = await readF32(g, y, M * N);
      // Against the weights the GPU holds: f32 accumulation in another order than the host's f64 sum. The error
      // grows like sqrt(K) * 2^-24 times the partial sums: ~1e-7 relative at K <= 172 (bound 1e-5), a few 1e-6 at
      // K = 4096, where each GEMM thread sums 4096 products sequentially (bound 5e-5).
      const exact = relError(got, ops.linear(x, wu.values, M, K, N, bias ? b : null));
      const bound = K > 1024 ? 5e-5 : 1e-5;
      assert.ok(exact < bound, `${wt} M=${M} N=${N} K=${K}: error ${exact} >= ${bound} ${seedNote}`);
      if (wt === "f16") {
        // Against the unrounded weights: f16 storage rounds each weight by <= 2^-11 relative, so the output moves
        // by about 2^-11 of its scale; bound 2e-3.
        const vsF32 = relError(got, ops.linear(x, w, M, K, N, bias ? b : null));
        assert.ok(vsF32 < 2e-3, `f16 M=${M} K=${K}: error vs f32 weights ${vsF32} >= 2e-3 ${seedNote}`);
      }
    }
  }
});

gpuTest("SiluMulOp.encode() behaviour: matches ops.siluMul() on the fused gate|up rows", async () => {
  const g = ctx!, rand = rng(SEED + 3);
  const T = 3, F = 172, gu = randn(rand, T * 2 * F, 6);
  const gate = new Float32Array(T * F), upv = new Float32Array(T * F);
  for (let t = 0; t < T; t++) {
    gate.set(gu.subarray(t * 2 * F, t * 2 * F + F), t * F);
    upv.set(gu.subarray(t * 2 * F + F, (t + 1) * 2 * F), t * F);
  }
  const op = await SiluMulOp.create(g, "t.silu"), act = g.pool.create("act", T * F * 4);
  op.prepare({ T, F });
  await runPass(g, (pass) => op.encode(pass, { gu: g.pool.upload("gu", gu), act }));
  // One exp and three f32 operations per element: bound 1e-5 relative.
  const err = relError(await readF32(g, act, T * F), ops.siluMul(gate, upv));
  assert.ok(err < 1e-5, `silu_mul error ${err} >= 1e-5 ${seedNote}`);
});

const YARN: RopeSpec = {
  type: "yarn",
  theta: 1e6,
  factor: 4,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPositions: 32,
  betaFast: 32,
  betaSlow: 1,
  attentionFactor: 1.1386,
};
const PLAIN: RopeSpec = { ...YARN, type: "default", theta: 10000, factor: 1, attentionFactor: 1 };

gpuTest("RopeKvOp.encode() behaviour: q/k norm + RoPE + paged KV write match ops.rmsNorm/rope/writeKv", async () => {
  const g = ctx!, rand = rng(SEED + 4);
  const cases = [
    { d: 8, nh: 4, nkv: 2, qkNorm: false, rope: PLAIN },
    { d: 128, nh: 4, nkv: 1, qkNorm: true, rope: YARN },
  ];
  for (const kt of types) {
    for (const c of cases) {
      const { d, nh, nkv } = c, T = 7, bs = 5, numBlocks = 6, maxPos = 64, eps = 1e-6;
      const stride = (nh + 2 * nkv) * d;
      const positions = Int32Array.from({ length: T }, () => Math.floor(rand() * maxPos));
      const perm = Array.from({ length: numBlocks * bs }, (_, i) => i).sort(() => rand() - 0.5);
      const slots = Int32Array.from({ length: T }, (_, t) => (t === 3 ? -1 : perm[t]!)); // token 3 writes nothing
      const qkv = randn(rand, T * stride, 2), qn = randn(rand, d), kn = randn(rand, d);
      const { cos, sin } = ropeTables(c.rope, d, maxPos);
      const table = new Float32Array(cos.length * 2);
      cos.forEach((v, i) => (table[2 * i] = v, table[2 * i + 1] = sin[i]!));
      const cacheElems = numBlocks * bs * nkv * d;
      const kOld = randn(rand, cacheElems), vOld = randn(rand, cacheElems); // reference layout, kept where unwritten
      const kc = uploadAs(g, "kc", toPagedLayout(kOld, numBlocks, bs, nkv, d), kt);
      const vc = uploadAs(g, "vc", toPagedLayout(vOld, numBlocks, bs, nkv, d), kt);
      const qkvBuf = g.pool.upload("qkv", qkv);
      const op = await RopeKvOp.create(g, `t.rope.${kt}.${d}`, kt);
      op.prepare({
        T,
        numHeads: nh,
        kvHeads: nkv,
        headDim: d,
        blockSize: bs,
        numBlocks,
        qkNorm: c.qkNorm,
        eps,
        ropeRows: maxPos,
      });
      const norms = c.qkNorm ? { qNorm: g.pool.upload("qn", qn), kNorm: g.pool.upload("kn", kn) } : {};
      await runPass(g, (pass) => {
        const b = { qkv: qkvBuf, pos: g.pool.upload("p", positions), slots: g.pool.upload("s", slots) };
        op.encode(pass, { ...b, rope: g.pool.upload("rope", table), ...norms, kc: kc.buf, vc: vc.buf });
      });
      // Reference: split the fused rows, norm, rotate, write.
      const q = new Float32Array(T * nh * d), k = new Float32Array(T * nkv * d), v = new Float32Array(T * nkv * d);
      for (let t = 0; t < T; t++) {
        const row = qkv.subarray(t * stride, (t + 1) * stride);
        q.set(row.subarray(0, nh * d), t * nh * d);
        k.set(row.subarray(nh * d, (nh + nkv) * d), t * nkv * d);
        v.set(row.subarray((nh + nkv) * d), t * nkv * d);
      }
      if (c.qkNorm) {
        ops.rmsNorm(q, qn, T * nh, d, eps, q);
        ops.rmsNorm(k, kn, T * nkv, d, eps, k);
      }
      ops.rope(q, positions, nh, d, cos, sin);
      ops.rope(k, positions, nkv, d, cos, sin);
      const kRef = kOld.slice(), vRef = vOld.slice();
      ops.writeKv(kRef, vRef, k, v, slots, nkv * d, kt === "f16" ? (a) => roundTo(a, "f16") : undefined);
      const out = await readF32(g, qkvBuf, T * stride);
      const gq = new Float32Array(T * nh * d), gk = new Float32Array(T * nkv * d);
      for (let t = 0; t < T; t++) {
        gq.set(out.subarray(t * stride, t * stride + nh * d), t * nh * d);
        gk.set(out.subarray(t * stride + nh * d, t * stride + (nh + nkv) * d), t * nkv * d);
      }
      const tag = `${kt} d=${d} ${seedNote}`;
      // f32 rotations (and norms) of O(1) values: bound 1e-5 relative.
      assert.ok(relError(gq, q) < 1e-5, `q error ${relError(gq, q)} ${tag}`);
      assert.ok(relError(gk, k) < 1e-5, `k error ${relError(gk, k)} ${tag}`);
      // f16 caches: the GPU's rotated k differs from the host's in the last f32 bits, so an element near a rounding
      // boundary can land on the neighbouring f16: one f16 ulp (2^-10 relative) at most, so 1e-3; f32 caches 1e-5.
      const bound = kt === "f16" ? 1e-3 : 1e-5;
      const readCache = async (b: GPUBuffer) =>
        kt === "f32"
          ? await readF32(g, b, cacheElems)
          : Float32Array.from(new Uint16Array(await readBuffer(g.device, b, cacheElems * 2)), f16ToF32);
      const ek = relError(await readCache(kc.buf), toPagedLayout(kRef, numBlocks, bs, nkv, d));
      const ev = relError(await readCache(vc.buf), toPagedLayout(vRef, numBlocks, bs, nkv, d));
      assert.ok(ek < bound && ev < bound, `K cache error ${ek}, V ${ev} >= ${bound} ${tag}`);
    }
  }
});

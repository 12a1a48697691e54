// The fused decode GEMV (wgsl/gemv_fused.wgsl via FusedLinearOp) against the reference math on fresh random data,
// and the fused decode layer against the unfused one on stories260K.
// Error measure: max |gpu - ref| / max |ref| over the output. Seeds: $WEBGPU_TEST_SEED or random, shown on failure.
import assert from "node:assert/strict";
import { DECODE_GEMV_SHAPES, DEFAULT_GEMV_SHAPE, FusedLinearOp, type GemvShape } from "../src/backends/webgpu/fused.ts";
import type { StorageType } from "../src/backends/webgpu/shaders.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";

import { gpuTestSetup, relError, rng } from "../src/backends/webgpu/testing.ts";
import { STORIES_DIR } from "./helpers/models.ts";
import { type Case, checkFusedCase, decodeLogits, PAIR_SHAPE } from "./helpers/fused_gemv.ts";

const { gpuTest, ctx, SEED, seedNote } = await gpuTestSetup();
const types: StorageType[] = ctx?.hasF16 ? ["f32", "f16"] : ["f32"];

gpuTest(
  "FusedLinearOp.encode() behaviour: norm / silu / prenorm prologues and add / addnorm / silupair epilogues match the reference ops",
  async () => {
    const rand = rng(SEED + 40);
    // K: hidden 172 (FFN-like, K % 8 != 0: the f16 x4 loads), heads x head_dim 3 x 8 = 24 and 2 x 128 = 256 (the
    // o_proj input), 1000 (several 4-deep load rounds plus a tail). N not a multiple of the 8 rows per workgroup.
    // M = 1 takes the one-row builds (MMAX 1), M > 1 the 8-row ones.
    const cases: Case[] = [
      [1, 37, 172, "norm", "store", false],
      [3, 172, 24, "none", "add", true],
      [8, 45, 256, "norm", "store", true],
      [2, 24, 172, "silu", "add", false],
      [5, 9, 1000, "silu", "add", true],
      [4, 301, 8, "none", "store", false],
      [1, 45, 256, "silu", "add", true],
      [1, 77, 128, "none", "store", false],
      [1, 37, 172, "prenorm", "store", true],
      [6, 41, 256, "prenorm", "store", false],
      [1, 24, 172, "none", "addnorm", true],
      [7, 33, 256, "none", "addnorm", false],
      [1, 46, 172, "prenorm", "silupair", true],
      [8, 58, 1000, "prenorm", "silupair", false],
      [3, 30, 24, "none", "silupair", true],
      [1, 90, 256, "norm", "silupair", false],
    ];
    for (const wt of types) {
      for (const c of cases) {
        await checkFusedCase(ctx!, wt, c[4] === "silupair" ? PAIR_SHAPE : DEFAULT_GEMV_SHAPE, c, rand, seedNote);
      }
    }
  },
);

gpuTest(
  "FusedLinearOp.encode() behaviour: every workgroup shape (lanes, loads in flight) matches the reference",
  async () => {
    const rand = rng(SEED + 42);
    // Shapes from 8 lanes x 1 load to a whole 256-thread workgroup on one row with 8 loads, and the tuned ones
    // (fused.ts DECODE_GEMV_SHAPES). K: 2056 (f16: 257 chunks of 8, a prime: every shape ends in a partial round and
    // a tail), 1000 (f16 x8, tail only for wide shapes), 172 (f16 x4 loads). N not a multiple of the rows per
    // workgroup; M = 1 and 2 (the builds that keep the shape's R rows per group), 3 / 5 (MMAX 4 / 8) and 8.
    const shapes: GemvShape[] = [
      { wgs: 64, lanes: 8, r: 1, u: 1 },
      { wgs: 64, lanes: 8, r: 2, u: 1 },
      { wgs: 128, lanes: 16, r: 3, u: 2 },
      { wgs: 256, lanes: 128, r: 2, u: 4 },
      { wgs: 256, lanes: 256, r: 1, u: 8 },
      { wgs: 256, lanes: 32, r: 4, u: 2 },
      ...new Set(Object.values(DECODE_GEMV_SHAPES)),
    ];
    const cases: Case[] = [
      [1, 37, 2056, "norm", "store", true],
      [2, 41, 2056, "prenorm", "addnorm", false],
      [8, 19, 1000, "silu", "add", false],
      [1, 23, 172, "none", "add", false],
      [3, 13, 2056, "norm", "store", false],
      [1, 29, 2056, "prenorm", "store", false],
      [5, 17, 1000, "none", "addnorm", true],
      [1, 38, 2056, "prenorm", "silupair", true],
      [8, 22, 1000, "prenorm", "silupair", false],
    ];
    // f16 (the decode path) under every shape, f32 (CH = 4 loads) under the first. silupair cases run under the
    // shapes with two rows per group (the rest refuse it: next test).
    for (const [i, shape] of shapes.entries()) {
      for (const wt of i === 0 ? types : types.slice(-1)) {
        for (const c of cases) {
          if (c[4] !== "silupair" || shape.r === 2) await checkFusedCase(ctx!, wt, shape, c, rand, seedNote);
        }
      }
    }
  },
);

gpuTest("FusedLinearOp.create() behaviour: refuses a workgroup shape the kernel cannot take", async () => {
  const bads = [
    { wgs: 256, lanes: 512, r: 1, u: 4 },
    { wgs: 96, lanes: 32, r: 1, u: 4 },
    { wgs: 256, lanes: 4, r: 1, u: 4 },
    { wgs: 512, lanes: 32, r: 1, u: 4 },
    { wgs: 256, lanes: 32, r: 3, u: 3 },
    { wgs: 256, lanes: 32, r: 0, u: 4 },
  ];
  for (const bad of bads) {
    await assert.rejects(
      () => FusedLinearOp.create(ctx!, "t.fused.bad", "f32", "none", "store", bad as unknown as GemvShape),
      RangeError,
    );
  }
  const r1 = { wgs: 256, lanes: 32, r: 1, u: 2 } as const;
  await assert.rejects(() => FusedLinearOp.create(ctx!, "t.fused.bad", "f32", "none", "silupair", r1), RangeError);
  for (const u of [0, 9, 2.5]) {
    const bad = { wgs: 256, lanes: 32, r: 1, u } as unknown as GemvShape;
    await assert.rejects(() => FusedLinearOp.create(ctx!, "t.fused.bad", "f32", "none", "store", bad), RangeError);
  }
});

gpuTest(
  "FusedLinearOp.prepare() behaviour: refuses more than 8 rows, K % 4 != 0, eps <= 0 and an odd silupair N",
  async () => {
    const op = await FusedLinearOp.create(ctx!, "t.fused.check", "f32", "norm", "store");
    assert.throws(() => op.prepare({ M: 9, N: 4, K: 8, bias: false, eps: 1e-5 }), RangeError);
    assert.throws(() => op.prepare({ M: 1, N: 4, K: 6, bias: false, eps: 1e-5 }), RangeError);
    assert.throws(() => op.prepare({ M: 1, N: 4, K: 8, bias: false, eps: 0 }), RangeError);
    const pair = await FusedLinearOp.create(ctx!, "t.fused.pair", "f32", "prenorm", "silupair", PAIR_SHAPE);
    assert.throws(() => pair.prepare({ M: 1, N: 5, K: 8, bias: false, eps: 1e-5 }), RangeError);
    assert.throws(() => pair.prepare({ M: 1, N: 4, K: 8, bias: false, eps: 0 }), RangeError);
  },
);

gpuTest("WebGpuBackend.forward() behaviour: the fused decode layer gives the unfused layer's logits", async () => {
  const ckpt = await openCheckpoint(STORIES_DIR);
  const spec = ckpt.spec, rand = rng(SEED + 41);
  const ids = Int32Array.from({ length: 6 }, () => 1 + Math.floor(rand() * (spec.vocabSize - 1)));
  // 6 tokens: 3 in one step (<= 8 rows: the GEMV path), then 3 decode steps of one token, logits of every token.
  const logits: Float32Array[] = [];
  for (const fuse of [false, true]) {
    logits.push(
      (await decodeLogits(spec, ckpt.weights, { weight: "f32", kv: "f32", compute: "f32" }, fuse, ids)).logits,
    );
  }
  ckpt.weights.close();
  // Same f32 math in another order (norm scale applied after the dot product, residual added in the GEMV): the
  // logits agree to f32 rounding through 5 layers. Bound 1e-5 of their scale.
  const err = relError(logits[1]!, logits[0]!);
  assert.ok(err < 1e-5, `fused vs unfused logits: error ${err} ${seedNote}`);
});

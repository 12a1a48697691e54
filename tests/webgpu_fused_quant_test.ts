// The fused decode GEMV over int4 / int8 / fp8 weights (wgsl/gemv_wload_q.wgsl: 16-byte code loads dequantized in
// registers with the group's (scale, bias)) against the reference math on fresh random data, and the fused decode
// layer of AWQ / GPTQ / fp8 checkpoints against the unfused one (gemv_q). Error measure: max |gpu - ref| / max |ref|.
// Seeds: $WEBGPU_TEST_SEED or random, shown on failure.
import assert from "node:assert/strict";
import {
  DECODE_GEMV_SHAPES,
  DECODE_QGEMV_SHAPES,
  DEFAULT_GEMV_SHAPE,
  FusedLinearOp,
  type FusedQuant,
  type GemvShape,
} from "../src/backends/webgpu/fused.ts";
import { writeFp8Checkpoint, writeQuantCheckpoint } from "../src/backends/webgpu/testing_quant.ts";
import { gpuTestSetup, relError, rng } from "../src/backends/webgpu/testing.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { uploadQuantMatrix } from "../src/backends/webgpu/qlinear.ts";
import { packFor, type RowsPacked } from "../src/quant/pack.ts";
import { quantizeRtn } from "../src/quant/reference.ts";
import type { Precision } from "../src/core/types.ts";
import { type Case, checkFusedCase, decodeLogits, PAIR_SHAPE } from "./helpers/fused_gemv.ts";

const { gpuTest, ctx, SEED, seedNote } = await gpuTestSetup();

const FORMATS: FusedQuant[] = [
  { bits: 4, fp8: false, group: 32 },
  { bits: 4, fp8: false, group: 128 },
  { bits: 8, fp8: false, group: 16 },
  { bits: 8, fp8: false, group: 64 },
  { bits: 8, fp8: true, group: 32 },
];

gpuTest(
  "FusedLinearOp.encode() behaviour: int4 / int8 / fp8 weights under every prologue and epilogue match the reference",
  async () => {
    const rand = rng(SEED + 60);
    // K in whole 32-value chunks: 96 (3 chunks, one or several groups), 256, 2080 (65 chunks: partial load rounds and
    // a tail), 160 with the SiLU prologue. N not a multiple of the rows per workgroup; M = 1 (scalar build) and 3..8.
    const cases: Case[] = [
      [1, 37, 96, "norm", "store", true],
      [8, 45, 256, "prenorm", "store", false],
      [3, 24, 128, "none", "addnorm", true],
      [1, 46, 192, "prenorm", "silupair", true],
      [8, 30, 64, "none", "silupair", false],
      [1, 77, 2080, "none", "add", false],
      [5, 9, 160, "silu", "add", true],
    ];
    for (const q of FORMATS) {
      for (const c of cases) {
        if (c[2] % q.group !== 0 && c[2] > q.group) continue; // a partial last group is not a fused shape
        await checkFusedCase(ctx!, q, c[4] === "silupair" ? PAIR_SHAPE : DEFAULT_GEMV_SHAPE, c, rand, seedNote);
      }
    }
  },
);

gpuTest(
  "FusedLinearOp.encode() behaviour: quantized weights under other workgroup shapes match the reference",
  async () => {
    const rand = rng(SEED + 61);
    const shapes: GemvShape[] = [
      { wgs: 64, lanes: 8, r: 2, u: 1 },
      { wgs: 128, lanes: 16, r: 3, u: 2 },
      { wgs: 256, lanes: 256, r: 1, u: 8 },
      ...new Set([...Object.values(DECODE_GEMV_SHAPES), ...Object.values(DECODE_QGEMV_SHAPES)]),
    ];
    const cases: Case[] = [
      [1, 29, 2080, "prenorm", "store", true],
      [2, 33, 1024, "norm", "add", false],
      [8, 19, 1024, "none", "addnorm", false],
      [1, 38, 2080, "prenorm", "silupair", false],
    ];
    for (const shape of shapes) {
      for (const q of [FORMATS[0]!, FORMATS[4]!]) {
        for (const c of cases) {
          if (c[4] !== "silupair" || shape.r === 2) {
            await checkFusedCase(ctx!, q, shape, c, rand, seedNote);
          }
        }
      }
    }
  },
);

gpuTest("FusedLinearOp behaviour: refuses groups and widths of partial chunks, and mismatched matrices", async () => {
  const q4 = { bits: 4, fp8: false, group: 16 } as const; // int4 chunks hold 32 values
  await assert.rejects(() => FusedLinearOp.create(ctx!, "t.fq.bad", q4, "none", "store"), /group 16/);
  const op = await FusedLinearOp.create(ctx!, "t.fq", { bits: 4, fp8: false, group: 32 }, "none", "store");
  assert.throws(() => op.prepare({ M: 1, N: 4, K: 48, bias: false, eps: 1e-5 }), /multiple of 32/);
  op.prepare({ M: 1, N: 4, K: 64, bias: false, eps: 1e-5 });
  const g = ctx!, x = g.pool.upload("x", new Float32Array(64)), y = g.pool.upload("y", new Float32Array(4));
  const q8 = uploadQuantMatrix(g, "w8", [
    packFor({ kind: "webgpu" }, quantizeRtn(new Float32Array(256).fill(1), 4, 64, 8, 32)) as RowsPacked,
  ]);
  const pass = g.device.createCommandEncoder().beginComputePass();
  assert.throws(() => op.encode(pass, { x, w: q8, y }), /int8 g32 \[4, 64\] given to a int4 g32 \[4, 64\] op/);
  assert.throws(() => op.encode(pass, { x, w: g.pool.upload("wd", new Float32Array(256)), y }), /a dense matrix given/);
  const dense = await FusedLinearOp.create(g, "t.fd", "f32", "none", "store");
  dense.prepare({ M: 1, N: 4, K: 64, bias: false, eps: 1e-5 });
  assert.throws(() => dense.encode(pass, { x, w: q8, y }), /quantized matrix given to a dense op/);
  pass.end();
});

/** decodeLogits() of a checkpoint folder over 6 ids: 3 prompt tokens, then 3 decode steps (the fused path). */
async function run(dir: string, precision: Precision, fuse: boolean) {
  const ckpt = await openCheckpoint(dir);
  try {
    return await decodeLogits(ckpt.spec, ckpt.weights, precision, fuse, [1, 7, 3, 22, 9, 40]);
  } finally {
    ckpt.weights.close();
  }
}

gpuTest(
  "WebGpuBackend.forward() behaviour: AWQ / GPTQ / fp8 checkpoints decode through the fused layer with the unfused logits",
  async () => {
    // The tiny Llama of testing_quant.ts: hidden 64, 4 heads of 16, FFN 128: every K and group in whole chunks.
    const dirs: [string, Precision][] = [
      [await writeQuantCheckpoint("awq", 4, 32, SEED + 62), { weight: "int4", kv: "f32", compute: "f32" }],
      [await writeQuantCheckpoint("gptq", 8, 32, SEED + 63), { weight: "int8", kv: "f32", compute: "f32" }],
      [await writeFp8Checkpoint({ block: [32, 32] }, SEED + 64), { weight: "fp8", kv: "f32", compute: "f32" }],
    ];
    for (const [dir, precision] of dirs) {
      const unfused = await run(dir, precision, false), fused = await run(dir, precision, true);
      // The fused layer takes fewer dispatches (5 per layer against 9): it did run.
      assert.ok(
        fused.dispatches < unfused.dispatches,
        `${precision.weight}: ${fused.dispatches} vs ${unfused.dispatches} dispatches`,
      );
      // Same dequantized weights, f32 math in another order: bound 1e-5 of the logits' scale, as for dense weights.
      const err = relError(fused.logits, unfused.logits);
      assert.ok(err < 1e-5, `${precision.weight}: fused vs unfused logits: error ${err} ${seedNote}`);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

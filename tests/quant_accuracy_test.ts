// Accuracy of our quantizer's stories260K outputs and of int8 / int4 KV on the reference backend, against the f32
// reference, over the greedy_from_bos ids and the reference cases (105 positions).
//
// Bounds, from measurement (numbers in the messages) with margin. stories260K is extremely sensitive: f16 weights
// alone (KL 5e-5) already flip 1 of these 105 top-1s, and int8 RTN weights (0.6% relative weight error) give a
// mean KL of ~0.017. So int8 weights + int8 KV reach 97.1% top-1 here (3 flips), NOT the 98% originally targeted; the test
// pins 95%. int8 KV alone keeps >= 98% here. The second test measures on 2048 sampled positions, where even f16
// weights only reach 98.0%: see there.
//
// fp8 (e4m3, our quantizer's 32 x 32 blocks: the largest block that tiles this 64-wide model; 128 x 128 would give
// one scale per q / k / v / o matrix) measured top-1 76.2% / mean KL 0.32 with f32 KV and 76.2% / 0.33 with int8 KV:
// ~20x int8 g64's KL (1.5e-2), well below bf16 weights (97.1% / 5.3e-3), between int8 and int4. On the second test's
// 2048 positions: 63.2% / 0.34. That is the format, not the blocks: e4m3 keeps 3 mantissa bits, so its error is
// relative (|x - q| <= |x| / 16) whatever the scale, and the relative RMS weight error is 2.6% against int8 g64's
// 0.64% (4x; KL grows with its square, 16x). Other blocks measured the same within noise (16x16 79.0% / 0.21,
// 64x64 79.0% / 0.18, 128x128 75.2% / 0.18; per row, g32: 68.6% / 0.22). Bounds: top-1 >= 65% (11 flips of margin
// on 105 positions) and KL <= 0.5 (1.5x). This model amplifies weight noise far more than large ones (see the
// second test), so these numbers say nothing about fp8 on a 7B model.
import assert from "node:assert/strict";
import type { Precision } from "../src/core/types.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { quantizeModel } from "../src/quant/quantize.ts";
import { type AccuracyReport, compareLogits, windowedLogits } from "../src/quant/eval.ts";
import { readReferenceLogits, STORIES_DIR } from "./helpers/models.ts";
import { generateSequence } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";

async function logitsOf(dir: string, p: Precision, seqs: number[][]): Promise<Float32Array[]> {
  const ck = await openCheckpoint(dir);
  await using b = new ReferenceBackend();
  await b.load(ck.spec, ck.weights, p);
  ck.weights.close();
  const out: Float32Array[] = [];
  for (const ids of seqs) out.push(await windowedLogits(b, ids, 512, 512));
  return out;
}

function pooled(seqs: number[][], test: Float32Array[], ref: Float32Array[]): AccuracyReport & { n: number } {
  let n = 0, agree = 0, kl = 0;
  for (let i = 0; i < seqs.length; i++) {
    const r = compareLogits(seqs[i]!, 512, 512, test[i]!, ref[i]!);
    n += r.comparedPositions;
    agree += r.top1Agreement! * r.comparedPositions;
    kl += r.meanKl! * r.comparedPositions;
  }
  return { ...compareLogits(seqs[0]!, 512, 512, test[0]!, ref[0]!), n, top1Agreement: agree / n, meanKl: kl / n };
}

type Run = [name: string, dir: string, precision: Precision, minTop1: number, maxKl: number];

/** Runs each configuration over `seqs`, asserts its top-1 / KL bounds, and prints one line per run. */
async function checkRuns(runs: Run[], seqs: number[][], ref: Float32Array[]): Promise<void> {
  const lines: string[] = [];
  for (const [name, dir, p, minTop1, maxKl] of runs) {
    const r = pooled(seqs, await logitsOf(dir, p, seqs), ref);
    const line = `${name}: top-1 ${(r.top1Agreement! * 100).toFixed(1)}%, mean KL ${
      r.meanKl!.toExponential(2)
    } (${r.n})`;
    lines.push(line);
    assert.ok(r.top1Agreement! >= minTop1, line);
    assert.ok(r.meanKl! <= maxKl, line);
  }
  console.log(lines.join("\n"));
}

Deno.test("quantizeModel() int4 g32 / int8 g64 / fp8 32x32 with int8 / int4 KV: top-1 agreement and KL vs f32 on stories260K", async () => {
  const data = await readReferenceLogits();
  const seqs = [data.greedy_from_bos, ...data.cases.map((c) => c.tokens)];
  const f32: Precision = { weight: "f32", kv: "f32", compute: "f32" };
  const ref = await logitsOf(STORIES_DIR, f32, seqs);
  const q4 = await Deno.makeTempDir(), q8 = await Deno.makeTempDir(), f8 = await Deno.makeTempDir();
  await quantizeModel({ model: STORIES_DIR, out: q4, bits: 4, groupSize: 32, method: "rtn", quiet: true });
  await quantizeModel({ model: STORIES_DIR, out: q8, bits: 8, groupSize: 64, method: "rtn", quiet: true });
  await quantizeModel({ model: STORIES_DIR, out: f8, wDtype: "fp8", block: [32, 32], quiet: true });
  const runs: Run[] = [
    // name, model, precision, min top-1, max mean KL
    ["f32 weights + int8 KV", STORIES_DIR, { ...f32, kv: "int8" }, 0.98, 0.003],
    ["f32 weights + int4 KV", STORIES_DIR, { ...f32, kv: "int4" }, 0.5, 0.4],
    ["int8 g64 weights + f32 KV", q8, { weight: "int8", kv: "f32", compute: "f32" }, 0.95, 0.03],
    ["int8 g64 weights + int8 KV", q8, { weight: "int8", kv: "int8", compute: "f32" }, 0.95, 0.03],
    ["fp8 32x32 weights + f32 KV", f8, { weight: "fp8", kv: "f32", compute: "f32" }, 0.65, 0.5],
    ["fp8 32x32 weights + int8 KV", f8, { weight: "fp8", kv: "int8", compute: "f32" }, 0.65, 0.5],
    ["int4 g32 weights + int8 KV", q4, { weight: "int4", kv: "int8", compute: "f32" }, 0.25, 2.5],
    ["int4 g32 weights + int4 KV", q4, { weight: "int4", kv: "int4", compute: "f32" }, 0.2, 3],
  ];
  await checkRuns(runs, seqs, ref);
  await Deno.remove(q4, { recursive: true });
  await Deno.remove(q8, { recursive: true });
  await Deno.remove(f8, { recursive: true });
});

Deno.test("quantizeModel() int8 on 2048 positions of the model's own samples: f16 alone already sits at the 98% line", async () => {
  // 105 positions give 1% steps, so this reruns the comparison on 8 x 256 tokens sampled (temperature 1, fixed seeds)
  // from the f32 model. Measured: f16 weights (no quantization) 98.0% / KL 6.5e-5; f32 + int8 KV 97.1% / 2.0e-3;
  // int8 g32 RTN + int8 KV ~89% / ~2e-2; GPTQ g32 + int8 KV ~91% / 1.5e-2; fp8 32x32 + int8 KV 63.2% / 0.34 (the
  // 105 positions of the first test flatter it at 76%; bounds 55% / 0.5). Layer 0 alone (int8) costs KL 1.6e-2:
  // with width 64 and head_dim 8 this model amplifies weight noise far more than a 7B model would, so the 98% bar
  // is not reachable for int8 here (even f16 rounding only just reaches it).
  const f32: Precision = { weight: "f32", kv: "f32", compute: "f32" };
  const ck = await openCheckpoint(STORIES_DIR);
  await using gen = new ReferenceBackend();
  await gen.load(ck.spec, ck.weights, f32);
  ck.weights.close();
  const seqs: number[][] = [];
  for (let s = 0; s < 8; s++) {
    const params = { ...defaultSamplingParams(), temperature: 1, seed: 1000 + s };
    const r = await generateSequence(gen, [1], params, { maxTokens: 255, maxPositions: 512, seed: 1000 + s });
    seqs.push([1, ...r.ids]);
  }
  const ref: Float32Array[] = [];
  for (const s of seqs) ref.push(await windowedLogits(gen, s, 512, 512));
  const q8 = await Deno.makeTempDir(), f8 = await Deno.makeTempDir();
  await quantizeModel({ model: STORIES_DIR, out: q8, bits: 8, groupSize: 32, method: "rtn", quiet: true });
  await quantizeModel({ model: STORIES_DIR, out: f8, wDtype: "fp8", block: [32, 32], quiet: true });
  const runs: Run[] = [
    ["f16 weights, f32 KV", STORIES_DIR, { ...f32, weight: "f16" }, 0.97, 3e-4],
    ["f32 weights + int8 KV", STORIES_DIR, { ...f32, kv: "int8" }, 0.95, 5e-3],
    ["int8 g32 weights + int8 KV", q8, { weight: "int8", kv: "int8", compute: "f32" }, 0.85, 4e-2],
    ["fp8 32x32 weights + int8 KV", f8, { weight: "fp8", kv: "int8", compute: "f32" }, 0.55, 0.5],
  ];
  await checkRuns(runs, seqs, ref);
  await Deno.remove(q8, { recursive: true });
  await Deno.remove(f8, { recursive: true });
});

// The CUDA backend on stories260K: logits vs transformers' reference_logits.json, greedy continuation, batched
// mixed prefill + decode steps vs the reference backend, and decode graphs vs no graphs. Ignored (with the
// reason in the name) where no NVIDIA driver is present.
import assert from "node:assert/strict";
import type { Backend, Precision, StepInputs } from "../src/core/types.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { generateSequence, sequenceLogits } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { CudaBackend } from "../src/backends/cuda/backend.ts";
import { cudaTest, relErr } from "../src/backends/cuda/testing.ts";
import { readReferenceLogits, STORIES_DIR } from "./helpers/models.ts";

const greedy = { ...defaultSamplingParams(), temperature: 0 };
const BF16: Precision = { weight: "bf16", kv: "bf16", compute: "f32" };
const gpuTest = cudaTest;

async function load<B extends Backend>(backend: B, precision: Precision): Promise<B> {
  const ckpt = await openCheckpoint(STORIES_DIR);
  await backend.load(ckpt.spec, ckpt.weights, precision);
  ckpt.weights.close();
  return backend;
}

// Rounding stories260K's f32 weights to bf16 alone moves its logits by 2.6e-2 / 4.0e-2 (max|diff|/max|ref|,
// 8 / 32 tokens) from transformers' f32 logits: the reference backend shows the same. So the 2e-3 bound applies to
// the CUDA backend vs the reference backend at the same precision, and transformers is checked against 1.25x the
// reference backend's own error. With a bf16 KV cache, f32-rounding-level differences in K/V flip some bf16
// roundings; over 32 tokens of this 64-wide model that moves logits by 1.5e-3 to 3.1e-3 (seen on an H100 with
// two attention kernels of different summation order), hence 5e-3 there; f16 KV stays near 1e-4.
gpuTest(
  "CudaBackend logits match the reference backend (2e-3; 5e-3 with bf16 KV) at bf16/f16 weights, and transformers",
  async () => {
    const ref = await readReferenceLogits();
    const precisions: Precision[] = [{ ...BF16, kv: "f16" }, { weight: "f16", kv: "f16", compute: "f32" }, BF16];
    for (const precision of precisions) {
      const weight = `${precision.weight}${precision.kv !== precision.weight ? ` (KV ${precision.kv})` : ""}`;
      await using oracle = await load(new ReferenceBackend(), precision);
      for (const activations of ["f32", "half"] as const) {
        await using b = await load(await CudaBackend.create({ activations }), precision);
        for (const c of ref.cases) {
          const want = await sequenceLogits(oracle, c.tokens, greedy);
          const got = await sequenceLogits(b, c.tokens, greedy);
          const err = relErr(got, want), hf = relErr(got, c.logits.flat()), own = relErr(want, c.logits.flat());
          console.log(
            `  weights ${weight}, activations ${activations}, ${c.tokens.length} tokens: vs reference backend ` +
              `${err.toExponential(2)}, vs transformers ${hf.toExponential(2)} (reference backend ${
                own.toExponential(2)
              })`,
          );
          const bound = activations === "half" ? 8e-2 : precision.kv === "bf16" ? 5e-3 : 2e-3;
          assert.ok(err < bound, `${weight}/${activations}, ${c.tokens.length} tokens: error ${err} >= ${bound}`);
          if (activations === "f32") assert.ok(hf < 1.25 * own + 1e-3, `vs transformers ${hf} (reference ${own})`);
        }
      }
    }
  },
);

// Greedy from BOS, 64 tokens. The bf16-rounded model itself leaves transformers' f32 continuation after 10 tokens
// (the reference backend at bf16 does the same), so bf16 is held to the reference backend at bf16, and f16 (whose
// reference-backend run agrees with transformers for 37 tokens) to transformers.
gpuTest(
  "CudaBackend greedy continuation of stories260K: >= 32 ids agree (bf16 vs reference backend, f16 vs transformers)",
  async () => {
    const ref = await readReferenceLogits();
    const hf = ref.greedy_from_bos.slice(1);
    const opts = { maxTokens: hf.length, maxPositions: 512 };
    await using oracle = await load(new ReferenceBackend(), BF16);
    const want = (await generateSequence(oracle, [1], greedy, opts)).ids;
    const prefix = (a: number[], b: number[]) => {
      let n = 0;
      while (n < b.length && a[n] === b[n]) n++;
      return n;
    };
    for (const graphs of [true, false]) {
      await using b = await load(await CudaBackend.create({ graphs }), BF16);
      const out = await generateSequence(b, [1], greedy, opts);
      const agree = prefix(out.ids, want);
      console.log(`  bf16, graphs ${graphs}: ${agree}/${want.length} ids agree with the reference backend at bf16`);
      assert.ok(agree >= 32, `only ${agree} ids agree`);
      if (graphs) assert.ok(b.graphs.replays >= 30, "decode steps did not replay graphs");
    }
    await using b = await load(await CudaBackend.create(), { weight: "f16", kv: "f16", compute: "f32" });
    const agree = prefix((await generateSequence(b, [1], greedy, opts)).ids, hf);
    console.log(`  f16: ${agree}/${hf.length} ids agree with transformers`);
    assert.ok(agree >= 32, `only ${agree} ids agree with transformers`);
  },
);

interface Seq {
  ids: number[];
  /** step at which this sequence's prompt is prefilled */
  join: number;
  pos: number;
}

/**
 * Runs a little schedule: sequences join at different steps (their whole prompt as a prefill beside the others'
 * decode tokens), each later step decodes one token per running sequence. Tokens come from `pick` (teacher
 * forcing when given), so two backends see the same inputs. Returns each step's logits and sampled ids.
 */
async function schedule(b: Backend, seqs: Seq[], steps: number, allLogits: boolean, pick?: number[][]) {
  const bs = 5, per = 16;
  b.allocateKv(seqs.length * per, bs);
  const st = seqs.map((s) => ({ ...s, ids: [...s.ids] }));
  const logits: Float32Array[] = [], picked: number[][] = [];
  for (let step = 0; step < steps; step++) {
    const run = st.map((s, i) => ({ s, i })).filter(({ s }) => s.join <= step);
    const tokens: number[] = [], positions: number[] = [], slots: number[] = [], qs = [0];
    const tables = new Int32Array(run.length * per).fill(-1);
    run.forEach(({ s, i }, r) => {
      const fresh = s.join === step ? s.ids : s.ids.slice(-1);
      for (let k = 0; k < per; k++) tables[r * per + k] = i * per + (per - 1 - k); // reversed blocks
      fresh.forEach((id, k) => {
        const p = s.pos + k;
        tokens.push(id);
        positions.push(p);
        slots.push(tables[r * per + Math.floor(p / bs)]! * bs + (p % bs));
      });
      s.pos += fresh.length;
      qs.push(tokens.length);
    });
    const step_: StepInputs = {
      tokens: Int32Array.from(tokens),
      positions: Int32Array.from(positions),
      queryStarts: Int32Array.from(qs),
      contextLens: Int32Array.from(run.map(({ s }) => s.pos)),
      blockTables: tables,
      maxBlocksPerSeq: per,
      blockSize: bs,
      slots: Int32Array.from(slots),
      sample: run.map(() => true),
      sampling: run.map(({ s }) => ({ params: greedy, promptIds: s.ids, outputIds: [], fallbackSeed: 0 })),
      allLogits,
    };
    const res = await b.forward(step_);
    if (res.logits) logits.push(res.logits);
    const ids = Array.from(res.tokens);
    picked.push(ids);
    run.forEach(({ s }, r) => s.ids.push(pick ? pick[step]![r]! : ids[r]!));
  }
  return { logits, picked };
}

const SEQS: Seq[] = [
  { ids: [1, 403, 407, 261, 378], join: 0, pos: 0 },
  { ids: [1, 320], join: 0, pos: 0 },
  { ids: [1, 67, 300, 260, 312, 275, 424, 1, 99, 12, 401], join: 2, pos: 0 },
];

gpuTest("CudaBackend mixed prefill + decode batches match the reference backend step by step", async () => {
  await using ref = await load(new ReferenceBackend(), BF16);
  await using b = await load(await CudaBackend.create(), BF16);
  const want = await schedule(ref, SEQS, 8, true);
  const got = await schedule(b, SEQS, 8, true, want.picked);
  want.logits.forEach((w, i) => {
    const err = relErr(got.logits[i]!, w);
    assert.ok(err < 2e-3, `step ${i}: logits error ${err} vs the reference backend`);
  });
});

gpuTest(
  "CudaBackend decode graphs give the same tokens as kernel-by-kernel launches (batch 3 -> bucket 4, 9 -> 16)",
  async () => {
    const runs: number[][][] = [];
    for (const graphs of [true, false]) {
      await using b = await load(await CudaBackend.create({ graphs }), BF16);
      runs.push((await schedule(b, SEQS, 24, false)).picked);
      if (graphs) assert.ok(b.graphs.replays > 10 && b.graphs.captures >= 1, `replays ${b.graphs.replays}`);
    }
    assert.deepEqual(runs[0], runs[1]);
    // Nine sequences: bucket 16, padded rows inert.
    const nine: Seq[] = Array.from({ length: 9 }, (_, i) => ({ ids: [1, 10 + 37 * i, 400 - i], join: i % 3, pos: 0 }));
    const big: number[][][] = [];
    for (const graphs of [true, false]) {
      await using b = await load(await CudaBackend.create({ graphs }), BF16);
      big.push((await schedule(b, nine, 12, false)).picked);
      if (graphs) assert.ok(b.graphs.replays >= 8, `replays ${b.graphs.replays}`);
    }
    assert.deepEqual(big[0], big[1]);
    // Host-sampled rows (seeded temperature sampling) go through the same rule with and without graphs.
    const sampled: number[][] = [];
    for (const graphs of [true, false]) {
      await using b = await load(await CudaBackend.create({ graphs }), BF16);
      const p = { ...defaultSamplingParams(), temperature: 0.8, topK: 40, seed: 7 };
      sampled.push((await generateSequence(b, [1, 403], p, { maxTokens: 40, maxPositions: 512 })).ids);
    }
    assert.deepEqual(sampled[0], sampled[1]);
  },
);

gpuTest("CudaBackend.load() fills synthetic weights on the GPU equal to the host's synthetic values", async () => {
  const { buildSyntheticModel } = await import("../src/model/synthetic.ts");
  const { MemoryTensorSource } = await import("../src/model/memory_source.ts");
  const { spec, weights } = buildSyntheticModel("synthetic:tiny:bf16");
  // The same values generated on the host, in a plain source the backend uploads.
  const host = new MemoryTensorSource("host");
  for (const n of weights.names()) host.addF32(n, weights.info(n).shape, await weights.f32(n));
  const precision: Precision = { weight: "bf16", kv: "f16", compute: "f32" };
  await using gpuFilled = await CudaBackend.create();
  await gpuFilled.load(spec, weights, precision);
  await using uploaded = await CudaBackend.create();
  await uploaded.load(spec, host, precision);
  const ids = [1, 5, 7, 9, 11, 13];
  const a = await sequenceLogits(gpuFilled, ids, greedy), b = await sequenceLogits(uploaded, ids, greedy);
  // Device f32 arithmetic vs host f64 can round a value to a neighbouring bf16 in rare cases; a different recipe
  // would differ at order 1.
  const err = relErr(a, b);
  assert.ok(err < 1e-3, `device-filled synthetic weights differ from the host's: ${err}`);
});

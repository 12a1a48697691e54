// W4A16 on CUDA, synthetic Llama-3-8B shape, int4 g128 weights generated on the GPU (qfill): HBM copy bandwidth
// (the ceiling, same run), per-kernel qgemv bandwidth (graph replays of 20 launches) for the four linear shapes at
// M = 1 and 16 (default plan and a sweep of split targets / PDL off), batch-1
// decode tok/s vs the HBM roofline (packed weights + scales + f16 lm_head + embedding row + KV per token), and
// batch 16 / 64 (--batches) decode throughput; the skinny-M GEMM qgemms per shape at M = 16..128 (2048 with --prefill,
// against the tiled qgemm and dense f16 gemm_wg) on rotating weight copies (no L2 reuse).
// Usage: deno run -A bench/cuda_quant.ts [--layers N] [--steps N] [--group G] [--batches 1,16,64] [--no-sweep]
//   [--no-qgemms] [--prefill] [--baseline: the model runs first with the tiled qgemm for M > 16]
//   [--bits 8: the whole-model runs with int8 (W8A16) linears instead of int4; --fp8: with FP8 E4M3 linears (8-bit
//   codes, per-group scales); the per-shape sections stay int4]
import type { StepInputs } from "../src/core/types.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { CudaBackend } from "../src/backends/cuda/backend.ts";
import { CudaTimer } from "../src/backends/cuda/device.ts";
import { GraphCache } from "../src/backends/cuda/graphs.ts";
import {
  allocQuantScratch,
  fillQuantMatrix,
  qgemvDefaults,
  qgemvPlan,
  type QgemvTune,
  quantLinear,
  scratchNeed,
  tileN,
} from "../src/backends/cuda/qlinear.ts";
import type { QuantBits } from "../src/quant/types.ts";
import { buildSyntheticModel, SyntheticTensorSource } from "../src/model/synthetic.ts";
import { copyBandwidth, exitUnlessCuda, msPerCall, numArg } from "./cuda_common.ts";
import { qgemmRouting, qgemmSkinny, qgemmTiled, QS_TILES, qsPlan } from "../src/backends/cuda/qgemm_plan.ts";
import { DeviceArena } from "../src/backends/cuda/testing.ts";

const arg = numArg;
exitUnlessCuda("cuda_quant");
const spec = { ...buildSyntheticModel("synthetic:llama3-8b:f16").spec, numLayers: arg("--layers", 32) };
const STEPS = arg("--steps", 48), G = arg("--group", 128), PROMPT = 128, BS = 16, BITS = arg("--bits", 4) as QuantBits;
if (BITS !== 4 && BITS !== 8) throw new Error(`--bits ${BITS}: 4 or 8`);
const FP8 = Deno.args.includes("--fp8");
const MODEL_BITS: QuantBits = FP8 ? 8 : BITS;
const flag = (name: string) => Deno.args.includes(name);
const bi = Deno.args.indexOf("--batches");
const BATCHES = bi >= 0 ? Deno.args[bi + 1]!.split(",").map(Number) : [1, 16, 64];
const rows: [string, string][] = [];
/** Adds a result row and prints it at once (a later failure keeps what was measured). */
const row = (key: string, v: string) => {
  rows.push([key, v]);
  console.log(`${key}: ${v}`);
};
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const h = spec.hiddenSize, f = spec.intermediateSize, vocab = spec.vocabSize;
const qkvN = (spec.numHeads + 2 * spec.numKvHeads) * spec.headDim;
const SHAPES = [[qkvN, h, "qkv"], [h, spec.numHeads * spec.headDim, "o"], [2 * f, h, "gate_up"], [
  h,
  f,
  "down",
]] as const;
/**
 * Bytes one quantized linear reads: packed words (N padded to 64 int4 / 32 int8) + (scale, bias) half2 per group and
 * column.
 */
const quantBytes = (N: number, K: number, bits: QuantBits = 4) => {
  const Np = Math.ceil(N / tileN(bits)) * tileN(bits);
  return (Np * Math.ceil(K / 16) * 16 * bits) / 8 + Math.ceil(K / G) * Np * 4;
};

await using b = await CudaBackend.create();
const dev = b.dev, k = b.kernels;
row("device", b.device);

// Ceiling: device-to-device copy, bytes read + written.
let hbm: number;
{
  using t = new CudaTimer(dev);
  hbm = await copyBandwidth(dev, t);
  row("HBM copy (cuMemcpyDtoD 1 GiB, read+write)", `${(hbm / 1e9).toFixed(0)} GB/s`);
}

// Per-kernel: qgemv on each shape, 20 launches captured in one graph (no host gaps in the timing), at the default
// plan and the split targets / launch modes of SWEEP.
const SWEEP: QgemvTune[] = [
  { warpsPerSm: 16 },
  { warpsPerSm: 16, interleave: true },
  { warpsPerSm: 32 },
  { warpsPerSm: 32, interleave: true },
  { warpsPerSm: 64 },
  { warpsPerSm: 64, interleave: true },
  { warpsPerSm: 16, pdl: false },
];
const tuneName = (t: QgemvTune) => `w${t.warpsPerSm}${t.interleave ? " il" : ""}${t.pdl === false ? " no-pdl" : ""}`;
/** Sum over the four shapes of the M = 1 time (us) per SWEEP entry: picks the configuration of the second model run. */
const m1Sum = SWEEP.map(() => 0);
if (!flag("--no-sweep")) {
  using arena = new DeviceArena(dev);
  const alloc = arena.alloc;
  const wps = SWEEP.map((t) => t.warpsPerSm ?? qgemvDefaults.warpsPerSm);
  const need = scratchNeed(4, SHAPES.map(([N, K]) => [N, K] as const), dev.smCount, wps);
  const scratch = allocQuantScratch(dev, alloc, need.floats, need.slots);
  using x = dev.alloc(16 * f * 2, "bench.x"), y = dev.alloc(16 * 2 * f * 4, "bench.y");
  dev.memset(x.ptr, 0x2c, 16 * f * 2); // f16 0x2c2c ~ 0.06
  for (const [N, K, what] of SHAPES) {
    const W = fillQuantMatrix(
      k,
      alloc,
      { bits: 4, N, K, group: G, seed: N ^ K, amp: 1 / Math.sqrt(K), label: what },
      scratch,
    );
    for (const M of [1, 4, 8, 16]) {
      const res: string[] = [];
      for (const [ti, tune] of SWEEP.entries()) {
        quantLinear(k, x.ptr, W, 0n, y.ptr, M, "auto", tune);
        using g = new GraphCache(dev);
        g.capture(0, () => {
          for (let r = 0; r < 20; r++) quantLinear(k, x.ptr, W, 0n, y.ptr, M, "auto", tune);
        });
        g.launch(0);
        using t = new CudaTimer(dev);
        const ms: number[] = [];
        for (let i = 0; i < 5; i++) {
          t.start();
          g.launch(0);
          ms.push((await t.stop()) / 20);
        }
        const m = median(ms), bw = quantBytes(N, K) / (m / 1e3);
        const p = qgemvPlan(4, N, K, M, dev.smCount, Infinity, tune.warpsPerSm);
        if (M === 1) m1Sum[ti]! += m * 1e3;
        res.push(
          `${tuneName(tune)} (ksb ${p.ksb} S ${p.S} tps ${p.tps}) ${(m * 1e3).toFixed(1)} us ${
            (100 * bw / hbm).toFixed(0)
          }%`,
        );
      }
      row(`qgemv int4 g${G} M=${M} ${what} ${N}x${K}: time, % of copy bw`, res.join("; "));
    }
  }
  await dev.sync();
}

// Per-kernel: qgemms (default variant, then each variant) and the tiled qgemm per shape, 20 launches per graph over
// rotating weight copies (>= 120 MB per shape, so no launch finds its weights in L2); M = 16 also times qgemv.
if (!flag("--no-qgemms")) {
  using arena = new DeviceArena(dev);
  const Ms = [16, 32, 64, 128, ...(flag("--prefill") ? [2048] : [])], maxM = Math.max(...Ms);
  using x = dev.alloc(maxM * f * 2, "bench.x"), y = dev.alloc(maxM * 2 * f * 4, "bench.y");
  dev.memset(x.ptr, 0x2c, maxM * f * 2);
  using g = new GraphCache(dev), t = new CudaTimer(dev);
  const need = scratchNeed(4, SHAPES.map(([N, K]) => [N, K] as const), dev.smCount);
  const scratch = allocQuantScratch(dev, arena.alloc, need.floats, need.slots);
  for (const [N, K, what] of SHAPES) {
    const copies = Math.ceil(120e6 / quantBytes(N, K));
    const Ws = Array.from({ length: copies }, (_, c) =>
      fillQuantMatrix(k, arena.alloc, {
        ...{ bits: 4, N, K, group: G, seed: (N ^ K) + 7919 * c, amp: 1 / Math.sqrt(K), label: `${what}${c}` },
      }, scratch));
    const us = async (fn: (W: (typeof Ws)[number]) => void) => {
      let c = 0;
      return 1e3 * await msPerCall(dev, g, t, () => fn(Ws[c++ % copies]!), 20);
    };
    for (const M of Ms) {
      const fmt = (u: number) =>
        `${u.toFixed(1)} us ${(100 * quantBytes(N, K) / (u / 1e6) / hbm).toFixed(0)}% ${
          (2 * M * N * K / u / 1e6).toFixed(0)
        } TFLOP/s`;
      const p = qsPlan(4, N, K, M, G, dev.smCount, 4 * dev.smCount * 2048);
      const res = [`${p.tile} S ${p.S} tps ${p.tps}: ${fmt(await us((W) => qgemmSkinny(k, x.ptr, W, 0n, y.ptr, M)))}`];
      for (const tile of QS_TILES) {
        res.push(`${tile} ${(await us((W) => qgemmSkinny(k, x.ptr, W, 0n, y.ptr, M, tile))).toFixed(1)}`);
      }
      res.push(`tiled qgemm ${fmt(await us((W) => qgemmTiled(k, x.ptr, W, 0n, y.ptr, M)))}`);
      if (M <= 16) res.push(`qgemv ${fmt(await us((W) => quantLinear(k, x.ptr, W, 0n, y.ptr, M)))}`);
      if (M > 256 && K % 8 === 0) {
        using wd = dev.alloc(N * K * 2, "bench.dense");
        const grid = [Math.ceil(N / 128), Math.ceil(M / 128)] as const, args = { A: x.ptr, W: wd.ptr, bias: 0n };
        const wg = await us(() =>
          k.launch("gemm_wg", "f16", grid, [256], { ...args, C: y.ptr, M, N, K }, 3 * 2 * 128 * 64 * 2)
        );
        res.push(`dense f16 gemm_wg ${wg.toFixed(1)} us ${(2 * M * N * K / wg / 1e6).toFixed(0)} TFLOP/s`);
      }
      row(`qgemms int4 g${G} M=${M} ${what} ${N}x${K}: us, % of copy bw, TFLOP/s`, res.join("; "));
    }
  }
  await dev.sync();
}

// Whole model: synthetic 8B shape, int4 (--bits 8: int8) g128 linears generated on the GPU, f16 lm_head / embedding,
// f16 KV.
const weightBytes = spec.numLayers * SHAPES.reduce((a, [N, K]) => a + quantBytes(N, K, MODEL_BITS), 0) + vocab * h * 2 +
  h * 2;
const MULTI_K = 8, MULTI_RUNS = 4; // multi-step decode runs after the single steps
const MAXB = Math.max(...BATCHES), perSeq = Math.ceil((PROMPT + STEPS + 8 + MULTI_K * MULTI_RUNS) / BS);
const greedy = { ...defaultSamplingParams(), temperature: 0 };
const prompt = (s: number) => Array.from({ length: PROMPT }, (_, i) => (i * 7919 + s * 104729) % vocab);
/** One step of B sequences: sequence s owns blocks [s * perSeq, (s + 1) * perSeq); ids[s] are its new tokens. */
const stepOf = (ids: number[][], start: number[]): StepInputs => {
  const B = ids.length, flat = ids.flat();
  const qs = [0];
  for (const t of ids) qs.push(qs[qs.length - 1]! + t.length);
  const positions = ids.flatMap((t, s) => t.map((_, i) => start[s]! + i));
  const seqOf = ids.flatMap((t, s) => t.map(() => s));
  return {
    tokens: Int32Array.from(flat),
    positions: Int32Array.from(positions),
    queryStarts: Int32Array.from(qs),
    contextLens: Int32Array.from(ids, (t, s) => start[s]! + t.length),
    blockTables: Int32Array.from({ length: B * perSeq }, (_, i) => i),
    maxBlocksPerSeq: perSeq,
    blockSize: BS,
    slots: Int32Array.from(positions, (p, i) => seqOf[i]! * perSeq * BS + p),
    sample: ids.map(() => true),
    sampling: ids.map((t) => ({ params: greedy, promptIds: t, outputIds: [], fallbackSeed: 0 })),
  };
};

/** Loads the model into `be` and times decode at each batch size with the current qgemvDefaults. */
async function modelRuns(be: CudaBackend, batches: number[]): Promise<void> {
  const cfg = tuneName(qgemvDefaults);
  const t0 = performance.now();
  const weight = FP8 ? "fp8" : BITS === 8 ? "int8" : "int4";
  await be.load(spec, new SyntheticTensorSource(spec, "F16"), { weight, group: G, kv: "f16", compute: "f16" });
  row(
    `load synthetic 8B-shape ${weight} g${G} (${spec.numLayers} layers)`,
    `${((performance.now() - t0) / 1e3).toFixed(1)} s`,
  );
  be.allocateKv(MAXB * perSeq, BS);
  for (const B of batches) {
    let last: number[] = [];
    for (let s = 0; s < B; s++) {
      const r = await be.forward(remap(stepOf([prompt(s)], [0]), s));
      last.push(r.tokens[0]!);
    }
    const ms: number[] = [];
    for (let i = 0; i < STEPS; i++) {
      const t = performance.now();
      const r = await be.forward(stepOf(last.map((id) => [id]), last.map(() => PROMPT + i)));
      ms.push(performance.now() - t);
      last = Array.from(r.tokens);
    }
    const m = median(ms.slice(2));
    // Multi-step decode (Backend.decodeSteps): MULTI_K steps per call, one host sync per run.
    const per: number[] = [];
    for (let r = 0; r < MULTI_RUNS; r++) {
      const t = performance.now();
      const ids = await be.decodeSteps(
        stepOf(last.map((id) => [id]), last.map(() => PROMPT + STEPS + r * MULTI_K)),
        MULTI_K,
      );
      per.push((performance.now() - t) / MULTI_K);
      last = Array.from(ids.subarray((MULTI_K - 1) * B));
    }
    const mm = median(per.slice(1));
    if (B === 1) {
      const kvBytes = PROMPT * spec.numLayers * 2 * spec.numKvHeads * spec.headDim * 2;
      const roof = (weightBytes + kvBytes) / hbm * 1e3;
      row(
        `decode batch 1, context ${PROMPT}, graphs on, qgemv ${cfg}`,
        `${(1e3 / m).toFixed(1)} tok/s (${m.toFixed(2)} ms/step; roofline ${roof.toFixed(2)} ms = ${
          (1e3 / roof).toFixed(0)
        } tok/s; ${(100 * roof / m).toFixed(0)}%; ${(weightBytes / 1e9).toFixed(2)} GB weights/step)`,
      );
      row(
        `decode batch 1, context ${PROMPT}, multi-step k = ${MULTI_K}, qgemv ${cfg}`,
        `${(1e3 / mm).toFixed(1)} tok/s (${mm.toFixed(2)} ms/step; ${(100 * roof / mm).toFixed(0)}% of roofline)`,
      );
      using t = new CudaTimer(dev);
      t.start();
      for (let r = 0; r < 20; r++) be.graphs.launch(1);
      const gpu = (await t.stop()) / 20;
      row(
        `decode batch 1: GPU time of one graph replay, qgemv ${cfg}`,
        `${gpu.toFixed(2)} ms = ${(100 * roof / gpu).toFixed(0)}% of roofline`,
      );
    } else {
      row(
        `decode batch ${B}, context ~${PROMPT}, qgemv ${cfg}`,
        `${(B * 1e3 / m).toFixed(0)} tok/s (${m.toFixed(2)} ms/step); multi-step k = ${MULTI_K}: ${
          (B * 1e3 / mm).toFixed(0)
        } tok/s`,
      );
    }
  }
}

const batches = BATCHES.filter((B) => B > 0);
if (flag("--baseline") && batches.length) {
  // The same model with M > 16 on the tiled qgemm (before qgemms), then the default routing.
  qgemmRouting.skinnyMaxM = 0;
  await using b0 = await CudaBackend.create();
  console.log("baseline: tiled qgemm for M > 16");
  await modelRuns(b0, batches);
  qgemmRouting.skinnyMaxM = Infinity;
}
if (batches.length) await modelRuns(b, batches);
// Second model run with the sweep's fastest M = 1 configuration, when it is not the default.
const best = SWEEP[m1Sum.indexOf(Math.min(...m1Sum))]!;
row("qgemv sweep: fastest M = 1 configuration (sum over the four shapes)", `${tuneName(best)}`);
if (tuneName(best) !== tuneName(qgemvDefaults)) {
  Object.assign(qgemvDefaults, { warpsPerSm: best.warpsPerSm, interleave: !!best.interleave, pdl: best.pdl ?? true });
  await using b2 = await CudaBackend.create();
  await modelRuns(b2, [1, 16]);
}

/** A single-sequence prefill step placed in sequence slot s's blocks. */
function remap(step: StepInputs, s: number): StepInputs {
  return {
    ...step,
    blockTables: Int32Array.from({ length: perSeq }, (_, i) => s * perSeq + i),
    slots: step.slots.map((p) => s * perSeq * BS + p),
  };
}

console.log("\n| measurement | result |\n| --- | --- |");
for (const [key, v] of rows) console.log(`| ${key} | ${v} |`);

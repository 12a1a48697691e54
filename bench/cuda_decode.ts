// CUDA backend timings on a synthetic Llama-3-8B-shape bf16 model: HBM copy bandwidth and this repo's GEMM rate
// (the two ceilings, measured in the same run), batch-1 decode tok/s with graphs on and off vs the HBM roofline,
// and a 2048-token prefill vs the GEMM rate.
// Usage: deno run -A bench/cuda_decode.ts [--layers N] [--steps N] [--only-decode] (decode only, for profilers)
import type { StepInputs } from "../src/core/types.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { CudaBackend } from "../src/backends/cuda/backend.ts";
import { CudaTimer } from "../src/backends/cuda/device.ts";
import { CudaOps } from "../src/backends/cuda/ops.ts";
import { cudaSkipReason } from "../src/backends/cuda/testing.ts";
import { buildSyntheticModel, SyntheticTensorSource } from "../src/model/synthetic.ts";

const arg = (name: string, def: number) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : def;
};
const skip = cudaSkipReason();
if (skip) {
  console.log(`cuda_decode: skipped (${skip})`);
  Deno.exit(0);
}
// Llama-3-8B shape (optionally fewer layers); the weights are generated on the GPU by the backend.
const spec = { ...buildSyntheticModel("synthetic:llama3-8b:bf16").spec, numLayers: arg("--layers", 32) };
const STEPS = arg("--steps", 64), PROMPT = 128, PREFILL = 2048, BS = 16;
const rows: [string, string][] = [];
const onlyDecode = Deno.args.includes("--only-decode");
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

await using b = await CudaBackend.create();
const dev = b.dev;
rows.push(["device", b.device]);

// Ceiling 1: device-to-device copy, bytes read + written.
if (!onlyDecode) {
  const n = 1 << 30;
  using src = dev.alloc(n, "bench.src"), dst = dev.alloc(n, "bench.dst");
  dev.memset(src.ptr, 1, n);
  using t = new CudaTimer(dev);
  dev.copy(dst.ptr, src.ptr, n);
  const ms: number[] = [];
  for (let i = 0; i < 10; i++) {
    t.start();
    dev.copy(dst.ptr, src.ptr, n);
    ms.push(await t.stop());
  }
  rows.push(["HBM copy (cuMemcpyDtoD 1 GiB, read+write)", `${((2 * n) / (median(ms) / 1e3) / 1e9).toFixed(0)} GB/s`]);
}
const hbm = onlyDecode ? 3e12 : Number(rows[rows.length - 1]![1].split(" ")[0]) * 1e9;

// Ceiling 2: this repo's tensor-core GEMM at a large shape (there is no cuBLAS here to compare with).
for (const act of onlyDecode ? [] : ["bf16", "f32"] as const) {
  const M = 4096, N = 4096, K = 4096;
  const ops = new CudaOps(b.kernels, "bf16", "bf16", act);
  using x = dev.alloc(M * K * 4, "bench.x"), w = dev.alloc(N * K * 2, "bench.w"), y = dev.alloc(M * N * 4, "bench.y");
  dev.memset(x.ptr, 0x3c, M * K * 4);
  dev.memset(w.ptr, 0x3c, N * K * 2);
  using t = new CudaTimer(dev);
  ops.linear(x.ptr, w.ptr, 0n, y.ptr, M, N, K);
  const ms: number[] = [];
  for (let i = 0; i < 5; i++) {
    t.start();
    ops.linear(x.ptr, w.ptr, 0n, y.ptr, M, N, K);
    ms.push(await t.stop());
  }
  const tf = (2 * M * N * K) / (median(ms) / 1e3) / 1e12;
  rows.push([
    `GEMM 4096^3 mma.sync 128x128 tiles, activations ${act}`,
    `${tf.toFixed(0)} TFLOP/s (${median(ms).toFixed(2)} ms)`,
  ]);
}

// Decode-shaped GEMV (M = 1) per projection of the 8B shape: bytes of weights over time (20 launches queued
// between the events, so host launch time stays out).
for (const act of onlyDecode ? [] : ["f32", "bf16"] as const) {
  const ops = new CudaOps(b.kernels, "bf16", "bf16", act);
  for (
    const [N, K, what] of [[6144, 4096, "qkv"], [28672, 4096, "gate_up"], [4096, 14336, "down"], [
      128256,
      4096,
      "lm_head",
    ]] as const
  ) {
    using x = dev.alloc(K * 4, "bench.x"), w = dev.alloc(N * K * 2, "bench.w"), y = dev.alloc(N * 4, "bench.y");
    dev.memset(x.ptr, 0x3c, K * 4);
    dev.memset(w.ptr, 0x3c, N * K * 2);
    using t = new CudaTimer(dev);
    ops.linear(x.ptr, w.ptr, 0n, y.ptr, 1, N, K);
    const ms: number[] = [];
    for (let i = 0; i < 3; i++) {
      t.start();
      for (let r = 0; r < 20; r++) ops.linear(x.ptr, w.ptr, 0n, y.ptr, 1, N, K); // back to back: no host gaps
      ms.push((await t.stop()) / 20);
    }
    const m = median(ms);
    rows.push([
      `GEMV M=1 ${what} ${N}x${K}, activations ${act}`,
      `${(m * 1e3).toFixed(0)} us, ${(N * K * 2 / (m / 1e3) / 1e9).toFixed(0)} GB/s`,
    ]);
  }
}

const t0 = performance.now();
await b.load(spec, new SyntheticTensorSource(spec, "BF16"), { weight: "bf16", kv: "bf16", compute: "f32" });
const weightBytes = 2 * (spec.numLayers * (4096 * (32 + 16) * 128 + 4096 * 4096 + 3 * 4096 * 14336) + 128256 * 4096);
rows.push([`load synthetic 8B-shape (${spec.numLayers} layers)`, `${((performance.now() - t0) / 1e3).toFixed(1)} s`]);
const nBlocks = Math.ceil((PREFILL + STEPS + 8) / BS);
b.allocateKv(nBlocks, BS);
const table = Int32Array.from({ length: nBlocks }, (_, i) => i);
const greedy = { ...defaultSamplingParams(), temperature: 0 };
const stepOf = (ids: number[], start: number): StepInputs => ({
  tokens: Int32Array.from(ids),
  positions: Int32Array.from(ids, (_, i) => start + i),
  queryStarts: Int32Array.of(0, ids.length),
  contextLens: Int32Array.of(start + ids.length),
  blockTables: table,
  maxBlocksPerSeq: nBlocks,
  blockSize: BS,
  slots: Int32Array.from(ids, (_, i) => start + i),
  sample: [true],
  sampling: [{ params: greedy, promptIds: ids, outputIds: [], fallbackSeed: 0 }],
});
const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i * 7919) % spec.vocabSize);

for (const act of onlyDecode ? [] : ["f32", "half"] as const) {
  b.setActivations(act);
  const ids = prompt(PREFILL);
  await b.forward(stepOf(ids, 0)); // warm-up: workspace growth
  const t = performance.now();
  await b.forward(stepOf(ids, 0));
  const ms = performance.now() - t;
  const flops = 2 * PREFILL * (weightBytes / 2 - 128256 * 4096) +
    2 * 2 * spec.numLayers * 32 * 128 * PREFILL * PREFILL / 2;
  rows.push([
    `prefill ${PREFILL} tokens, activations ${act}`,
    `${ms.toFixed(0)} ms, ${(PREFILL / ms * 1e3).toFixed(0)} tok/s, ${(flops / (ms / 1e3) / 1e12).toFixed(0)} TFLOP/s`,
  ]);
}
b.setActivations("f32");

for (const context of [PROMPT, PREFILL]) {
  for (const graphs of [true, false]) {
    b.graphsEnabled = graphs;
    const r = await b.forward(stepOf(prompt(context), 0));
    let id = r.tokens[0]!;
    const ms: number[] = [];
    for (let s = 0; s < STEPS; s++) {
      const t = performance.now();
      id = (await b.forward(stepOf([id], context + s))).tokens[0]!;
      ms.push(performance.now() - t);
    }
    const m = median(ms.slice(2));
    const kvBytes = context * spec.numLayers * 2 * 8 * 128 * 2;
    const roof = (weightBytes + kvBytes) / hbm * 1e3;
    rows.push([
      `decode batch 1, context ${context}, graphs ${graphs ? "on" : "off"}`,
      `${(1e3 / m).toFixed(1)} tok/s (${m.toFixed(2)} ms/step; HBM roofline ${roof.toFixed(2)} ms = ${
        (1e3 / roof).toFixed(0)
      } tok/s; ${(100 * roof / m).toFixed(0)}%)`,
    ]);
    if (graphs) {
      // GPU time of one step: replays of the captured step (same inputs), back to back between events.
      using t = new CudaTimer(dev);
      t.start();
      for (let r = 0; r < 20; r++) b.graphs.launch(1);
      const gpu = (await t.stop()) / 20;
      rows.push([`decode batch 1, context ${context}: GPU time of one graph replay`, `${gpu.toFixed(2)} ms`]);
    }
  }
}

console.log("\n| measurement | result |\n| --- | --- |");
for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);

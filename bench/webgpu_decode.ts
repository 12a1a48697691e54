// WebGPU decode benchmark: batch-1 decode of a synthetic model (default Llama-3-8B shape, f16 weights generated on
// the GPU) against the copy-bandwidth roofline measured in the same run; single steps (forward) and multi-step runs
// (decodeSteps, ids fed back on the GPU), fused and unfused layers, and the decode GEMVs alone.
//   deno run -A bench/webgpu_decode.ts [--model synthetic:llama3-8b] [--contexts 128,2048] [--steps 32] [--k 8]
import { parseArgs } from "node:util";
import { createWebGpuBackend, type WebGpuOptions } from "../src/backends/webgpu/backend.ts";
import { copyBandwidth } from "../src/backends/webgpu/synthetic.ts";
import { buildSyntheticModel } from "../src/model/synthetic.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import type { StepInputs } from "../src/core/types.ts";
import { markdown, writeReport } from "./report.ts";
import { gemvBandwidths } from "./webgpu_gemv.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string", default: "synthetic:llama3-8b" },
    contexts: { type: "string", default: "128,2048" },
    steps: { type: "string", default: "32" },
    k: { type: "string", default: "8" },
    "copy-mib": { type: "string", default: "1024" },
    out: { type: "string", default: "bench/out" },
  },
});

// Matrices are stored f16 (the load precision below) and generated on the GPU, whatever the shape's own dtype.
const { spec, weights } = buildSyntheticModel(f.model);
// `fuse` is read at every step, so flipping it here compares the fused and the unfused layer on the same weights.
const opts: WebGpuOptions & { fuse: boolean } = { memoryBytes: 4 * 2 ** 30, profile: true, fuse: true };
await using b = await createWebGpuBackend(opts);
const ctx = b.context;
const bw = await copyBandwidth(ctx, Number(f["copy-mib"]) * 2 ** 20, 20);
console.error(`${b.device}: copy bandwidth ${(bw / 1e12).toFixed(3)} TB/s (read + write)`);
const gemvRows = await gemvBandwidths(ctx, spec, bw);
const t0 = performance.now();
await b.load(spec, weights, { weight: "f16", kv: "f16", compute: "f32" });
const weightBytes = ctx.pool.bytes - gemvRows.poolBytes;
console.error(
  `loaded ${f.model} (${(weightBytes / 1e9).toFixed(2)} GB on the GPU) in ${
    ((performance.now() - t0) / 1000).toFixed(1)
  } s`,
);

const bs = 16, K = Number(f.k), n = Number(f.steps);
const contexts = f.contexts.split(",").map(Number);
const maxBlocks = Math.ceil((Math.max(...contexts) + n + K + 64) / bs);
b.allocateKv(maxBlocks, bs);
const table = Int32Array.from({ length: maxBlocks }, (_, i) => i);
const sampling = {
  params: { ...defaultSamplingParams(), temperature: 0 },
  promptIds: [],
  outputIds: [],
  fallbackSeed: 0,
};
const step = (pos: number): StepInputs => ({
  tokens: Int32Array.of(3),
  positions: Int32Array.of(pos),
  queryStarts: Int32Array.of(0, 1),
  contextLens: Int32Array.of(pos + 1),
  blockTables: table,
  maxBlocksPerSeq: maxBlocks,
  blockSize: bs,
  slots: Int32Array.of(pos),
  sample: [true],
  sampling: [sampling],
});
// Bytes one decode step must read: every weight matrix once (the embedding only one row; norms are negligible),
// plus the KV of the context (f16).
const embedBytes = spec.vocabSize * spec.hiddenSize * 2;
const kvBytesPerToken = 2 * spec.numLayers * spec.numKvHeads * spec.headDim * 2;
const rows: Record<string, number | string>[] = [];
for (const c of contexts) {
  const bytes = (spec.tieEmbeddings ? weightBytes : weightBytes - embedBytes) + c * kvBytesPerToken;
  const rooflineMs = (bytes / bw) * 1000;
  for (const [mode, fuse, k] of [["single", false, 1], ["single", true, 1], ["multi", true, K]] as const) {
    opts.fuse = fuse;
    const run = (pos: number) => k === 1 ? b.forward(step(pos)) : b.decodeSteps(step(pos), k);
    for (let p = 0; p < 2; p++) await run(c - 2 * k + p * k); // warm-up (the KV content is whatever is there)
    let gpuMs = 0, encodeMs = 0;
    const calls = Math.max(1, Math.round(n / k));
    const t1 = performance.now();
    for (let i = 0; i < calls; i++) {
      await run(c + ((i * k) % 16));
      gpuMs += ctx.lastStep.gpuMs;
      encodeMs += ctx.lastStep.encodeMs;
    }
    const wallMs = (performance.now() - t1) / (calls * k);
    gpuMs /= calls;
    encodeMs /= calls;
    rows.push({
      context: c,
      mode: `${mode}${k > 1 ? ` k=${k}` : ""} ${fuse ? "fused" : "unfused"}`,
      "GB read/token": bytes / 1e9,
      "roofline ms": rooflineMs,
      "wall ms/step": wallMs,
      "GPU ms/step": gpuMs,
      "tok/s": 1000 / wallMs,
      "% roofline (wall)": (100 * rooflineMs) / wallMs,
      "% roofline (GPU)": (100 * rooflineMs) / gpuMs,
      "dispatches/step": ctx.lastStep.dispatches,
      "encode ms/step": encodeMs,
    });
  }
}
const report = {
  suite: "webgpu_decode",
  meta: {
    date: new Date().toISOString(),
    model: f.model,
    device: b.device,
    "copy TB/s": Number((bw / 1e12).toFixed(3)),
  },
  columns: Object.keys(rows[0]!),
  rows,
  chart: {
    value: "% roofline (wall)",
    title: `WebGPU batch-1 decode, % of copy roofline (${f.model})`,
    label: (r: Record<string, number | string>) => `ctx ${r.context} ${r.mode}`,
  },
};
await writeReport(f.out, report);
console.log(markdown({ ...report, columns: Object.keys(gemvRows.rows[0]!), rows: gemvRows.rows }));
console.log(markdown(report));

// WebGPU decode benchmark: batch-1 decode of a synthetic model (default Llama-3-8B shape, f16 weights generated on
// the GPU) against the copy-bandwidth roofline measured in the same run.
//   deno run -A bench/webgpu_decode.ts [--model synthetic:llama3-8b] [--contexts 128,2048] [--steps 30]
import { parseArgs } from "node:util";
import { createWebGpuBackend } from "../src/backends/webgpu/backend.ts";
import { copyBandwidth } from "../src/backends/webgpu/synthetic.ts";
import { buildSyntheticModel } from "../src/model/synthetic.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import type { StepInputs } from "../src/core/types.ts";
import { markdown, writeReport } from "./report.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string", default: "synthetic:llama3-8b" },
    contexts: { type: "string", default: "128,2048" },
    steps: { type: "string", default: "30" },
    "copy-mib": { type: "string", default: "1024" },
    out: { type: "string", default: "bench/out" },
  },
});

// Matrices are stored f16 (the load precision below) and generated on the GPU, whatever the shape's own dtype.
const { spec, weights } = buildSyntheticModel(f.model);
await using b = await createWebGpuBackend({ memoryBytes: 4 * 2 ** 30, profile: true });
const ctx = b.context;
const bw = await copyBandwidth(ctx, Number(f["copy-mib"]) * 2 ** 20, 20);
console.error(`${b.device}: copy bandwidth ${(bw / 1e12).toFixed(3)} TB/s (read + write)`);
const t0 = performance.now();
await b.load(spec, weights, { weight: "f16", kv: "f16", compute: "f32" });
const weightBytes = ctx.pool.bytes;
console.error(
  `loaded ${f.model} (${(weightBytes / 1e9).toFixed(2)} GB on the GPU) in ${
    ((performance.now() - t0) / 1000).toFixed(1)
  } s`,
);

const bs = 16;
const contexts = f.contexts.split(",").map(Number);
const maxBlocks = Math.ceil((Math.max(...contexts) + 64) / bs);
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
const rows: Record<string, number>[] = [];
for (const c of contexts) {
  for (let p = 0; p < 3; p++) await b.forward(step(c - 3 + p)); // warm-up (the KV content is whatever is there)
  const n = Number(f.steps);
  let gpuMs = 0;
  const t1 = performance.now();
  for (let i = 0; i < n; i++) {
    await b.forward(step(c + (i % 8)));
    gpuMs += ctx.lastStep.gpuMs;
  }
  const wallMs = (performance.now() - t1) / n;
  gpuMs /= n;
  const bytes = (spec.tieEmbeddings ? weightBytes : weightBytes - embedBytes) + c * kvBytesPerToken;
  const rooflineMs = (bytes / bw) * 1000;
  rows.push({
    context: c,
    "GB read/token": bytes / 1e9,
    "roofline ms": rooflineMs,
    "wall ms/step": wallMs,
    "GPU ms/step": gpuMs,
    "tok/s": 1000 / wallMs,
    "% roofline (wall)": (100 * rooflineMs) / wallMs,
    "% roofline (GPU)": (100 * rooflineMs) / gpuMs,
    dispatches: ctx.lastStep.dispatches,
    "encode ms": ctx.lastStep.encodeMs,
  });
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
    label: (r: Record<string, number | string>) => `context ${r.context}`,
  },
};
await writeReport(f.out, report);
console.log(markdown(report));

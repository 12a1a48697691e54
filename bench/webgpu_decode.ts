// WebGPU decode benchmark: batch-1 decode of a synthetic model (default Llama-3-8B shape, f16 weights generated on
// the GPU) against the copy-bandwidth roofline measured in the same run; single steps (forward) and multi-step runs
// (decodeSteps, ids fed back on the GPU), fused and unfused layers, and the decode GEMVs alone.
//   deno run -A bench/webgpu_decode.ts [--model synthetic:llama3-8b] [--contexts 128,2048] [--steps 32] [--k 8]
//     [--gemv-shapes best.json] [--weight f16|int4|int8|fp8] [--group 128] [--batch B]
// Quantized weights (--weight) are random codes and scales filled on the GPU (synthetic.ts fillSyntheticQuant); their
// roofline counts the bytes this backend reads (codes plus its f32 (scale, bias) pairs), and the f16 GEMVs-alone
// table is skipped.
import { parseArgs } from "node:util";
import { createWebGpuBackend, type WebGpuOptions } from "../src/backends/webgpu/backend.ts";
import { copyBandwidth } from "../src/backends/webgpu/synthetic.ts";
import { LOOK_AHEAD, lookAheadStats } from "../src/backends/webgpu/multistep.ts";
import { MAX_DECODE_STEPS } from "../src/backends/webgpu/sampling.ts";
import { ATTENTION_SPLIT } from "../src/backends/webgpu/attention.ts";
import { checkGemvShape, DECODE_GEMV_SHAPES, type GemvRole, type GemvShape } from "../src/backends/webgpu/fused.ts";
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
    // JSON {role: GemvShape} (bench/webgpu_gemv.ts --best) replacing fused.ts DECODE_GEMV_SHAPES entries (tuning).
    "gemv-shapes": { type: "string" },
    // "workgroups,minPartition" of the decode attention's split-K (attention.ts ATTENTION_SPLIT).
    "attn-split": { type: "string" },
    weight: { type: "string", default: "f16" },
    group: { type: "string", default: "128" },
    // B sequences decoding together (one token each per step; tok/s counts all of them)
    batch: { type: "string", default: "1" },
  },
});

if (f["gemv-shapes"]) {
  const over = JSON.parse(await Deno.readTextFile(f["gemv-shapes"])) as Partial<Record<GemvRole, GemvShape>>;
  for (const [role, shape] of Object.entries(over)) {
    checkGemvShape(shape);
    DECODE_GEMV_SHAPES[role as GemvRole] = shape;
  }
  console.error(`decode GEMV shapes: ${JSON.stringify(DECODE_GEMV_SHAPES)}`);
}
if (f["attn-split"]) {
  const [w, p] = f["attn-split"].split(",").map(Number);
  if (!(w! > 0 && p! >= 128 && p! % 128 === 0)) throw new RangeError(`--attn-split ${f["attn-split"]}`);
  ATTENTION_SPLIT.targetWorkgroups = w!;
  ATTENTION_SPLIT.minPartition = p!;
}
// Matrices are stored f16 (the load precision below) and generated on the GPU, whatever the shape's own dtype.
const { spec, weights } = buildSyntheticModel(f.model);
// `fuse` is read at every step, so flipping it here compares the fused and the unfused layer on the same weights.
const opts: WebGpuOptions & { fuse: boolean } = { memoryBytes: 4 * 2 ** 30, profile: true, fuse: true };
await using b = await createWebGpuBackend(opts);
const ctx = b.context;
const bw = await copyBandwidth(ctx, Number(f["copy-mib"]) * 2 ** 20, 20);
console.error(`${b.device}: copy bandwidth ${(bw / 1e12).toFixed(3)} TB/s (read + write)`);
const weight = f.weight as "f16" | "int4" | "int8" | "fp8";
if (!["f16", "int4", "int8", "fp8"].includes(weight)) {
  throw new RangeError(`--weight ${weight}: f16, int4, int8 or fp8`);
}
const quantized = weight !== "f16";
const gemvRows = quantized ? null : await gemvBandwidths(ctx, spec, bw);
const t0 = performance.now();
await b.load(spec, weights, { weight, group: Number(f.group), kv: "f16", compute: "f32" });
const weightBytes = ctx.pool.bytes - (gemvRows?.poolBytes ?? 0);
// GPU time of one step's GEMVs run alone (rows: qkv, o, gate_up, down per layer, then the LM head): what the rest
// of a step's GPU time (attention, rope, embedding, sampling, gaps between dispatches) is measured against.
const gemvUs = gemvRows?.rows.map((r) => Number(r["fused us"])) ?? [];
const gemvMs = gemvRows ? (spec.numLayers * gemvUs.slice(0, 4).reduce((a, v) => a + v, 0) + gemvUs[4]!) / 1000 : NaN;
console.error(
  `loaded ${f.model} ${weight} (${(weightBytes / 1e9).toFixed(2)} GB on the GPU) in ${
    ((performance.now() - t0) / 1000).toFixed(1)
  } s`,
);

const bs = 16, K = Number(f.k), n = Number(f.steps);
const contexts = f.contexts.split(",").map(Number);
const maxBlocks = Math.ceil((Math.max(...contexts) + n + K + 64) / bs);
const B = Number(f.batch);
if (!(Number.isInteger(B) && B >= 1 && B <= 8)) throw new RangeError(`--batch ${f.batch}: 1 to 8 (the decode GEMVs)`);
b.allocateKv(B * maxBlocks, bs);
// Sequence s owns blocks [s maxBlocks, (s + 1) maxBlocks).
const table = Int32Array.from({ length: B * maxBlocks }, (_, i) => i);
const seqs = Array.from({ length: B }, (_, s) => s);
const sampling = seqs.map(() => ({
  params: { ...defaultSamplingParams(), temperature: 0 },
  promptIds: [],
  outputIds: [],
  fallbackSeed: 0,
}));
// Every sequence at the same position, fed the same token (timing only).
const step = (pos: number, token: number): StepInputs => ({
  tokens: Int32Array.from(seqs, () => token),
  positions: Int32Array.from(seqs, () => pos),
  queryStarts: Int32Array.from({ length: B + 1 }, (_, i) => i),
  contextLens: Int32Array.from(seqs, () => pos + 1),
  blockTables: table,
  maxBlocksPerSeq: maxBlocks,
  blockSize: bs,
  slots: Int32Array.from(seqs, (s) => s * maxBlocks * bs + pos),
  sample: seqs.map(() => true),
  sampling,
});
// Bytes one decode step must read: every weight matrix once (the embedding only one row; norms are negligible),
// plus the KV of the context (f16).
const embedBytes = spec.vocabSize * spec.hiddenSize * 2;
const kvBytesPerToken = 2 * spec.numLayers * spec.numKvHeads * spec.headDim * 2;
const rows: Record<string, number | string>[] = [];
for (const c of contexts) {
  const bytes = (spec.tieEmbeddings ? weightBytes : weightBytes - embedBytes) + B * c * kvBytesPerToken;
  const rooflineMs = (bytes / bw) * 1000;
  // [mode, fused layer, k, look-ahead steps]; the longest run the backend takes (MAX_DECODE_STEPS) last.
  const modes: [string, boolean, number, number][] = [
    ["single", false, 1, 0],
    ["single", true, 1, 0],
    ["multi", true, K, 0],
    ["multi", true, K, 2],
  ];
  if (K < MAX_DECODE_STEPS) modes.push(["multi", true, MAX_DECODE_STEPS, 2]);
  for (const [mode, fuse, k, ahead] of modes) {
    opts.fuse = fuse;
    LOOK_AHEAD.steps = ahead;
    // A decode loop as the engine runs it: each call continues from the last sampled id, k positions on (so
    // multi-step runs can use their look-ahead, multistep.ts).
    let token = 3;
    const run = async (pos: number) => {
      const ids = k === 1 ? (await b.forward(step(pos, token))).tokens : await b.decodeSteps(step(pos, token), k);
      token = ids[ids.length - 1]!;
    };
    for (let p = 0; p < 2; p++) await run(c - 2 * k + p * k); // warm-up (the KV content is whatever is there)
    let gpuMs = 0, encodeMs = 0;
    const calls = Math.max(1, Math.round(n / k));
    const used0 = lookAheadStats.used;
    const t1 = performance.now();
    for (let i = 0; i < calls; i++) {
      await run(c + i * k);
      gpuMs += ctx.lastStep.gpuMs;
      encodeMs += ctx.lastStep.encodeMs;
    }
    const wallMs = (performance.now() - t1) / (calls * k);
    gpuMs /= calls;
    encodeMs /= calls;
    rows.push({
      context: c,
      mode: `${mode}${k > 1 ? ` k=${k}` : ""} ${fuse ? "fused" : "unfused"}${k > 1 ? ` look-ahead ${ahead}` : ""}`,
      "GB read/step": bytes / 1e9,
      "roofline ms": rooflineMs,
      "wall ms/step": wallMs,
      "GPU ms/step": gpuMs,
      "tok/s": (B * 1000) / wallMs,
      "% roofline (wall)": (100 * rooflineMs) / wallMs,
      "% roofline (GPU)": (100 * rooflineMs) / gpuMs,
      "dispatches/step": ctx.lastStep.dispatches,
      "encode ms/step": encodeMs,
      "GPU - GEMVs ms": fuse && gemvRows ? gpuMs - gemvMs : "-",
      "look-ahead used": k > 1 ? `${lookAheadStats.used - used0}/${calls}` : "-",
    });
  }
}
const report = {
  suite: "webgpu_decode",
  meta: {
    date: new Date().toISOString(),
    model: f.model,
    weight: quantized ? `${weight} g${f.group}` : weight,
    batch: B,
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
if (gemvRows) console.log(markdown({ ...report, columns: Object.keys(gemvRows.rows[0]!), rows: gemvRows.rows }));
console.log(markdown(report));

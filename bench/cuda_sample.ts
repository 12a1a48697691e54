// GPU sampler timing (kernels/sample.cu through src/backends/cuda/sampling.ts): us per call at one vocabulary for
// batches 1, 64 and 256, per kernel (src/backends/cuda/sampling.ts SampleKernel) and setting, with
// the old argmax_f32 alongside. Each case is `reps` launches captured in one CUDA graph (no host launch cost); the
// logits stay in L2 across calls where they fit (batch 64: 33 MB), as after the LM head that writes them.
//   deno run -A bench/cuda_sample.ts [--vocab 128256] [--reps 20] [--batch B (only this batch)] [--setting I]
import { CudaDevice, CudaTimer } from "../src/backends/cuda/device.ts";
import { GraphCache } from "../src/backends/cuda/graphs.ts";
import { Kernels } from "../src/backends/cuda/kernels.ts";
import {
  defaultSampleKernel,
  launchSample,
  SAMPLE_CFG_BYTES,
  type SampleKernel,
} from "../src/backends/cuda/sampling.ts";
import { randomArray } from "../src/backends/cuda/testing.ts";
import { exitUnlessCuda, msPerCall, numArg } from "./cuda_common.ts";

exitUnlessCuda("cuda_sample");
const V = numArg("--vocab", 128256), reps = numArg("--reps", 20), only = numArg("--batch", 0);
const batches = only > 0 ? [only] : [1, 64, 256];
const SETTINGS: [string, number, number, number][] = [
  ["greedy", 0, 0, 1],
  ["T=1", 1, 0, 1],
  ["top-k 50", 0.8, 50, 1],
  ["top-p 0.9", 0.8, 0, 0.9],
  ["top-k 50 + top-p 0.9", 0.8, 50, 0.9],
];

await using dev = CudaDevice.open(0);
using k = await Kernels.load(dev);
using graphs = new GraphCache(dev);
using timer = new CudaTimer(dev);
const maxRows = Math.max(...batches);
// [maxRows, V] f32 logits: uniform +-3 with 16 peaks per row, like an LM head's output.
const host = randomArray(maxRows * V, 1234, 3);
for (let r = 0; r < maxRows; r++) for (let j = 0; j < 16; j++) host[r * V + ((j * 7919 + r * 31) % V)]! += 8 + j / 4;
using logits = dev.alloc(host.byteLength, "bench.logits");
using cfg = dev.alloc(maxRows * SAMPLE_CFG_BYTES, "bench.cfg");
using ids = dev.alloc(maxRows * 4, "bench.ids");
dev.upload(logits.ptr, host);

const kernels: SampleKernel[] = dev.cc[0] >= 9 ? ["cluster", "cluster512", "block"] : ["block"];
console.log(`${dev.description}, vocab ${V}, ${reps} launches per graph; us per call`);
console.log(`| setting | ${batches.flatMap((b) => kernels.map((kn) => `B=${b} ${kn}`)).join(" | ")} |`);
const summary: string[] = [];
const pick = numArg("--setting", -1);
for (const [name, t, topK, topP] of pick >= 0 ? SETTINGS.slice(pick, pick + 1) : SETTINGS) {
  const raw = new DataView(new ArrayBuffer(maxRows * SAMPLE_CFG_BYTES));
  for (let r = 0; r < maxRows; r++) {
    raw.setFloat32(r * 16, t, true), raw.setUint32(r * 16 + 4, topK, true);
    raw.setFloat32(r * 16 + 8, topP, true), raw.setFloat32(r * 16 + 12, (r * 0.618) % 1, true);
  }
  dev.upload(cfg.ptr, raw);
  const cells: string[] = [];
  for (const rows of batches) {
    for (const kernel of kernels) {
      const launch = () => launchSample(k, { logits: logits.ptr, cfg: cfg.ptr, ids: ids.ptr, rows, vocab: V, kernel });
      const us = 1000 * await msPerCall(dev, graphs, timer, launch, reps);
      cells.push(us.toFixed(1));
      if (kernel === defaultSampleKernel(dev.cc, rows) && (rows === 1 || rows === 64)) {
        summary.push(`${name} B=${rows}: ${us.toFixed(1)}`);
      }
    }
  }
  console.log(`| ${name} | ${cells.join(" | ")} |`);
}
const am: string[] = [];
for (const rows of batches) {
  const launch = () => k.launch("argmax", "f32", [rows], [1024], { logits: logits.ptr, ids: ids.ptr, vocab: V });
  am.push(`B=${rows} ${(1000 * await msPerCall(dev, graphs, timer, launch, reps)).toFixed(1)}`);
}
console.log(`old argmax_f32 (greedy only): ${am.join(", ")} us`);
console.log(`SUMMARY sample us/call (default kernel): ${summary.join("; ")}`);

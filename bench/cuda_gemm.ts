// Linear-layer kernels of gemm.cu and gemm_skinny.cu at Llama-3-8B shapes (bf16 weights) for batched decode and
// prefill row counts:
// each path (skinny split-K with each row tile, 64x64 gemm, 128x128 gemm128) timed as a CUDA graph of back-to-back
// launches (host launch cost excluded) over rotating weight copies (no L2 reuse between launches), as weight
// bandwidth and % of the cuMemcpyDtoD bandwidth (read + write) measured in the same run.
// Usage: deno run -A bench/cuda_gemm.ts [--act f32|bf16|both] [--m 16,64,128,256]
import { parseArgs } from "node:util";
import { CudaDevice, CudaTimer, type DeviceBuffer } from "../src/backends/cuda/device.ts";
import { GraphCache } from "../src/backends/cuda/graphs.ts";
import { Kernels } from "../src/backends/cuda/kernels.ts";
import { type ActDType, CudaOps, SKINNY_MAX_M } from "../src/backends/cuda/ops.ts";
import { SKINNY_TILES, skinnyPlan, type SkinnyTile, skinnyTile } from "../src/backends/cuda/gemm_skinny.ts";
import { weightCopies } from "./kernels.ts";
import { copyBandwidth, exitUnlessCuda, msPerCall } from "./cuda_common.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { act: { type: "string", default: "both" }, m: { type: "string", default: "16,32,64,128,200,256" } },
});
exitUnlessCuda("cuda_gemm");
const acts: ActDType[] = values.act === "both" ? ["f32", "bf16"] : [values.act as ActDType];
const decodeMs = values.m.split(",").map(Number);
const PREFILL_MS = [512, 2048];
/** [name, N, K] of Llama-3-8B (h 4096, 32/8 heads x 128, F 14336). */
const SHAPES = [["qkv", 6144, 4096], ["o", 4096, 4096], ["gate_up", 28672, 4096], ["down", 4096, 14336]] as const;
const REPS = 20;

await using dev = CudaDevice.open(0);
using kernels = await Kernels.load(dev);
using graphs = new GraphCache(dev);
using timer = new CudaTimer(dev);

/** ms per call of `enqueue` (a graph of REPS calls, best of 3 replays). */
const time = (enqueue: () => void) => msPerCall(dev, graphs, timer, enqueue, REPS);

// Ceiling: device-to-device copy of 1 GiB, bytes read + written.
const copy = await copyBandwidth(dev, timer);
console.log(`${dev.description}: copy ${(copy / 1e9).toFixed(0)} GB/s`);

type Path = { label: string; kind: "skinny" | "gemm" | "gemm128"; tile?: SkinnyTile };
const rows: string[] = [];
for (const [name, N, K] of SHAPES) {
  const wBytes = N * K * 2, copies = weightCopies(wBytes), maxM = Math.max(...decodeMs, ...PREFILL_MS);
  const made: DeviceBuffer[] = [];
  const buf = (bytes: number) => {
    const b = dev.alloc(bytes, "gbench");
    dev.memset(b.ptr, 0x3c, bytes); // 0x3c3c: ~0.011 in bf16, ~1.1 in f32 (finite)
    made.push(b);
    return b.ptr;
  };
  // Weights [copies][N, K] bf16; x [maxM, K] f32 (or bf16 in its first half); y [maxM, N] f32.
  const ws = Array.from({ length: copies }, () => buf(wBytes)), x = buf(maxM * K * 4), y = buf(maxM * N * 4);
  for (const act of acts) {
    const ops = new CudaOps(kernels, "bf16", "bf16", act);
    for (const M of [...decodeMs, ...PREFILL_MS]) {
      const paths: Path[] = decodeMs.includes(M)
        ? [
          ...SKINNY_TILES.filter((t) => parseInt(t) >= M / 4).map((tile) => ({
            label: `skinny${tile}`,
            kind: "skinny" as const,
            tile,
          })),
          { label: "gemm 64", kind: "gemm" },
          { label: "gemm128", kind: "gemm128" },
        ]
        : [{ label: "gemm 64", kind: "gemm" }, { label: "gemm128", kind: "gemm128" }];
      for (const p of paths) {
        let i = 0;
        const ms = await time(() => ops.linearWith(p.kind, x, ws[i++ % copies]!, 0n, y, M, N, K, p.tile));
        const gbs = wBytes / ms / 1e6, tflops = (2 * M * N * K) / ms / 1e9;
        const plan = p.kind === "skinny"
          ? skinnyPlan(M, N, K, act === "f32" ? 4 : 2, dev.smCount, Infinity, p.tile)
          : null;
        const grid = plan ? `${plan.mTiles}x${plan.nTiles}x${plan.S}` : "";
        const mark = ops.matmulKind(M, N) === p.kind && (p.kind !== "skinny" || p.tile === skinnyTile(M)) ? " *" : "";
        rows.push(
          `| ${name} ${N}x${K} | ${act} | ${M} | ${p.label} ${grid}${mark} | ${(ms * 1e3).toFixed(1)} | ${
            gbs.toFixed(0)
          } | ${((100 * wBytes) / ms / 1e6 / (copy / 1e9)).toFixed(0)} | ${tflops.toFixed(1)} |`,
        );
      }
    }
  }
  for (const b of made) b[Symbol.dispose]();
}
console.log(
  `SKINNY_MAX_M ${SKINNY_MAX_M}; * = linear()'s pick; % copy = weight bytes / time vs copy ${
    (copy / 1e9).toFixed(0)
  } GB/s`,
);
console.log(
  "| shape | act | M | path (grid) | us | weight GB/s | % copy | TFLOP/s |\n| --- | --- | --- | --- | --- | --- | --- | --- |",
);
console.log(rows.join("\n"));

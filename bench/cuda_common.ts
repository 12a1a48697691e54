// Shared pieces of the CUDA benches: flag parsing, the skip on machines without an NVIDIA driver, and timing a batch
// of launches as one CUDA graph (launch overhead out of the measurement).
import type { CudaDevice } from "../src/backends/cuda/device.ts";
import type { CudaTimer } from "../src/backends/cuda/device.ts";
import type { GraphCache } from "../src/backends/cuda/graphs.ts";
import { cudaSkipReason } from "../src/backends/cuda/testing.ts";

/** `--name N` from the command line, or `def`. */
export function numArg(name: string, def: number): number {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : def;
}

/** Exits 0 with a line saying why, where CUDA cannot run. */
export function exitUnlessCuda(bench: string): void {
  const skip = cudaSkipReason();
  if (skip) {
    console.log(`${bench}: skipped (${skip})`);
    Deno.exit(0);
  }
}

/** ms per call of `enqueue`: one warm-up call, `reps` calls captured as one graph, best of 3 timed replays. */
export async function msPerCall(
  dev: CudaDevice,
  graphs: GraphCache,
  timer: CudaTimer,
  enqueue: () => void,
  reps: number,
): Promise<number> {
  enqueue();
  await dev.sync();
  graphs.capture(0, () => {
    for (let i = 0; i < reps; i++) enqueue();
  });
  graphs.launch(0);
  await dev.sync();
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    timer.start();
    graphs.launch(0);
    best = Math.min(best, await timer.stop());
  }
  graphs.clear();
  return best / reps;
}

/**
 * The copy roofline: bytes read + written per second by cuMemcpyDtoD of 1 GiB, median of 10 timed copies after one
 * warm-up copy.
 */
export async function copyBandwidth(dev: CudaDevice, timer: CudaTimer): Promise<number> {
  const n = 1 << 30;
  using src = dev.alloc(n, "bench.src"), dst = dev.alloc(n, "bench.dst");
  dev.memset(src.ptr, 1, n);
  dev.copy(dst.ptr, src.ptr, n);
  const ms: number[] = [];
  for (let i = 0; i < 10; i++) {
    timer.start();
    dev.copy(dst.ptr, src.ptr, n);
    ms.push(await timer.stop());
  }
  ms.sort((a, b) => a - b);
  return (2 * n) / (ms[Math.floor(ms.length / 2)]! / 1e3);
}

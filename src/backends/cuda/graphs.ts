// CUDA graphs of whole decode steps, one per batch-size bucket, replayed with inputs in fixed device buffers.
import { check, cuda, outPtr } from "./ffi.ts";
import type { CudaDevice } from "./device.ts";

const CU_STREAM_CAPTURE_MODE_RELAXED = 2;

/** Batch-size bucket of a decode step: 1, 2, 4, 8, 16, 32, ... */
export function decodeBucket(batch: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, batch)));
}

export class GraphCache implements Disposable {
  readonly #execs = new Map<number, Deno.PointerValue>();
  captures = 0;
  replays = 0;

  constructor(readonly dev: CudaDevice) {}

  has(bucket: number): boolean {
    return this.#execs.has(bucket);
  }

  /** Captures everything `enqueue` launches on the device's stream into an executable graph for `bucket`. */
  capture(bucket: number, enqueue: () => void): void {
    const s = cuda(), stream = this.dev.stream;
    check("cuStreamBeginCapture_v2", s.cuStreamBeginCapture_v2(stream, CU_STREAM_CAPTURE_MODE_RELAXED));
    const g = new BigUint64Array(1);
    try {
      enqueue();
    } finally {
      const code = s.cuStreamEndCapture(stream, g);
      if (code !== 0 && g[0]) s.cuGraphDestroy(outPtr(g));
      check("cuStreamEndCapture", code);
    }
    const graph = outPtr(g);
    const exec = new BigUint64Array(1);
    try {
      check("cuGraphInstantiateWithFlags", s.cuGraphInstantiateWithFlags(exec, graph, 0n));
    } finally {
      check("cuGraphDestroy", s.cuGraphDestroy(graph));
    }
    const old = this.#execs.get(bucket);
    if (old) check("cuGraphExecDestroy", s.cuGraphExecDestroy(old));
    this.#execs.set(bucket, outPtr(exec));
    this.captures++;
  }

  launch(bucket: number): void {
    const exec = this.#execs.get(bucket);
    if (!exec) throw new Error(`no decode graph for bucket ${bucket}`);
    check("cuGraphLaunch", cuda().cuGraphLaunch(exec, this.dev.stream));
    this.replays++;
  }

  clear(): void {
    for (const e of this.#execs.values()) check("cuGraphExecDestroy", cuda().cuGraphExecDestroy(e));
    this.#execs.clear();
  }

  [Symbol.dispose](): void {
    this.clear();
  }
}

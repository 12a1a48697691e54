// Worker side of WorkerBackend (worker_backend.ts): hosts a WebGpuBackend on its own thread. Deno 2.9's WebGPU
// waits for the GPU inside mapAsync / onSubmittedWorkDone by polling the device with a blocking wait on the calling
// thread, so on the main thread a long step would freeze the HTTP server; here it only blocks this worker.
// Protocol (structured clone): requests { id, op, ... } answered by { id, ok, result | error, memory }; while
// loading, the worker pulls tensors from the main thread with { pull, name } / { pulled, data | error }.
import type { ModelSpec, Precision, StepInputs, TensorInfo, TensorSource } from "../../core/types.ts";
import { createWebGpuBackend, type WebGpuBackend } from "./backend.ts";

interface Port {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(msg: unknown, transfer?: Transferable[]): void;
}
const port = self as unknown as Port;

let backend: WebGpuBackend | null = null;
let nextPull = 1;
const pulls = new Map<number, { resolve: (d: ArrayBufferView) => void; reject: (e: Error) => void }>();

/** The main thread's TensorSource, read one tensor at a time on demand. */
class PulledSource implements TensorSource {
  readonly #infos: Map<string, TensorInfo>;
  constructor(infos: TensorInfo[]) {
    this.#infos = new Map(infos.map((i) => [i.name, i]));
  }
  names(): string[] {
    return [...this.#infos.keys()];
  }
  has(name: string): boolean {
    return this.#infos.has(name);
  }
  info(name: string): TensorInfo {
    const i = this.#infos.get(name);
    if (!i) throw new Error(`missing tensor "${name}"`);
    return i;
  }
  #pull(name: string, kind: "f32" | "bytes", shape?: readonly number[]): Promise<ArrayBufferView> {
    const id = nextPull++;
    const p = new Promise<ArrayBufferView>((resolve, reject) => pulls.set(id, { resolve, reject }));
    port.postMessage({ pull: id, name, kind, shape });
    return p;
  }
  async f32(name: string, shape?: readonly number[]): Promise<Float32Array> {
    return (await this.#pull(name, "f32", shape)) as Float32Array;
  }
  async bytes(name: string): Promise<Uint8Array> {
    return (await this.#pull(name, "bytes")) as Uint8Array;
  }
  close(): void {}
}

type Request =
  | { id: number; op: "init"; opts: Parameters<typeof createWebGpuBackend>[0] }
  | { id: number; op: "load"; spec: ModelSpec; precision: Precision; infos: TensorInfo[] }
  | { id: number; op: "allocateKv"; numBlocks: number; blockSize: number }
  | { id: number; op: "copyBlocks"; src: Int32Array; dst: Int32Array }
  | { id: number; op: "forward"; step: StepInputs }
  | { id: number; op: "decodeSteps"; step: StepInputs; k: number }
  | { id: number; op: "dispose" };

async function handle(req: Request): Promise<{ result: unknown; transfer: Transferable[] }> {
  if (req.op === "init") {
    backend = await createWebGpuBackend(req.opts);
    const lim = backend.context.limits;
    const limits = { maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize, maxBufferSize: lim.maxBufferSize };
    return {
      result: { device: backend.device, software: backend.software, supports: backend.supports, limits },
      transfer: [],
    };
  }
  const b = backend;
  if (!b) throw new Error("webgpu worker: not initialised");
  switch (req.op) {
    case "load": {
      const progress = (done: number, total: number, label?: string) =>
        port.postMessage({ progress: req.id, done, total, label });
      await b.load(req.spec, new PulledSource(req.infos), req.precision, progress);
      return { result: null, transfer: [] };
    }
    case "allocateKv":
      b.allocateKv(req.numBlocks, req.blockSize);
      return { result: null, transfer: [] };
    case "copyBlocks":
      b.copyBlocks(req.src, req.dst);
      return { result: null, transfer: [] };
    case "forward": {
      const r = await b.forward(req.step);
      const transfer: Transferable[] = [r.tokens.buffer as ArrayBuffer];
      if (r.logits) transfer.push(r.logits.buffer as ArrayBuffer);
      return { result: r, transfer };
    }
    case "decodeSteps": {
      const ids = await b.decodeSteps(req.step, req.k);
      return { result: ids, transfer: [ids.buffer as ArrayBuffer] };
    }
    case "dispose":
      await b[Symbol.asyncDispose]();
      backend = null;
      return { result: null, transfer: [] };
  }
}

port.onmessage = (e: MessageEvent) => {
  const msg = e.data;
  if (typeof msg.pulled === "number") {
    const p = pulls.get(msg.pulled);
    pulls.delete(msg.pulled);
    if (msg.error) p?.reject(new Error(msg.error));
    else p?.resolve(msg.data);
    return;
  }
  const req = msg as Request;
  handle(req).then(
    ({ result, transfer }) => port.postMessage({ id: req.id, ok: true, result, memory: backend?.memory() }, transfer),
    (err: Error) => port.postMessage({ id: req.id, ok: false, error: { name: err.name, message: err.message } }),
  );
};

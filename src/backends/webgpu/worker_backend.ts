// WorkerBackend: the WebGPU backend on a worker thread, behind the same Backend interface. Use it where the event
// loop must stay responsive (the server): Deno 2.9 blocks the calling thread while it waits for GPU work (see
// worker.ts), so an in-thread WebGpuBackend freezes the loop for the length of every step.
// Synchronous Backend calls stay synchronous: allocateKv and copyBlocks are checked here with the same rules as the
// backend (kv.ts) and posted; the worker runs messages in order, so they land before the next forward(). An
// unexpected failure of a posted call is thrown by the next forward().
import type {
  Backend,
  BackendSupport,
  KvDType,
  MemoryInfo,
  ModelSpec,
  MultiStepDecode,
  Precision,
  ProgressFn,
  StepInputs,
  StepResult,
  TensorSource,
} from "../../core/types.ts";
import {
  expectedTensors,
  linearWeightNames,
  optionalQuantTensorNames,
  quantizedTensorNames,
} from "../../model/weights.ts";
import type { WebGpuOptions } from "./backend.ts";
import { checkBlockCopies, kvBytesPerBlockFor, kvLayerBytesChecked, kvStoreOf } from "./kv.ts";
import { WEBGPU_MULTI_STEP } from "./sampling.ts";

interface Limits {
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
}

/** Time the worker gets to finish WebGPU teardown after dispose (see [Symbol.asyncDispose]). */
const TEARDOWN_MS = 150;

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void; progress?: ProgressFn };

function toError(e: { name: string; message: string }): Error {
  const err = e.name === "RangeError" ? new RangeError(e.message) : new Error(e.message);
  if (e.name !== "RangeError") err.name = e.name;
  return err;
}

export class WorkerBackend implements Backend {
  readonly name = "webgpu" as const;
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #supports: BackendSupport = { weight: [], kv: [] };
  #device = "";
  #software = false;
  #limits: Limits = { maxStorageBufferBindingSize: 0, maxBufferSize: 0 };
  #memory: MemoryInfo = { freeBytes: 0, totalBytes: 0 };
  #spec: ModelSpec | null = null;
  #kv: KvDType = "f32";
  #numBlocks = 0;
  #src: TensorSource | null = null;
  /** Failure of a posted (synchronous) call, reported by the next forward(). */
  #deferred: Error | null = null;

  private constructor() {
    this.#worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
    this.#worker.onmessage = (e) => this.#receive(e.data);
    this.#worker.onerror = (e) => {
      e.preventDefault();
      this.#fail(new Error(`webgpu worker crashed: ${e.message}`));
    };
  }

  /** Starts the worker and its device; throws (and stops the worker) when no adapter exists. */
  static async create(opts: WebGpuOptions = {}): Promise<WorkerBackend> {
    const b = new WorkerBackend();
    try {
      const r = await b.#call({ op: "init", opts }) as {
        device: string;
        software: boolean;
        supports: BackendSupport;
        limits: Limits;
      };
      b.#device = r.device;
      b.#software = r.software;
      b.#supports = r.supports;
      b.#limits = r.limits;
      return b;
    } catch (e) {
      b.#worker.terminate();
      throw e;
    }
  }

  get supports(): BackendSupport {
    return this.#supports;
  }

  /** The adapter is a software rasterizer (see WebGpuBackend.software). */
  get software(): boolean {
    return this.#software;
  }

  get device(): string {
    return `${this.#device}, in a worker`;
  }

  memory(): MemoryInfo {
    return this.#memory;
  }

  async load(spec: ModelSpec, weights: TensorSource, precision: Precision, onProgress?: ProgressFn): Promise<void> {
    // The worker reads through these infos alone: quantized checkpoints hold their linears as other tensors (AWQ /
    // GPTQ qweight, qzeros, scales, g_idx; fp8 weight and scale; ...), so those are sent in their place.
    const quant = spec.quantization, linears = linearWeightNames(spec);
    const names = expectedTensors(spec).flatMap((e) =>
      quant && linears.has(e.name)
        ? [...quantizedTensorNames(e.name, quant), ...optionalQuantTensorNames(e.name, quant)]
        : [e.name]
    );
    const infos = names.filter((n) => weights.has(n)).map((n) => weights.info(n));
    this.#src = weights;
    try {
      await this.#call({ op: "load", spec, precision, infos }, onProgress);
    } finally {
      this.#src = null;
    }
    this.#spec = spec;
    this.#kv = precision.kv;
  }

  kvBytesPerBlock(blockSize: number, kv: KvDType): number {
    if (!this.#spec) throw new Error("webgpu backend: no model loaded");
    return kvBytesPerBlockFor(this.#spec, blockSize, kv);
  }

  allocateKv(numBlocks: number, blockSize: number): void {
    if (!this.#spec) throw new Error("webgpu backend: load() before allocateKv()");
    const kt = kvStoreOf(this.#kv);
    const bytes = kvLayerBytesChecked(this.#spec, numBlocks, blockSize, kt, this.#limits.maxStorageBufferBindingSize);
    this.#post({ op: "allocateKv", numBlocks, blockSize });
    this.#numBlocks = numBlocks;
    const free = Math.max(0, this.#memory.freeBytes - 2 * this.#spec.numLayers * bytes);
    this.#memory = { ...this.#memory, freeBytes: free }; // refreshed by the worker's next answer
  }

  copyBlocks(src: Int32Array, dst: Int32Array): void {
    checkBlockCopies(src, dst, this.#numBlocks);
    if (src.length) this.#post({ op: "copyBlocks", src, dst });
  }

  async forward(step: StepInputs): Promise<StepResult> {
    const r = await this.#call({ op: "forward", step });
    this.#throwDeferred();
    return r as StepResult;
  }

  /** Multi-step decode, forwarded to the worker's WebGpuBackend.decodeSteps (multistep.ts). */
  readonly multiStep: MultiStepDecode = WEBGPU_MULTI_STEP;

  async decodeSteps(step: StepInputs, k: number): Promise<Int32Array> {
    const r = await this.#call({ op: "decodeSteps", step, k });
    this.#throwDeferred();
    return r as Int32Array;
  }

  #throwDeferred(): void {
    if (this.#deferred) {
      const e = this.#deferred;
      this.#deferred = null;
      throw e;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.#call({ op: "dispose" });
    } finally {
      // The worker's WebGPU instance tears down on its own thread, after the device is destroyed and again when the
      // worker ends; exiting the process in the middle of either crashed Deno 2.9 (SIGSEGV at exit, often).
      await new Promise((r) => setTimeout(r, TEARDOWN_MS));
      this.#worker.terminate();
      await new Promise((r) => setTimeout(r, TEARDOWN_MS));
    }
  }

  #call(msg: Record<string, unknown>, progress?: ProgressFn): Promise<unknown> {
    const id = this.#nextId++;
    const p = new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject, progress }));
    this.#worker.postMessage({ ...msg, id });
    return p;
  }

  /** A call whose answer only matters when it fails. */
  #post(msg: Record<string, unknown>): void {
    this.#call(msg).catch((e: Error) => this.#deferred ??= e);
  }

  #receive(msg: Record<string, unknown>): void {
    if (typeof msg.pull === "number") return void this.#serveTensor(msg.pull, msg);
    if (typeof msg.progress === "number") {
      this.#pending.get(msg.progress)?.progress?.(msg.done as number, msg.total as number, msg.label as string);
      return;
    }
    const p = this.#pending.get(msg.id as number);
    if (!p) return;
    this.#pending.delete(msg.id as number);
    if (msg.memory) this.#memory = msg.memory as MemoryInfo;
    if (msg.ok) p.resolve(msg.result);
    else p.reject(toError(msg.error as { name: string; message: string }));
  }

  async #serveTensor(pull: number, msg: Record<string, unknown>): Promise<void> {
    try {
      if (!this.#src) throw new Error("no load() in progress");
      const name = msg.name as string;
      const data = msg.kind === "f32"
        ? await this.#src.f32(name, msg.shape as number[] | undefined)
        : await this.#src.bytes(name);
      this.#worker.postMessage({ pulled: pull, data }); // cloned: the source may still own the buffer
    } catch (e) {
      this.#worker.postMessage({ pulled: pull, error: (e as Error).message });
    }
  }

  #fail(e: Error): void {
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
    this.#deferred ??= e;
  }
}

/** The WebGPU backend on a worker thread (see WorkerBackend). */
export function createWebGpuWorkerBackend(opts: WebGpuOptions = {}): Promise<WorkerBackend> {
  return WorkerBackend.create(opts);
}

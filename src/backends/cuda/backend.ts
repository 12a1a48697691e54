// CudaBackend: bf16/f16 weights and KV on one NVIDIA GPU through the driver API. Mixed prefill + decode steps
// run kernel by kernel; pure decode steps replay a CUDA graph per batch-size bucket (TURBODENO_CUDA_GRAPHS=0 or
// { graphs: false } turns graphs off).
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
import { isQuantizedWeight } from "../../core/types.ts";
import { ropeTables } from "../../model/rope.ts";
import { sampleToken } from "../../sampling/sampler.ts";
import { CudaDevice, type DeviceBuffer } from "./device.ts";
import type { DevPtr } from "./ffi.ts";
import { enqueueForward, type ModelOnDevice } from "./forward.ts";
import { decodeBucket, GraphCache } from "./graphs.ts";
import { Kernels } from "./kernels.ts";
import { attentionPlan, ATTN_MAX_GROUP, CudaOps, type Half } from "./ops.ts";
import { gpuRowStates, needsHostSampling, packRowConfigs } from "./sampling.ts";
import { loadCudaWeights } from "./weights.ts";
import { RUN_STEPS, Workspace } from "./workspace.ts";
import { type CudaKv, DECODE_DIMS, kvBlockBytes, KvCache } from "./kv.ts";
import { checkStep, packInputs, type StepInfo } from "./step.ts";
import { checkDecodeRun, shiftDecodeStep } from "../../core/decode_run.ts";
import { ENV } from "../../core/env.ts";

/** Largest decode batch replayed from a graph. */
export const MAX_GRAPH_BATCH = 256;
/** Most steps one decodeSteps() call takes (ws.runIds holds [RUN_STEPS, bucket] ids). */
export const CUDA_MAX_DECODE_STEPS = RUN_STEPS;
const CUDA_MULTI_STEP: MultiStepDecode = Object.freeze<MultiStepDecode>({
  maxSteps: CUDA_MAX_DECODE_STEPS,
  canSampleOnDevice: (p) => !needsHostSampling(p),
});

export interface CudaBackendOptions {
  /** Decode graphs (default: on unless TURBODENO_CUDA_GRAPHS=0). */
  readonly graphs?: boolean;
  readonly ordinal?: number;
  /**
   * Matmul input precision: "f32" (matches the reference backend's math, GEMMs run two MMAs per tile) or "half"
   * (activations rounded to the weight dtype, as most engines do; faster batches and prefill, ~1e-2 logit error).
   * Default: the loaded Precision's `compute` ("f32" → "f32", 16-bit → "half").
   */
  readonly activations?: "f32" | "half";
}

export class CudaBackend implements Backend {
  readonly name = "cuda" as const;
  readonly supports: BackendSupport = {
    weight: ["bf16", "f16", "int8", "int4", "fp8"],
    kv: ["bf16", "f16", "int8", "int4"],
  };
  /** Replay decode graphs (may be toggled between steps, for comparisons). */
  graphsEnabled: boolean;
  /** Set by the options or setActivations(); null: follow each load's Precision.compute. */
  #activationsOpt: "f32" | "half" | null;
  #activations: "f32" | "half" = "f32";
  readonly graphs: GraphCache;
  #m: ModelOnDevice | null = null;
  #ws: Workspace | null = null;
  #owned: DeviceBuffer[] = [];
  #kv: KvCache | null = null;
  #numBlocks = 0;
  #blockSize = 0;
  #graphGen = -1;
  /** Rows downloaded so far: sampled ids, and logits rows (allLogits steps and host-sampled rows only). */
  readonly downloads = { idRows: 0, logitRows: 0 };

  private constructor(readonly dev: CudaDevice, readonly kernels: Kernels, opts: CudaBackendOptions) {
    this.graphsEnabled = opts.graphs ?? ENV.cudaGraphs;
    this.#activationsOpt = opts.activations ?? null;
    this.graphs = new GraphCache(dev);
  }

  static async create(opts: CudaBackendOptions = {}): Promise<CudaBackend> {
    const dev = CudaDevice.open(opts.ordinal ?? 0);
    try {
      return new CudaBackend(dev, await Kernels.load(dev), opts);
    } catch (e) {
      await dev[Symbol.asyncDispose]();
      throw e;
    }
  }

  get device(): string {
    return this.dev.description;
  }

  get spec(): ModelSpec {
    if (!this.#m) throw new Error("cuda backend: no model loaded");
    return this.#m.spec;
  }

  memory(): MemoryInfo {
    return this.dev.memInfo();
  }

  async load(spec: ModelSpec, weights: TensorSource, precision: Precision, onProgress?: ProgressFn): Promise<void> {
    if (!this.supports.weight.includes(precision.weight)) {
      throw new Error(`cuda backend: weight precision ${precision.weight} is not supported (bf16, f16, int8, int4)`);
    }
    if (!this.supports.kv.includes(precision.kv)) {
      throw new Error(`cuda backend: KV precision ${precision.kv} is not supported (bf16, f16, int8, int4)`);
    }
    const group = spec.numHeads / spec.numKvHeads;
    if (!DECODE_DIMS.includes(spec.headDim) || !Number.isInteger(group) || group > ATTN_MAX_GROUP) {
      throw new Error(`cuda backend: head layout ${spec.numHeads}/${spec.numKvHeads}x${spec.headDim} unsupported`);
    }
    this.#unload();
    this.#activations = this.#activationsOpt ?? (precision.compute === "f32" ? "f32" : "half");
    // int8 / int4 (W8A16 / W4A16): f16 dense weights and activations (qlinear.ts).
    const quantized = isQuantizedWeight(precision.weight) || spec.quantization !== null;
    const wt: Half = quantized ? "f16" : precision.weight as Half;
    const w = await loadCudaWeights(this.dev, spec, weights, wt, onProgress, this.kernels, precision);
    const t = ropeTables(spec.rope, spec.headDim, spec.maxPositions);
    const cos = this.dev.alloc(t.cos.byteLength, "rope.cos"), sin = this.dev.alloc(t.sin.byteLength, "rope.sin");
    this.dev.upload(cos.ptr, t.cos);
    this.dev.upload(sin.ptr, t.sin);
    this.#owned = [cos, sin];
    const ops = new CudaOps(
      this.kernels,
      wt,
      precision.kv as CudaKv,
      this.#activations === "f32" && !quantized ? "f32" : wt,
    );
    this.#m = { spec, ops, w, cos: cos.ptr, sin: sin.ptr, kCache: [], vCache: [], kScale: [], vScale: [] };
    this.#ws = new Workspace(this.dev, spec);
    await this.dev.sync();
  }

  get activations(): "f32" | "half" {
    return this.#activations;
  }

  /** Switches the matmul input precision of the loaded model (drops captured graphs). */
  setActivations(a: "f32" | "half"): void {
    const m = this.#m;
    this.#activationsOpt = a;
    this.#activations = a;
    if (!m) return;
    this.graphs.clear();
    const quantized = m.w.layers.some((L) => typeof L.o !== "bigint"); // quantized linears keep f16 activations
    this.#m = {
      ...m,
      ops: new CudaOps(this.kernels, m.ops.wt, m.ops.kv, a === "f32" && !quantized ? "f32" : m.ops.wt),
    };
  }

  kvBytesPerBlock(blockSize: number, kv: KvDType): number {
    if (!this.supports.kv.includes(kv)) throw new Error(`cuda backend: KV precision ${kv} is not supported`);
    return kvBlockBytes(this.spec, kv as CudaKv, blockSize);
  }

  allocateKv(numBlocks: number, blockSize: number): void {
    const m = this.#m;
    if (!m) throw new Error("cuda backend: load() before allocateKv()");
    this.graphs.clear();
    this.#kv?.[Symbol.dispose]();
    this.#kv = null;
    // Rows and scales per layer, kv.ts layout.
    this.#kv = new KvCache(this.dev, m.spec, m.ops.kv, numBlocks, blockSize);
    this.#m = { ...m, ...this.#kv.ptrs };
    this.#numBlocks = numBlocks;
    this.#blockSize = blockSize;
  }

  copyBlocks(src: Int32Array, dst: Int32Array): void {
    if (!this.#m || !this.#kv) throw new Error("cuda backend: allocateKv() was not called");
    this.#kv.copyBlocks(src, dst);
  }

  /**
   * A pure decode step through the decode graph of its batch bucket n: workspace sized, graph captured if missing,
   * inputs (tokens copied from `tokensFrom` [B] i32 on the device when given) and sampler configs (draws offset by
   * drawOffset: the step within a multi-step run) uploaded, graph launched. Returns n (ws.ids [n] i32 holds the
   * sampled ids once the stream gets there).
   */
  #launchDecodeGraph(
    m: ModelOnDevice,
    ws: Workspace,
    step: StepInputs,
    info: StepInfo,
    drawOffset: number,
    tokensFrom: DevPtr = 0n,
  ): number {
    const s = m.spec, n = decodeBucket(info.B), window = s.slidingWindow ?? 0;
    const plan = attentionPlan(n, window > 0 ? Math.min(window, s.maxPositions) : s.maxPositions, m.ops.kv);
    const stride = Math.max(step.maxBlocksPerSeq, Math.ceil(s.maxPositions / this.#blockSize));
    ws.ensure({ n, B: n, stride, splits: plan.splits, rows: n });
    if (ws.generation !== this.#graphGen) {
      this.graphs.clear();
      this.#graphGen = ws.generation;
    }
    packInputs(this.dev, ws, step, info, n);
    // Multi-step runs: the tokens are the previous step's ids, still on the GPU (queued after the upload above).
    if (tokensFrom !== 0n) this.dev.copy(ws.input("tokens"), tokensFrom, 4 * info.B);
    // One config row per logits row: the graph samples all n rows of its bucket (padding rows greedy).
    this.dev.upload(ws.sampleCfg, packRowConfigs(gpuRowStates(step.sampling, info), n, drawOffset));
    const common = { n, ...plan, stride: ws.capacity.stride, blockSize: this.#blockSize, listed: n };
    const shape = { ...common, rows: n, sample: true, useTokenList: false, tiles: 0 };
    if (!this.graphs.has(n)) this.graphs.capture(n, () => enqueueForward(m, ws, shape));
    this.graphs.launch(n);
    return n;
  }

  async forward(step: StepInputs): Promise<StepResult> {
    const m = this.#m, ws = this.#ws;
    if (!m || !ws) throw new Error("cuda backend: no model loaded");
    if (!this.#kv) throw new Error("cuda backend: allocateKv() was not called");
    const s = m.spec;
    const info = checkStep(step, s, this.#numBlocks, this.#blockSize);
    const { T, B, rows, decode } = info;
    const useGraph = this.graphsEnabled && decode && B <= MAX_GRAPH_BATCH;
    const V = s.vocabSize;
    const hostRows = rows.filter((_, r) => info.hostSample[r]);
    const rowStates = gpuRowStates(step.sampling, info);
    const gpuSample = rowStates.some((st) => st !== null);
    if (useGraph) {
      this.#launchDecodeGraph(m, ws, step, info, 0);
    } else {
      const n = T, listed = info.tokenList.length;
      const plan = attentionPlan(listed, info.maxSpan, m.ops.kv);
      const stride = Math.max(step.maxBlocksPerSeq, Math.ceil(s.maxPositions / this.#blockSize));
      ws.ensure({ n, B, stride, splits: plan.splits, rows: rows.length });
      if (ws.generation !== this.#graphGen) {
        this.graphs.clear();
        this.#graphGen = ws.generation;
      }
      packInputs(this.dev, ws, step, info, n);
      // One GPU sampler config row per logits row.
      if (gpuSample) this.dev.upload(ws.sampleCfg, packRowConfigs(rowStates, rows.length));
      const common = { n, ...plan, stride: ws.capacity.stride, blockSize: this.#blockSize, listed };
      const shape = {
        ...common,
        rows: rows.length,
        sample: gpuSample,
        useTokenList: true,
        tiles: info.tiles.length / 3,
      };
      enqueueForward(m, ws, shape);
    }
    const ids = new Int32Array(rows.length);
    if (gpuSample) this.dev.download(ids, ws.ids);
    if (gpuSample) this.downloads.idRows += ids.length;
    // Logits come back for allLogits steps (every row) and for host-sampled rows (those rows only).
    const logits = step.allLogits || hostRows.length > 0 ? new Float32Array(rows.length * V) : null;
    if (logits && step.allLogits) this.dev.download(logits, ws.logits);
    else if (logits) {
      rows.forEach((_, r) => {
        if (info.hostSample[r]) this.dev.download(logits.subarray(r * V, (r + 1) * V), ws.logits + BigInt(r * V * 4));
      });
    }
    this.downloads.logitRows += step.allLogits ? rows.length : hostRows.length;
    await this.dev.sync();
    const tokens = new Int32Array(B).fill(-1);
    const logprobs: StepResult["logprobs"] = new Array(B).fill(null);
    for (let b = 0; b < B; b++) {
      const r = info.sampleRow[b]!;
      if (r < 0) continue;
      if (info.hostSample[r]) {
        const res = sampleToken(logits!.subarray(r * V, (r + 1) * V), step.sampling[b]!);
        tokens[b] = res.id;
        logprobs[b] = res.logprobs;
      } else tokens[b] = ids[r]!;
    }
    return step.allLogits ? { tokens, logprobs, logits: logits! } : { tokens, logprobs };
  }

  readonly multiStep: MultiStepDecode = CUDA_MULTI_STEP;

  /**
   * k decode steps in one call (Backend.decodeSteps): with graphs, every step is queued without waiting (inputs
   * uploaded, step j - 1's sampled ids copied on the GPU into step j's tokens, graph replayed, ids appended to
   * ws.runIds [k, B] i32) and the host syncs once, so its per-step overhead (~0.15 ms) overlaps the GPU. Without
   * graphs, k forward() calls.
   */
  async decodeSteps(step: StepInputs, k: number): Promise<Int32Array> {
    checkDecodeRun("cuda", step, k, CUDA_MAX_DECODE_STEPS, needsHostSampling);
    const m = this.#m, ws = this.#ws;
    if (!m || !ws) throw new Error("cuda backend: no model loaded");
    if (!this.#kv) throw new Error("cuda backend: allocateKv() was not called");
    const B = step.queryStarts.length - 1, out = new Int32Array(k * B);
    if (!this.graphsEnabled || B > MAX_GRAPH_BATCH) {
      // Step j's states carry the j ids sampled so far, so its draws are those of output token length + j.
      let tokens = step.tokens;
      for (let j = 0; j < k; j++) {
        const sampling = step.sampling.map((st, b) => ({
          ...st,
          outputIds: [...Array.from(st.outputIds), ...Array.from({ length: j }, (_, i) => out[i * B + b]!)],
        }));
        tokens = (await this.forward({ ...shiftDecodeStep(step, j), tokens, sampling })).tokens;
        out.set(tokens, j * B);
      }
      return out;
    }
    for (let j = 0; j < k; j++) {
      const sj = shiftDecodeStep(step, j);
      const info = checkStep(sj, m.spec, this.#numBlocks, this.#blockSize);
      this.#launchDecodeGraph(m, ws, sj, info, j, j > 0 ? ws.ids : 0n); // step j's tokens: step j - 1's ids
      this.dev.copy(ws.runIds + BigInt(4 * j * B), ws.ids, 4 * B);
    }
    this.dev.download(out, ws.runIds);
    this.downloads.idRows += k * B;
    await this.dev.sync();
    return out;
  }

  #unload(): void {
    this.graphs.clear();
    this.#ws?.[Symbol.dispose]();
    this.#ws = null;
    this.#kv?.[Symbol.dispose]();
    this.#kv = null;
    for (const b of this.#owned) b[Symbol.dispose]();
    this.#owned = [];
    this.#m?.w[Symbol.dispose]();
    this.#m = null;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dev.sync().catch(() => {});
    this.#unload();
    this.kernels[Symbol.dispose]();
    await this.dev[Symbol.asyncDispose]();
  }
}

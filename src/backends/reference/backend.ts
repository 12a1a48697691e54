// The reference backend: a plain TypeScript forward pass in f32 over a paged KV cache. It is the oracle the GPU
// backends are tested against, and the fallback when no GPU backend can start.
import type {
  Backend,
  BackendSupport,
  KvDType,
  MemoryInfo,
  ModelSpec,
  Precision,
  ProgressFn,
  StepInputs,
  StepResult,
  TensorSource,
} from "../../core/types.ts";
import { ropeTables } from "../../model/rope.ts";
import { roundTo } from "../../model/dtype.ts";
import { sampleToken } from "../../sampling/sampler.ts";
import { kvHeadBytes, kvRoundTripHeads } from "../../quant/reference.ts";
import { loadReferenceWeights, type ReferenceWeights } from "./weights.ts";
import * as ops from "./ops.ts";

export interface ReferenceOptions {
  /** Host memory the KV cache may use before --cache-fraction applies (default 256 MiB). */
  readonly memoryBytes?: number;
}

export class ReferenceBackend implements Backend {
  readonly name = "reference" as const;
  readonly supports: BackendSupport = {
    weight: ["f32", "f16", "bf16", "int8", "int4", "fp8"],
    kv: ["f32", "f16", "bf16", "int8", "int4"],
  };
  readonly device = "CPU (TypeScript, f32)";
  #spec: ModelSpec | null = null;
  #precision: Precision | null = null;
  #w: ReferenceWeights | null = null;
  /** [maxPositions, headDim/2] f32 */
  #cos: Float32Array = new Float32Array(0);
  #sin: Float32Array = new Float32Array(0);
  /** per layer: [numBlocks, blockSize, kvHeads, headDim] f32 */
  #kCache: Float32Array[] = [];
  #vCache: Float32Array[] = [];
  #blockSize = 0;
  #numBlocks = 0;
  readonly #memoryBytes: number;

  constructor(opts: ReferenceOptions = {}) {
    this.#memoryBytes = opts.memoryBytes ?? 256 * 1024 * 1024;
  }

  memory(): MemoryInfo {
    return { freeBytes: this.#memoryBytes, totalBytes: this.#memoryBytes };
  }

  get spec(): ModelSpec {
    if (!this.#spec) throw new Error("reference backend: no model loaded");
    return this.#spec;
  }

  async load(spec: ModelSpec, weights: TensorSource, precision: Precision, onProgress?: ProgressFn): Promise<void> {
    if (!this.supports.weight.includes(precision.weight)) {
      throw new Error(`reference backend: weight precision ${precision.weight} is not supported`);
    }
    if (!this.supports.kv.includes(precision.kv)) {
      throw new Error(`reference backend: KV precision ${precision.kv} is not supported`);
    }
    this.#spec = spec;
    this.#precision = precision;
    this.#w = await loadReferenceWeights(spec, weights, precision, onProgress);
    const tables = ropeTables(spec.rope, spec.headDim, spec.maxPositions);
    this.#cos = tables.cos;
    this.#sin = tables.sin;
  }

  /** K and V, every layer: int8 / int4 count their per-token, per-head f16 (scale, zero) pair (quant/reference.ts). */
  kvBytesPerBlock(blockSize: number, kv: KvDType): number {
    const s = this.spec;
    return 2 * s.numLayers * blockSize * s.numKvHeads * kvHeadBytes(s.headDim, kv);
  }

  allocateKv(numBlocks: number, blockSize: number): void {
    const s = this.spec;
    const n = numBlocks * blockSize * s.numKvHeads * s.headDim;
    this.#kCache = Array.from({ length: s.numLayers }, () => new Float32Array(n));
    this.#vCache = Array.from({ length: s.numLayers }, () => new Float32Array(n));
    this.#blockSize = blockSize;
    this.#numBlocks = numBlocks;
  }

  copyBlocks(src: Int32Array, dst: Int32Array): void {
    const s = this.spec;
    const blockElems = this.#blockSize * s.numKvHeads * s.headDim;
    for (let l = 0; l < s.numLayers; l++) {
      for (const cache of [this.#kCache[l]!, this.#vCache[l]!]) {
        for (let i = 0; i < src.length; i++) {
          cache.copyWithin(dst[i]! * blockElems, src[i]! * blockElems, (src[i]! + 1) * blockElems);
        }
      }
    }
  }

  forward(step: StepInputs): Promise<StepResult> {
    return Promise.resolve(this.forwardSync(step));
  }

  forwardSync(step: StepInputs): StepResult {
    const s = this.spec;
    const w = this.#w!;
    if (this.#kCache.length === 0) throw new Error("reference backend: allocateKv() was not called");
    if (step.blockSize !== this.#blockSize) {
      throw new Error(`reference backend: step block size ${step.blockSize} != allocated ${this.#blockSize}`);
    }
    const T = step.tokens.length;
    const B = step.queryStarts.length - 1;
    for (let t = 0; t < T; t++) {
      const slot = step.slots[t]!, pos = step.positions[t]!;
      if (slot >= this.#numBlocks * this.#blockSize) throw new RangeError(`slot ${slot} outside the KV pool`);
      if (pos < 0 || pos >= s.maxPositions) throw new RangeError(`position ${pos} outside [0, ${s.maxPositions})`);
    }
    const h = s.hiddenSize, d = s.headDim, nh = s.numHeads, nkv = s.numKvHeads, f = s.intermediateSize;
    // The cache holds f32; f16/bf16 round on write, int8/int4 quantize→dequantize on write (quant/reference.ts).
    const kvType = this.#precision!.kv;
    const kvRound = kvType === "f32"
      ? undefined
      : kvType === "int8" || kvType === "int4"
      ? (x: Float32Array) => kvRoundTripHeads(x, nkv, d, kvType === "int8" ? 8 : 4)
      : (x: Float32Array) => roundTo(x, kvType);
    const x = ops.embed(w.embed, step.tokens, h, s.vocabSize);
    const xn = new Float32Array(T * h);
    for (let l = 0; l < s.numLayers; l++) {
      const L = w.layers[l]!;
      ops.rmsNorm(x, L.inputNorm, T, h, s.rmsEps, xn);
      const q = ops.linear(xn, L.q, T, h, nh * d, L.qBias);
      const k = ops.linear(xn, L.k, T, h, nkv * d, L.kBias);
      const v = ops.linear(xn, L.v, T, h, nkv * d, L.vBias);
      if (L.qNorm && L.kNorm) {
        ops.rmsNorm(q, L.qNorm, T * nh, d, s.rmsEps, q);
        ops.rmsNorm(k, L.kNorm, T * nkv, d, s.rmsEps, k);
      }
      ops.rope(q, step.positions, nh, d, this.#cos, this.#sin);
      ops.rope(k, step.positions, nkv, d, this.#cos, this.#sin);
      ops.writeKv(this.#kCache[l]!, this.#vCache[l]!, k, v, step.slots, nkv * d, kvRound);
      const attn = ops.pagedAttention({
        q,
        kCache: this.#kCache[l]!,
        vCache: this.#vCache[l]!,
        positions: step.positions,
        queryStarts: step.queryStarts,
        blockTables: step.blockTables,
        maxBlocksPerSeq: step.maxBlocksPerSeq,
        blockSize: step.blockSize,
        numHeads: nh,
        kvHeads: nkv,
        headDim: d,
        scale: 1 / Math.sqrt(d),
        slidingWindow: s.slidingWindow,
      });
      const o = ops.linear(attn, L.o, T, nh * d, h, L.oBias);
      ops.addRmsNorm(x, o, L.postNorm, T, h, s.rmsEps, xn);
      const g = ops.linear(xn, L.gate, T, h, f, L.gateBias);
      const u = ops.linear(xn, L.up, T, h, f, L.upBias);
      const down = ops.linear(ops.siluMul(g, u, g), L.down, T, f, h, L.downBias);
      for (let i = 0; i < T * h; i++) x[i] = x[i]! + down[i]!;
    }
    // Final norm + LM head, only for the rows that need logits.
    const rows: number[] = [];
    if (step.allLogits) { for (let t = 0; t < T; t++) rows.push(t); }
    else for (let b = 0; b < B; b++) if (step.sample[b]) rows.push(step.queryStarts[b + 1]! - 1);
    const sel = new Float32Array(rows.length * h);
    rows.forEach((t, i) => sel.set(x.subarray(t * h, (t + 1) * h), i * h));
    ops.rmsNorm(sel, w.finalNorm, rows.length, h, s.rmsEps, sel);
    const logits = ops.linear(sel, w.lmHead, rows.length, h, s.vocabSize);
    const tokens = new Int32Array(B).fill(-1);
    const logprobs: StepResult["logprobs"] = new Array(B).fill(null);
    let sampled = 0;
    for (let b = 0; b < B; b++) {
      if (!step.sample[b]) continue;
      const r = step.allLogits ? step.queryStarts[b + 1]! - 1 : sampled++;
      const row = logits.subarray(r * s.vocabSize, (r + 1) * s.vocabSize);
      const res = sampleToken(row, step.sampling[b]!);
      tokens[b] = res.id;
      logprobs[b] = res.logprobs;
    }
    return step.allLogits ? { tokens, logprobs, logits } : { tokens, logprobs };
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#kCache = [];
    this.#vCache = [];
    this.#w = null;
    return Promise.resolve();
  }
}

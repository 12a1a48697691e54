// The engine loop: step() = schedule → backend forward → postprocess (append, stop checks, free) → deliver.
// The loop awaits between steps, so the HTTP server accepts requests and flushes tokens while the backend works.
import type { Backend, ModelSpec, Precision, SampledLogprobs, SamplingParams } from "../core/types.ts";
import { UserError } from "../core/errors.ts";
import { KvManager } from "../kv/kv_manager.ts";
import { numBlocksFor } from "../kv/capacity.ts";
import { buildStepInputs, decodeRunStep, Scheduler, Sequence, type SeqUpdate } from "../scheduler/mod.ts";
import type { TextTokenizer } from "../tokenizer/mod.ts";
import { setImmediate } from "node:timers";
import { EngineMetrics } from "./metrics.ts";
import { RequestHandle } from "./request.ts";

export interface EngineConfig {
  /** Tokens per KV block (default 64). */
  readonly blockSize: number;
  /** Most new tokens in one step (decode + prefill chunks). */
  readonly maxBatchedTokens: number;
  /** Most running sequences. */
  readonly maxBatchSize: number;
  /** Share of the backend's free memory given to the KV cache. */
  readonly cacheFraction: number;
  readonly enablePrefixCache: boolean;
  /** Override the pool size (tests); otherwise derived from memory, cacheFraction and the KV precision. */
  readonly numBlocks?: number;
  /** Most tokens of one sequence (default: the model's context). */
  readonly maxModelLen?: number;
  /** Most decode steps per multi-step run where the backend offers decodeSteps (default 8; 1 turns it off). */
  readonly multiStep?: number;
}

export const DEFAULT_ENGINE_CONFIG: EngineConfig = Object.freeze({
  blockSize: 64,
  maxBatchedTokens: 2048,
  maxBatchSize: 256,
  cacheFraction: 0.8,
  enablePrefixCache: true,
});

export interface SubmitRequest {
  readonly promptIds: readonly number[];
  readonly sampling: SamplingParams;
  readonly maxTokens: number;
  /** Extra ids that end generation (honoured even with ignoreEos). */
  readonly stopTokenIds?: readonly number[];
  readonly ignoreEos?: boolean;
  readonly stopStrings?: readonly string[];
  readonly skipSpecialTokens?: boolean;
}

export class Engine implements AsyncDisposable {
  readonly scheduler: Scheduler;
  readonly kv: KvManager;
  readonly metrics = new EngineMetrics();
  readonly maxModelLen: number;
  readonly #handles = new Map<number, RequestHandle>();
  #nextId = 1;
  #loop: Promise<void> | null = null;
  #closing = false;
  #stepError: Error | null = null;

  constructor(
    readonly backend: Backend,
    readonly spec: ModelSpec,
    readonly precision: Precision,
    readonly tokenizer: TextTokenizer | null,
    readonly config: EngineConfig = DEFAULT_ENGINE_CONFIG,
  ) {
    this.maxModelLen = Math.min(config.maxModelLen ?? spec.maxPositions, spec.maxPositions);
    const bytesPerBlock = backend.kvBytesPerBlock(config.blockSize, precision.kv);
    const numBlocks = config.numBlocks ?? numBlocksFor(backend.memory().freeBytes, config.cacheFraction, bytesPerBlock);
    if (numBlocks < 1) throw new UserError(`no memory left for the KV cache (${bytesPerBlock} bytes per block)`);
    backend.allocateKv(numBlocks, config.blockSize);
    this.kv = new KvManager({ numBlocks, blockSize: config.blockSize, enablePrefixCache: config.enablePrefixCache });
    this.scheduler = new Scheduler({
      maxBatchedTokens: config.maxBatchedTokens,
      maxBatchSize: config.maxBatchSize,
      blockSize: config.blockSize,
      maxModelLen: this.maxModelLen,
      chunkedPrefill: true,
    }, this.kv);
  }

  /** Queued and running requests. */
  get numRequests(): number {
    return this.#handles.size;
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** Queues a request; throws UserError for a request that can never run (too long, bad ids). */
  submit(req: SubmitRequest): RequestHandle {
    if (this.#closing) throw new UserError("the server is shutting down");
    if (this.#stepError) throw new Error(`the engine stopped after an error: ${this.#stepError.message}`);
    const n = req.promptIds.length;
    if (n === 0) throw new UserError("the prompt is empty");
    const badId = req.promptIds.find((id) => !Number.isInteger(id) || id < 0 || id >= this.spec.vocabSize);
    if (badId !== undefined) {
      throw new UserError(`token id ${badId} is outside the vocabulary [0, ${this.spec.vocabSize})`);
    }
    if (n >= this.maxModelLen) {
      throw new UserError(`the prompt has ${n} tokens; this model's context is ${this.maxModelLen} tokens`);
    }
    const id = this.#nextId++;
    const maxTokens = Math.min(req.maxTokens, this.maxModelLen - n);
    const seq = new Sequence({
      id,
      promptIds: req.promptIds,
      params: req.sampling,
      maxTokens,
      eosTokenIds: this.tokenizer?.stopTokenIds ?? this.spec.eosTokenIds,
      stopTokenIds: req.stopTokenIds,
      ignoreEos: req.ignoreEos,
      fallbackSeed: (Math.random() * 2 ** 31) | 0,
    });
    const detok = this.tokenizer?.createDetokenizer({
      skipSpecialTokens: req.skipSpecialTokens ?? true,
      context: req.promptIds,
    }) ?? null;
    const handle = new RequestHandle(id, n, detok, req.stopStrings ?? [], (h) => this.abort(h.id));
    this.scheduler.add(seq); // throws UserError when it can never fit the pool
    this.#handles.set(id, handle);
    this.metrics.promptTokens += n;
    this.#ensureLoop();
    return handle;
  }

  /** Frees the request's blocks at once and ends its stream with finish reason "abort". */
  abort(id: number): void {
    const h = this.#handles.get(id);
    if (!h) return;
    const seq = this.scheduler.abort(id);
    this.#handles.delete(id);
    this.metrics.finished.abort++;
    h.finish({
      finishReason: "abort",
      stopReason: null,
      completionTokens: seq?.outputIds.length ?? 0,
      cachedTokens: seq?.numCachedTokens ?? 0,
    });
  }

  #ensureLoop(): void {
    if (!this.#loop) this.#loop = this.#run().finally(() => (this.#loop = null));
  }

  async #run(): Promise<void> {
    while (this.scheduler.hasUnfinished()) {
      try {
        await this.step();
      } catch (e) {
        this.#fail(e as Error);
        return;
      }
      // Let the event loop run (HTTP I/O, new requests, aborts) between steps. setImmediate, not setTimeout(0):
      // nested zero timers are clamped to >= 1-4 ms (HTML timer rules), which at 256 streams capped the whole server.
      await new Promise((r) => setImmediate(r));
    }
  }

  /** One engine step (or a multi-step decode run). Returns the number of tokens computed (0 when idle). */
  async step(): Promise<number> {
    const run = await this.#decodeRun();
    if (run >= 0) return run;
    const batch = this.scheduler.schedule();
    if (batch.seqs.length === 0) return 0;
    if (batch.copySrc.length > 0) this.backend.copyBlocks(batch.copySrc, batch.copyDst);
    const result = await this.backend.forward(buildStepInputs(batch, this.config.blockSize));
    this.metrics.steps++;
    const rowOf = new Map(batch.seqs.map((s, b) => [s.seq.id, b]));
    this.#deliver(this.scheduler.postprocess(batch, result.tokens), (id) => result.logprobs[rowOf.get(id)!] ?? null);
    return batch.numTokens;
  }

  /**
   * Multi-step decode (Backend.decodeSteps): when every running sequence decodes with device-side sampling and
   * nobody waits, k steps run in one backend call; step j's ids are applied and delivered in order, so a sequence
   * stopped at step j (EOS, length, stop string, abort) drops its later ids. Returns -1 when no run was possible.
   */
  async #decodeRun(): Promise<number> {
    const b = this.backend, ms = b.multiStep, max = Math.min(this.config.multiStep ?? 8, ms?.maxSteps ?? 0);
    if (!ms || !b.decodeSteps || max < 2) return -1;
    const run = this.scheduler.scheduleDecodeRun(max, (s) => ms.canSampleOnDevice(s.params));
    if (!run) return -1;
    const { batch, steps } = run;
    if (batch.copySrc.length > 0) b.copyBlocks(batch.copySrc, batch.copyDst);
    const inputs = buildStepInputs(batch, this.config.blockSize, { lookahead: steps - 1 });
    const ids = await b.decodeSteps(inputs, steps);
    const B = batch.seqs.length;
    for (let j = 0; j < steps; j++) {
      this.metrics.steps++;
      this.#deliver(this.scheduler.postprocess(decodeRunStep(batch, j), ids.subarray(j * B, (j + 1) * B)), () => null);
    }
    return steps * B;
  }

  #deliver(updates: SeqUpdate[], logprobsOf: (seqId: number) => SampledLogprobs | null): void {
    for (const u of updates) {
      const h = this.#handles.get(u.seq.id);
      if (!h) continue; // aborted while the step was in flight
      const now = performance.now();
      if (h.firstTokenAt === null) {
        h.firstTokenAt = now;
        this.metrics.ttft.observe((now - h.arrival) / 1000);
      } else if (h.lastTokenAt !== null) this.metrics.interToken.observe((now - h.lastTokenAt) / 1000);
      h.lastTokenAt = now;
      this.metrics.generationTokens++;
      const lp = logprobsOf(u.seq.id);
      // The stop token itself is not part of the text (OpenAI semantics); its id is still reported.
      const stopString = h.push([u.token], [lp], u.finishReason !== null);
      if (stopString !== null && u.finishReason === null) {
        this.scheduler.abort(u.seq.id);
        this.#complete(h, u.seq, "stop", stopString);
      } else if (u.finishReason !== null) {
        const reason = u.finishReason === "stop" ? u.token : null;
        this.#complete(h, u.seq, u.finishReason, stopString ?? reason);
      }
    }
  }

  #complete(h: RequestHandle, seq: Sequence, reason: "stop" | "length" | "abort", stop: string | number | null): void {
    this.#handles.delete(h.id);
    this.metrics.finished[reason]++;
    this.metrics.e2e.observe((performance.now() - h.arrival) / 1000);
    h.finish({
      finishReason: reason,
      stopReason: stop,
      completionTokens: seq.outputIds.length,
      cachedTokens: seq.numCachedTokens,
    });
  }

  #fail(e: Error): void {
    this.#stepError = e;
    console.error(`engine step failed: ${e.stack ?? e.message}`);
    for (const id of [...this.#handles.keys()]) this.abort(id);
  }

  /** Stops admitting; waits for in-flight requests up to `graceMs`, then aborts the rest. */
  async shutdown(graceMs = 10_000): Promise<void> {
    this.#closing = true;
    const deadline = performance.now() + graceMs;
    while (this.#handles.size > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const id of [...this.#handles.keys()]) this.abort(id);
    await this.#loop;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown(0);
  }
}

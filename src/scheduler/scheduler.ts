// Continuous-batching scheduler (nano-vllm / vLLM v1 style). Each step mixes one decode token per running sequence
// with chunks of pending prefills, within a token budget. Admission is FCFS. When the pool runs out of blocks, the
// most recently admitted running sequence is preempted by recompute: its blocks are freed and it goes back to the
// front of the waiting queue, keeping its output so far, which is re-prefilled together with the prompt.
//
// Engine loop:
//   scheduler.add(seq)                                   // throws UserError for a request that can never fit
//   const batch = scheduler.schedule();                  // empty batch.seqs: nothing to do
//   if (batch.copySrc.length) backend.copyBlocks(batch.copySrc, batch.copyDst);
//   const result = await backend.forward(buildStepInputs(batch, blockSize));
//   for (const u of scheduler.postprocess(batch, result.tokens)) deliver(u);
//   scheduler.abort(id)                                  // any time, also while a step is in flight

import { UserError } from "../core/errors.ts";
import type { CopyOp, KvManager } from "../kv/kv_manager.ts";
import type { ScheduledBatch, ScheduledSeq, SeqUpdate } from "./batch.ts";
import type { FinishReason, Sequence } from "./sequence.ts";

export interface SchedulerConfig {
  /** Most new tokens (decode + prefill) in one step. */
  readonly maxBatchedTokens: number;
  /** Most running sequences. */
  readonly maxBatchSize: number;
  /** Must equal the KV manager's block size. */
  readonly blockSize: number;
  /** Most tokens (prompt + output) of one sequence. */
  readonly maxModelLen: number;
  /** Split long prefills across steps. When off, maxBatchedTokens must be >= maxModelLen. */
  readonly chunkedPrefill: boolean;
}

export interface SchedulerCounters {
  readonly waiting: number;
  readonly running: number;
  readonly preemptionsTotal: number;
  readonly prefixQueryTokens: number;
  readonly prefixHitTokens: number;
  /** Fraction of KV blocks held by sequences. */
  readonly kvUsage: number;
  readonly freeBlocks: number;
}

const NO_BLOCKS: readonly number[] = Object.freeze([]);

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`Scheduler: ${name} must be an integer >= 1, got ${v}`);
}

export class Scheduler {
  readonly config: SchedulerConfig;
  readonly kv: KvManager;
  /** FCFS queue; preempted sequences are put back at the front. */
  readonly #waiting: Sequence[] = [];
  /** Admission order: the last one is the first preempted. */
  #running: Sequence[] = [];
  readonly #live = new Map<number, Sequence>();
  #preemptions = 0;

  constructor(config: SchedulerConfig, kv: KvManager) {
    positiveInt("maxBatchedTokens", config.maxBatchedTokens);
    positiveInt("maxBatchSize", config.maxBatchSize);
    positiveInt("blockSize", config.blockSize);
    positiveInt("maxModelLen", config.maxModelLen);
    if (config.blockSize !== kv.blockSize) {
      throw new RangeError(`Scheduler: blockSize ${config.blockSize} differs from the KV manager's ${kv.blockSize}`);
    }
    if (!config.chunkedPrefill && config.maxBatchedTokens < config.maxModelLen) {
      throw new RangeError(
        `Scheduler: without chunked prefill maxBatchedTokens (${config.maxBatchedTokens}) must be >= ` +
          `maxModelLen (${config.maxModelLen}), or a long prompt could never be scheduled`,
      );
    }
    this.config = { ...config };
    this.kv = kv;
  }

  get numWaiting(): number {
    return this.#waiting.length;
  }

  get numRunning(): number {
    return this.#running.length;
  }

  hasUnfinished(): boolean {
    return this.#live.size > 0;
  }

  /** A live (waiting, preempted or running) sequence. */
  get(seqId: number): Sequence | undefined {
    return this.#live.get(seqId);
  }

  get counters(): SchedulerCounters {
    const kv = this.kv.stats;
    return {
      waiting: this.#waiting.length,
      running: this.#running.length,
      preemptionsTotal: this.#preemptions,
      prefixQueryTokens: kv.prefixQueryTokens,
      prefixHitTokens: kv.prefixHitTokens,
      kvUsage: this.kv.usage(),
      freeBlocks: this.kv.numFreeBlocks(),
    };
  }

  /**
   * Queues a new sequence. Throws UserError when it could never run: empty prompt, prompt not shorter than
   * maxModelLen, or more KV blocks than the whole pool at its longest (prompt + maxTokens - 1 tokens, capped by
   * maxModelLen - 1; the last sampled token never needs KV).
   */
  add(seq: Sequence): void {
    if (seq.status !== "waiting" || seq.outputIds.length > 0) {
      throw new Error(`Scheduler.add: sequence ${seq.id} is not fresh (status ${seq.status})`);
    }
    if (this.#live.has(seq.id)) throw new Error(`Scheduler.add: sequence id ${seq.id} is already live`);
    const { maxModelLen, blockSize } = this.config;
    const p = seq.numPromptTokens;
    if (p === 0) throw new UserError(`request ${seq.id}: the prompt is empty`);
    if (p >= maxModelLen) {
      throw new UserError(
        `request ${seq.id}: the prompt has ${p} tokens but the context length is ${maxModelLen} ` +
          `(at least one token must be left for output)`,
      );
    }
    const maxKvTokens = Math.min(p + seq.maxTokens, maxModelLen) - 1;
    const need = this.kv.blocksFor(maxKvTokens);
    if (need > this.kv.numBlocks) {
      throw new UserError(
        `request ${seq.id}: a prompt of ${p} tokens with up to ${seq.maxTokens} output tokens needs ${need} KV blocks ` +
          `of ${blockSize} tokens, but the whole pool has ${this.kv.numBlocks}; shorten the prompt or lower max_tokens`,
      );
    }
    this.#live.set(seq.id, seq);
    this.#waiting.push(seq);
  }

  /** Decides the next step. Running sequences first (admission order), then FCFS admission of waiting ones. */
  schedule(): ScheduledBatch {
    const { maxBatchedTokens, maxBatchSize, chunkedPrefill } = this.config;
    const seqs: ScheduledSeq[] = [];
    const copies: CopyOp[] = [];
    const preempted: Sequence[] = [];
    let budget = maxBatchedTokens;

    for (let i = 0; i < this.#running.length && budget > 0; i++) {
      const seq = this.#running[i]!;
      const pending = seq.numTokens - seq.numComputedTokens;
      if (!chunkedPrefill && pending > budget) continue;
      const n = Math.min(pending, budget);
      let res = this.kv.appendSlot(seq.id, seq.numComputedTokens + n);
      while (res === null) {
        const victim = this.#running.pop()!;
        this.#preempt(victim);
        preempted.push(victim);
        if (victim === seq) break;
        res = this.kv.appendSlot(seq.id, seq.numComputedTokens + n);
      }
      if (res === null) break; // seq itself was the newest and got preempted
      if (res.copy !== null) copies.push(res.copy);
      seqs.push({ seq, start: seq.numComputedTokens, numNewTokens: n, sample: n === pending });
      budget -= n;
    }

    // No admission in a step that preempted: the freed blocks go to the sequences already running.
    while (preempted.length === 0 && budget > 0 && this.#running.length < maxBatchSize) {
      const seq = this.#waiting[0];
      if (seq === undefined) break;
      if (!chunkedPrefill && seq.numTokens > budget) break;
      const alloc = this.kv.allocatePrompt(seq.id, seq.tokenIds);
      if (alloc === null) break; // strict FCFS: nobody overtakes the head of the queue
      this.#waiting.shift();
      seq.status = "running";
      seq.blockTable = alloc.blockTable;
      seq.numComputedTokens = alloc.numCachedTokens;
      if (seq.numPreemptions === 0) seq.numCachedTokens = alloc.numCachedTokens;
      this.#running.push(seq);
      const pending = seq.numTokens - seq.numComputedTokens;
      const n = Math.min(pending, budget);
      seqs.push({ seq, start: seq.numComputedTokens, numNewTokens: n, sample: n === pending });
      budget -= n;
    }

    return {
      seqs,
      numTokens: maxBatchedTokens - budget,
      copySrc: Int32Array.from(copies, (c) => c.src),
      copyDst: Int32Array.from(copies, (c) => c.dst),
      preempted,
    };
  }

  /**
   * Multi-step decode (vLLM-style; Backend.decodeSteps): when nobody waits and every running sequence is decoding
   * (one pending token) and passes `eligible`, reserves the KV of k = min(maxSteps, tokens each may still emit)
   * steps for all of them and returns step 0's batch with k. Returns null, changing nothing, when k < 2, when the
   * batch exceeds the token budget, or when the pool is short of blocks (schedule() then runs one step and may
   * preempt). Apply the results with postprocess(decodeRunStep(batch, j), ids of step j) for j = 0..k-1: a sequence
   * that stops (EOS, stop id, length, abort) at step j is freed then and its later ids are skipped.
   */
  scheduleDecodeRun(
    maxSteps: number,
    eligible: (seq: Sequence) => boolean,
  ): { batch: ScheduledBatch; steps: number } | null {
    const run = this.#running;
    if (this.#waiting.length > 0 || run.length === 0 || run.length > this.config.maxBatchedTokens) return null;
    const { maxModelLen, blockSize } = this.config;
    let k = Math.floor(maxSteps);
    let need = 0;
    for (const seq of run) {
      if (seq.numTokens - seq.numComputedTokens !== 1 || !eligible(seq)) return null;
      k = Math.min(k, seq.maxTokens - seq.outputIds.length, maxModelLen - seq.numTokens);
    }
    if (!(k >= 2)) return null;
    for (const seq of run) {
      const start = seq.numComputedTokens;
      // New blocks for positions start .. start + k - 1, plus one for a possible copy-on-write of a shared block.
      need += Math.max(0, this.kv.blocksFor(start + k) - seq.blockTable.length) + (start % blockSize ? 1 : 0);
    }
    if (need > this.kv.numFreeBlocks()) return null;
    const seqs: ScheduledSeq[] = [];
    const copies: CopyOp[] = [];
    for (const seq of run) {
      const res = this.kv.appendSlot(seq.id, seq.numComputedTokens + k);
      if (res === null) throw new Error(`Scheduler.scheduleDecodeRun: sequence ${seq.id} could not reserve ${k} slots`);
      if (res.copy !== null) copies.push(res.copy);
      seqs.push({ seq, start: seq.numComputedTokens, numNewTokens: 1, sample: true });
    }
    const batch: ScheduledBatch = {
      seqs,
      numTokens: seqs.length,
      copySrc: Int32Array.from(copies, (c) => c.src),
      copyDst: Int32Array.from(copies, (c) => c.dst),
      preempted: [],
    };
    return { batch, steps: k };
  }

  /**
   * Applies a finished step: advances computed counts, registers newly full blocks in the prefix cache, appends the
   * sampled tokens (`sampledTokens[b]` for row b; ignored where sample was false), applies stop conditions and frees
   * finished sequences. Sequences aborted while the step ran are skipped. Returns one update per sampled token.
   */
  postprocess(batch: ScheduledBatch, sampledTokens: Int32Array): SeqUpdate[] {
    if (sampledTokens.length < batch.seqs.length) {
      throw new RangeError(`Scheduler.postprocess: ${sampledTokens.length} tokens for ${batch.seqs.length} rows`);
    }
    const { maxModelLen } = this.config;
    const updates: SeqUpdate[] = [];
    let finished = false;
    for (let b = 0; b < batch.seqs.length; b++) {
      const { seq, start, numNewTokens, sample } = batch.seqs[b]!;
      if (seq.status !== "running") continue;
      if (seq.numComputedTokens !== start) {
        throw new Error(
          `Scheduler.postprocess: sequence ${seq.id} is at ${seq.numComputedTokens}, batch says ${start}`,
        );
      }
      seq.numComputedTokens += numNewTokens;
      this.kv.markComputed(seq.id, seq.tokenIds, seq.numComputedTokens);
      if (!sample) continue;
      const token = sampledTokens[b]!;
      if (token < 0) throw new Error(`Scheduler.postprocess: no sampled token for sequence ${seq.id} (row ${b})`);
      seq.appendToken(token);
      let reason: FinishReason | null = null;
      if (seq.isStopToken(token)) reason = "stop";
      else if (seq.outputIds.length >= seq.maxTokens || seq.numTokens >= maxModelLen) reason = "length";
      if (reason !== null) {
        this.#finish(seq, reason);
        finished = true;
      }
      updates.push({ seq, token, finishReason: reason });
    }
    if (finished) this.#running = this.#running.filter((s) => s.status === "running");
    return updates;
  }

  /** Finishes a live sequence with reason "abort" and frees its blocks at once. Returns it, or null if not live. */
  abort(seqId: number): Sequence | null {
    const seq = this.#live.get(seqId);
    if (seq === undefined) return null;
    if (seq.status === "running") {
      const i = this.#running.indexOf(seq);
      if (i >= 0) this.#running.splice(i, 1);
    } else {
      const i = this.#waiting.indexOf(seq);
      if (i >= 0) this.#waiting.splice(i, 1);
    }
    this.#finish(seq, "abort");
    return seq;
  }

  #preempt(seq: Sequence): void {
    this.kv.free(seq.id);
    seq.blockTable = NO_BLOCKS;
    seq.numComputedTokens = 0;
    seq.status = "preempted";
    seq.numPreemptions++;
    this.#preemptions++;
    this.#waiting.unshift(seq);
  }

  #finish(seq: Sequence, reason: FinishReason): void {
    if (this.kv.has(seq.id)) this.kv.free(seq.id);
    seq.blockTable = NO_BLOCKS;
    seq.status = "finished";
    seq.finishReason = reason;
    this.#live.delete(seq.id);
  }
}

/** Step j of a decode run from scheduleDecodeRun(): every row one position further, no copies. */
export function decodeRunStep(batch: ScheduledBatch, j: number): ScheduledBatch {
  if (j === 0) return batch;
  const seqs = batch.seqs.map((s) => ({ ...s, start: s.start + j }));
  return { seqs, numTokens: batch.numTokens, copySrc: new Int32Array(0), copyDst: new Int32Array(0), preempted: [] };
}

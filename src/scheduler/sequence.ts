// One generation request as the scheduler sees it: token ids, sampling settings, progress and status.

import type { SamplingParams, SequenceSamplingState } from "../core/types.ts";

/**
 * waiting: queued, holds no blocks. running: admitted, holds blocks. preempted: back in the waiting queue after its
 * blocks were taken (it will re-prefill prompt + output so far). finished: done, holds no blocks.
 */
export type SequenceStatus = "waiting" | "running" | "preempted" | "finished";

export type FinishReason = "stop" | "length" | "abort";

export interface SequenceOptions {
  /** Unique among live sequences of one scheduler. */
  readonly id: number;
  readonly promptIds: ArrayLike<number>;
  readonly params: SamplingParams;
  /** Most output tokens to generate (>= 1). */
  readonly maxTokens: number;
  /** End-of-sequence ids (ModelSpec.eosTokenIds); ignored when ignoreEos is set. */
  readonly eosTokenIds?: readonly number[];
  /** Extra ids that stop generation (request stop_token_ids); honoured even with ignoreEos. */
  readonly stopTokenIds?: readonly number[];
  readonly ignoreEos?: boolean;
  /** Seed used when params.seed is null, fixed per request so a preempted sequence replays the same draws. */
  readonly fallbackSeed?: number;
  /** Defaults to performance.now(). */
  readonly arrivalTime?: number;
}

const NO_BLOCKS: readonly number[] = Object.freeze([]);

export class Sequence implements SequenceSamplingState {
  readonly id: number;
  readonly promptIds: readonly number[];
  readonly outputIds: number[] = [];
  readonly params: SamplingParams;
  readonly fallbackSeed: number;
  readonly maxTokens: number;
  readonly eosTokenIds: ReadonlySet<number>;
  readonly stopTokenIds: ReadonlySet<number>;
  readonly ignoreEos: boolean;
  readonly arrivalTime: number;

  status: SequenceStatus = "waiting";
  finishReason: FinishReason | null = null;
  /** Leading tokens of tokenIds whose KV is in the cache (computed or found in the prefix cache). */
  numComputedTokens = 0;
  /** Prompt tokens found in the prefix cache at the first admission (usage.cached_tokens). */
  numCachedTokens = 0;
  /** Live block table from the KV manager while running; empty otherwise. */
  blockTable: readonly number[] = NO_BLOCKS;
  /** Times this sequence was preempted. */
  numPreemptions = 0;

  /** Prompt followed by output, one growing array (what the KV manager hashes and the runner reads). */
  readonly #tokens: number[];

  constructor(o: SequenceOptions) {
    if (!Number.isInteger(o.id)) throw new RangeError(`Sequence: id must be an integer, got ${o.id}`);
    if (!Number.isInteger(o.maxTokens) || o.maxTokens < 1) {
      throw new RangeError(`Sequence ${o.id}: maxTokens must be an integer >= 1, got ${o.maxTokens}`);
    }
    this.id = o.id;
    this.promptIds = Array.from(o.promptIds);
    this.#tokens = this.promptIds.slice();
    this.params = o.params;
    this.fallbackSeed = o.fallbackSeed ?? 0;
    this.maxTokens = o.maxTokens;
    this.eosTokenIds = new Set(o.eosTokenIds ?? []);
    this.stopTokenIds = new Set(o.stopTokenIds ?? []);
    this.ignoreEos = o.ignoreEos ?? false;
    this.arrivalTime = o.arrivalTime ?? performance.now();
  }

  /** Prompt followed by output. */
  get tokenIds(): readonly number[] {
    return this.#tokens;
  }

  get numTokens(): number {
    return this.#tokens.length;
  }

  get numPromptTokens(): number {
    return this.promptIds.length;
  }

  get isFinished(): boolean {
    return this.status === "finished";
  }

  tokenAt(i: number): number {
    const t = this.#tokens[i];
    if (t === undefined) throw new RangeError(`Sequence ${this.id}: no token at ${i} (has ${this.#tokens.length})`);
    return t;
  }

  /** Appends a sampled token (the scheduler's postprocess does this). */
  appendToken(id: number): void {
    this.outputIds.push(id);
    this.#tokens.push(id);
  }

  /** Whether `id` ends generation: a stop id, or an EOS id unless ignoreEos. */
  isStopToken(id: number): boolean {
    return this.stopTokenIds.has(id) || (!this.ignoreEos && this.eosTokenIds.has(id));
  }
}

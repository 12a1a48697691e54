// One request's view of the engine: an async iterable of deltas, plus its final result. Handles incremental
// detokenization and stop strings (text that matches a stop string is never delivered).
import type { SampledLogprobs } from "../core/types.ts";
import type { IncrementalDetokenizer } from "../tokenizer/mod.ts";

export type FinishReason = "stop" | "length" | "abort";

export interface StreamDelta {
  /** New token ids. */
  readonly ids: readonly number[];
  /** Newly finalized text (may be "" while bytes of a character, or a possible stop string, are held back). */
  readonly text: string;
  /** One entry per id, when logprobs were requested. */
  readonly logprobs: readonly (SampledLogprobs | null)[];
}

export interface RequestResult {
  readonly finishReason: FinishReason;
  /** The stop string or stop id that ended the request, if any. */
  readonly stopReason: string | number | null;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Prompt tokens served from the prefix cache. */
  readonly cachedTokens: number;
}

/** Longest suffix of `text` that is a proper prefix of some stop string (held back while streaming). */
function heldBackLength(text: string, stops: readonly string[]): number {
  let best = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > best; k--) {
      if (text.endsWith(s.slice(0, k))) {
        best = k;
        break;
      }
    }
  }
  return best;
}

export class RequestHandle implements AsyncIterable<StreamDelta> {
  readonly #queue: StreamDelta[] = [];
  #wake: (() => void) | null = null;
  #done = false;
  #pending = ""; // decoded text not yet delivered (possible stop-string prefix)
  #resolve!: (r: RequestResult) => void;
  readonly result: Promise<RequestResult>;
  /** Set by the engine: performance.now() of arrival and of the first token. */
  readonly arrival = performance.now();
  firstTokenAt: number | null = null;
  lastTokenAt: number | null = null;

  constructor(
    readonly id: number,
    readonly promptTokens: number,
    readonly detok: IncrementalDetokenizer | null,
    readonly stopStrings: readonly string[],
    readonly onAbort: (h: RequestHandle) => void,
  ) {
    this.result = new Promise((r) => (this.#resolve = r));
  }

  get finished(): boolean {
    return this.#done;
  }

  /** Adds tokens; returns the matched stop string when one appears in the text (the engine then finishes). */
  push(ids: readonly number[], logprobs: readonly (SampledLogprobs | null)[], final: boolean): string | null {
    let text = this.#pending;
    if (this.detok) { for (const id of ids) text += this.detok.push(id); }
    if (final && this.detok) text += this.detok.flush();
    let matched: string | null = null;
    if (this.stopStrings.length > 0) {
      let cut = -1;
      for (const s of this.stopStrings) {
        const at = text.indexOf(s);
        if (at >= 0 && (cut < 0 || at < cut)) {
          cut = at;
          matched = s;
        }
      }
      if (cut >= 0) text = text.slice(0, cut);
    }
    const hold = matched || final ? 0 : heldBackLength(text, this.stopStrings);
    this.#pending = text.slice(text.length - hold);
    this.#emit({ ids, text: text.slice(0, text.length - hold), logprobs });
    return matched;
  }

  #emit(d: StreamDelta): void {
    if (d.ids.length === 0 && d.text === "") return;
    this.#queue.push(d);
    this.#wake?.();
  }

  /** Ends the stream (idempotent). */
  finish(r: Omit<RequestResult, "promptTokens">): void {
    if (this.#done) return;
    if (this.#pending && r.finishReason !== "abort") this.#emit({ ids: [], text: this.#pending, logprobs: [] });
    this.#pending = "";
    this.#done = true;
    this.#resolve({ ...r, promptTokens: this.promptTokens });
    this.#wake?.();
  }

  /** Client gone: the engine frees the request's blocks at once. */
  abort(): void {
    if (!this.#done) this.onAbort(this);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamDelta> {
    try {
      while (true) {
        const d = this.#queue.shift();
        if (d) {
          yield d;
          continue;
        }
        if (this.#done) return;
        await new Promise<void>((r) => (this.#wake = r));
        this.#wake = null;
      }
    } finally {
      // A consumer that stops iterating early (disconnect, break) aborts the request.
      if (!this.#done) this.abort();
    }
  }
}

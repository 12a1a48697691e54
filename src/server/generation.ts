// Submitting the n × prompts engine requests of one API request, and reading them back: whole (non-streaming)
// or as one merged stream of per-choice events (streaming).
import type { SampledLogprobs } from "../core/types.ts";
import type { RequestHandle, RequestResult, StreamDelta } from "../engine/request.ts";
import type { ServerContext } from "./context.ts";
import { ApiError, badRequest, contextLengthExceeded, shuttingDown } from "./errors.ts";
import { type CommonFields, samplingForChoice } from "./sampling_fields.ts";

/** Most engine requests one API request may start (prompts × n). */
export const MAX_CHOICES = 256;

export interface Choice {
  /** OpenAI choice index: promptIndex * n + i. */
  readonly index: number;
  readonly promptIndex: number;
  readonly handle: RequestHandle;
}

function checkLengths(
  ctx: ServerContext,
  prompts: readonly (readonly number[])[],
  f: CommonFields,
  param: string,
): void {
  const max = ctx.engine.maxModelLen;
  for (const ids of prompts) {
    if (ids.length >= max) {
      throw contextLengthExceeded(
        `This model's maximum context length is ${max} tokens. However, your prompt has ${ids.length} tokens ` +
          `(at least one token must be left for the completion). Please reduce the length of the prompt.`,
        param,
      );
    }
    if (f.maxTokens !== undefined && ids.length + f.maxTokens > max) {
      throw contextLengthExceeded(
        `This model's maximum context length is ${max} tokens. However, you requested ` +
          `${ids.length + f.maxTokens} tokens (${ids.length} in the prompt, ${f.maxTokens} in the completion). ` +
          `Please reduce the length of the prompt or the completion.`,
        f.maxTokensParam,
      );
    }
  }
}

/**
 * max_tokens when the request gives none: the rest of the context, but no more than the whole KV pool can hold
 * (the scheduler refuses a request that could outgrow the pool).
 */
function defaultMaxTokens(ctx: ServerContext, promptLen: number): number {
  const kv = ctx.engine.kv;
  return Math.max(1, Math.min(ctx.engine.maxModelLen - promptLen, kv.numBlocks * kv.blockSize + 1 - promptLen));
}

/** Starts prompts.length × n engine requests under `apiId`; all or none (a failure aborts those already started). */
export function submitChoices(
  ctx: ServerContext,
  apiId: string,
  prompts: readonly (readonly number[])[],
  f: CommonFields,
  promptParam: string,
): Choice[] {
  if (ctx.closing || ctx.engine.closing) throw shuttingDown();
  const count = prompts.length * f.n;
  if (count > MAX_CHOICES) {
    throw badRequest(`this request asks for ${count} completions (prompts × n); the limit is ${MAX_CHOICES}`, "n");
  }
  checkLengths(ctx, prompts, f, promptParam);
  const waiting = ctx.engine.scheduler.numWaiting;
  if (waiting + count > ctx.maxWaiting) {
    ctx.engine.metrics.requestsRejected++;
    throw new ApiError(
      429,
      `the server is busy: ${waiting} requests are waiting (limit ${ctx.maxWaiting}); retry later`,
      "rate_limit_error",
      null,
      "queue_full",
      { "Retry-After": "1" },
    );
  }
  const choices: Choice[] = [];
  try {
    prompts.forEach((ids, p) => {
      for (let i = 0; i < f.n; i++) {
        const handle = ctx.engine.submit({
          promptIds: ids,
          sampling: samplingForChoice(f.sampling, i),
          maxTokens: f.maxTokens ?? defaultMaxTokens(ctx, ids.length),
          stopTokenIds: f.stopTokenIds,
          ignoreEos: f.ignoreEos,
          stopStrings: f.stopStrings,
          skipSpecialTokens: f.skipSpecialTokens,
        });
        choices.push({ index: p * f.n + i, promptIndex: p, handle });
      }
    });
  } catch (e) {
    for (const c of choices) c.handle.abort();
    throw e;
  }
  ctx.active.add(apiId, choices.map((c) => c.handle));
  return choices;
}

export interface CollectedChoice {
  readonly index: number;
  readonly promptIndex: number;
  readonly ids: number[];
  readonly text: string;
  readonly logprobs: (SampledLogprobs | null)[];
  readonly result: RequestResult;
}

/** Reads one choice to the end. */
export async function collectChoice(c: Choice): Promise<CollectedChoice> {
  const ids: number[] = [];
  const logprobs: (SampledLogprobs | null)[] = [];
  let text = "";
  for await (const d of c.handle) {
    ids.push(...d.ids);
    logprobs.push(...d.logprobs);
    text += d.text;
  }
  return { index: c.index, promptIndex: c.promptIndex, ids, text, logprobs, result: await c.handle.result };
}

export type ChoiceEvent =
  | { readonly index: number; readonly delta: StreamDelta; readonly result?: undefined }
  | { readonly index: number; readonly result: RequestResult; readonly delta?: undefined };

/**
 * The deltas of every choice in arrival order, each choice closed by its result. Returning early (client gone)
 * aborts every choice still running.
 */
export async function* choiceEvents(choices: readonly Choice[]): AsyncGenerator<ChoiceEvent> {
  const queue: ChoiceEvent[] = [];
  let wake: (() => void) | null = null;
  const notify = () => (wake as (() => void) | null)?.();
  let live = choices.length;
  let failure: unknown = null;
  for (const c of choices) {
    (async () => {
      try {
        for await (const delta of c.handle) {
          queue.push({ index: c.index, delta });
          notify();
        }
        queue.push({ index: c.index, result: await c.handle.result });
      } catch (e) {
        failure ??= e;
      } finally {
        live--;
        notify();
      }
    })();
  }
  try {
    while (true) {
      const e = queue.shift();
      if (e) {
        yield e;
        continue;
      }
      if (failure !== null) throw failure;
      if (live === 0) return;
      await new Promise<void>((r) => (wake = r));
      wake = null;
    }
  } finally {
    for (const c of choices) c.handle.abort();
  }
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

/** Usage over results: prompt tokens once per prompt, cached tokens the least any choice of a prompt found. */
export function usageOf(results: readonly { promptIndex: number; result: RequestResult }[]): Usage {
  const prompt = new Map<number, { tokens: number; cached: number }>();
  let completion = 0;
  for (const { promptIndex, result } of results) {
    completion += result.completionTokens;
    const p = prompt.get(promptIndex);
    if (!p) prompt.set(promptIndex, { tokens: result.promptTokens, cached: result.cachedTokens });
    else p.cached = Math.min(p.cached, result.cachedTokens);
  }
  let promptTokens = 0;
  let cached = 0;
  for (const p of prompt.values()) {
    promptTokens += p.tokens;
    cached += p.cached;
  }
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completion,
    total_tokens: promptTokens + completion,
    prompt_tokens_details: { cached_tokens: cached },
  };
}

/** Unix seconds. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

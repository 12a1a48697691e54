// The request fields chat and text completions share: n, stream, sampling, stops, max tokens, vLLM extensions.
import type { SamplingParams } from "../core/types.ts";
import { defaultSamplingParams, validateSamplingParams } from "../sampling/params.ts";
import type { JsonObject } from "./body.ts";
import type { ServerContext } from "./context.ts";
import { badRequest } from "./errors.ts";
import { optBool, optNumber, optObject, optStringList, optTokenIdList } from "./fields.ts";

export const MAX_N = 128;
export const MAX_STOP_STRINGS = 16;

export interface CommonFields {
  readonly n: number;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  /** Sampling for choice 0; choice i uses seed + i when a seed is given. */
  readonly sampling: SamplingParams;
  /** Undefined: the rest of the context. */
  readonly maxTokens: number | undefined;
  readonly maxTokensParam: string;
  readonly stopStrings: readonly string[];
  readonly stopTokenIds: readonly number[];
  readonly ignoreEos: boolean;
  readonly skipSpecialTokens: boolean;
  /** vLLM extension: return generated token ids with each choice (and prompt ids in the response). */
  readonly returnTokenIds: boolean;
}

/** The logprobs request, read differently by chat (boolean + top_logprobs) and completions (integer). */
export interface LogprobsRequest {
  readonly logprobs: boolean;
  readonly topLogprobs: number;
}

function unsupported(body: JsonObject, name: string, ok: (v: unknown) => boolean, why: string): void {
  const v = body[name];
  if (v !== undefined && v !== null && !ok(v)) throw badRequest(`${name}: ${why}`, name);
}

/** OpenAI fields that do not change generation here; ignored, but still type-checked. */
const IGNORED_FIELDS: Record<string, "string" | "boolean" | "object"> = {
  user: "string",
  metadata: "object",
  store: "boolean",
  parallel_tool_calls: "boolean",
  service_tier: "string",
  reasoning_effort: "string",
};

/**
 * Rejects OpenAI fields this server understands but cannot honour (instead of silently ignoring them), and ignored
 * fields of the wrong type. Unknown fields are ignored, as vLLM does.
 */
export function rejectUnsupported(body: JsonObject): void {
  for (const [name, type] of Object.entries(IGNORED_FIELDS)) {
    const v = body[name];
    if (v === undefined || v === null) continue;
    if (typeof v !== type || (type === "object" && Array.isArray(v))) {
      throw badRequest(`${name} must be ${type === "object" ? "an object" : `a ${type}`}`, name);
    }
  }
  unsupported(body, "echo", (v) => v === false, "echo is not supported (only false)");
  unsupported(body, "suffix", (v) => v === "", "suffix is not supported");
  unsupported(
    body,
    "logit_bias",
    (v) => typeof v === "object" && !Array.isArray(v) && Object.keys(v as object).length === 0,
    "logit_bias is not supported",
  );
  unsupported(
    body,
    "response_format",
    (v) => typeof v === "object" && (v as { type?: unknown }).type === "text",
    'only response_format {"type": "text"} is supported',
  );
  unsupported(body, "best_of", (v) => v === 1 || v === body.n, "best_of is not supported (it must equal n)");
}

export function parseCommonFields(
  ctx: ServerContext,
  body: JsonObject,
  lp: LogprobsRequest,
  maxTokensFields: readonly string[],
): CommonFields {
  rejectUnsupported(body);
  const vocab = ctx.engine.spec.vocabSize;
  const n = optNumber(body, "n", { integer: true, min: 1, max: MAX_N }) ?? 1;
  const stream = optBool(body, "stream") ?? false;
  const streamOptions = optObject(body, "stream_options");
  if (streamOptions && !stream) {
    throw badRequest("stream_options is only allowed when stream is true", "stream_options");
  }
  const usageFlag = streamOptions?.include_usage;
  if (usageFlag !== undefined && usageFlag !== null && typeof usageFlag !== "boolean") {
    throw badRequest("stream_options.include_usage must be a boolean", "stream_options.include_usage");
  }
  const includeUsage = usageFlag === true;

  let maxTokens: number | undefined;
  let maxTokensParam = maxTokensFields[0]!;
  for (const f of maxTokensFields) {
    const v = optNumber(body, f, { integer: true, min: 1 });
    if (v !== undefined && maxTokens === undefined) {
      maxTokens = v;
      maxTokensParam = f;
    }
  }

  const d = defaultSamplingParams();
  const sampling: SamplingParams = {
    temperature: optNumber(body, "temperature") ?? d.temperature,
    topP: optNumber(body, "top_p") ?? d.topP,
    topK: optNumber(body, "top_k") ?? d.topK,
    minP: optNumber(body, "min_p") ?? d.minP,
    repetitionPenalty: optNumber(body, "repetition_penalty") ?? d.repetitionPenalty,
    presencePenalty: optNumber(body, "presence_penalty") ?? d.presencePenalty,
    frequencyPenalty: optNumber(body, "frequency_penalty") ?? d.frequencyPenalty,
    seed: optNumber(body, "seed", { integer: true }) ?? null,
    logprobs: lp.logprobs,
    topLogprobs: lp.topLogprobs,
  };
  const bad = validateSamplingParams(sampling);
  if (bad) throw badRequest(bad, /^[a-z_]+/.exec(bad)?.[0] ?? null);

  const stopStrings = optStringList(body, "stop", MAX_STOP_STRINGS) ?? [];
  if (stopStrings.length > 0 && !ctx.tokenizer) {
    throw badRequest("stop strings need a tokenizer and this model has none; use stop_token_ids", "stop");
  }
  return {
    n,
    stream,
    includeUsage,
    sampling,
    maxTokens,
    maxTokensParam,
    stopStrings,
    stopTokenIds: optTokenIdList(body, "stop_token_ids", vocab) ?? [],
    ignoreEos: optBool(body, "ignore_eos") ?? false,
    skipSpecialTokens: optBool(body, "skip_special_tokens") ?? true,
    returnTokenIds: optBool(body, "return_token_ids") ?? false,
  };
}

/** Sampling of choice i: seed + i when a seed is given (so the n choices differ but are reproducible). */
export function samplingForChoice(s: SamplingParams, i: number): SamplingParams {
  return s.seed === null || i === 0 ? s : { ...s, seed: s.seed + i };
}

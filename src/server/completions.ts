// POST /v1/completions: prompt (text, texts, token ids, lists of token ids) → `text_completion` JSON or SSE chunks.
import type { TextTokenizer } from "../tokenizer/mod.ts";
import { MAX_TOP_LOGPROBS } from "../sampling/params.ts";
import { type JsonObject, readJsonObject } from "./body.ts";
import { checkModel, newRequestId, type ServerContext } from "./context.ts";
import { badRequest } from "./errors.ts";
import { optBool, optNumber, tokenIdList } from "./fields.ts";
import { type Choice, choiceEvents, nowSeconds, submitChoices, usageOf } from "./generation.ts";
import { CompletionLogprobsBuilder, TokenNames } from "./logprobs.ts";
import { collectChoices, streamChoices } from "./respond.ts";
import { type CommonFields, parseCommonFields } from "./sampling_fields.ts";

function encodeText(tokenizer: TextTokenizer | null, text: string, addSpecial: boolean, param: string): number[] {
  if (text === "") throw badRequest(`${param} must not be empty`, "prompt");
  if (!tokenizer) {
    throw badRequest("this model has no tokenizer: send the prompt as a list of token ids", "prompt");
  }
  const ids = tokenizer.encode(text, { addSpecialTokens: addSpecial });
  if (ids.length === 0) throw badRequest(`${param} encodes to no tokens`, "prompt");
  return ids;
}

function idPrompt(v: unknown, param: string, vocab: number): number[] {
  const ids = tokenIdList(v, "prompt", vocab);
  if (ids.length === 0) throw badRequest(`${param} must not be empty`, "prompt");
  return ids;
}

/** The prompts of a completions request: a string, a list of strings, a list of ids, or a list of id lists. */
export function parsePrompts(body: JsonObject, tokenizer: TextTokenizer | null, vocab: number): number[][] {
  const p = body.prompt;
  const addSpecial = optBool(body, "add_special_tokens") ?? true;
  if (p === undefined || p === null) throw badRequest("prompt is required", "prompt");
  if (typeof p === "string") return [encodeText(tokenizer, p, addSpecial, "prompt")];
  if (!Array.isArray(p)) {
    throw badRequest("prompt must be a string, a list of strings, a list of token ids or a list of lists", "prompt");
  }
  if (p.length === 0) throw badRequest("prompt must not be empty", "prompt");
  if (p.every((x) => typeof x === "number")) return [idPrompt(p, "prompt", vocab)];
  if (p.every((x) => typeof x === "string")) {
    return p.map((s, i) => encodeText(tokenizer, s as string, addSpecial, `prompt[${i}]`));
  }
  if (p.every((x) => Array.isArray(x))) return p.map((ids, i) => idPrompt(ids, `prompt[${i}]`, vocab));
  throw badRequest("prompt must not mix strings, token ids and lists", "prompt");
}

export async function handleCompletions(ctx: ServerContext, req: Request): Promise<Response> {
  const body = await readJsonObject(req, ctx.maxBodyBytes);
  checkModel(ctx, body);
  const vocab = ctx.engine.spec.vocabSize;
  const prompts = parsePrompts(body, ctx.tokenizer, vocab);
  const lp = optNumber(body, "logprobs", { integer: true, min: 0, max: MAX_TOP_LOGPROBS });
  const f = parseCommonFields(ctx, body, { logprobs: lp !== undefined, topLogprobs: lp ?? 0 }, ["max_tokens"]);
  // OpenAI's default for the legacy completions endpoint is 16 tokens.
  const fields: CommonFields = f.maxTokens === undefined ? { ...f, maxTokens: 16 } : f;
  const id = newRequestId("cmpl");
  const choices = submitChoices(ctx, id, prompts, fields, "prompt");
  const names = new TokenNames(ctx.tokenizer);
  const head = { id, object: "text_completion", created: nowSeconds(), model: ctx.modelName, system_fingerprint: null };
  if (f.stream) return streamChoices(ctx, id, choices, completionChunks(head, choices, fields, names));

  const done = await collectChoices(ctx, id, choices, req.signal);
  return Response.json({
    ...head,
    choices: done.map((c) => ({
      index: c.index,
      text: c.text,
      logprobs: f.sampling.logprobs
        ? new CompletionLogprobsBuilder(names, f.sampling.topLogprobs).build(c.logprobs)
        : null,
      finish_reason: c.result.finishReason,
      stop_reason: c.result.stopReason,
      ...(f.returnTokenIds ? { token_ids: c.ids, prompt_token_ids: prompts[c.promptIndex] } : {}),
    })),
    usage: usageOf(done),
  });
}

async function* completionChunks(
  head: Record<string, unknown>,
  choices: readonly Choice[],
  f: CommonFields,
  names: TokenNames,
): AsyncGenerator<unknown> {
  const usageNull = f.includeUsage ? { usage: null } : {};
  const chunk = (choice: Record<string, unknown>) => ({ ...head, choices: [choice], ...usageNull });
  const builders = new Map(choices.map((c) => [c.index, new CompletionLogprobsBuilder(names, f.sampling.topLogprobs)]));
  const promptOf = new Map(choices.map((c) => [c.index, c.promptIndex]));
  const results = [];
  for await (const e of choiceEvents(choices)) {
    if (e.delta) {
      const d = e.delta;
      const lps = f.sampling.logprobs && d.ids.length > 0 ? builders.get(e.index)!.build(d.logprobs) : null;
      if (d.text === "" && lps === null && !(f.returnTokenIds && d.ids.length > 0)) continue;
      yield chunk({
        index: e.index,
        text: d.text,
        logprobs: lps,
        finish_reason: null,
        ...(f.returnTokenIds ? { token_ids: d.ids } : {}),
      });
    } else {
      results.push({ promptIndex: promptOf.get(e.index)!, result: e.result });
      yield chunk({
        index: e.index,
        text: "",
        logprobs: null,
        finish_reason: e.result.finishReason,
        stop_reason: e.result.stopReason,
      });
    }
  }
  if (f.includeUsage) yield { ...head, choices: [], usage: usageOf(results) };
}

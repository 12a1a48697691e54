// POST /v1/chat/completions: chat template → engine requests → `chat.completion` JSON or `chat.completion.chunk` SSE.
import { MAX_TOP_LOGPROBS } from "../sampling/params.ts";
import { readJsonObject } from "./body.ts";
import { checkModel, newRequestId, type ServerContext } from "./context.ts";
import { badRequest } from "./errors.ts";
import { optBool, optNumber } from "./fields.ts";
import { type Choice, choiceEvents, nowSeconds, submitChoices, usageOf } from "./generation.ts";
import { chatLogprobContent, TokenNames } from "./logprobs.ts";
import { chatPromptIds, parseMessages } from "./messages.ts";
import { collectChoices, streamChoices } from "./respond.ts";
import { type CommonFields, parseCommonFields } from "./sampling_fields.ts";

export async function handleChatCompletions(ctx: ServerContext, req: Request): Promise<Response> {
  const body = await readJsonObject(req, ctx.maxBodyBytes);
  checkModel(ctx, body);
  const messages = parseMessages(body.messages);
  const logprobs = optBool(body, "logprobs") ?? false;
  const topLogprobs = optNumber(body, "top_logprobs", { integer: true, min: 0, max: MAX_TOP_LOGPROBS }) ?? 0;
  if (topLogprobs > 0 && !logprobs) throw badRequest("top_logprobs needs logprobs set to true", "top_logprobs");
  const f = parseCommonFields(ctx, body, { logprobs, topLogprobs }, ["max_completion_tokens", "max_tokens"]);
  if (!ctx.tokenizer) {
    throw badRequest("this model has no tokenizer, so it cannot chat; use /v1/completions with token ids", "messages");
  }
  const promptIds = chatPromptIds(ctx.tokenizer, body, messages);
  const id = newRequestId("chatcmpl");
  const choices = submitChoices(ctx, id, [promptIds], f, "messages");
  const names = new TokenNames(ctx.tokenizer);
  const head = { id, created: nowSeconds(), model: ctx.modelName, system_fingerprint: null };
  if (f.stream) return streamChoices(ctx, id, choices, chatChunks(head, choices, f, names));

  const done = await collectChoices(ctx, id, choices, req.signal);
  return Response.json({
    ...head,
    object: "chat.completion",
    choices: done.map((c) => ({
      index: c.index,
      message: { role: "assistant", content: c.text, refusal: null },
      logprobs: f.sampling.logprobs
        ? { content: chatLogprobContent(names, c.logprobs, f.sampling.topLogprobs), refusal: null }
        : null,
      finish_reason: c.result.finishReason,
      stop_reason: c.result.stopReason,
      ...(f.returnTokenIds ? { token_ids: c.ids } : {}),
    })),
    usage: usageOf(done),
    ...(f.returnTokenIds ? { prompt_token_ids: promptIds } : {}),
  });
}

async function* chatChunks(
  head: Record<string, unknown>,
  choices: readonly Choice[],
  f: CommonFields,
  names: TokenNames,
): AsyncGenerator<unknown> {
  const base = { ...head, object: "chat.completion.chunk" };
  const usageNull = f.includeUsage ? { usage: null } : {};
  const chunk = (choice: Record<string, unknown>) => ({ ...base, choices: [choice], ...usageNull });
  for (const c of choices) {
    yield chunk({ index: c.index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null });
  }
  const results = [];
  for await (const e of choiceEvents(choices)) {
    if (e.delta) {
      const d = e.delta;
      const lps = f.sampling.logprobs && d.ids.length > 0
        ? { content: chatLogprobContent(names, d.logprobs, f.sampling.topLogprobs), refusal: null }
        : null;
      if (d.text === "" && lps === null && !(f.returnTokenIds && d.ids.length > 0)) continue;
      yield chunk({
        index: e.index,
        delta: { content: d.text },
        logprobs: lps,
        finish_reason: null,
        ...(f.returnTokenIds ? { token_ids: d.ids } : {}),
      });
    } else {
      results.push({ promptIndex: 0, result: e.result });
      yield chunk({
        index: e.index,
        delta: {},
        logprobs: null,
        finish_reason: e.result.finishReason,
        stop_reason: e.result.stopReason,
      });
    }
  }
  if (f.includeUsage) yield { ...base, choices: [], usage: usageOf(results) };
}

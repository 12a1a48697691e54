// vLLM-style POST /tokenize ({prompt} or {messages} → {tokens, count, max_model_len}) and
// POST /detokenize ({tokens} → {prompt}).
import type { TextTokenizer } from "../tokenizer/mod.ts";
import { readJsonObject } from "./body.ts";
import { checkModel, type ServerContext } from "./context.ts";
import { badRequest } from "./errors.ts";
import { optBool, optString, tokenIdList } from "./fields.ts";
import { chatPromptIds, parseMessages } from "./messages.ts";

function needTokenizer(ctx: ServerContext): TextTokenizer {
  if (!ctx.tokenizer) throw badRequest("this model has no tokenizer");
  return ctx.tokenizer;
}

export async function handleTokenize(ctx: ServerContext, req: Request): Promise<Response> {
  const body = await readJsonObject(req, ctx.maxBodyBytes);
  checkModel(ctx, body);
  const hasPrompt = body.prompt !== undefined && body.prompt !== null;
  const hasMessages = body.messages !== undefined && body.messages !== null;
  if (hasPrompt === hasMessages) throw badRequest("give exactly one of prompt or messages", "prompt");
  let tokens: number[];
  if (hasPrompt) {
    const prompt = optString(body, "prompt")!;
    const addSpecial = optBool(body, "add_special_tokens") ?? true;
    tokens = needTokenizer(ctx).encode(prompt, { addSpecialTokens: addSpecial });
  } else {
    const messages = parseMessages(body.messages);
    tokens = chatPromptIds(needTokenizer(ctx), body, messages);
  }
  return Response.json({ tokens, count: tokens.length, max_model_len: ctx.engine.maxModelLen });
}

export async function handleDetokenize(ctx: ServerContext, req: Request): Promise<Response> {
  const body = await readJsonObject(req, ctx.maxBodyBytes);
  checkModel(ctx, body);
  if (body.tokens === undefined || body.tokens === null) throw badRequest("tokens is required", "tokens");
  const tokens = tokenIdList(body.tokens, "tokens", ctx.engine.spec.vocabSize);
  const skip = optBool(body, "skip_special_tokens") ?? false;
  return Response.json({ prompt: needTokenizer(ctx).decode(tokens, { skipSpecialTokens: skip }) });
}

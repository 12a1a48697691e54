// Chat `messages` validation and rendering to prompt ids through the model's chat template.
import { UserError } from "../core/errors.ts";
import type { ChatMessage, ChatTextPart, TextTokenizer } from "../tokenizer/mod.ts";
import type { JsonObject } from "./body.ts";
import { badRequest } from "./errors.ts";
import { optBool, optObject } from "./fields.ts";

const ROLES = ["system", "developer", "user", "assistant", "tool"];

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseContent(m: JsonObject, at: string): string | null | ChatTextPart[] {
  const c = m.content;
  if (typeof c === "string") return c;
  if (c === null || c === undefined) {
    if (m.role === "assistant") return null;
    throw badRequest(`${at}.content is required for role "${m.role}"`, `${at}.content`);
  }
  if (!Array.isArray(c)) throw badRequest(`${at}.content must be a string or a list of content parts`, `${at}.content`);
  return c.map((part, j) => {
    const p = `${at}.content[${j}]`;
    if (!isObject(part)) throw badRequest(`${p} must be an object`, p);
    if (part.type !== "text") {
      throw badRequest(`${p}: only text content parts are supported, got type ${JSON.stringify(part.type)}`, p);
    }
    if (typeof part.text !== "string") throw badRequest(`${p}.text must be a string`, `${p}.text`);
    return { type: "text", text: part.text };
  });
}

/** Checks `messages` (roles system/developer/user/assistant/tool; string or text-part content). */
export function parseMessages(v: unknown): ChatMessage[] {
  if (v === undefined || v === null) throw badRequest("messages is required", "messages");
  if (!Array.isArray(v)) throw badRequest("messages must be a list of message objects", "messages");
  if (v.length === 0) throw badRequest("messages must not be empty", "messages");
  return v.map((m, i) => {
    const at = `messages[${i}]`;
    if (!isObject(m)) throw badRequest(`${at} must be an object`, at);
    if (typeof m.role !== "string" || !ROLES.includes(m.role)) {
      throw badRequest(`${at}.role must be one of ${ROLES.join(", ")}, got ${JSON.stringify(m.role)}`, `${at}.role`);
    }
    // Templates know "system"; OpenAI's "developer" role means the same for these models.
    const out: ChatMessage = { role: m.role === "developer" ? "system" : m.role, content: parseContent(m, at) };
    if (m.name !== undefined) {
      if (typeof m.name !== "string") throw badRequest(`${at}.name must be a string`, `${at}.name`);
      out.name = m.name;
    }
    if (m.tool_calls !== undefined && m.tool_calls !== null) {
      if (!Array.isArray(m.tool_calls)) throw badRequest(`${at}.tool_calls must be a list`, `${at}.tool_calls`);
      out.tool_calls = m.tool_calls;
    }
    if (m.tool_call_id !== undefined) {
      if (typeof m.tool_call_id !== "string") {
        throw badRequest(`${at}.tool_call_id must be a string`, `${at}.tool_call_id`);
      }
      out.tool_call_id = m.tool_call_id;
    }
    return out;
  });
}

/** Renders messages with the chat template (generation prompt added) and encodes them without extra specials. */
export function chatPromptIds(tokenizer: TextTokenizer, body: JsonObject, messages: ChatMessage[]): number[] {
  const tools = body.tools;
  if (tools !== undefined && tools !== null && !Array.isArray(tools)) throw badRequest("tools must be a list", "tools");
  const choice = body.tool_choice;
  if (choice !== undefined && choice !== null && choice !== "none" && choice !== "auto") {
    throw badRequest('tool_choice: only "none" and "auto" are supported (no tool-call parsing)', "tool_choice");
  }
  const extra = optObject(body, "chat_template_kwargs");
  const addGenerationPrompt = optBool(body, "add_generation_prompt") ?? true;
  let text: string;
  try {
    text = tokenizer.applyChatTemplate(messages, {
      addGenerationPrompt,
      tools: choice === "none" ? undefined : (tools as unknown[] | undefined) ?? undefined,
      extra,
    });
  } catch (e) {
    if (e instanceof UserError) throw badRequest(e.message, "messages");
    throw e;
  }
  return tokenizer.encode(text, { addSpecialTokens: false });
}

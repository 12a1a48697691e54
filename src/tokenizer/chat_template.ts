// Chat templates: the Jinja template of tokenizer_config.json (or chat_template.jinja) rendered with @huggingface/jinja.

import { Environment, Interpreter, Template } from "@huggingface/jinja";
import { CheckpointError, UserError } from "../core/errors.ts";
import { strftime } from "./strftime.ts";

export interface ChatTextPart {
  type: "text";
  text: string;
}

export interface ChatMessage {
  role: string;
  content: string | null | ChatTextPart[];
  name?: string;
  tool_calls?: unknown[];
  tool_call_id?: string;
}

export interface ChatTemplateOptions {
  /** Append the header that opens the assistant's turn (default false, as in transformers). */
  addGenerationPrompt?: boolean;
  /** Tool (function) schemas, passed to the template as `tools`; selects the "tool_use" template when there is one. */
  tools?: unknown[];
  /** Extra template variables, e.g. `{ enable_thinking: false }`. They cannot override the standard variables. */
  extra?: Record<string, unknown>;
}

/**
 * ChatML, the template used when a checkpoint defines none (and the byte tokenizer's template):
 *
 *     <|im_start|>{role}\n{content}<|im_end|>\n   (per message)
 *     <|im_start|>assistant\n                      (when add_generation_prompt)
 *
 * No BOS token is added. Checkpoints that were not trained on ChatML will see `<|im_start|>` as plain text,
 * so this is a best effort for base models, not a faithful prompt format.
 */
export const CHATML_TEMPLATE = "{%- for message in messages %}" +
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}" +
  "{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/** Thrown by the `raise_exception` helper, turned into a UserError by render(). */
class TemplateRaised extends Error {}

function compile(source: string, file: string, name: string): Template {
  try {
    return new Template(source);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new CheckpointError(`${file}: chat template "${name}" does not parse: ${msg}`, file);
  }
}

/**
 * Reads a `chat_template` value: a string, a list of `{name, template}` or an object `{name: template}`.
 * Returns null when there is none (undefined, null or empty).
 */
export function parseChatTemplates(raw: unknown, file: string): Map<string, string> | null {
  if (raw === undefined || raw === null) return null;
  const out = new Map<string, string>();
  if (typeof raw === "string") {
    if (raw.length > 0) out.set("default", raw);
  } else if (Array.isArray(raw)) {
    for (const entry of raw) {
      const e = entry as Record<string, unknown> | null;
      if (!e || typeof e !== "object" || typeof e.name !== "string" || typeof e.template !== "string") {
        throw new CheckpointError(
          `${file}: "chat_template" list entries must be {name: string, template: string}`,
          file,
        );
      }
      out.set(e.name, e.template);
    }
  } else if (typeof raw === "object") {
    for (const [name, template] of Object.entries(raw as Record<string, unknown>)) {
      if (typeof template !== "string") {
        throw new CheckpointError(`${file}: "chat_template.${name}" must be a string`, file);
      }
      out.set(name, template);
    }
  } else {
    throw new CheckpointError(`${file}: "chat_template" must be a string or a list of {name, template}`, file);
  }
  return out.size > 0 ? out : null;
}

function contentText(message: ChatMessage, index: number): string {
  const content = message.content;
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) throw new UserError(`messages[${index}].content must be a string, null or a list`);
  return content.map((part, j) => {
    if (!part || part.type !== "text" || typeof part.text !== "string") {
      throw new UserError(`messages[${index}].content[${j}]: only {type: "text", text} parts are supported`);
    }
    return part.text;
  }).join("\n");
}

/**
 * Messages as templates expect them: `content` is always a string (null becomes "", a list of text parts is
 * joined with "\n"); other fields are passed through unchanged.
 */
export function normalizeMessages(messages: readonly ChatMessage[]): Record<string, unknown>[] {
  return messages.map((m, i) => {
    if (!m || typeof m.role !== "string") throw new UserError(`messages[${i}].role must be a string`);
    return { ...m, content: contentText(m, i) };
  });
}

export interface ChatTemplateTokens {
  readonly bosToken: string | null;
  readonly eosToken: string | null;
}

/** Python's range(stop) / range(start, stop[, step]). */
function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error("range() step must not be zero");
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

/**
 * Template.render() with our own globals: it pre-declares `raise_exception` and a `strftime_now` that formats with
 * the host locale, and an environment cannot redeclare a name, so this sets up the environment itself. Globals are
 * those of Template.render (true/false/none in both cases, range) plus `raise_exception` (throws TemplateRaised)
 * and `strftime_now` (C-locale strftime of the local time).
 */
function renderWithHelpers(template: Template, context: Record<string, unknown>): string {
  const env = new Environment();
  const globals: Record<string, unknown> = {
    false: false,
    true: true,
    none: null,
    False: false,
    True: true,
    None: null,
    range,
    raise_exception: (message: unknown) => {
      throw new TemplateRaised(String(message));
    },
    strftime_now: (format: unknown) => strftime(new Date(), String(format)),
  };
  for (const [key, value] of Object.entries({ ...context, ...globals })) env.set(key, value);
  const result = new Interpreter(env).run(template.parsed);
  return String(result.value);
}

/** Renders the checkpoint's chat template(s), or CHATML_TEMPLATE when it has none. */
export class ChatTemplateRenderer {
  /** False when rendering falls back to CHATML_TEMPLATE. */
  readonly hasTemplate: boolean;
  readonly #templates: Map<string, Template>;
  readonly #tokens: ChatTemplateTokens;
  readonly #file: string;

  /** `templates`: the output of parseChatTemplates (null: use ChatML). Parses every template now. */
  constructor(templates: Map<string, string> | null, tokens: ChatTemplateTokens, file: string) {
    this.hasTemplate = templates !== null;
    this.#tokens = tokens;
    this.#file = file;
    this.#templates = new Map();
    for (const [name, source] of templates ?? new Map([["default", CHATML_TEMPLATE]])) {
      this.#templates.set(name, compile(source, file, name));
    }
  }

  #select(hasTools: boolean): Template {
    const chosen = (hasTools ? this.#templates.get("tool_use") : undefined) ?? this.#templates.get("default");
    if (chosen) return chosen;
    if (this.#templates.size === 1) return [...this.#templates.values()][0] as Template;
    throw new CheckpointError(
      `${this.#file}: several chat templates (${[...this.#templates.keys()].join(", ")}) and none named "default"`,
      this.#file,
    );
  }

  render(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): string {
    const tools = opts.tools && opts.tools.length > 0 ? opts.tools : null;
    const template = this.#select(tools !== null);
    const context: Record<string, unknown> = {
      ...opts.extra,
      messages: normalizeMessages(messages),
      add_generation_prompt: opts.addGenerationPrompt ?? false,
      tools,
      bos_token: this.#tokens.bosToken ?? "",
      eos_token: this.#tokens.eosToken ?? "",
    };
    try {
      return renderWithHelpers(template, context);
    } catch (e) {
      if (e instanceof TemplateRaised) throw new UserError(`chat template rejected the messages: ${e.message}`);
      const msg = e instanceof Error ? e.message : String(e);
      throw new Error(`chat template (${this.#file}) failed to render: ${msg}`);
    }
  }
}

// The tokenizer seam used by the engine and server, and loading it from a Hugging Face model folder.

import { join } from "node:path";
import { CheckpointError } from "../core/errors.ts";
import type { ChatMessage, ChatTemplateOptions } from "./chat_template.ts";
import type { IncrementalDetokenizer } from "./detokenizer.ts";
import { createTokenizerFromJson } from "./hf_tokenizer.ts";
import type { JsonObject, SourceNames } from "./special_tokens.ts";

export interface EncodeOptions {
  /** Add the special tokens the checkpoint adds around a single text (e.g. BOS). Default true, as in transformers. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (added tokens marked special, additional_special_tokens). Default false. */
  skipSpecialTokens?: boolean;
}

export interface DetokenizerOptions extends DecodeOptions {
  /** Ids before the generated ones (the prompt), used as left context only. */
  context?: readonly number[];
}

export interface TextTokenizer {
  /** max token id + 1 the tokenizer knows (the model's embedding may have more rows). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  /** EOS of tokenizer_config.json (falling back to generation_config.json / config.json when it names none). */
  readonly eosTokenIds: readonly number[];
  /** all ids that end generation: eos from tokenizer_config, generation_config.json (eos_token_id number or list), config.json eos */
  readonly stopTokenIds: readonly number[];
  readonly specialIds: ReadonlySet<number>;
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: ArrayLike<number>, opts?: DecodeOptions): string;
  idToToken(id: number): string | undefined;
  tokenToId(token: string): number | undefined;
  /** False when applyChatTemplate falls back to ChatML (see CHATML_TEMPLATE). */
  readonly hasChatTemplate: boolean;
  applyChatTemplate(messages: ChatMessage[], opts?: ChatTemplateOptions): string;
  /** Streaming decode: the concatenated outputs of push()/flush() equal decode(allIds, opts). */
  createDetokenizer(opts?: DetokenizerOptions): IncrementalDetokenizer;
}

async function readText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    const msg = e instanceof Error ? e.message : String(e);
    throw new CheckpointError(`${path}: cannot read: ${msg}`, path);
  }
}

/** Parses a JSON object file; null when the file does not exist. */
async function readJsonObject(path: string): Promise<JsonObject | null> {
  const text = await readText(path);
  if (text === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new CheckpointError(`${path}: malformed JSON: ${msg}`, path);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CheckpointError(`${path}: expected a JSON object`, path);
  }
  return value as JsonObject;
}

/**
 * Loads the tokenizer of a Hugging Face model folder: tokenizer.json (required; returns null without it),
 * tokenizer_config.json, chat_template.jinja, generation_config.json and config.json (all optional).
 * Throws CheckpointError naming the file when one is malformed.
 */
export async function loadTokenizer(dir: string): Promise<TextTokenizer | null> {
  const names: SourceNames = {
    tokenizer: join(dir, "tokenizer.json"),
    tokenizerConfig: join(dir, "tokenizer_config.json"),
    generationConfig: join(dir, "generation_config.json"),
    modelConfig: join(dir, "config.json"),
    chatTemplate: join(dir, "chat_template.jinja"),
  };
  const tokenizerJson = await readJsonObject(names.tokenizer);
  if (tokenizerJson === null) return null;
  const [tokenizerConfig, generationConfig, modelConfig, chatTemplate] = await Promise.all([
    readJsonObject(names.tokenizerConfig),
    readJsonObject(names.generationConfig),
    readJsonObject(names.modelConfig),
    readText(names.chatTemplate),
  ]);
  return createTokenizerFromJson({
    tokenizerJson,
    tokenizerConfig,
    generationConfig,
    modelConfig,
    chatTemplate,
    names,
  });
}

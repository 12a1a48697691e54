// TextTokenizer over @huggingface/tokenizers, built from already-parsed tokenizer.json / config objects.

import { Tokenizer } from "@huggingface/tokenizers";
import { CheckpointError } from "../core/errors.ts";
import {
  type ChatMessage,
  type ChatTemplateOptions,
  ChatTemplateRenderer,
  parseChatTemplates,
} from "./chat_template.ts";
import { createIncrementalDetokenizer, type IncrementalDetokenizer } from "./detokenizer.ts";
import {
  DEFAULT_SOURCE_NAMES,
  type JsonObject,
  resolveSpecialTokens,
  type SourceNames,
  tokenContent,
} from "./special_tokens.ts";
import type { DecodeOptions, DetokenizerOptions, EncodeOptions, TextTokenizer } from "./tokenizer.ts";

export interface TokenizerSources {
  /** Parsed tokenizer.json. */
  readonly tokenizerJson: unknown;
  /** Parsed tokenizer_config.json ({} when absent). */
  readonly tokenizerConfig?: JsonObject | null;
  readonly generationConfig?: JsonObject | null;
  readonly modelConfig?: JsonObject | null;
  /** Contents of chat_template.jinja; overrides tokenizer_config's `chat_template` (as transformers does). */
  readonly chatTemplate?: string | null;
  /** File names for error messages. */
  readonly names?: Partial<SourceNames>;
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** max id + 1 over the model vocabulary and the added tokens. */
function countVocab(json: JsonObject): number {
  let max = -1;
  const vocab = (json.model as JsonObject).vocab;
  if (Array.isArray(vocab)) max = vocab.length - 1;
  else if (isObject(vocab)) {
    for (const id of Object.values(vocab)) if (typeof id === "number" && id > max) max = id;
  }
  for (const t of (json.added_tokens as unknown[])) {
    const id = isObject(t) ? t.id : undefined;
    if (typeof id === "number" && id > max) max = id;
  }
  return max + 1;
}

/** tokenizer_config.json as the library expects it: token entries as plain strings. */
function libraryConfig(config: JsonObject, file: string): JsonObject {
  const out: JsonObject = { ...config };
  for (const key of ["bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"]) {
    const v = tokenContent(config, key, file);
    if (v !== undefined) out[key] = v;
  }
  const extra = config.additional_special_tokens;
  out.additional_special_tokens = Array.isArray(extra)
    ? extra.map((t) => (typeof t === "string" ? t : isObject(t) && typeof t.content === "string" ? t.content : null))
      .filter((t): t is string => t !== null)
    : [];
  return out;
}

class HfTextTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
  readonly stopTokenIds: readonly number[];
  readonly specialIds: ReadonlySet<number>;
  readonly hasChatTemplate: boolean;
  readonly #lib: Tokenizer;
  readonly #chat: ChatTemplateRenderer;
  /** tokenizer_config `add_bos_token` / `add_eos_token` when given explicitly, else null (post_processor decides). */
  readonly #addBos: boolean | null;
  readonly #addEos: boolean | null;
  readonly #postAddsBos: boolean;
  readonly #postAddsEos: boolean;

  constructor(src: TokenizerSources) {
    const names: SourceNames = { ...DEFAULT_SOURCE_NAMES, ...src.names };
    const raw = src.tokenizerJson;
    if (!isObject(raw) || !isObject(raw.model)) {
      throw new CheckpointError(`${names.tokenizer}: expected an object with a "model" object`, names.tokenizer);
    }
    if (raw.added_tokens !== undefined && !Array.isArray(raw.added_tokens)) {
      throw new CheckpointError(`${names.tokenizer}: "added_tokens" must be a list`, names.tokenizer);
    }
    const json: JsonObject = {
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      ...raw,
      added_tokens: raw.added_tokens ?? [],
    };
    const config = src.tokenizerConfig ?? {};
    try {
      this.#lib = new Tokenizer(json, libraryConfig(config, names.tokenizerConfig));
    } catch (e) {
      if (e instanceof CheckpointError) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      throw new CheckpointError(`${names.tokenizer}: unsupported or malformed tokenizer: ${msg}`, names.tokenizer);
    }
    this.vocabSize = countVocab(json);

    const special = resolveSpecialTokens(
      config,
      src.generationConfig ?? null,
      src.modelConfig ?? null,
      (t) => this.tokenToId(t),
      (id) => this.idToToken(id),
      names,
    );
    this.bosTokenId = special.bosTokenId;
    this.eosTokenIds = special.eosTokenIds;
    this.stopTokenIds = special.stopTokenIds;

    const specialIds = new Set<number>();
    for (const [id, token] of this.#lib.get_added_tokens_decoder()) if (token.special) specialIds.add(id);
    for (const t of libraryConfig(config, names.tokenizerConfig).additional_special_tokens as string[]) {
      const id = this.tokenToId(t);
      if (id !== undefined) specialIds.add(id);
    }
    if (this.bosTokenId !== null) specialIds.add(this.bosTokenId);
    for (const id of this.eosTokenIds) specialIds.add(id);
    this.specialIds = specialIds;

    this.#addBos = typeof config.add_bos_token === "boolean" ? config.add_bos_token : null;
    this.#addEos = typeof config.add_eos_token === "boolean" ? config.add_eos_token : null;
    const probe = this.#lib.encode("", { add_special_tokens: true }).ids;
    const eos = this.eosTokenIds[0];
    this.#postAddsBos = this.bosTokenId !== null && probe[0] === this.bosTokenId;
    this.#postAddsEos = eos !== undefined && probe.length > (this.#postAddsBos ? 1 : 0) && probe.at(-1) === eos;

    const templateFile = src.chatTemplate != null ? names.chatTemplate : names.tokenizerConfig;
    const templates = parseChatTemplates(src.chatTemplate ?? config.chat_template, templateFile);
    this.#chat = new ChatTemplateRenderer(
      templates,
      { bosToken: special.bosToken, eosToken: special.eosToken },
      templateFile,
    );
    this.hasChatTemplate = this.#chat.hasTemplate;
  }

  /**
   * With addSpecialTokens (the default, as in transformers) the post_processor's special tokens are added. An explicit
   * `add_bos_token` / `add_eos_token` in tokenizer_config.json overrides what the post_processor does about BOS / EOS
   * (transformers rebuilds the post_processor from these flags). Chat-templated prompts already carry their special
   * tokens: encode them with `addSpecialTokens: false`.
   */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const addSpecial = opts.addSpecialTokens ?? true;
    let ids = this.#lib.encode(text, { add_special_tokens: addSpecial }).ids;
    if (!addSpecial) return ids;
    const bos = this.bosTokenId;
    if (this.#addBos !== null && bos !== null && this.#addBos !== this.#postAddsBos) {
      ids = this.#addBos ? [bos, ...ids] : ids.slice(1);
    }
    const eos = this.eosTokenIds[0];
    if (this.#addEos !== null && eos !== undefined && this.#addEos !== this.#postAddsEos) {
      ids = this.#addEos ? [...ids, eos] : ids.slice(0, -1);
    }
    return ids;
  }

  /**
   * Exact text of the ids. Ids the tokenizer does not know (e.g. padding rows of a larger embedding) decode to "".
   * The legacy `clean_up_tokenization_spaces` rewrite (" ." -> ".") is never applied: it corrupts text and breaks
   * streaming, and servers (vLLM, TGI) do not apply it either.
   */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const known: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as number;
      if (Number.isInteger(id) && this.#lib.id_to_token(id) !== undefined) known.push(id);
    }
    if (known.length === 0) return "";
    return this.#lib.decode(known, {
      skip_special_tokens: opts.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.#lib.id_to_token(id) : undefined;
  }

  tokenToId(token: string): number | undefined {
    return this.#lib.token_to_id(token);
  }

  applyChatTemplate(messages: ChatMessage[], opts?: ChatTemplateOptions): string {
    return this.#chat.render(messages, opts);
  }

  createDetokenizer(opts: DetokenizerOptions = {}): IncrementalDetokenizer {
    const decodeOpts = { skipSpecialTokens: opts.skipSpecialTokens };
    return createIncrementalDetokenizer((ids) => this.decode(ids, decodeOpts), opts.context ?? []);
  }
}

/** Builds a TextTokenizer from parsed Hugging Face tokenizer files. Throws CheckpointError naming the bad file. */
export function createTokenizerFromJson(src: TokenizerSources): TextTokenizer {
  return new HfTextTokenizer(src);
}

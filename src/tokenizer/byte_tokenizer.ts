// The built-in demo model's tokenizer: one token per UTF-8 byte, plus a few special tokens.
// Built as an in-memory tokenizer.json so it goes through the same @huggingface/tokenizers path as real checkpoints.

import { CHATML_TEMPLATE } from "./chat_template.ts";
import { createTokenizerFromJson } from "./hf_tokenizer.ts";
import type { JsonObject } from "./special_tokens.ts";
import type { TextTokenizer } from "./tokenizer.ts";

/**
 * Id layout (BYTE_VOCAB_SIZE = 264):
 *
 * | ids       | tokens                                   |
 * |-----------|------------------------------------------|
 * | 0         | `<|bos|>` (BOS, never added by encode)  |
 * | 1         | `<|eos|>` (EOS, stops generation)       |
 * | 2         | `<|pad|>`                                |
 * | 3..258    | bytes 0x00..0xFF (id = 3 + byte)         |
 * | 259       | `<|im_start|>`                           |
 * | 260       | `<|im_end|>` (stops generation)          |
 * | 261..263  | `<|reserved_0|>`..`<|reserved_2|>`       |
 *
 * The reserved ids round the vocabulary up to a multiple of 8 and leave room for later special tokens.
 */
export const BYTE_BOS_ID = 0;
export const BYTE_EOS_ID = 1;
export const BYTE_PAD_ID = 2;
/** Id of byte 0x00; byte b has id BYTE_OFFSET + b. */
export const BYTE_OFFSET = 3;
export const BYTE_IM_START_ID = 259;
export const BYTE_IM_END_ID = 260;
export const BYTE_VOCAB_SIZE = 264;

const SPECIALS: ReadonlyArray<readonly [number, string]> = [
  [BYTE_BOS_ID, "<|bos|>"],
  [BYTE_EOS_ID, "<|eos|>"],
  [BYTE_PAD_ID, "<|pad|>"],
  [BYTE_IM_START_ID, "<|im_start|>"],
  [BYTE_IM_END_ID, "<|im_end|>"],
  [261, "<|reserved_0|>"],
  [262, "<|reserved_1|>"],
  [263, "<|reserved_2|>"],
];

/** GPT-2's reversible byte -> printable character map used by ByteLevel pre-tokenizers and decoders. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    out[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  }
  return out;
}

/** The byte tokenizer as tokenizer.json content (ByteLevel pre-tokenizer and decoder, BPE without merges). */
export function byteTokenizerJson(): JsonObject {
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((ch, b) => (vocab[ch] = BYTE_OFFSET + b));
  return {
    version: "1.0",
    added_tokens: SPECIALS.map(([id, content]) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

/** tokenizer_config.json content of the byte tokenizer (ChatML chat template). */
export function byteTokenizerConfig(): JsonObject {
  return {
    bos_token: "<|bos|>",
    eos_token: "<|eos|>",
    pad_token: "<|pad|>",
    add_bos_token: false,
    clean_up_tokenization_spaces: false,
    chat_template: CHATML_TEMPLATE,
    tokenizer_class: "PreTrainedTokenizerFast",
  };
}

/**
 * Byte-level tokenizer of the demo model: encodes any string as its UTF-8 bytes (special token strings in the
 * text become their special ids), decodes back exactly, renders ChatML, and stops on `<|eos|>` and `<|im_end|>`.
 */
export function createByteTokenizer(): TextTokenizer {
  return createTokenizerFromJson({
    tokenizerJson: byteTokenizerJson(),
    tokenizerConfig: byteTokenizerConfig(),
    generationConfig: { bos_token_id: BYTE_BOS_ID, eos_token_id: [BYTE_EOS_ID, BYTE_IM_END_ID] },
    names: { tokenizer: "<byte tokenizer>", tokenizerConfig: "<byte tokenizer config>" },
  });
}

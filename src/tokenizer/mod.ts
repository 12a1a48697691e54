// Public API of the tokenizer layer.

export {
  type DecodeOptions,
  type DetokenizerOptions,
  type EncodeOptions,
  loadTokenizer,
  type TextTokenizer,
} from "./tokenizer.ts";
export { createTokenizerFromJson, type TokenizerSources } from "./hf_tokenizer.ts";
export {
  type ChatMessage,
  CHATML_TEMPLATE,
  type ChatTemplateOptions,
  type ChatTextPart,
  normalizeMessages,
} from "./chat_template.ts";
export { createIncrementalDetokenizer, type IncrementalDetokenizer, type WindowDecoder } from "./detokenizer.ts";
export {
  BYTE_BOS_ID,
  BYTE_EOS_ID,
  BYTE_IM_END_ID,
  BYTE_IM_START_ID,
  BYTE_OFFSET,
  BYTE_PAD_ID,
  BYTE_VOCAB_SIZE,
  byteTokenizerConfig,
  byteTokenizerJson,
  createByteTokenizer,
} from "./byte_tokenizer.ts";
export { strftime } from "./strftime.ts";

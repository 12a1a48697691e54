// Streaming detokenization with the prefix-offset / read-offset technique (as in vLLM and TGI).

/** Feeds generated ids one at a time and returns only text that can no longer change. */
export interface IncrementalDetokenizer {
  /** Adds one id; returns the newly finalized text ("" while text is held back). */
  push(id: number): string;
  /** Returns whatever is still held back (possibly ending in U+FFFD) and resets the window. */
  flush(): string;
}

/** Decodes a window of ids to text (the full tokenizer decode, with the caller's skip-special setting). */
export type WindowDecoder = (ids: readonly number[]) => string;

const REPLACEMENT = "\uFFFD";
/** Ids kept before the prefix offset are dropped once this many pile up, so memory stays bounded. */
const COMPACT_AFTER = 512;
/** Prompt ids kept as left context (vLLM keeps 5 as well). */
const CONTEXT_IDS = 5;

/**
 * Why windows instead of per-token decode: a token's text depends on its neighbours. SentencePiece decoders strip
 * the leading space of the *first* token ("▁Hello" -> "Hello"), byte-fallback tokens (<0xE6><0x97><0xA5>) and
 * byte-level BPE tokens (Ġ-mapped bytes) only form characters together. So each step decodes
 * ids[prefix..read) (text already emitted, with one token of left context) and ids[prefix..end), and emits the
 * difference. Both windows start at the same token, so start-of-text effects cancel out.
 *
 * Text is held back while the new window ends in U+FFFD (an incomplete UTF-8 sequence) or is not longer than the
 * old one. Concatenating every push() result and flush() equals decode(allIds) for decoders whose output for a
 * sequence starting at a character boundary does not depend on what came before it (true for byte-level BPE,
 * SentencePiece with byte fallback, and WordPiece without cleanup).
 */
export class WindowedDetokenizer implements IncrementalDetokenizer {
  #ids: number[] = [];
  #prefixOffset = 0;
  #readOffset = 0;
  readonly #decode: WindowDecoder;

  /**
   * `context`: ids that precede the generated ones (the prompt's tail). They are decoded as left context only, so
   * the first generated token keeps its leading space with SentencePiece vocabularies, as in decode(prompt + out).
   */
  constructor(decode: WindowDecoder, context: readonly number[] = []) {
    this.#decode = decode;
    this.#ids = context.slice(-CONTEXT_IDS);
    this.#readOffset = this.#ids.length;
  }

  push(id: number): string {
    this.#ids.push(id);
    const prefixText = this.#decode(this.#ids.slice(this.#prefixOffset, this.#readOffset));
    const newText = this.#decode(this.#ids.slice(this.#prefixOffset));
    if (newText.length <= prefixText.length || newText.endsWith(REPLACEMENT) || !newText.startsWith(prefixText)) {
      return "";
    }
    this.#prefixOffset = this.#readOffset;
    this.#readOffset = this.#ids.length;
    this.#compact();
    return newText.slice(prefixText.length);
  }

  flush(): string {
    const prefixText = this.#decode(this.#ids.slice(this.#prefixOffset, this.#readOffset));
    const newText = this.#decode(this.#ids.slice(this.#prefixOffset));
    this.#prefixOffset = this.#readOffset;
    this.#readOffset = this.#ids.length;
    this.#compact();
    return newText.length > prefixText.length ? newText.slice(prefixText.length) : "";
  }

  #compact(): void {
    if (this.#prefixOffset < COMPACT_AFTER) return;
    this.#ids = this.#ids.slice(this.#prefixOffset);
    this.#readOffset -= this.#prefixOffset;
    this.#prefixOffset = 0;
  }
}

export function createIncrementalDetokenizer(
  decode: WindowDecoder,
  context: readonly number[] = [],
): IncrementalDetokenizer {
  return new WindowedDetokenizer(decode, context);
}

// Logprobs in the OpenAI shapes: chat `logprobs.content[{token, logprob, bytes, top_logprobs}]` and the legacy
// completions `{tokens, token_logprobs, top_logprobs, text_offset}`. JSON has no -Infinity, so such values are sent
// as NEG_INF_LOGPROB.
import type { SampledLogprobs } from "../core/types.ts";
import { bytesToUnicode } from "../tokenizer/byte_tokenizer.ts";
import type { TextTokenizer } from "../tokenizer/mod.ts";

/** Stand-in for -Infinity (and NaN) logprobs. */
export const NEG_INF_LOGPROB = -9999;

export function finiteLogprob(x: number): number {
  return Number.isFinite(x) ? x : x > 0 ? Number.MAX_VALUE : NEG_INF_LOGPROB;
}

let byteLevelInverse: Map<string, number> | null = null;

function byteLevelBytes(token: string): number[] | null {
  byteLevelInverse ??= new Map(bytesToUnicode().map((ch, b) => [ch, b]));
  const out: number[] = [];
  for (const ch of token) {
    const b = byteLevelInverse.get(ch);
    if (b === undefined) return null;
    out.push(b);
  }
  return out;
}

const encoder = new TextEncoder();

/** Text and UTF-8 bytes of one token (byte-level BPE and <0xNN> byte tokens give their raw bytes). */
export interface TokenInfo {
  readonly text: string;
  readonly bytes: number[];
  /** UTF-16 units the token adds to the completion text (for text_offset). */
  readonly length: number;
}

/** UTF-16 units a run of raw bytes adds once its characters are complete: lead bytes count, continuations do not. */
function rawLength(bytes: readonly number[]): number {
  let n = 0;
  for (const b of bytes) n += b < 0x80 ? 1 : b >= 0xf0 ? 2 : b >= 0xc0 ? 1 : 0;
  return n;
}

export class TokenNames {
  readonly #cache = new Map<number, TokenInfo>();
  constructor(readonly tokenizer: TextTokenizer | null) {}

  get(id: number): TokenInfo {
    let t = this.#cache.get(id);
    if (!t) {
      t = this.#compute(id);
      this.#cache.set(id, t);
    }
    return t;
  }

  #compute(id: number): TokenInfo {
    const tok = this.tokenizer;
    if (!tok) {
      const text = `token_id:${id}`;
      return { text, bytes: [...encoder.encode(text)], length: 0 };
    }
    const piece = tok.idToToken(id) ?? "";
    let text = tok.decode([id], { skipSpecialTokens: false });
    // SentencePiece drops the leading space of a lone token; its piece still shows it.
    if (piece.startsWith("\u2581") && !text.startsWith(" ")) text = " " + text;
    if (!text.includes("\uFFFD")) return { text, bytes: [...encoder.encode(text)], length: text.length };
    // Part of a UTF-8 character: shown as OpenAI does, "bytes:\xe2\x80", so distinct tokens keep distinct names.
    const hex = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
    const raw = hex ? [parseInt(hex[1]!, 16)] : byteLevelBytes(piece);
    if (!raw) return { text, bytes: [...encoder.encode(text)], length: text.length };
    const shown = "bytes:" + raw.map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("");
    return { text: shown, bytes: raw, length: rawLength(raw) };
  }
}

export interface ChatTopLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface ChatLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}

/** Chat `logprobs.content` entries for some tokens (null entries, without logprobs, are skipped). */
export function chatLogprobContent(
  names: TokenNames,
  lps: readonly (SampledLogprobs | null)[],
  topN: number,
): ChatLogprob[] {
  const out: ChatLogprob[] = [];
  for (const lp of lps) {
    if (!lp) continue;
    const t = names.get(lp.chosen.id);
    out.push({
      token: t.text,
      logprob: finiteLogprob(lp.chosen.logprob),
      bytes: t.bytes,
      top_logprobs: lp.top.slice(0, topN).map((x) => {
        const n = names.get(x.id);
        return { token: n.text, logprob: finiteLogprob(x.logprob), bytes: n.bytes };
      }),
    });
  }
  return out;
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

/** Builds completions logprobs; `offset` runs on across streamed chunks (character offsets into the completion). */
export class CompletionLogprobsBuilder {
  offset = 0;
  constructor(readonly names: TokenNames, readonly topN: number) {}

  build(lps: readonly (SampledLogprobs | null)[]): CompletionLogprobs {
    const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    for (const lp of lps) {
      if (!lp) continue;
      const t = this.names.get(lp.chosen.id);
      out.tokens.push(t.text);
      out.token_logprobs.push(finiteLogprob(lp.chosen.logprob));
      const top: Record<string, number> = Object.create(null); // token texts such as "__proto__" are plain keys
      for (const x of lp.top.slice(0, this.topN)) top[this.names.get(x.id).text] = finiteLogprob(x.logprob);
      // The sampled token is always listed, as OpenAI does (up to logprobs + 1 entries).
      top[t.text] ??= finiteLogprob(lp.chosen.logprob);
      out.top_logprobs.push(top);
      out.text_offset.push(this.offset);
      this.offset += t.length;
    }
    return out;
  }
}

import assert from "node:assert/strict";
import {
  BYTE_OFFSET,
  createByteTokenizer,
  createIncrementalDetokenizer,
  type TextTokenizer,
} from "../src/tokenizer/mod.ts";
import { fixture, type FixtureName, MIXED_TEXT, rng } from "./tokenizer_fixtures.ts";

/** Pushes every id, returns the chunks (flush() last). */
function stream(tok: TextTokenizer, ids: readonly number[], skipSpecialTokens = false): string[] {
  const detok = tok.createDetokenizer({ skipSpecialTokens });
  const chunks = ids.map((id) => detok.push(id));
  chunks.push(detok.flush());
  return chunks;
}

const NAMES: FixtureName[] = ["llama3", "qwen3", "llama2"];

/** Random ids biased towards the hard cases: byte tokens, multi-byte pieces, specials, unknown ids. */
function randomIds(tok: TextTokenizer, next: () => number, length: number, byteIds: readonly number[]): number[] {
  const specials = [...tok.specialIds];
  const ids: number[] = [];
  for (let i = 0; i < length; i++) {
    const r = next();
    if (r < 0.3 && byteIds.length > 0) ids.push(byteIds[Math.floor(next() * byteIds.length)] as number);
    else if (r < 0.4 && specials.length > 0) ids.push(specials[Math.floor(next() * specials.length)] as number);
    else if (r < 0.42) ids.push(tok.vocabSize + Math.floor(next() * 50)); // unknown id
    else ids.push(Math.floor(next() * tok.vocabSize));
  }
  return ids;
}

/** Ids whose token is a single byte (byte-fallback <0xNN> or a lone byte-level character above 0x7F). */
function byteLikeIds(tok: TextTokenizer, name: FixtureName | "byte"): number[] {
  if (name === "llama2") return Array.from({ length: 256 }, (_, b) => 3 + b);
  if (name === "byte") return Array.from({ length: 256 }, (_, b) => BYTE_OFFSET + b);
  const out: number[] = [];
  for (let id = 0; id < 2000; id++) {
    const t = tok.idToToken(id);
    if (t !== undefined && [...t].length === 1 && t.codePointAt(0)! >= 0x80) out.push(id);
  }
  return out;
}

Deno.test("createDetokenizer() output equals decode() for random id sequences", async () => {
  const tokenizers: [FixtureName | "byte", TextTokenizer][] = [
    ...await Promise.all(NAMES.map(async (n) => [n, await fixture(n)] as [FixtureName, TextTokenizer])),
    ["byte", createByteTokenizer()],
  ];
  for (const [name, tok] of tokenizers) {
    const next = rng(1234);
    const byteIds = byteLikeIds(tok, name);
    assert.ok(byteIds.length >= 64, `${name}: found byte tokens`);
    for (let trial = 0; trial < 60; trial++) {
      const ids = randomIds(tok, next, 1 + Math.floor(next() * 40), byteIds);
      for (const skip of [false, true]) {
        const chunks = stream(tok, ids, skip);
        assert.equal(chunks.join(""), tok.decode(ids, { skipSpecialTokens: skip }), `${name} skip=${skip} ids=${ids}`);
      }
    }
  }
});

Deno.test("createDetokenizer() streams emoji and CJK without U+FFFD", async () => {
  const texts = [MIXED_TEXT, "你好，世界", "🦙🚀👍🏽", "日本語のテキスト 🇯🇵 and ASCII", "  leading spaces"];
  for (const tok of [...await Promise.all(NAMES.map(fixture)), createByteTokenizer()]) {
    for (const text of texts) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      const chunks = stream(tok, ids);
      for (const c of chunks) assert.ok(!c.includes("\uFFFD"), `chunk ${JSON.stringify(c)} of ${JSON.stringify(text)}`);
      assert.equal(chunks.join(""), text);
      assert.equal(chunks.at(-1), "", "nothing left for flush() once the text is complete");
    }
  }
});

Deno.test("createDetokenizer() holds back incomplete UTF-8 until the character is complete", async () => {
  const byte = createByteTokenizer();
  const llama = [...new TextEncoder().encode("🦙")].map((b) => BYTE_OFFSET + b);
  assert.deepEqual(stream(byte, [BYTE_OFFSET + 0x61, ...llama]), ["a", "", "", "", "🦙", ""]);

  // SentencePiece byte fallback: "▁" then <0xF0><0x9F><0xA6><0x99>.
  const llama2 = await fixture("llama2");
  const ids = llama2.encode("x 🦙", { addSpecialTokens: false });
  const chunks = stream(llama2, ids);
  assert.equal(chunks.join(""), "x 🦙");
  assert.deepEqual(chunks.slice(-4), ["", "", "🦙", ""]);
});

Deno.test("createDetokenizer() keeps SentencePiece and byte-level word spaces", async () => {
  const llama2 = await fixture("llama2");
  // "▁Hello" decodes to "Hello" at the start of a text but "▁world" keeps its space after it.
  assert.deepEqual(stream(llama2, [22557, 1526]), ["Hello", " world", ""]);
  assert.deepEqual(stream(llama2, [1, 22557, 1526]), ["<s>", " Hello", " world", ""]);
  assert.deepEqual(stream(llama2, [1, 22557, 1526], true), ["", "Hello", " world", ""]);
  const llama3 = await fixture("llama3");
  assert.deepEqual(stream(llama3, [9906, 1917, 128009]), ["Hello", " world", "<|eot_id|>", ""]);
});

Deno.test("createDetokenizer() flush() returns a trailing incomplete sequence", () => {
  const byte = createByteTokenizer();
  const detok = byte.createDetokenizer();
  assert.equal(detok.push(BYTE_OFFSET + 0x68), "h");
  assert.equal(detok.push(BYTE_OFFSET + 0xe4), "");
  assert.equal(detok.flush(), "\uFFFD");
  assert.equal(detok.flush(), "");
  // The detokenizer keeps working after a flush.
  assert.equal(detok.push(BYTE_OFFSET + 0x69), "i");
});

Deno.test("createIncrementalDetokenizer() decodes windows, not single tokens", () => {
  // Toy decoder: each id is a byte; strips one leading space of the whole window (like SentencePiece's Strip).
  const windows: number[] = [];
  const decode = (ids: readonly number[]) => {
    windows.push(ids.length);
    return new TextDecoder().decode(new Uint8Array(ids)).replace(/^ /, "");
  };
  const detok = createIncrementalDetokenizer(decode);
  const bytes = [...new TextEncoder().encode(" a b 你")];
  const out = bytes.map((b) => detok.push(b)).join("") + detok.flush();
  assert.ok(Math.max(...windows) <= 4, `windows stay small: ${Math.max(...windows)}`);
  assert.ok(windows.some((n) => n >= 2), "decodes with left context");
  assert.equal(out, decode(bytes));
  assert.equal(out, "a b 你");
});

Deno.test("createDetokenizer() stays exact over long streams", async () => {
  const next = rng(99);
  for (const tok of [await fixture("llama3"), await fixture("llama2"), createByteTokenizer()]) {
    const text = Array.from({ length: 800 }, () => ["word ", "你好", "🦙", "\n", "é", "  "][Math.floor(next() * 6)])
      .join("");
    const ids = tok.encode(text, { addSpecialTokens: false });
    assert.ok(ids.length > 600, `long enough to compact the window (${ids.length} ids)`);
    assert.equal(stream(tok, ids).join(""), text);
  }
});

Deno.test("createDetokenizer() with prompt context keeps the first token's leading space", async () => {
  for (const name of NAMES) {
    const tok = await fixture(name);
    const prompt = tok.encode("Once upon a time", { addSpecialTokens: false });
    const out = tok.encode("Once upon a time there was a llama 🦙 named 小明.", { addSpecialTokens: false }).slice(
      prompt.length,
    );
    const detok = tok.createDetokenizer({ context: prompt });
    const text = out.map((id) => detok.push(id)).join("") + detok.flush();
    const expected = tok.decode([...prompt, ...out]).slice(tok.decode(prompt).length);
    assert.equal(text, expected, name);
    assert.ok(text.startsWith(" there"), `${name}: "${text}" keeps the space before "there"`);
  }
});

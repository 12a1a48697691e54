import assert from "node:assert/strict";
import {
  BYTE_BOS_ID,
  BYTE_EOS_ID,
  BYTE_IM_END_ID,
  BYTE_IM_START_ID,
  BYTE_OFFSET,
  BYTE_PAD_ID,
  BYTE_VOCAB_SIZE,
  createByteTokenizer,
} from "../src/tokenizer/mod.ts";
import { rng } from "./tokenizer_fixtures.ts";

const utf8 = (s: string) => [...new TextEncoder().encode(s)];

/** A random string of valid code points (no lone surrogates) from ASCII, controls, Latin, CJK and emoji ranges. */
function randomString(next: () => number, length: number): string {
  const ranges: [number, number][] = [[0x00, 0x7f], [0x80, 0x7ff], [0x4e00, 0x9fff], [0xe000, 0xfffd], [
    0x1f300,
    0x1faff,
  ], [0x10000, 0x10ffff]];
  let s = "";
  for (let i = 0; i < length; i++) {
    const [lo, hi] = ranges[Math.floor(next() * ranges.length)] as [number, number];
    s += String.fromCodePoint(lo + Math.floor(next() * (hi - lo + 1)));
  }
  return s;
}

Deno.test("createByteTokenizer() has the documented id layout", () => {
  const tok = createByteTokenizer();
  assert.equal(BYTE_VOCAB_SIZE, 264);
  assert.equal(tok.vocabSize, BYTE_VOCAB_SIZE);
  assert.deepEqual(
    [BYTE_BOS_ID, BYTE_EOS_ID, BYTE_PAD_ID, BYTE_OFFSET, BYTE_IM_START_ID, BYTE_IM_END_ID],
    [0, 1, 2, 3, 259, 260],
  );
  assert.deepEqual(
    [0, 1, 2, 259, 260, 261, 262, 263].map((id) => tok.idToToken(id)),
    [
      "<|bos|>",
      "<|eos|>",
      "<|pad|>",
      "<|im_start|>",
      "<|im_end|>",
      "<|reserved_0|>",
      "<|reserved_1|>",
      "<|reserved_2|>",
    ],
  );
  assert.equal(tok.idToToken(264), undefined);
  assert.equal(tok.bosTokenId, 0);
  assert.deepEqual(tok.eosTokenIds, [1]);
  assert.deepEqual(tok.stopTokenIds, [1, 260]);
  assert.deepEqual([...tok.specialIds].sort((a, b) => a - b), [0, 1, 2, 259, 260, 261, 262, 263]);
  // Every byte has its own id: 3 + byte; ASCII bytes decode to themselves.
  const byteTokens = Array.from({ length: 256 }, (_, b) => tok.idToToken(BYTE_OFFSET + b));
  assert.equal(new Set(byteTokens).size, 256);
  assert.ok(byteTokens.every((t) => t !== undefined && [...t].length === 1));
  for (let b = 0; b < 0x80; b++) assert.equal(tok.decode([BYTE_OFFSET + b]), String.fromCharCode(b));
  assert.deepEqual(tok.encode("A\u0000\u00ff"), [3 + 0x41, 3 + 0x00, 3 + 0xc3, 3 + 0xbf]);
});

Deno.test("createByteTokenizer() round trips random UTF-8 strings", () => {
  const tok = createByteTokenizer();
  const next = rng(7);
  for (let trial = 0; trial < 300; trial++) {
    const text = randomString(next, Math.floor(next() * 60));
    const ids = tok.encode(text);
    assert.deepEqual(ids, utf8(text).map((b) => BYTE_OFFSET + b), JSON.stringify(text));
    assert.equal(tok.decode(ids), text);
  }
  for (const text of ["你好，世界", "🦙🚀👍🏽", "a  \t\n\n   b", ""]) assert.equal(tok.decode(tok.encode(text)), text);
});

Deno.test("createByteTokenizer() encodes special token strings as their ids", () => {
  const tok = createByteTokenizer();
  assert.deepEqual(tok.encode("<|im_start|>hi<|im_end|><|eos|>"), [259, 3 + 0x68, 3 + 0x69, 260, 1]);
  assert.equal(tok.decode([259, 3 + 0x68, 260]), "<|im_start|>h<|im_end|>");
  assert.equal(tok.decode([259, 3 + 0x68, 260], { skipSpecialTokens: true }), "h");
  // A near-miss is plain bytes.
  assert.deepEqual(tok.encode("<|im_end|"), utf8("<|im_end|").map((b) => BYTE_OFFSET + b));
});

Deno.test("createByteTokenizer() renders ChatML", () => {
  const tok = createByteTokenizer();
  assert.equal(tok.hasChatTemplate, true);
  const messages = [{ role: "system", content: "S" }, { role: "user", content: "你好" }];
  assert.equal(
    tok.applyChatTemplate(messages, { addGenerationPrompt: true }),
    "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n",
  );
  const ids = tok.encode(tok.applyChatTemplate(messages), { addSpecialTokens: false });
  assert.deepEqual(ids.filter((id) => tok.specialIds.has(id)), [259, 260, 259, 260]);
});

Deno.test("createByteTokenizer() decodes invalid byte sequences with U+FFFD", () => {
  const tok = createByteTokenizer();
  assert.equal(tok.decode([BYTE_OFFSET + 0xff]), "\uFFFD");
  assert.equal(tok.decode([BYTE_OFFSET + 0x61, BYTE_OFFSET + 0xe4, BYTE_OFFSET + 0x62]), "a\uFFFDb");
});

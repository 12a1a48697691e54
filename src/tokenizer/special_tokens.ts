// Resolves BOS / EOS / stop token ids from tokenizer_config.json, generation_config.json and config.json.

import { CheckpointError } from "../core/errors.ts";

export type JsonObject = Record<string, unknown>;

/** Where each source came from, for error messages. */
export interface SourceNames {
  readonly tokenizer: string;
  readonly tokenizerConfig: string;
  readonly generationConfig: string;
  readonly modelConfig: string;
  readonly chatTemplate: string;
}

export const DEFAULT_SOURCE_NAMES: SourceNames = {
  tokenizer: "tokenizer.json",
  tokenizerConfig: "tokenizer_config.json",
  generationConfig: "generation_config.json",
  modelConfig: "config.json",
  chatTemplate: "chat_template.jinja",
};

export interface SpecialTokenInfo {
  readonly bosTokenId: number | null;
  readonly bosToken: string | null;
  readonly eosTokenIds: readonly number[];
  readonly eosToken: string | null;
  readonly stopTokenIds: readonly number[];
}

/**
 * A special-token entry of tokenizer_config.json: a string, an AddedToken dict (`{content: "..."}`), or null.
 * Returns undefined when the key is absent, null when it is explicitly null.
 */
export function tokenContent(config: JsonObject, key: string, file: string): string | null | undefined {
  if (!(key in config)) return undefined;
  const value = config[key];
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value;
  if (typeof value === "object" && !Array.isArray(value)) {
    const content = (value as JsonObject).content;
    if (typeof content === "string") return content;
  }
  throw new CheckpointError(`${file}: "${key}" must be a string, an AddedToken object or null`, file);
}

/** `eos_token_id` / `bos_token_id` of generation_config.json or config.json: a number, a list of numbers, or null. */
export function idList(obj: JsonObject | null, key: string, file: string): number[] {
  if (obj === null || !(key in obj)) return [];
  const value = obj[key];
  if (value === null || value === undefined) return [];
  const list = Array.isArray(value) ? value : [value];
  for (const v of list) {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new CheckpointError(
        `${file}: "${key}" must be a non-negative integer or a list of them, got ${JSON.stringify(value)}`,
        file,
      );
    }
  }
  return list as number[];
}

function pushUnique(out: number[], ids: Iterable<number>): void {
  for (const id of ids) if (!out.includes(id)) out.push(id);
}

/**
 * - bos: tokenizer_config `bos_token` when the key is present (null means "no BOS"), otherwise the first
 *   `bos_token_id` of generation_config.json, then config.json.
 * - eos: tokenizer_config `eos_token`; when absent or unknown, the first `eos_token_id` of generation_config.json,
 *   then config.json.
 * - stop: eos ∪ generation_config `eos_token_id` ∪ config.json `eos_token_id`, in that order, deduplicated.
 * Token strings that are not in the vocabulary are ignored (they cannot be produced by the model anyway).
 */
export function resolveSpecialTokens(
  tokenizerConfig: JsonObject,
  generationConfig: JsonObject | null,
  modelConfig: JsonObject | null,
  tokenToId: (token: string) => number | undefined,
  idToToken: (id: number) => string | undefined,
  names: SourceNames,
): SpecialTokenInfo {
  const genEos = idList(generationConfig, "eos_token_id", names.generationConfig);
  const cfgEos = idList(modelConfig, "eos_token_id", names.modelConfig);
  const genBos = idList(generationConfig, "bos_token_id", names.generationConfig);
  const cfgBos = idList(modelConfig, "bos_token_id", names.modelConfig);

  let bosTokenId: number | null = null;
  const bosContent = tokenContent(tokenizerConfig, "bos_token", names.tokenizerConfig);
  if (typeof bosContent === "string") bosTokenId = tokenToId(bosContent) ?? null;
  else if (bosContent === undefined) bosTokenId = genBos[0] ?? cfgBos[0] ?? null;
  if (bosTokenId !== null && idToToken(bosTokenId) === undefined) bosTokenId = null;

  const eosTokenIds: number[] = [];
  const eosContent = tokenContent(tokenizerConfig, "eos_token", names.tokenizerConfig);
  const eosFromConfig = typeof eosContent === "string" ? tokenToId(eosContent) : undefined;
  if (eosFromConfig !== undefined) eosTokenIds.push(eosFromConfig);
  else {
    const fallback = genEos[0] ?? cfgEos[0];
    if (fallback !== undefined && idToToken(fallback) !== undefined) eosTokenIds.push(fallback);
  }

  const stopTokenIds: number[] = [];
  pushUnique(stopTokenIds, eosTokenIds);
  pushUnique(stopTokenIds, genEos);
  pushUnique(stopTokenIds, cfgEos);

  const first = eosTokenIds[0];
  return {
    bosTokenId,
    bosToken: bosTokenId === null ? null : idToToken(bosTokenId) ?? null,
    eosTokenIds,
    eosToken: first === undefined ? null : idToToken(first) ?? null,
    stopTokenIds,
  };
}

// Typed readers for request fields. Each throws a 400 that names the field (OpenAI's `param`). Absent and null
// fields read as undefined, as the OpenAI API treats them.
import type { JsonObject } from "./body.ts";
import { badRequest } from "./errors.ts";

export type { JsonObject };

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function kind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

export function optBool(o: JsonObject, name: string): boolean | undefined {
  const v = o[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw badRequest(`${name} must be a boolean, got ${kind(v)}`, name);
  return v;
}

export function optString(o: JsonObject, name: string): string | undefined {
  const v = o[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw badRequest(`${name} must be a string, got ${kind(v)}`, name);
  return v;
}

export interface NumRange {
  readonly min?: number;
  readonly max?: number;
  /** Exclusive lower bound. */
  readonly above?: number;
  readonly integer?: boolean;
}

function rangeText(r: NumRange): string {
  const parts: string[] = [];
  if (r.above !== undefined) parts.push(`> ${r.above}`);
  if (r.min !== undefined) parts.push(`>= ${r.min}`);
  if (r.max !== undefined) parts.push(`<= ${r.max}`);
  return parts.join(" and ");
}

export function optNumber(o: JsonObject, name: string, r: NumRange = {}): number | undefined {
  const v = o[name];
  if (v === undefined || v === null) return undefined;
  const what = r.integer ? "an integer" : "a number";
  if (typeof v !== "number" || !Number.isFinite(v)) throw badRequest(`${name} must be ${what}, got ${kind(v)}`, name);
  if (r.integer && !Number.isSafeInteger(v)) throw badRequest(`${name} must be ${what}, got ${show(v)}`, name);
  const bad = (r.min !== undefined && v < r.min) || (r.max !== undefined && v > r.max) ||
    (r.above !== undefined && v <= r.above);
  if (bad) throw badRequest(`${name} must be ${what} ${rangeText(r)}, got ${show(v)}`, name);
  return v;
}

export function optObject(o: JsonObject, name: string): JsonObject | undefined {
  const v = o[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) throw badRequest(`${name} must be an object, got ${kind(v)}`, name);
  return v as JsonObject;
}

/** `stop`: a string or a list of non-empty strings. */
export function optStringList(o: JsonObject, name: string, maxItems: number): string[] | undefined {
  const v = o[name];
  if (v === undefined || v === null) return undefined;
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string")) {
    throw badRequest(`${name} must be a string or a list of strings, got ${show(v)}`, name);
  }
  if (list.length > maxItems) throw badRequest(`${name} may hold at most ${maxItems} strings`, name);
  if (list.some((s) => s === "")) throw badRequest(`${name} must not contain empty strings`, name);
  return list as string[];
}

/** A list of token ids in [0, vocabSize). */
export function tokenIdList(v: unknown, name: string, vocabSize: number): number[] {
  if (!Array.isArray(v)) throw badRequest(`${name} must be a list of token ids, got ${kind(v)}`, name);
  for (const id of v) {
    if (typeof id !== "number" || !Number.isSafeInteger(id)) {
      throw badRequest(`${name} must be a list of integer token ids, got ${show(id)}`, name);
    }
    if (id < 0 || id >= vocabSize) {
      throw badRequest(`${name}: token id ${id} is outside the vocabulary [0, ${vocabSize})`, name);
    }
  }
  return v as number[];
}

export function optTokenIdList(o: JsonObject, name: string, vocabSize: number): number[] | undefined {
  const v = o[name];
  if (v === undefined || v === null) return undefined;
  return tokenIdList(v, name, vocabSize);
}

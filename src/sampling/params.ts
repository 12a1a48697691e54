// Defaults and range checks for SamplingParams. Messages name the field so they can be shown to API users as-is.

import type { SamplingParams } from "../core/types.ts";

/** OpenAI-like defaults: plain sampling at temperature 1, no filters, no penalties, no logprobs. */
export function defaultSamplingParams(): SamplingParams {
  return {
    temperature: 1,
    topK: 0,
    topP: 1,
    minP: 0,
    repetitionPenalty: 1,
    presencePenalty: 0,
    frequencyPenalty: 0,
    seed: null,
    topLogprobs: 0,
    logprobs: false,
  };
}

export const MAX_TEMPERATURE = 100;
export const MAX_TOP_LOGPROBS = 20;

function isNum(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

function show(v: unknown): string {
  return typeof v === "number" ? String(v) : JSON.stringify(v) ?? String(v);
}

/** Null when every field is in range, otherwise a message naming the first bad field. */
export function validateSamplingParams(p: SamplingParams): string | null {
  const t = p.temperature;
  if (!isNum(t) || t < 0 || t > MAX_TEMPERATURE) {
    return `temperature must be a number between 0 and ${MAX_TEMPERATURE}, got ${show(t)}`;
  }
  if (!isNum(p.topP) || p.topP <= 0 || p.topP > 1) {
    return `top_p must be a number in (0, 1], got ${show(p.topP)}`;
  }
  if (!isNum(p.minP) || p.minP < 0 || p.minP > 1) {
    return `min_p must be a number in [0, 1], got ${show(p.minP)}`;
  }
  if (!Number.isSafeInteger(p.topK) || p.topK < -1) {
    return `top_k must be an integer >= -1 (0 or -1 disables it), got ${show(p.topK)}`;
  }
  if (!isNum(p.repetitionPenalty) || p.repetitionPenalty <= 0) {
    return `repetition_penalty must be a number > 0, got ${show(p.repetitionPenalty)}`;
  }
  if (!isNum(p.presencePenalty) || p.presencePenalty < -2 || p.presencePenalty > 2) {
    return `presence_penalty must be a number between -2 and 2, got ${show(p.presencePenalty)}`;
  }
  if (!isNum(p.frequencyPenalty) || p.frequencyPenalty < -2 || p.frequencyPenalty > 2) {
    return `frequency_penalty must be a number between -2 and 2, got ${show(p.frequencyPenalty)}`;
  }
  if (p.seed !== null && !Number.isSafeInteger(p.seed)) {
    return `seed must be an integer or null, got ${show(p.seed)}`;
  }
  if (!Number.isSafeInteger(p.topLogprobs) || p.topLogprobs < 0 || p.topLogprobs > MAX_TOP_LOGPROBS) {
    return `top_logprobs must be an integer between 0 and ${MAX_TOP_LOGPROBS}, got ${show(p.topLogprobs)}`;
  }
  if (typeof p.logprobs !== "boolean") {
    return `logprobs must be a boolean, got ${show(p.logprobs)}`;
  }
  return null;
}

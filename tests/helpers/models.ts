// Locations of the shared test checkpoints (../shared/models beside the checkout, or $MODELS_DIR on the GPU machine).
import type { Backend, ModelSpec, Precision } from "../../src/core/types.ts";
import { openCheckpoint } from "../../src/model/checkpoint.ts";

const here = new URL(".", import.meta.url).pathname;

function modelsDir(): string {
  try {
    const fromEnv = Deno.env.get("MODELS_DIR");
    if (fromEnv) return fromEnv;
  } catch { /* no env permission */ }
  return `${here}../../../shared/models`;
}

export const STORIES_DIR = `${modelsDir()}/stories260K`;

export interface ReferenceCase {
  tokens: number[];
  logits: number[][];
}

export interface ReferenceLogits {
  cases: ReferenceCase[];
  greedy_from_bos: number[];
}

export async function readReferenceLogits(): Promise<ReferenceLogits> {
  return JSON.parse(await Deno.readTextFile(`${STORIES_DIR}/reference_logits.json`));
}

/** max |a - ref| / max |ref| over one case. */
export function maxRelError(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - ref[i]!));
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  return diff / scale;
}

/** Loads stories260K into `backend` at `precision` (the checkpoint closed after); returns it and the model's spec. */
export async function loadStories<B extends Backend>(b: B, precision: Precision): Promise<{ b: B; spec: ModelSpec }> {
  const ckpt = await openCheckpoint(STORIES_DIR);
  try {
    await b.load(ckpt.spec, ckpt.weights, precision);
  } finally {
    ckpt.weights.close();
  }
  return { b, spec: ckpt.spec };
}

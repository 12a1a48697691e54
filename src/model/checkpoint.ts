// A Hugging Face model folder: config.json + safetensors (single or sharded through the index).
import type { ModelSpec, TensorSource } from "../core/types.ts";
import { CheckpointError } from "../core/errors.ts";
import { readModelConfig } from "./config.ts";
import { SafetensorsSource } from "./safetensors.ts";
import { expectedTensors, linearBase, linearWeightNames } from "./weights.ts";

export interface Checkpoint {
  readonly dir: string;
  readonly spec: ModelSpec;
  readonly weights: TensorSource;
  readonly files: readonly string[];
}

/** Lists the safetensors files of a model folder, following model.safetensors.index.json when present. */
export async function safetensorsFiles(dir: string): Promise<string[]> {
  const index = `${dir}/model.safetensors.index.json`;
  let text: string | null = null;
  try {
    text = await Deno.readTextFile(index);
  } catch { /* no index: single file or glob */ }
  if (text !== null) {
    let map: Record<string, unknown>;
    try {
      map = (JSON.parse(text) as { weight_map?: Record<string, unknown> }).weight_map ?? {};
    } catch (e) {
      throw new CheckpointError(`${index}: not valid JSON (${(e as Error).message})`, index);
    }
    const files = [...new Set(Object.values(map))];
    if (files.length === 0 || !files.every((f) => typeof f === "string" && !f.includes(".."))) {
      throw new CheckpointError(`${index}: weight_map is empty or names invalid files`, index);
    }
    return (files as string[]).sort().map((f) => `${dir}/${f}`);
  }
  const found: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".safetensors")) found.push(`${dir}/${e.name}`);
  }
  if (found.length === 0) throw new CheckpointError(`${dir}: no .safetensors files found`, dir);
  return found.sort();
}

export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const spec = await readModelConfig(dir);
  const files = await safetensorsFiles(dir);
  const weights = await SafetensorsSource.open(files);
  try {
    refuseScaledFp8Extras(spec, weights);
  } catch (e) {
    weights.close();
    throw e;
  }
  return { dir, spec, weights, files };
}

/**
 * Only the layers' linears are read as quantized weights: an embedding, norm or lm_head stored as F8_E4M3 next to a
 * scale tensor would decode without its scale (wrong values), so such a checkpoint is refused, naming the tensor.
 * (fp8 exporters keep them in 16 bits: lm_head is on every ignore / modules_to_not_convert list.)
 */
function refuseScaledFp8Extras(spec: ModelSpec, src: TensorSource): void {
  const linears = linearWeightNames(spec);
  for (const { name } of expectedTensors(spec)) {
    if (linears.has(name) || !src.has(name) || src.info(name).dtype !== "F8_E4M3") continue;
    const b = linearBase(name);
    if ([`${b}.weight_scale`, `${b}.weight_scale_inv`].some((n) => src.has(n))) {
      const file = src.info(name).file;
      throw new CheckpointError(
        `${file}: tensor "${name}" is FP8 with a scale; only the layers' linear weights may be quantized`,
        file,
        name,
      );
    }
  }
}

// Reading the integer and scale tensors of quantized checkpoints with checks that name the file and tensor.
import type { SafetensorsDType, TensorSource } from "../core/types.ts";
import { CheckpointError } from "../core/errors.ts";
import { fromF32 } from "../model/dtype.ts";

function fail(src: TensorSource, name: string, why: string): CheckpointError {
  const file = src.has(name) ? src.info(name).file : undefined;
  return new CheckpointError(`${file ?? "checkpoint"}: tensor "${name}": ${why}`, file, name);
}

function checkShape(src: TensorSource, name: string, shape: readonly number[], dtypes: SafetensorsDType[]): void {
  const i = src.info(name);
  if (!dtypes.includes(i.dtype)) throw fail(src, name, `dtype ${i.dtype}, expected ${dtypes.join(" or ")}`);
  if (i.shape.length !== shape.length || i.shape.some((d, k) => d !== shape[k])) {
    throw fail(src, name, `shape ${JSON.stringify(i.shape)}, expected ${JSON.stringify(shape)}`);
  }
}

/** An I32 tensor of exactly `shape`, as u32 words (bit patterns; packed formats are unsigned at heart). */
export async function readPackedI32(src: TensorSource, name: string, shape: readonly number[]): Promise<Uint32Array> {
  checkShape(src, name, shape, ["I32"]);
  const raw = await src.bytes(name);
  return new Uint32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
}

/** An I32 tensor of exactly `shape`, signed. */
export async function readI32(src: TensorSource, name: string, shape: readonly number[]): Promise<Int32Array> {
  return new Int32Array((await readPackedI32(src, name, shape)).buffer);
}

/** A float scale tensor (F16, or F32/BF16 as some exporters write), finite and >= 0. */
export async function readScales(src: TensorSource, name: string, shape: readonly number[]): Promise<Float32Array> {
  checkShape(src, name, shape, ["F16", "F32", "BF16"]);
  const s = await src.f32(name);
  const bad = s.findIndex((x) => !Number.isFinite(x) || x < 0);
  if (bad >= 0) throw fail(src, name, `scale ${s[bad]} at element ${bad} (scales must be finite and >= 0)`);
  return s;
}

/** A stored weight shape (a 2-element I64, or I32, tensor such as weight_shape) that must say [N, K]. */
export async function expectShapePair(src: TensorSource, name: string, N: number, K: number): Promise<void> {
  const i = src.info(name);
  if ((i.dtype !== "I64" && i.dtype !== "I32") || i.shape.length !== 1 || i.shape[0] !== 2) {
    throw fail(src, name, `${i.dtype}${JSON.stringify(i.shape)}, expected I64 [2]`);
  }
  const raw = await src.bytes(name), view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const at = (j: number) => i.dtype === "I64" ? Number(view.getBigInt64(8 * j, true)) : view.getInt32(4 * j, true);
  const [n, k] = [at(0), at(1)];
  if (n !== N || k !== K) throw fail(src, name, `[${n}, ${k}], expected [${N}, ${K}]`);
}

/**
 * An act-order group index (GPTQ g_idx, compressed-tensors weight_g_idx): I32 [K] without negative groups. `groups`
 * is the number of scale rows it implies: ceil(K / G), or more when g_idx names a higher group.
 */
export async function readGroupIndex(
  src: TensorSource,
  name: string,
  K: number,
  G: number,
): Promise<{ gIdx: Int32Array; groups: number }> {
  const gIdx = await readI32(src, name, [K]);
  const bad = gIdx.findIndex((g) => g < 0);
  if (bad >= 0) throw fail(src, name, `negative group ${gIdx[bad]} at channel ${bad}`);
  return { gIdx, groups: Math.max(Math.ceil(K / G), gIdx.reduce((a, b) => Math.max(a, b), 0) + 1) };
}

export { fail as quantTensorError };

/** A tensor entry for writeSafetensors. */
export interface OutTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  data: Uint8Array;
}

export function i32Tensor(name: string, shape: readonly number[], data: Uint32Array | Int32Array): OutTensor {
  return { name, dtype: "I32", shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

export function f16Tensor(name: string, shape: readonly number[], data: Float32Array): OutTensor {
  return { name, dtype: "F16", shape, data: fromF32(data, "F16") };
}

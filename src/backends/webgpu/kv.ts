// KV cache sizing rules of the WebGPU backend, shared by the in-thread backend and its worker proxy (which must
// refuse a bad allocateKv / copyBlocks synchronously, before anything reaches the worker).
import type { KvDType, ModelSpec } from "../../core/types.ts";
import { kvLayerBytes } from "./attention.ts";
import type { StorageType } from "./shaders.ts";

const KV_BYTES: Record<KvDType, number> = { f32: 4, f16: 2, bf16: 2, int8: 1, int4: 0.5 };

/** Bytes of one block over all layers, K and V. */
export function kvBytesPerBlockFor(spec: ModelSpec, blockSize: number, kv: KvDType): number {
  return Math.ceil(2 * spec.numLayers * blockSize * spec.numKvHeads * spec.headDim * KV_BYTES[kv]);
}

/**
 * Bytes of one layer's K (or V) buffer, [numBlocks, kvHeads, blockSize, headDim] KT; throws when the sizes are
 * invalid or the buffer would exceed one storage binding (`bindingLimit`, maxStorageBufferBindingSize).
 */
export function kvLayerBytesChecked(
  spec: ModelSpec,
  numBlocks: number,
  blockSize: number,
  kt: StorageType,
  bindingLimit: number,
): number {
  if (!Number.isInteger(numBlocks) || numBlocks < 1 || !Number.isInteger(blockSize) || blockSize < 1) {
    throw new RangeError(`webgpu allocateKv: bad numBlocks ${numBlocks} / blockSize ${blockSize}`);
  }
  const dims = { numHeads: spec.numHeads, kvHeads: spec.numKvHeads, headDim: spec.headDim, blockSize, numBlocks };
  const bytes = kvLayerBytes(dims, kt);
  if (bytes > bindingLimit) {
    const most = Math.floor(bindingLimit / kvLayerBytes({ ...dims, numBlocks: 1 }, kt));
    throw new RangeError(
      `webgpu allocateKv: ${numBlocks} blocks need ${bytes} bytes per layer for K (and V); one binding holds ` +
        `${bindingLimit} (maxStorageBufferBindingSize), i.e. at most ${most} blocks of ${blockSize}`,
    );
  }
  return bytes;
}

/** Throws unless src/dst pair up and name blocks in [0, numBlocks). */
export function checkBlockCopies(src: Int32Array, dst: Int32Array, numBlocks: number): void {
  if (src.length !== dst.length) throw new RangeError("copyBlocks: src and dst differ in length");
  for (const v of [...src, ...dst]) {
    if (!(v >= 0 && v < numBlocks)) throw new RangeError(`copyBlocks: block ${v} outside [0, ${numBlocks})`);
  }
}

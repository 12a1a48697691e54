// KV cache sizing rules of the WebGPU backend, shared by the in-thread backend and its worker proxy (which must
// refuse a bad allocateKv / copyBlocks synchronously, before anything reaches the worker).
import type { KvDType, ModelSpec } from "../../core/types.ts";
import { kvHeadBytes } from "../../quant/reference.ts";
import { kvLayerBytes, type KvStore } from "./attention.ts";

/** How this backend stores a KV precision (bf16 is not offered; f16 needs shader-f16, checked at load). */
export function kvStoreOf(kv: KvDType): KvStore {
  return kv === "f16" || kv === "int8" || kv === "int4" ? kv : "f32";
}

/**
 * Bytes of one block over all layers, K and V: the reference's kvHeadBytes per token and head (int8/int4 count
 * their f16 (scale, zero) pair), which is exactly what kvLayerBytes allocates.
 */
export function kvBytesPerBlockFor(spec: ModelSpec, blockSize: number, kv: KvDType): number {
  return 2 * spec.numLayers * blockSize * spec.numKvHeads * kvHeadBytes(spec.headDim, kv);
}

/**
 * Bytes of one layer's K (or V) buffer (attention.ts kvLayerBytes); throws when the sizes are
 * invalid or the buffer would exceed one storage binding (`bindingLimit`, maxStorageBufferBindingSize).
 */
export function kvLayerBytesChecked(
  spec: ModelSpec,
  numBlocks: number,
  blockSize: number,
  kt: KvStore,
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

// KV pool sizing. This one formula is what makes capacity follow KV precision: a backend reports the bytes one block
// takes at the chosen KV dtype (scales included), and int4 KV yields about four times the blocks of f16.

/**
 * Number of KV blocks that fit in `freeBytes * cacheFraction`:
 * floor(freeBytes * cacheFraction / bytesPerBlock).
 *
 * @param freeBytes device memory free after the weights are loaded (finite, >= 0)
 * @param cacheFraction share of that memory given to the KV cache, in (0, 1]
 * @param bytesPerBlock Backend.kvBytesPerBlock(blockSize, kv): bytes of one block over all layers, K and V (> 0)
 * @throws RangeError on any invalid argument
 */
export function numBlocksFor(freeBytes: number, cacheFraction: number, bytesPerBlock: number): number {
  if (!Number.isFinite(freeBytes) || freeBytes < 0) {
    throw new RangeError(`numBlocksFor: freeBytes must be a finite number >= 0, got ${freeBytes}`);
  }
  if (!Number.isFinite(cacheFraction) || cacheFraction <= 0 || cacheFraction > 1) {
    throw new RangeError(`numBlocksFor: cacheFraction must be in (0, 1], got ${cacheFraction}`);
  }
  if (!Number.isFinite(bytesPerBlock) || bytesPerBlock <= 0) {
    throw new RangeError(`numBlocksFor: bytesPerBlock must be a finite number > 0, got ${bytesPerBlock}`);
  }
  return Math.floor((freeBytes * cacheFraction) / bytesPerBlock);
}

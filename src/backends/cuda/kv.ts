// KV cache layout of the CUDA backend (kernels/kv_cache.cuh has the same rules) and the attention kernels'
// static choices: which head dims and query-group paddings are compiled, and their shared memory.
//
// Per layer and per K | V:
//   rows   [numBlocks, nkv, blockSize, kvRowBytes(kv, d)] bytes: f16 / bf16 2d bytes; int8 d bytes (unsigned q);
//          int4 d/2 bytes (value 2i in the low nibble of byte i). int8 / int4 rows are padded with zero bytes to a
//          multiple of 16, so every row is 16-byte aligned (only d = 8, and d = 80 with int4, carry padding).
//   scales [numBlocks, nkv, blockSize, 2] f16 (scale, zero), int8 / int4 only: x = fma(q, scale, zero) in f32,
//          quant/reference.ts kvRoundTrip's numbers bit for bit (rope_kv writes them).
import type { ModelSpec } from "../../core/types.ts";
import type { CudaDevice, DeviceBuffer } from "./device.ts";
import type { DevPtr } from "./ffi.ts";
import type { Half } from "./ops.ts";

/** KV cache precisions of the CUDA backend. */
export type CudaKv = Half | "int8" | "int4";

export function kvQuantized(kv: CudaKv): kv is "int8" | "int4" {
  return kv === "int8" || kv === "int4";
}

/** Bytes of one cache row (one token, one KV head, K or V), padding included, scales excluded. */
export function kvRowBytes(kv: CudaKv, d: number): number {
  const bits = kv === "int8" ? 8 : kv === "int4" ? 4 : 16;
  return Math.ceil((d * bits) / 8 / 16) * 16;
}

/** Bytes of one row's (scale, zero) pair: 4 for int8 / int4, none for 16-bit caches. */
export function kvScaleBytes(kv: CudaKv): number {
  return kvQuantized(kv) ? 4 : 0;
}

/** Head dims the decode kernel is compiled for (attn_split_<kv>_d<D>_g<GP>). */
export const DECODE_DIMS: readonly number[] = [8, 32, 64, 80, 96, 128, 256];
/** Largest query-head group per KV head (GP = 16). */
export const ATTN_MAX_GROUP = 16;

/**
 * The decode kernel's query-head tile for a group of G heads per KV head: the heads sit in the N dimension of the
 * m16n8k16 tensor-core tiles, 8 per n-tile, so groups of 1..8 take GP = 8 and 9..16 take GP = 16.
 */
export function decodeGroupPad(G: number): number {
  if (!Number.isInteger(G) || G < 1 || G > ATTN_MAX_GROUP) throw new RangeError(`attention: group ${G} unsupported`);
  return G <= 8 ? 8 : 16;
}

/** Warps per block of the decode kernel (DEC_WARPS; each takes its own tiles of 16 keys), its threads, and the
 * block-table entries it stages in shared memory (DEC_TAB). */
export const DEC_WARPS = 4, DEC_THREADS = 32 * DEC_WARPS, DEC_TAB = 512;

/**
 * cp.async stages per warp of attn_split for int8 / int4 caches (decStages in attn_decode.cu): 2, one tile in flight
 * while one is computed; 16-bit caches load into registers (0).
 */
export function decodeStages(kv: CudaKv): number {
  return kvQuantized(kv) ? 2 : 0;
}

/**
 * Bytes of one cp.async stage of attn_split (DecShape::SB): K rows [16, kStride], V rows [16, vStride] (row bytes
 * padded by 16 where a multiple of 128 / 64, against bank conflicts), K and V (scale, zero) [16] half2 each, a mask.
 */
export function decodeStageBytes(kv: CudaKv, d: number): number {
  const rb = kvRowBytes(kv, d), kStride = rb % 128 === 0 ? rb + 16 : rb, vStride = rb % 64 === 0 ? rb + 16 : rb;
  return 16 * (kStride + vStride) + 144;
}

/**
 * Dynamic shared memory of attn_split for G query heads per KV head and head dim d (attn_decode.cu attnDecode): the
 * warps' partial outputs [DEC_WARPS, G, d] f32, their max and sum of exp [DEC_WARPS, G] f32 each, block-table
 * entries [DEC_TAB] i32, then (16-byte aligned) `stages` cp.async stages per warp [DEC_WARPS, stages,
 * decodeStageBytes] (int8 / int4; decodeStages by default).
 */
export function attentionSmemBytes(G: number, d: number, kv: CudaKv = "f16", stages = decodeStages(kv)): number {
  const base = Math.ceil((4 * (DEC_WARPS * G * (d + 2) + DEC_TAB)) / 16) * 16;
  return base + (stages > 0 ? DEC_WARPS * stages * decodeStageBytes(kv, d) : 0);
}

/** Per-layer device pointers of an allocated cache; scales are 0n for 16-bit caches. */
export interface KvPointers {
  /** per layer: rows [numBlocks, nkv, blockSize, kvRowBytes] */ readonly kCache: readonly DevPtr[];
  readonly vCache: readonly DevPtr[];
  /** per layer: [numBlocks, nkv, blockSize, 2] f16 (scale, zero), or 0n */ readonly kScale: readonly DevPtr[];
  readonly vScale: readonly DevPtr[];
}

/** Bytes of one block over every layer, K and V, scales and row padding included. */
export function kvBlockBytes(spec: ModelSpec, kv: CudaKv, blockSize: number): number {
  return 2 * spec.numLayers * blockSize * spec.numKvHeads * (kvRowBytes(kv, spec.headDim) + kvScaleBytes(kv));
}

/** A KV cache on the device: rows and (int8 / int4) scales, one allocation each, carved per layer. */
export class KvCache implements Disposable {
  readonly #owned: DeviceBuffer[] = [];
  readonly ptrs: KvPointers;
  /** bytes of one block of one layer's K (or V) rows, and of its scales */
  readonly rowBlockBytes: number;
  readonly scaleBlockBytes: number;

  constructor(
    readonly dev: CudaDevice,
    readonly spec: ModelSpec,
    readonly kv: CudaKv,
    readonly numBlocks: number,
    readonly blockSize: number,
  ) {
    const s = spec, L = s.numLayers;
    this.rowBlockBytes = s.numKvHeads * blockSize * kvRowBytes(kv, s.headDim);
    this.scaleBlockBytes = s.numKvHeads * blockSize * kvScaleBytes(kv);
    const carve = (bytes: number, label: string): DevPtr[] => {
      if (bytes === 0) return Array.from({ length: L }, () => 0n);
      const b = dev.alloc(bytes * L, label);
      this.#owned.push(b);
      return Array.from({ length: L }, (_, l) => b.at(l * bytes));
    };
    const rows = numBlocks * this.rowBlockBytes, scales = numBlocks * this.scaleBlockBytes;
    this.ptrs = {
      kCache: carve(rows, "kCache"),
      vCache: carve(rows, "vCache"),
      kScale: carve(scales, "kScale"),
      vScale: carve(scales, "vScale"),
    };
  }

  /** Copy-on-write: block src[i] -> dst[i] in every layer, rows and scales. */
  copyBlocks(src: Int32Array, dst: Int32Array): void {
    const p = this.ptrs;
    for (let i = 0; i < src.length; i++) {
      const a = src[i]!, b = dst[i]!;
      if (!(a >= 0 && a < this.numBlocks && b >= 0 && b < this.numBlocks)) {
        throw new RangeError(`copyBlocks: ${a}->${b}`);
      }
      for (let l = 0; l < this.spec.numLayers; l++) {
        for (const [base, n] of [[p.kCache, this.rowBlockBytes], [p.vCache, this.rowBlockBytes]] as const) {
          this.dev.copy(base[l]! + BigInt(b * n), base[l]! + BigInt(a * n), n);
        }
        if (this.scaleBlockBytes === 0) continue;
        for (const base of [p.kScale, p.vScale]) {
          const n = this.scaleBlockBytes;
          this.dev.copy(base[l]! + BigInt(b * n), base[l]! + BigInt(a * n), n);
        }
      }
    }
  }

  [Symbol.dispose](): void {
    for (const b of this.#owned) b[Symbol.dispose]();
    this.#owned.length = 0;
  }
}

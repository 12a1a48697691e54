// KV cache rows as the attention kernels read them (attn_decode.cu, attn_prefill.cu).
//
// KV cache layout, per layer and per K | V (docs/ARCHITECTURE.md, "KV cache layout"):
//   rows   [numBlocks, nkv, blockSize, RB] bytes, RB = kvRowBytes(d): the d values of one token and KV head.
//          f16 / bf16: 2d bytes. int8: d bytes (unsigned q). int4: d/2 bytes (value 2i in the low nibble of byte i).
//          int8 / int4 rows are padded with zero bytes to a multiple of 16 (only d = 8, and d = 80 with int4, pad),
//          so every row starts 16-byte aligned and the 16-byte loads never straddle rows.
//   scales [numBlocks, nkv, blockSize] half2 (scale, zero), int8 / int4 only; x = fma(q, scale, zero) in f32
//          (quant/reference.ts kvRoundTrip; rope_kv in elementwise.cu writes them).
#pragma once
#include "common.cuh"

// BITS: bits per stored value; BF: the decode kernel's mma operands are bf16 (else f16).
struct KvF16 { static constexpr int BITS = 16; static constexpr bool BF = false; };
struct KvBf16 { static constexpr int BITS = 16; static constexpr bool BF = true; };
struct KvI8 { static constexpr int BITS = 8; static constexpr bool BF = false; };
struct KvI4 { static constexpr int BITS = 4; static constexpr bool BF = false; };

template <typename KT> __host__ __device__ constexpr int kvRowBytes(int d) { return (d * KT::BITS / 8 + 15) / 16 * 16; }

// 2^23 + q read as a float, minus 2^23: q (0..255) as f32, exactly, without an int->float conversion.
__device__ __forceinline__ float magicQ(uint32_t q) { return __uint_as_float(0x4B000000u | q) - 8388608.f; }

// Values e0 .. e0+7 (e0 % 8 == 0) of one cache row (`row`: its first byte, shared or global memory) as f32.
// Quantized types dequantize with one FMA each: q * sc + zr.
template <typename KT> __device__ __forceinline__ void kvLoad8(const uint8_t* row, int e0, float sc, float zr, float* o);
template <> __device__ __forceinline__ void kvLoad8<KvF16>(const uint8_t* row, int e0, float, float, float* o) {
  const uint4 u = *reinterpret_cast<const uint4*>(row + 2 * e0);
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float2 f = __half22float2(h[i]);
    o[2 * i] = f.x;
    o[2 * i + 1] = f.y;
  }
}
template <> __device__ __forceinline__ void kvLoad8<KvBf16>(const uint8_t* row, int e0, float, float, float* o) {
  const uint4 u = *reinterpret_cast<const uint4*>(row + 2 * e0);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    o[2 * i] = __uint_as_float(w[i] << 16);
    o[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
template <> __device__ __forceinline__ void kvLoad8<KvI8>(const uint8_t* row, int e0, float sc, float zr, float* o) {
  const uint2 u = *reinterpret_cast<const uint2*>(row + e0);
#pragma unroll
  for (int b = 0; b < 4; b++) {
    o[b] = fmaf(magicQ(__byte_perm(u.x, 0u, 0x4440 + b)), sc, zr);
    o[4 + b] = fmaf(magicQ(__byte_perm(u.y, 0u, 0x4440 + b)), sc, zr);
  }
}
template <> __device__ __forceinline__ void kvLoad8<KvI4>(const uint8_t* row, int e0, float sc, float zr, float* o) {
  const uint32_t w = *reinterpret_cast<const uint32_t*>(row + e0 / 2);
#pragma unroll
  for (int i = 0; i < 8; i++) o[i] = fmaf(magicQ((w >> (4 * i)) & 15u), sc, zr);
}

// (scale, zero) of cache row `idx`; (1, 0) for 16-bit types (their loads ignore it).
template <typename KT> __device__ __forceinline__ float2 kvScale(const __half2* sz, size_t idx) {
  if constexpr (KT::BITS < 16) return __half22float2(sz[idx]);
  else return make_float2(1.f, 0.f);
}

// c += A (16x16, row) . B (16x8, col), f32 accumulators; f16 or bf16 operands.
template <bool BF>
__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  if constexpr (BF) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

// Tensor-core GEMM building blocks shared by gemm.cu and gemm_skinny.cu: cp.async copies, the m16n8k16 MMA, shared
// memory tiles and the A-fragment loader that splits f32 activations into hi + lo halves.
#pragma once
#include "common.cuh"

__device__ __forceinline__ void cpAsync16(void* smem, const void* gmem, int bytes) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cpAsyncWait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

template <typename T> __device__ __forceinline__ void mma16816(float* c, const uint32_t* a, const uint32_t* b);
template <> __device__ __forceinline__ void mma16816<bf16>(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <> __device__ __forceinline__ void mma16816<f16>(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

constexpr int BK = 32, STAGES = 3;

// Shared-memory tile of one operand: 16-bit rows padded by 8 elements, f32 rows by 4 (16 bytes either way).
template <typename T> struct Tile {
  static constexpr int LD = BK + 16 / (int)sizeof(T);
  static constexpr int CHUNK = 16 / (int)sizeof(T);  // elements per 16-byte copy
};

// One 16-byte chunk of row `row` (of `rows`) starting at column k of a [rows, K] matrix, into shared memory;
// out-of-range elements are zero.
template <typename T>
__device__ __forceinline__ void loadChunk(T* dst, const T* src, int row, int rows, int k, int K, bool aligned) {
  constexpr int C = Tile<T>::CHUNK;
  if (aligned) {
    const bool ok = row < rows && k < K;
    cpAsync16(dst, ok ? src + (size_t)row * K + k : src, ok ? 16 : 0);
  } else {
#pragma unroll
    for (int e = 0; e < C; e++) dst[e] = (row < rows && k + e < K) ? src[(size_t)row * K + k + e] : T(0.f);
  }
}

// The A fragment register (two consecutive k) for the MMA. 16-bit A: as stored. f32 A: split into a high part in
// TW and the low remainder, so that hi + lo carries ~16 mantissa bits; the caller runs the MMA for both.
template <typename TW> __device__ __forceinline__ uint32_t pack2(float a, float b);
template <> __device__ __forceinline__ uint32_t pack2<bf16>(float a, float b) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <> __device__ __forceinline__ uint32_t pack2<f16>(float a, float b) {
  const __half2 v = __floats2half2_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <typename TW> __device__ __forceinline__ float2 unpack2(uint32_t u);
template <> __device__ __forceinline__ float2 unpack2<bf16>(uint32_t u) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u));
}
template <> __device__ __forceinline__ float2 unpack2<f16>(uint32_t u) {
  return __half22float2(*reinterpret_cast<const __half2*>(&u));
}

template <typename TA, typename TW> struct AFrag {
  static constexpr bool SPLIT = false;
  __device__ __forceinline__ static void load(const TA* p, uint32_t& hi, uint32_t& lo) {
    hi = *reinterpret_cast<const uint32_t*>(p);
    lo = 0;
  }
};
template <typename TW> struct AFrag<float, TW> {
  static constexpr bool SPLIT = true;
  __device__ __forceinline__ static void load(const float* p, uint32_t& hi, uint32_t& lo) {
    const float2 v = *reinterpret_cast<const float2*>(p);
    hi = pack2<TW>(v.x, v.y);
    const float2 h = unpack2<TW>(hi);
    lo = pack2<TW>(v.x - h.x, v.y - h.y);
  }
};

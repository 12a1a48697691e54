// Shared device helpers: 16-bit storage types, conversions, warp/block reductions.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;
typedef __half f16;

template <typename T> __device__ __forceinline__ float tof(T x);
template <> __device__ __forceinline__ float tof<bf16>(bf16 x) { return __bfloat162float(x); }
template <> __device__ __forceinline__ float tof<f16>(f16 x) { return __half2float(x); }
template <> __device__ __forceinline__ float tof<float>(float x) { return x; }

template <typename T> __device__ __forceinline__ T fromf(float x);
template <> __device__ __forceinline__ bf16 fromf<bf16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ f16 fromf<f16>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ float fromf<float>(float x) { return x; }

typedef float f32;

__device__ __forceinline__ float warpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Split-K across blocks, after each block of an output tile has stored its partial sums: true (in every thread) only
// in the last of the tile's S blocks to arrive at *counter (u32, zero between launches: that block resets it once
// done); the fences make the other blocks' partials visible to it.
__device__ __forceinline__ bool splitKLast(unsigned* counter, int S) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == (unsigned)(S - 1);
  __syncthreads();
  if (!last) return false;
  __threadfence();
  return true;
}

// The last block's finish of a BM x BN tile at (m0, n0) (NT threads): y [M, N] f32 = the S partials of part [S, M, N]
// f32 summed in split order (whichever block arrived last) + bias [N] (or none); then resets *counter.
template <int BM, int BN, int NT>
__device__ __forceinline__ void splitKSumTile(const float* part, float* y, const float* bias, unsigned* counter, int M,
                                              int N, int m0, int n0, int S) {
  for (int i = threadIdx.x; i < BM * BN; i += NT) {
    const int m = m0 + i / BN, n = n0 + i % BN;
    if (m >= M || n >= N) continue;
    float v = 0.f;
    for (int s = 0; s < S; s++) v += __ldcg(part + ((size_t)s * M + m) * N + n);
    y[(size_t)m * N + n] = v + (bias ? bias[n] : 0.f);
  }
  if (threadIdx.x == 0) *counter = 0u;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ __forceinline__ float blockSum(float v) {
  __shared__ float part[32];
  __shared__ float total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warpSum(v);
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.f;
    s = warpSum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

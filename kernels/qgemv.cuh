// Helpers of the W4A16 / W8A16 decode GEMV (qgemv.cu): the weight ring's cp.async ops, exact-integer A fragments,
// the per-lane group scales, and the x staging (plain f16 or fused RMSNorm). Included by qgemv.cu only.
#pragma once
#include "common.cuh"
#include "ptx.cuh"

#define QV_GROUP 4  // weight tiles per cp.async group

__device__ __forceinline__ void qvCpAsync(uint32_t smem, const uint4* g) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem), "l"(g) : "memory");
}
__device__ __forceinline__ void qvCommit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void qvWaitGroups() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// BITS template value of FP8 E4M3 weights (src/quant/pack.ts "FP8"): codes in the int8 positions, so every 8-bit
// layout rule applies (BITS != 4), only the conversion differs: a code becomes the f16 e4m3 * 2^-8 (sign to bit 15,
// exponent and mantissa to bits 13..7; exact, subnormals included), the stored scale being 256 s.
#define QB_FP8 9

// Two e4m3 codes, bytes (sel) of v, as half2 e4m3 * 2^-8: __byte_perm puts each code in the high byte of its half,
// then the 7 magnitude bits move down one place and the sign stays (3 instructions after the permute).
template <unsigned SEL> __device__ __forceinline__ uint32_t fp8x2(uint32_t v) {
  const uint32_t t = __byte_perm(v, 0u, SEL);
  return ((t & 0x7f007f00u) >> 1) | (t & 0x80008000u);
}

// The same two codes (the low / high 16 bits of v when HI) as exact e4m3 values: one cvt on sm_89+ (the bit move
// above, times 2^8 by an hmul2, elsewhere). For qgemv's deferred scaling, which multiplies by 2^-8 once per group.
template <bool HI> __device__ __forceinline__ uint32_t fp8x2Exact(uint32_t v) {
#if __CUDA_ARCH__ >= 890
  uint32_t d;
  const unsigned short a = (unsigned short)(HI ? v >> 16 : v & 0xffffu);
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(d) : "h"(a));
  return d;
#else
  return h2u(__hmul2(u2h(fp8x2<(HI ? 0x3424u : 0x1404u)>(v)), u2h(0x5c005c00u)));  // * 256
#endif
}

template <int BITS> struct QV {
  static constexpr int T = BITS == 4 ? 64 : 32;  // columns per n-tile
  static constexpr int NB = T / 16;              // 16-column A blocks per n-tile
  static constexpr int SBW = BITS == 4 ? 8 : 4;  // (scale, bias) words a lane needs per group
};

// A fragments of one tile's 16-column block j as the exact integers q (f16), w = the lane's 4 words. The scale and
// bias are applied once per group to the f32 partial sums instead (see qgemv), so a weight pair costs two instructions
// (a lop3 into the f16 magic 1024 + v, then one sub or fma); integers up to 255 are exact in f16.
// int4: word j, halves h = 0 (column 16j + r, r = lane / 4) and 1 (column 16j + 8 + r); lo = k-pair k0, k0 + 1,
// hi = k0 + 8, k0 + 9 (r rows / r + 8 rows of A, cols k / k + 8): a = {lo0, lo1, hi0, hi1}.
// int8: words 2j (column 16j + r) and 2j + 1 (column 16j + 8 + r). fp8: the same words, e4m3 * 2^-8 (exact in f16),
// or with EXACT the e4m3 values themselves (the caller scales by 2^-8).
template <int BITS, bool EXACT = false>
__device__ __forceinline__ void fragQ(const uint32_t* w, int j, uint32_t* a) {
  const half2 k1024 = u2h(0x64006400u);
  if (BITS == 4) {
    const half2 k16th = u2h(0x2c002c00u), km64 = u2h(0xd400d400u);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const uint32_t v = h ? w[j] >> 8 : w[j];
      a[h] = h2u(__hsub2(u2h(lop3AndOr(v, 0x000f000fu, 0x64006400u)), k1024));
      a[2 + h] = h2u(__hfma2(u2h(lop3AndOr(v, 0x00f000f0u, 0x64006400u)), k16th, km64));
    }
  } else if (BITS == QB_FP8) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const uint32_t v = w[2 * j + h];
      a[h] = EXACT ? fp8x2Exact<false>(v) : fp8x2<0x1404>(v);     // codes at k0, k0 + 1
      a[2 + h] = EXACT ? fp8x2Exact<true>(v) : fp8x2<0x3424>(v);  // k0 + 8, k0 + 9
    }
  } else {
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const uint32_t v = w[2 * j + h];
      a[h] = h2u(__hsub2(u2h(__byte_perm(v, 0x64646464u, 0x4140)), k1024));
      a[2 + h] = h2u(__hsub2(u2h(__byte_perm(v, 0x64646464u, 0x4342)), k1024));
    }
  }
}

// The same A fragments dequantized in f16 with the group's half2 (scale, bias) words sb (index 2j + h), splatted
// here: w = q * s + z, one hfma2 more per weight pair. For M <= 16 (MB = 2), where a second set of 32 accumulators
// per lane (deferred scaling) cost occupancy.
template <int BITS>
__device__ __forceinline__ void fragScaled(const uint32_t* w, int j, const uint32_t* sb, uint32_t* a) {
  fragQ<BITS>(w, j, a);
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const half2 s = u2h(__byte_perm(sb[2 * j + h], 0, 0x1010)), z = u2h(__byte_perm(sb[2 * j + h], 0, 0x3232));
    a[h] = h2u(__hfma2(u2h(a[h]), s, z));
    a[2 + h] = h2u(__hfma2(u2h(a[2 + h]), s, z));
  }
}

// Group scales of one lane: the half2 (scale, bias) words of the current group for the lane's W columns (index
// 2j + h, as in fragQ) and of the next AHEAD groups (loaded ahead, so the flush at a group's end does not wait).
template <int BITS, int AHEAD> struct QvScales {
  static constexpr int W = QV<BITS>::SBW;
  uint32_t r[AHEAD + 1][W];  // r[a]: half2 (scale, bias) of group g + a
  int g, gEnd;               // current group, its first k-tile past the end
  __device__ __forceinline__ static void load(const uint32_t* scaleBias, int gi, int nG, int Np, int nt, int lane,
                                              uint32_t* raw) {
    if (gi >= nG) return;
    const uint32_t* row = scaleBias + (size_t)gi * Np + nt * QV<BITS>::T + (lane >> 2);
#pragma unroll
    for (int i = 0; i < W; i++) raw[i] = __ldg(row + (BITS == 4 ? 16 * (i >> 1) + 8 * (i & 1) : 8 * i));
  }
  // Starts before group g0 (its words and the next AHEAD - 1 groups' in flight).
  __device__ __forceinline__ void start(const uint32_t* scaleBias, int g0, int nG, int Np, int nt, int lane) {
#pragma unroll
    for (int i = 0; i < W; i++) r[0][i] = 0u;
#pragma unroll
    for (int a = 1; a <= AHEAD; a++) load(scaleBias, g0 + a - 1, nG, Np, nt, lane, r[a]);
    g = g0 - 1;
    gEnd = -1;
  }
  // True when k-tile kt leaves the current group (the caller flushes the group's sums, then calls next(kt)).
  __device__ __forceinline__ bool ends(int kt) const { return kt >= gEnd; }
  // Makes the group of k-tile kt current (tiles are visited in increasing order); gt = k-tiles per group.
  __device__ __forceinline__ void next(const uint32_t* scaleBias, int kt, int gt, int nG, int KT, int Np, int nt,
                                       int lane) {
    const int gk = kt / gt;
    if (gk == g + 1) {
#pragma unroll
      for (int a = 0; a < AHEAD; a++)
#pragma unroll
        for (int i = 0; i < W; i++) r[a][i] = r[a + 1][i];
      load(scaleBias, gk + AHEAD, nG, Np, nt, lane, r[AHEAD]);
    } else {
#pragma unroll
      for (int a = 0; a <= AHEAD; a++) load(scaleBias, gk + a, nG, Np, nt, lane, r[a]);
    }
    g = gk;
    gEnd = min(KT, (gk + 1) * gt);
  }
};

// 8 consecutive activations of row m, packed channels k .. k+7 (zero beyond K), as f16.
__device__ __forceinline__ uint4 qvX8(const f16* x, const int* perm, int K, int m, int k, bool vec) {
  if (k >= K) return make_uint4(0, 0, 0, 0);
  if (vec) return __ldg(reinterpret_cast<const uint4*>(x + (size_t)m * K + k));
  uint4 v;
  unsigned short* e = reinterpret_cast<unsigned short*>(&v);
  const unsigned short* xr = reinterpret_cast<const unsigned short*>(x + (size_t)m * K);
#pragma unroll
  for (int i = 0; i < 8; i++) e[i] = k + i < K ? xr[perm ? __ldg(perm + k + i) : k + i] : (unsigned short)0;
  return v;
}

// The same 8 channels of the fused-norm input: f16(xg[m, ch] * inv), xg [M, K] f32 = x * gamma.
__device__ __forceinline__ uint4 qvX8Norm(const float* xg, const int* perm, int K, int m, int k, float inv, bool vec) {
  if (k >= K) return make_uint4(0, 0, 0, 0);
  float f[8];
  const float* row = xg + (size_t)m * K;
  if (vec) {
    const float4 a = *reinterpret_cast<const float4*>(row + k), b = *reinterpret_cast<const float4*>(row + k + 4);
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
  } else {
#pragma unroll
    for (int i = 0; i < 8; i++) f[i] = k + i < K ? row[perm ? __ldg(perm + k + i) : k + i] : 0.f;
  }
  uint4 v;
  half2* h = reinterpret_cast<half2*>(&v);
#pragma unroll
  for (int i = 0; i < 4; i++) h[i] = __floats2half2_rn(f[2 * i] * inv, f[2 * i + 1] * inv);
  return v;
}

// Linear layers for batched decode (M 9..256): y[M, N] (f32) = x[M, K] · W[N, K]^T + bias[N] (f32), W row-major as
// Hugging Face stores it, activations the weight dtype or f32 (hi + lo halves), as gemm.cu; split-K so the grid fills
// the GPU, with a deterministic in-kernel reduction (src/backends/cuda/gemm_skinny.ts plans the launches).
#include "mma.cuh"

// Skinny-M GEMM (batched decode, M 9..256): the weights are streamed once by a grid that fills the GPU through
// split-K. Block = 4 * WG warps on one BM x BN output tile; each k-tile is SBK = 64 wide and warp w takes the k slice
// [16(w % 4), +16) and the column group w / 4 (BN / WG columns), so no two warps read the same W fragment; the 4
// k-slice partials are summed through shared memory in slice order. SSTAGES-deep cp.async pipeline.
// grid (ceil(M/BM), ceil(N/BN), S): the M tiles of one weight tile are adjacent block indices (they run together,
// so repeated weight reads hit L2). Split z covers k-tiles [z*tps, min(KT, z*tps + tps)). S > 1: each block writes
// its tile to part [S, M, N] f32; the last block of a tile to arrive (counters [ceil(M/BM) * ceil(N/BN)] u32, zero
// between launches; that block resets its slot) sums the S partials in split order and adds the bias, so results
// do not depend on arrival order.
constexpr int SBK = 64, SSTAGES = 4;
template <typename T> struct STile {
  static constexpr int LD = SBK + 8;  // 16-bit: 36-word rows; f32: 72-word rows (conflict-free 64-bit reads)
  static constexpr int CHUNK = 16 / (int)sizeof(T);
};

// f32 activations (SPLIT): an A stage holds a hi and a lo plane of TW ([BM, SBK + 8] each, the bytes of one f32
// tile), converted once per block while staging: the f32 tile is loaded into registers one pipeline step ahead and
// stored, split, after that step's MMAs (the stage it lands in was last read before this step's barrier).
template <typename TA, typename TW, int BM, int BN, int WG>
__device__ void skinny(const TA* A, const TW* W, const float* bias, float* C, float* part, unsigned* counters, int M,
                       int N, int K, int tps) {
  constexpr int LDA = STile<TA>::LD, LDB = STile<TW>::LD, CA = STile<TA>::CHUNK, CB = STile<TW>::CHUNK;
  constexpr int MI = BM / 16, NI = BN / 8 / WG, NT = 128 * WG;
  constexpr bool SPLIT = AFrag<TA, TW>::SPLIT;
  constexpr int LDH = SBK + 8, AREG = SPLIT ? BM * (SBK / 4) / NT : 1;  // f32 chunks (float4) per thread
  static_assert(!SPLIT || BM * (SBK / 4) % NT == 0, "f32 A tile must split evenly over the threads");
  extern __shared__ __align__(16) unsigned char ssm[];
  TA* As = reinterpret_cast<TA*>(ssm);                                   // [SSTAGES][BM * LDA] (SPLIT: 2 TW planes)
  TW* Bs = reinterpret_cast<TW*>(ssm + SSTAGES * BM * LDA * sizeof(TA));  // [SSTAGES][BN * LDB]
  float* red = reinterpret_cast<float*>(ssm);                            // [4 k-slices][BM * BN] f32, after the loop
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tg = lane & 3;
  const int ks = warp & 3, wn = (warp >> 2) * (BN / WG);
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN, S = gridDim.z, split = blockIdx.z;
  const bool aligned = (K % 8 == 0) && (((uintptr_t)A | (uintptr_t)W) % 16 == 0);
  const int KT = (K + SBK - 1) / SBK, kt0 = split * tps, kt1 = min(KT, kt0 + tps), nk = kt1 - kt0;
  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; i++)
#pragma unroll
    for (int j = 0; j < NI; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;
  auto loadW = [&](int stage, int kt) {
    const int k0 = kt * SBK;
    for (int c = tid; c < BN * (SBK / CB); c += NT) {
      const int r = c / (SBK / CB), kc = (c % (SBK / CB)) * CB;
      loadChunk(&Bs[stage * BN * LDB + r * LDB + kc], W, n0 + r, N, k0 + kc, K, aligned);
    }
  };
  auto loadA16 = [&](int stage, int kt) {  // 16-bit A: cp.async as stored
    const int k0 = kt * SBK;
    for (int c = tid; c < BM * (SBK / CA); c += NT) {
      const int r = c / (SBK / CA), kc = (c % (SBK / CA)) * CA;
      loadChunk(&As[stage * BM * LDA + r * LDA + kc], A, m0 + r, M, k0 + kc, K, aligned);
    }
  };
  float4 areg[AREG];
  auto loadA32 = [&](int kt) {  // f32 A: into registers (chunk j of this thread: tid + j * NT)
    const int k0 = kt * SBK;
#pragma unroll
    for (int j = 0; j < AREG; j++) {
      const int c = tid + j * NT, m = m0 + c / (SBK / 4), k = k0 + (c % (SBK / 4)) * 4;
      const float* src = reinterpret_cast<const float*>(A) + (size_t)m * K + k;
      if (aligned) {
        areg[j] = m < M && k < K ? *reinterpret_cast<const float4*>(src) : make_float4(0.f, 0.f, 0.f, 0.f);
      } else {
        float v[4];
#pragma unroll
        for (int e = 0; e < 4; e++) v[e] = m < M && k + e < K ? src[e] : 0.f;
        areg[j] = make_float4(v[0], v[1], v[2], v[3]);
      }
    }
  };
  auto storeA32 = [&](int stage) {
    TW* hi = reinterpret_cast<TW*>(ssm) + stage * 2 * BM * LDH;
    TW* lo = hi + BM * LDH;
#pragma unroll
    for (int j = 0; j < AREG; j++) {
      const int c = tid + j * NT, r = c / (SBK / 4), kc = (c % (SBK / 4)) * 4;
      const float4 v = areg[j];
      const uint32_t h0 = pack2<TW>(v.x, v.y), h1 = pack2<TW>(v.z, v.w);
      const float2 f0 = unpack2<TW>(h0), f1 = unpack2<TW>(h1);
      *reinterpret_cast<uint2*>(hi + r * LDH + kc) = make_uint2(h0, h1);
      *reinterpret_cast<uint2*>(lo + r * LDH + kc) =
          make_uint2(pack2<TW>(v.x - f0.x, v.y - f0.y), pack2<TW>(v.z - f1.x, v.w - f1.y));
    }
  };
#pragma unroll
  for (int s = 0; s < SSTAGES - 1; s++) {
    if (s < nk) {
      loadW(s, kt0 + s);
      if constexpr (SPLIT) {
        loadA32(kt0 + s);
        storeA32(s);
      } else {
        loadA16(s, kt0 + s);
      }
    }
    cpAsyncCommit();
  }
  for (int i = 0; i < nk; i++) {
    cpAsyncWait<SSTAGES - 2>();
    __syncthreads();
    const bool more = i + SSTAGES - 1 < nk;
    if (more) {
      loadW((i + SSTAGES - 1) % SSTAGES, kt0 + i + SSTAGES - 1);
      if constexpr (SPLIT) loadA32(kt0 + i + SSTAGES - 1);
      else loadA16((i + SSTAGES - 1) % SSTAGES, kt0 + i + SSTAGES - 1);
    }
    cpAsyncCommit();
    const TW* bs = Bs + (i % SSTAGES) * BN * LDB + wn * LDB + ks * 16 + tg * 2;
    uint32_t a[MI][4], al[MI][4], b[NI][2];
#pragma unroll
    for (int mi = 0; mi < MI; mi++) {
      if constexpr (SPLIT) {
        const TW* p = reinterpret_cast<const TW*>(ssm) + (i % SSTAGES) * 2 * BM * LDH + (mi * 16 + g) * LDH + ks * 16 +
                      tg * 2;
        const int off[4] = {0, 8 * LDH, 8, 8 * LDH + 8};
#pragma unroll
        for (int r = 0; r < 4; r++) {
          a[mi][r] = *reinterpret_cast<const uint32_t*>(p + off[r]);
          al[mi][r] = *reinterpret_cast<const uint32_t*>(p + BM * LDH + off[r]);
        }
      } else {
        const TA* p = As + (i % SSTAGES) * BM * LDA + (mi * 16 + g) * LDA + ks * 16 + tg * 2;
        AFrag<TA, TW>::load(p, a[mi][0], al[mi][0]);
        AFrag<TA, TW>::load(p + 8 * LDA, a[mi][1], al[mi][1]);
        AFrag<TA, TW>::load(p + 8, a[mi][2], al[mi][2]);
        AFrag<TA, TW>::load(p + 8 * LDA + 8, a[mi][3], al[mi][3]);
      }
    }
#pragma unroll
    for (int ni = 0; ni < NI; ni++) {
      const TW* p = bs + (ni * 8) * LDB + g * LDB;
      b[ni][0] = *reinterpret_cast<const uint32_t*>(p);
      b[ni][1] = *reinterpret_cast<const uint32_t*>(p + 8);
    }
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int ni = 0; ni < NI; ni++) {
        mma16816<TW>(acc[mi][ni], a[mi], b[ni]);
        if constexpr (SPLIT) mma16816<TW>(acc[mi][ni], al[mi], b[ni]);
      }
    if constexpr (SPLIT) {
      if (more) storeA32((i + SSTAGES - 1) % SSTAGES);
    }
  }
  cpAsyncWait<0>();
  __syncthreads();
  // acc[mi][ni][e]: row mi*16 + g (+8 for e >= 2), column wn + ni*8 + 2tg + (e & 1) of the tile.
#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int ni = 0; ni < NI; ni++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        red[ks * BM * BN + (mi * 16 + g + (e >> 1) * 8) * BN + wn + ni * 8 + tg * 2 + (e & 1)] = acc[mi][ni][e];
  __syncthreads();
  for (int i = tid; i < BM * BN; i += NT) {
    const int m = m0 + i / BN, n = n0 + i % BN;
    if (m >= M || n >= N) continue;
    const float v = ((red[i] + red[BM * BN + i]) + red[2 * BM * BN + i]) + red[3 * BM * BN + i];
    if (S == 1) C[(size_t)m * N + n] = v + (bias ? bias[n] : 0.f);
    else part[((size_t)split * M + m) * N + n] = v;
  }
  if (S == 1) return;
  unsigned* slot = counters + blockIdx.y * gridDim.x + blockIdx.x;
  if (splitKLast(slot, S)) splitKSumTile<BM, BN, NT>(part, C, bias, slot, M, N, m0, n0, S);
}

// skinny<BM>[w8]_<act>_<weight>: 4 warps, or 8 (w8: two column groups); MINB: resident blocks per SM the
// registers must allow (gemm_skinny.ts plans with the same number).
#define SKINNY(TA, TW, BM, BN, WG, MINB, NAME)                                                                   \
  extern "C" __global__ void __launch_bounds__(128 * WG, MINB) NAME##_##TA##_##TW(                               \
      const TA* A, const TW* W, const float* bias, float* C, float* part, unsigned* counters, int M, int N,     \
      int K, int tps) {                                                                                          \
    skinny<TA, TW, BM, BN, WG>(A, W, bias, C, part, counters, M, N, K, tps);                                     \
  }
#define SKINNY_ALL(TA, TW)                                                                                       \
  SKINNY(TA, TW, 16, 64, 1, 4, skinny16)                                                                         \
  SKINNY(TA, TW, 32, 64, 1, 4, skinny32)                                                                         \
  SKINNY(TA, TW, 64, 32, 1, 2, skinny64)                                                                         \
  SKINNY(TA, TW, 16, 64, 2, 4, skinny16w8)                                                                       \
  SKINNY(TA, TW, 32, 64, 2, 3, skinny32w8)                                                                       \
  SKINNY(TA, TW, 64, 64, 2, 2, skinny64w8)
SKINNY_ALL(bf16, bf16)
SKINNY_ALL(f16, f16)
SKINNY_ALL(f32, bf16)
SKINNY_ALL(f32, f16)

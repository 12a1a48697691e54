// Linear layers y[M, N] (f32) = x[M, K] · W[N, K]^T + bias[N] (f32); W row-major as Hugging Face stores it.
// Activations are the weight dtype or f32 (split into hi + lo halves for the MMA: ~f32 accuracy at twice the
// tensor-core work). gemv_*: decode-sized M (<= 8; gemv1_*: M = 1), one warp per output column, weights read once.
// gemm_* / gemm128_*: tensor cores (mma.sync m16n8k16, f32 accumulation), 64x64 or 128x128 tiles by 32 along K,
// 3-stage cp.async pipeline; any M, N, K (a K that is not a multiple of 8 takes guarded scalar loads).
// skinny<BM>[w8]_*: split-K tensor-core GEMM for batched decode (M 9..256), see skinny() below.
#include "common.cuh"

#define GEMV_U 4

// 8 consecutive activations as f32 (16-byte loads: one uint4 of halves, or two float4).
template <typename TA> __device__ __forceinline__ void load8(const TA* p, float* out) {
  const uint4 v = *reinterpret_cast<const uint4*>(p);
  const TA* e = reinterpret_cast<const TA*>(&v);
#pragma unroll
  for (int i = 0; i < 8; i++) out[i] = tof(e[i]);
}
template <> __device__ __forceinline__ void load8<float>(const float* p, float* out) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}

// x: [M, K] TA (f32 or the weight dtype); W: [N, K] TW; M <= MAXM. grid ceil(N/4), block 128 (4 warps, one
// column each).
template <typename TA, typename TW, int MAXM>
__device__ void gemv(const TA* x, const TW* W, const float* bias, float* y, int M, int N, int K) {
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (n >= N) return;
  const TW* w = W + (size_t)n * K;
  float acc[MAXM];
#pragma unroll
  for (int m = 0; m < MAXM; m++) acc[m] = 0.f;
  const bool vec = (K % 8 == 0) && (((uintptr_t)W | (uintptr_t)x) % 16 == 0);
  if (vec) {
    // GEMV_U 16-byte weight loads per lane are issued before any is used, so a warp keeps 2 KiB in flight.
    for (int base = lane * 8; base < K; base += 256 * GEMV_U) {
      uint4 wv[GEMV_U];
#pragma unroll
      for (int u = 0; u < GEMV_U; u++) {
        const int k = base + u * 256;
        wv[u] = k < K ? __ldg(reinterpret_cast<const uint4*>(w + k)) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < GEMV_U; u++) {
        const int k = base + u * 256;
        if (k >= K) break;
        const TW* we = reinterpret_cast<const TW*>(&wv[u]);
        float wf[8];
#pragma unroll
        for (int e = 0; e < 8; e++) wf[e] = tof(we[e]);
#pragma unroll
        for (int m = 0; m < MAXM; m++) {
          if (m < M) {
            float xf[8];
            load8(x + (size_t)m * K + k, xf);
#pragma unroll
            for (int e = 0; e < 8; e++) acc[m] += wf[e] * xf[e];
          }
        }
      }
    }
  } else {
    for (int k = lane; k < K; k += 32) {
      const float wf = tof(w[k]);
#pragma unroll
      for (int m = 0; m < MAXM; m++)
        if (m < M) acc[m] += wf * tof(x[(size_t)m * K + k]);
    }
  }
  const float b = bias ? bias[n] : 0.f;
#pragma unroll
  for (int m = 0; m < MAXM; m++) {
    if (m < M) {
      const float s = warpSum(acc[m]);
      if (lane == 0) y[(size_t)m * N + n] = s + b;
    }
  }
}

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

// A: [M, K] TA; W: [N, K] TW. Block tile BM x BN, warp tile WM x WN (16-row, 8-column MMA steps), block
// (BM/WM)*(BN/WN) warps. Tiles live in dynamic shared memory: STAGES * (BM*LDA*sizeof(TA) + BN*LDB*sizeof(TW)).
// grid (ceil(N/BN), ceil(M/BM)).
template <typename TA, typename TW, int BM, int BN, int WM, int WN>
__device__ void gemm(const TA* A, const TW* W, const float* bias, float* C, int M, int N, int K) {
  constexpr int LDA = Tile<TA>::LD, LDB = Tile<TW>::LD, CA = Tile<TA>::CHUNK, CB = Tile<TW>::CHUNK;
  constexpr int MI = WM / 16, NI = WN / 8, WARPS_N = BN / WN;
  extern __shared__ __align__(16) unsigned char gsm[];
  TA* As = reinterpret_cast<TA*>(gsm);                                 // [STAGES][BM * LDA]
  TW* Bs = reinterpret_cast<TW*>(gsm + STAGES * BM * LDA * sizeof(TA));  // [STAGES][BN * LDB]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tg = lane & 3;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN, wm = (warp / WARPS_N) * WM, wn = (warp % WARPS_N) * WN;
  const bool aligned = (K % 8 == 0) && (((uintptr_t)A | (uintptr_t)W) % 16 == 0);
  const int kTiles = (K + BK - 1) / BK;
  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; i++)
#pragma unroll
    for (int j = 0; j < NI; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;
  auto load = [&](int stage, int kt) {
    const int k0 = kt * BK;
    for (int c = tid; c < BM * (BK / CA); c += blockDim.x) {
      const int r = c / (BK / CA), kc = (c % (BK / CA)) * CA;
      loadChunk(&As[stage * BM * LDA + r * LDA + kc], A, m0 + r, M, k0 + kc, K, aligned);
    }
    for (int c = tid; c < BN * (BK / CB); c += blockDim.x) {
      const int r = c / (BK / CB), kc = (c % (BK / CB)) * CB;
      loadChunk(&Bs[stage * BN * LDB + r * LDB + kc], W, n0 + r, N, k0 + kc, K, aligned);
    }
  };
#pragma unroll
  for (int s = 0; s < STAGES - 1; s++) {
    if (s < kTiles) load(s, s);
    cpAsyncCommit();
  }
  for (int kt = 0; kt < kTiles; kt++) {
    cpAsyncWait<STAGES - 2>();
    __syncthreads();
    if (kt + STAGES - 1 < kTiles) load((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
    cpAsyncCommit();
    const TA* as = As + (kt % STAGES) * BM * LDA;
    const TW* bs = Bs + (kt % STAGES) * BN * LDB;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t a[MI][4], al[MI][4], b[NI][2];
#pragma unroll
      for (int mi = 0; mi < MI; mi++) {
        const TA* p = as + (wm + mi * 16 + g) * LDA + kk + tg * 2;
        AFrag<TA, TW>::load(p, a[mi][0], al[mi][0]);
        AFrag<TA, TW>::load(p + 8 * LDA, a[mi][1], al[mi][1]);
        AFrag<TA, TW>::load(p + 8, a[mi][2], al[mi][2]);
        AFrag<TA, TW>::load(p + 8 * LDA + 8, a[mi][3], al[mi][3]);
      }
#pragma unroll
      for (int ni = 0; ni < NI; ni++) {
        const TW* p = bs + (wn + ni * 8 + g) * LDB + kk + tg * 2;
        b[ni][0] = *reinterpret_cast<const uint32_t*>(p);
        b[ni][1] = *reinterpret_cast<const uint32_t*>(p + 8);
      }
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < NI; ni++) {
          mma16816<TW>(acc[mi][ni], a[mi], b[ni]);
          if (AFrag<TA, TW>::SPLIT) mma16816<TW>(acc[mi][ni], al[mi], b[ni]);
        }
    }
  }
  cpAsyncWait<0>();
#pragma unroll
  for (int mi = 0; mi < MI; mi++) {
#pragma unroll
    for (int ni = 0; ni < NI; ni++) {
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        const int r = m0 + wm + mi * 16 + g + (e >= 2 ? 8 : 0), c = n0 + wn + ni * 8 + tg * 2;
        if (r >= M) continue;
        if (c + 1 < N && (N % 2 == 0)) {
          const float b0 = bias ? bias[c] : 0.f, b1 = bias ? bias[c + 1] : 0.f;
          *reinterpret_cast<float2*>(C + (size_t)r * N + c) = make_float2(acc[mi][ni][e] + b0, acc[mi][ni][e + 1] + b1);
        } else {
          if (c < N) C[(size_t)r * N + c] = acc[mi][ni][e] + (bias ? bias[c] : 0.f);
          if (c + 1 < N) C[(size_t)r * N + c + 1] = acc[mi][ni][e + 1] + (bias ? bias[c + 1] : 0.f);
        }
      }
    }
  }
}

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
  __shared__ bool lastBlock;
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
  __threadfence();
  __syncthreads();
  const int slot = blockIdx.y * gridDim.x + blockIdx.x;
  if (tid == 0) lastBlock = atomicAdd(counters + slot, 1u) == (unsigned)(S - 1);
  __syncthreads();
  if (!lastBlock) return;
  __threadfence();
  for (int i = tid; i < BM * BN; i += NT) {
    const int m = m0 + i / BN, n = n0 + i % BN;
    if (m >= M || n >= N) continue;
    float v = 0.f;
    for (int s = 0; s < S; s++) v += __ldcg(part + ((size_t)s * M + m) * N + n);
    C[(size_t)m * N + n] = v + (bias ? bias[n] : 0.f);
  }
  if (tid == 0) counters[slot] = 0u;
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

// Suffix: <activation dtype>_<weight dtype>.
#define INSTANTIATE(TA, TW)                                                                                    \
  extern "C" __global__ void gemv_##TA##_##TW(const TA* x, const TW* W, const float* bias, float* y, int M,    \
                                              int N, int K) {                                                  \
    gemv<TA, TW, 8>(x, W, bias, y, M, N, K);                                                                   \
  }                                                                                                            \
  extern "C" __global__ void gemv1_##TA##_##TW(const TA* x, const TW* W, const float* bias, float* y, int M,   \
                                               int N, int K) {                                                 \
    gemv<TA, TW, 1>(x, W, bias, y, M, N, K);                                                                   \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(128)                                                            \
      gemm_##TA##_##TW(const TA* A, const TW* W, const float* bias, float* C, int M, int N, int K) {           \
    gemm<TA, TW, 64, 64, 32, 32>(A, W, bias, C, M, N, K);                                                      \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(256)                                                            \
      gemm128_##TA##_##TW(const TA* A, const TW* W, const float* bias, float* C, int M, int N, int K) {        \
    gemm<TA, TW, 128, 128, 64, 32>(A, W, bias, C, M, N, K);                                                    \
  }

INSTANTIATE(bf16, bf16)
INSTANTIATE(f16, f16)
INSTANTIATE(f32, bf16)
INSTANTIATE(f32, f16)

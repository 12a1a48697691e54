// Linear layers y[M, N] (f32) = x[M, K] · W[N, K]^T + bias[N] (f32); W row-major as Hugging Face stores it.
// Activations are the weight dtype or f32 (split into hi + lo halves for the MMA: ~f32 accuracy at twice the
// tensor-core work). gemv_*: decode-sized M (<= 8; gemv1_*: M = 1), one warp per output column, weights read once.
// gemm_* / gemm128_*: tensor cores (mma.sync m16n8k16, f32 accumulation), 64x64 or 128x128 tiles by 32 along K,
// 3-stage cp.async pipeline; any M, N, K (a K that is not a multiple of 8 takes guarded scalar loads).
// skinny<BM>[w8]_* (batched decode, M 9..256) live in gemm_skinny.cu.
#include "mma.cuh"

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

// Fused decode-step kernels (M <= 8 token rows, dense 16-bit weights; src/backends/cuda/forward_decode.ts).
// One layer is qkv, rope_kv, attn_split, attn_combine, o, gate_up, down (7 launches instead of 10):
// - RMSNorm is split between producer and consumer: whoever writes the residual stream x (dec_embed, the o / down
//   GEMV epilogue) also writes xg = x * gamma_next (f32) and per-block partial sums of squares of x; the next
//   GEMV (dec_gemv_norm / dec_gemv_silu) sums the partials in a fixed order (deterministic) and scales xg by
//   1 / rms. With 16-bit activations the normalized input is rounded to TA, as the unfused rmsnorm does.
// - The residual add is the o / down epilogue (x updated in place; no separate res buffer).
// - SiLU-and-multiply is the gate_up epilogue: a warp computes gate row j and up row F + j together.
// GEMV: blockDim.x / 32 warps per block (4 or 8; the launcher picks), one or two output rows per warp (gate_up: a
// gate and an up row), each lane streams 16-byte weight chunks, 4 or 8 in flight, past L1 (no allocation). Launched
// with programmatic dependent launch on sm_90: the first weight loads are issued before griddepcontrol.wait, so
// they overlap the previous kernel's tail; every block executes the wait before touching activations or exiting.
#include "common.cuh"
#include "ptx.cuh"


constexpr int MAX_DW = 8;  // warps per block: blockDim.x / 32, at most 8 (the launcher uses 128 or 256)

enum { IN_NORM = 0, IN_PLAIN = 1 };
enum { OUT_STORE = 0, OUT_SILU = 1, OUT_RESID = 2 };

// Rounds a normalized f32 activation to the matmul input dtype (no-op for f32).
template <typename TA> __device__ __forceinline__ float roundAct(float v) { return tof<TA>(fromf<TA>(v)); }

// 16 bytes of weights, read once: non-coherent path, no L1 allocation, so the activations (read by every warp of
// the SM) stay in L1 while the weights stream past.
__device__ __forceinline__ uint4 ldStream(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// y = in · W^T over M <= MAXM token rows. W: [R*N, K] TW (R = 2 for OUT_SILU: gate rows then up rows).
// A warp owns RPW consecutive output rows (RPW = 1 for OUT_SILU, whose warp reads gate row j and up row N + j).
// IN_NORM: in[m, k] = xg[row, k] * inv(row) (rounded to TA when TA is 16-bit), row = rowIdx ? rowIdx[m] : m,
//   xg [*, K] f32, ss [*, parts] f32 partial sums of squares of x's row, inv = 1 / sqrt(sum / K + eps). With f32
//   activations inv scales the finished dot product instead (the same value up to f32 rounding).
// IN_PLAIN: in = xin [M, K] TA.
// OUT_STORE: y [M, N] f32 = in·W^T + bias. OUT_SILU: act [M, N] TA = silu(gate + bias[j]) * (up + bias[N + j]).
// OUT_RESID: x [M, N] f32 += in·W^T + bias; xgOut [M, N] f32 = x * gNext; ssOut [M, gridDim.x] f32 = this
// block's sum of x^2 per row (over its warps * RPW outputs). grid ceil(N / (warps * RPW)), block 32 * warps.
// Weight loads roll: chunk u of the next batch is issued as soon as chunk u of this batch is consumed, so each
// lane keeps ~DU * NR 16-byte loads in flight (DU = 4 or 8) without a second register buffer.
template <typename TA, typename TW, int MAXM, int IN, int OUT, int RPW, int DU>
__device__ void decGemv(const TW* __restrict__ W, const float* __restrict__ bias, const TA* xin, const float* xg,
                        const float* ss, const int* rowIdx, float* y, TA* act, float* x, const float* gNext,
                        float* xgOut, float* ssOut, int M, int N, int K, int parts, float eps) {
  constexpr int NR = OUT == OUT_SILU ? 2 : RPW;  // weight rows per warp
  constexpr int NO = OUT == OUT_SILU ? 1 : RPW;  // output rows per warp
  static_assert(OUT != OUT_SILU || RPW == 1, "SiLU-mul pairs one gate row with one up row");
  __shared__ float sInv[MAXM];
  __shared__ float sSS[MAX_DW][MAXM];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, DW = blockDim.x >> 5;
  const int n0 = (blockIdx.x * DW + warp) * NO;  // first output row of this warp
  const TW* wr[NR];
#pragma unroll
  for (int r = 0; r < NR; r++) {
    const int o = OUT == OUT_SILU ? n0 : min(n0 + r, N - 1);  // rows past N load a valid row, discarded
    wr[r] = W + (size_t)(min(o, N - 1) + (OUT == OUT_SILU ? r * N : 0)) * K;
  }
  const bool vec = (K % 8 == 0) && ((uintptr_t)W % 16 == 0) &&
                   (IN == IN_NORM ? (uintptr_t)xg % 16 == 0 : (uintptr_t)xin % 16 == 0);
  const int chunks = vec ? K / 8 : 0;  // 16-byte weight chunks per row; lane takes chunk base + u * 32 + lane
  uint4 wv[NR][DU];
#pragma unroll
  for (int u = 0; u < DU; u++) {
    const int c = u * 32 + lane;
#pragma unroll
    for (int r = 0; r < NR; r++)
      wv[r][u] = c < chunks ? ldStream(reinterpret_cast<const uint4*>(wr[r]) + c) : make_uint4(0, 0, 0, 0);
  }
  pdlLaunchDependents();
  pdlWait();  // weights only above: activations and partial sums are read after the wait
  int rows[MAXM];
#pragma unroll
  for (int m = 0; m < MAXM; m++) rows[m] = (IN == IN_NORM && rowIdx && m < M) ? rowIdx[m] : m;
  float inv[MAXM];
#pragma unroll
  for (int m = 0; m < MAXM; m++) inv[m] = 1.f;
  if (IN == IN_NORM) {
    if (MAXM == 1) {  // every warp sums its row's partials itself: no barrier before the loop
      float s = 0.f;
      for (int i = lane; i < parts; i += 32) s += ss[(size_t)rows[0] * parts + i];
      inv[0] = rsqrtf(warpSum(s) / K + eps);
    } else {
      for (int m = warp; m < M; m += DW) {
        const float* p = ss + (size_t)rows[m] * parts;
        float s = 0.f;
        for (int i = lane; i < parts; i += 32) s += p[i];
        s = warpSum(s);
        if (lane == 0) sInv[m] = rsqrtf(s / K + eps);
      }
      __syncthreads();
#pragma unroll
      for (int m = 0; m < MAXM; m++) inv[m] = m < M ? sInv[m] : 1.f;
    }
  }
  constexpr bool SCALE_IN = IN == IN_NORM && sizeof(TA) != 4;  // 16-bit: normalize and round each input
  // 8 input values of row m at k (vector path).
  auto input8 = [&](int m, int k, float* f) {
    if (IN == IN_NORM) {
      const float4 a = *reinterpret_cast<const float4*>(xg + (size_t)rows[m] * K + k);
      const float4 b = *reinterpret_cast<const float4*>(xg + (size_t)rows[m] * K + k + 4);
      f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
      if (SCALE_IN) {
#pragma unroll
        for (int e = 0; e < 8; e++) f[e] = roundAct<TA>(f[e] * inv[m]);
      }
    } else if (sizeof(TA) == 4) {
      const float* p = reinterpret_cast<const float*>(xin) + (size_t)m * K + k;
      const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
      f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    } else {
      const uint4 v = *reinterpret_cast<const uint4*>(xin + (size_t)m * K + k);
      const TA* e = reinterpret_cast<const TA*>(&v);
#pragma unroll
      for (int i = 0; i < 8; i++) f[i] = tof(e[i]);
    }
  };
  float acc[MAXM][NR];
#pragma unroll
  for (int m = 0; m < MAXM; m++)
#pragma unroll
    for (int r = 0; r < NR; r++) acc[m][r] = 0.f;
  constexpr int STEP = 32 * DU;
  for (int base = 0; base < chunks; base += STEP) {
#pragma unroll
    for (int u = 0; u < DU; u++) {
      const int c = base + u * 32 + lane;
      if (c < chunks) {
        float f1[8];  // MAXM = 1: the input chunk, shared by the NR weight rows
        if (MAXM == 1) input8(0, c * 8, f1);
        const int cn = c + STEP;  // roll: reload this slot for the next batch as soon as it is converted
#pragma unroll
        for (int r = 0; r < NR; r++) {
          float wf[8];
          const TW* we = reinterpret_cast<const TW*>(&wv[r][u]);
#pragma unroll
          for (int e = 0; e < 8; e++) wf[e] = tof(we[e]);
          if (cn < chunks) wv[r][u] = ldStream(reinterpret_cast<const uint4*>(wr[r]) + cn);
#pragma unroll
          for (int m = 0; m < MAXM; m++) {
            if (m < M) {
              float f[8];
              if (MAXM == 1) {
#pragma unroll
                for (int e = 0; e < 8; e++) f[e] = f1[e];
              } else {
                input8(m, c * 8, f);
              }
#pragma unroll
              for (int e = 0; e < 8; e++) acc[m][r] += wf[e] * f[e];
            }
          }
        }
      }
    }
  }
  if (!vec) {  // K not a multiple of 8 or unaligned: scalar loads
    for (int k = lane; k < K; k += 32) {
#pragma unroll
      for (int m = 0; m < MAXM; m++) {
        if (m < M) {
          const float v = IN == IN_NORM ? (SCALE_IN ? roundAct<TA>(xg[(size_t)rows[m] * K + k] * inv[m])
                                                    : xg[(size_t)rows[m] * K + k])
                                        : tof(xin[(size_t)m * K + k]);
#pragma unroll
          for (int r = 0; r < NR; r++) acc[m][r] += tof(wr[r][k]) * v;
        }
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MAXM; m++)
#pragma unroll
    for (int r = 0; r < NR; r++) acc[m][r] = warpSum(acc[m][r]) * (SCALE_IN ? 1.f : inv[m]);
  if (OUT == OUT_STORE || OUT == OUT_SILU) {
    if (lane == 0) {
#pragma unroll
      for (int m = 0; m < MAXM; m++) {
        if (m >= M) break;
        if (OUT == OUT_STORE) {
#pragma unroll
          for (int r = 0; r < NO; r++)
            if (n0 + r < N) y[(size_t)m * N + n0 + r] = acc[m][r] + (bias ? bias[n0 + r] : 0.f);
        } else if (n0 < N) {
          const float g = acc[m][0] + (bias ? bias[n0] : 0.f), u = acc[m][NR - 1] + (bias ? bias[N + n0] : 0.f);
          act[(size_t)m * N + n0] = fromf<TA>(g / (1.f + expf(-g)) * u);
        }
      }
    }
  } else {
#pragma unroll
    for (int m = 0; m < MAXM; m++) {
      if (m >= M) break;
      float v2 = 0.f;
      if (lane == 0) {
#pragma unroll
        for (int r = 0; r < NO; r++) {
          const int n = n0 + r;
          if (n < N) {
            const size_t i = (size_t)m * N + n;
            const float v = x[i] + acc[m][r] + (bias ? bias[n] : 0.f);
            x[i] = v;
            xgOut[i] = v * gNext[n];
            v2 += v * v;
          }
        }
        sSS[warp][m] = v2;
      }
    }
    __syncthreads();
    if ((int)threadIdx.x < M) {
      float s = 0.f;
      for (int w = 0; w < DW; w++) s += sSS[w][threadIdx.x];
      ssOut[(size_t)threadIdx.x * gridDim.x + blockIdx.x] = s;
    }
  }
}

// x[t] = f32(table[ids[t]]); xg[t] = x[t] * g; ss[t] = sum of x[t]^2 (one partial per row). grid n, block 256.
template <typename T>
__device__ void decEmbed(const T* table, const int* ids, const float* g, float* x, float* xg, float* ss, int h,
                         int vocab) {
  pdlLaunchDependents();
  pdlWait();
  const int t = blockIdx.x;
  int id = ids[t];
  id = id < 0 ? 0 : (id >= vocab ? vocab - 1 : id);  // the host validates; clamp keeps reads in bounds
  // EU elements per thread in flight: the loads of a chunk are issued before its stores (the compiler may not move
  // a load of the table above a store to x: they could alias), in the same order of i as one element at a time.
  constexpr int EU = 8;
  const T* row = table + (size_t)id * h;
  float s = 0.f;
  for (int i0 = threadIdx.x; i0 < h; i0 += EU * blockDim.x) {
    float v[EU], gv[EU];
#pragma unroll
    for (int u = 0; u < EU; u++) {
      const int i = i0 + u * blockDim.x;
      v[u] = i < h ? tof(row[i]) : 0.f;
      gv[u] = i < h ? g[i] : 0.f;
    }
#pragma unroll
    for (int u = 0; u < EU; u++) {
      const int i = i0 + u * blockDim.x;
      if (i >= h) break;
      x[(size_t)t * h + i] = v[u];
      xg[(size_t)t * h + i] = v[u] * gv[u];
      s += v[u] * v[u];
    }
  }
  s = blockSum(s);
  if (threadIdx.x == 0) ss[t] = s;
}

// Suffix m<MAXM>[r2|u8]_<act>_<weight>: r2 two output rows per warp, u8 eight 16-byte loads in flight per lane
// (default one row, four). Register caps (__launch_bounds__ minimum blocks of 256 threads per SM): four loads of
// one row fit 48 registers (5 blocks, 40 warps per SM: gemv1's occupancy); eight (two rows, SiLU-mul's gate and
// up rows, u8) need 64 (4 blocks); M = 8 keeps 8 x 2 accumulators and is left uncapped (no spills).
#define DEC_LB(MAXM, LOADS) ((MAXM) > 1 ? 1 : (LOADS) > 4 ? 4 : 5)
#define DEC_NORM(MAXM, RPW, DU, SUF, TA, TW)                                                                       \
  extern "C" __global__ void __launch_bounds__(256, DEC_LB(MAXM, RPW * DU)) dec_gemv_norm_##SUF##_##TA##_##TW(     \
      const TW* W, const float* bias, const float* xg, const float* ss, const int* rowIdx, float* y, int M, int N,   \
      int K, int parts, float eps) {                                                                                 \
    decGemv<TA, TW, MAXM, IN_NORM, OUT_STORE, RPW, DU>(W, bias, nullptr, xg, ss, rowIdx, y, nullptr, nullptr,       \
                                                       nullptr, nullptr, nullptr, M, N, K, parts, eps);              \
  }
#define DEC_RES(MAXM, RPW, DU, SUF, TA, TW)                                                                        \
  extern "C" __global__ void __launch_bounds__(256, DEC_LB(MAXM, RPW * DU)) dec_gemv_res_##SUF##_##TA##_##TW(      \
      const TW* W, const float* bias, const TA* xin, float* x, const float* gNext, float* xg, float* ss, int M,      \
      int N, int K) {                                                                                                \
    decGemv<TA, TW, MAXM, IN_PLAIN, OUT_RESID, RPW, DU>(W, bias, xin, nullptr, nullptr, nullptr, nullptr, nullptr,  \
                                                        x, gNext, xg, ss, M, N, K, 0, 0.f);                          \
  }
#define DEC_GEMV(MAXM, TA, TW)                                                                                       \
  DEC_NORM(MAXM, 1, 4, m##MAXM, TA, TW)                                                                              \
  DEC_RES(MAXM, 1, 4, m##MAXM, TA, TW)                                                                               \
  extern "C" __global__ void __launch_bounds__(256, DEC_LB(MAXM, 8)) dec_gemv_silu_m##MAXM##_##TA##_##TW(            \
      const TW* W, const float* bias, const float* xg, const float* ss, TA* act, int M, int N, int K, int parts,     \
      float eps) {                                                                                                   \
    decGemv<TA, TW, MAXM, IN_NORM, OUT_SILU, 1, 4>(W, bias, nullptr, xg, ss, nullptr, nullptr, act, nullptr,        \
                                                   nullptr, nullptr, nullptr, M, N, K, parts, eps);                  \
  }

#define DEC_ALL(TA, TW)                                                                                              \
  DEC_GEMV(1, TA, TW) DEC_GEMV(8, TA, TW) DEC_NORM(1, 2, 4, m1r2, TA, TW) DEC_RES(1, 2, 4, m1r2, TA, TW)             \
      DEC_NORM(1, 1, 8, m1u8, TA, TW) DEC_RES(1, 1, 8, m1u8, TA, TW)
DEC_ALL(bf16, bf16)
DEC_ALL(f16, f16)
DEC_ALL(f32, bf16)
DEC_ALL(f32, f16)

#define DEC_EMBED(T)                                                                                             \
  extern "C" __global__ void dec_embed_##T(const T* table, const int* ids, const float* g, float* x, float* xg, \
                                           float* ss, int h, int vocab) {                                       \
    decEmbed<T>(table, ids, g, x, xg, ss, h, vocab);                                                            \
  }
DEC_EMBED(bf16)
DEC_EMBED(f16)

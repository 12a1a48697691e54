// W4A16 / W8A16 prefill linear layers (decode, M <= 16: qgemv.cu): y[M, N] (f32) = x[M, K] (f16) · W[N, K]^T +
// bias[N] (f32), W group-quantized in the "mma-m16n8k16" layout of src/quant/pack.ts (MmaPacked):
//   qweight u32: tiles of 16 (k) x T (n), T = 64 (int4) / 32 (int8), n-tile major: tile (nt, kt) is the 128 words
//     at (nt * KT + kt) * 128; lane l owns words [4l, 4l + 4) = one 128-bit load, already the m16n8k16 B fragments.
//   scaleBias u32 [nG, Np]: half2 (scale lo, bias hi) per (group, column); w = hfma2(q, s, b).
//   perm i32 [K] or null: packed channel k reads x[perm[k]] (GPTQ act-order), applied while x is staged in shared
//     memory.
// int4 -> f16 by lop3 (0x6400 exponent trick), int8 by __byte_perm; one hfma2 applies (scale, bias); mma.sync
// m16n8k16 (f16 inputs, f32 accumulation).
//
// qgemm_w{4,8}: prefill (any M). Block tile 64 (m) x 2 n-tiles, 4 warps of 32 x T; x tiles of 64 x 32 double
//   buffered in shared memory (register-staged), weight fragments straight from global memory, one stage ahead.
// qfill_w{4,8}: synthetic weights on the GPU: random qweight words, plausible f16 (scale, bias) pairs.
#include "qgemv.cuh"  // qvX8: the activations staging shared with the decode GEMV


// B fragments of the 8-column subtiles in one weight word, dequantized with the columns' (scale, bias) words.
// int4: word -> subtiles 2j (sb[0]) and 2j+1 (sb[1]); b[0..1] and b[2..3]. int8: word -> one subtile; b[0..1].
template <int BITS> __device__ __forceinline__ void dequant(uint32_t w, const uint32_t* sb, uint32_t* b);
template <> __device__ __forceinline__ void dequant<4>(uint32_t w, const uint32_t* sb, uint32_t* b) {
  const half2 k1024 = u2h(0x64006400u), k16th = u2h(0x2c002c00u), km64 = u2h(0xd400d400u);
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const uint32_t v = h ? w >> 8 : w;
    const half2 s = u2h(__byte_perm(sb[h], 0, 0x1010)), z = u2h(__byte_perm(sb[h], 0, 0x3232));
    const half2 lo = __hsub2(u2h(lop3AndOr(v, 0x000f000fu, 0x64006400u)), k1024);        // (q0, q1)
    const half2 hi = __hfma2(u2h(lop3AndOr(v, 0x00f000f0u, 0x64006400u)), k16th, km64);  // (q2, q3)
    b[2 * h] = h2u(__hfma2(lo, s, z));
    b[2 * h + 1] = h2u(__hfma2(hi, s, z));
  }
}
template <> __device__ __forceinline__ void dequant<8>(uint32_t w, const uint32_t* sb, uint32_t* b) {
  const half2 k1024 = u2h(0x64006400u);
  const half2 s = u2h(__byte_perm(sb[0], 0, 0x1010)), z = u2h(__byte_perm(sb[0], 0, 0x3232));
  b[0] = h2u(__hfma2(__hsub2(u2h(__byte_perm(w, 0x64646464u, 0x4140)), k1024), s, z));
  b[1] = h2u(__hfma2(__hsub2(u2h(__byte_perm(w, 0x64646464u, 0x4342)), k1024), s, z));
}

template <int BITS> struct QT {
  static constexpr int T = BITS == 4 ? 64 : 32;  // columns per n-tile
  static constexpr int NSUB = T / 8;             // 8-column mma subtiles per n-tile
  static constexpr int SBW = BITS == 4 ? 8 : 4;  // (scale, bias) words a lane needs per group
};

// (scale, bias) words of group g for the columns lane `lane` covers in n-tile nt (int4: 16j + c + 8h, int8: 8j + c).
template <int BITS>
__device__ __forceinline__ void loadScales(const uint32_t* scaleBias, int g, int Np, int nt, int lane, uint32_t* sb) {
  const uint32_t* row = scaleBias + (size_t)g * Np + nt * QT<BITS>::T + (lane >> 2);
#pragma unroll
  for (int i = 0; i < QT<BITS>::SBW; i++) sb[i] = __ldg(row + (BITS == 4 ? 16 * (i >> 1) + 8 * (i & 1) : 8 * i));
}

// (scale, bias) words of the current group, with the next group's already in flight: a warp switching groups finds
// them loaded one group ahead instead of stalling on a fresh global load.
template <int BITS> struct GroupScales {
  uint32_t cur[QT<BITS>::SBW], nxt[QT<BITS>::SBW];
  int g = -1;
  __device__ __forceinline__ void prefetch(const uint32_t* scaleBias, int gn, int nG, int Np, int nt, int lane) {
    if (gn < nG) loadScales<BITS>(scaleBias, gn, Np, nt, lane, nxt);
  }
  // Makes group gk current (gk >= g: groups are visited in increasing order).
  __device__ __forceinline__ void at(const uint32_t* scaleBias, int gk, int nG, int Np, int nt, int lane) {
    if (gk == g) return;
    if (gk == g + 1 && g >= 0) {
#pragma unroll
      for (int i = 0; i < QT<BITS>::SBW; i++) cur[i] = nxt[i];
    } else {
      loadScales<BITS>(scaleBias, gk, Np, nt, lane, cur);
    }
    g = gk;
    prefetch(scaleBias, gk + 1, nG, Np, nt, lane);
  }
};

__device__ __forceinline__ void ldmatrix4(uint32_t* a, const void* p) {
  const uint32_t s = (uint32_t)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(s));
}
// ---- prefill --------------------------------------------------------------------------------------------------

#define QG_BM 64
#define QG_BK 32
#define QG_LD (QG_BK + 8)

template <int BITS>
__device__ void qgemm(const f16* x, const int* perm, const uint32_t* qweight, const uint32_t* scaleBias,
                      const float* bias, float* y, int M, int N, int K, int Np, int KT, int G) {
  constexpr int T = QT<BITS>::T, NSUB = QT<BITS>::NSUB;
  __shared__ __align__(16) f16 as[2][QG_BM * QG_LD];  // [2 stages][64 rows, 32 k (+8 pad)] f16
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wm = warp & 1, wn = warp >> 1;
  const int nTiles = Np / T, nt = blockIdx.x * 2 + wn, m0 = blockIdx.y * QG_BM;
  const bool vec = !perm && K % 8 == 0 && ((uintptr_t)x & 15) == 0;
  const bool active = nt < nTiles;
  const int stages = (KT + 1) / 2;
  // Staging: 64 rows x 4 chunks of 8 = 256 chunks, two per thread.
  uint4 xr[2];
  auto fetchX = [&](int st) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int c = threadIdx.x + i * 128, r = c >> 2, kc = (c & 3) * 8;
      xr[i] = m0 + r < M ? qvX8(x, perm, K, m0 + r, st * QG_BK + kc, vec) : make_uint4(0, 0, 0, 0);
    }
  };
  auto storeX = [&](int buf) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int c = threadIdx.x + i * 128, r = c >> 2, kc = (c & 3) * 8;
      *reinterpret_cast<uint4*>(&as[buf][r * QG_LD + kc]) = xr[i];
    }
  };
  const uint4* wp = reinterpret_cast<const uint4*>(qweight) + (size_t)(active ? nt : 0) * KT * 32 + lane;
  uint4 wcur[2], wnxt[2];
  auto fetchW = [&](int st, uint4* w) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int kt = 2 * st + i;
      w[i] = active && kt < KT ? ldStreamOrdered(wp + (size_t)kt * 32) : make_uint4(0, 0, 0, 0);
    }
  };
  float acc[2][NSUB][4];
#pragma unroll
  for (int f = 0; f < 2; f++)
#pragma unroll
    for (int s = 0; s < NSUB; s++) acc[f][s][0] = acc[f][s][1] = acc[f][s][2] = acc[f][s][3] = 0.f;
  GroupScales<BITS> gs;
  const int nG = (K + G - 1) / G;
  fetchX(0);
  fetchW(0, wcur);
  storeX(0);
  __syncthreads();
  for (int st = 0; st < stages; st++) {
    const int buf = st & 1;
    if (st + 1 < stages) {
      fetchX(st + 1);
      fetchW(st + 1, wnxt);
    }
    if (active) {
#pragma unroll
      for (int i = 0; i < 2; i++) {
        const int kt = 2 * st + i;
        if (kt < KT) {
          gs.at(scaleBias, (kt * 16) / G, nG, Np, nt, lane);
          const uint32_t* sb = gs.cur;
          uint32_t a[2][4];
#pragma unroll
          for (int f = 0; f < 2; f++)
            ldmatrix4(a[f], &as[buf][(wm * 32 + f * 16 + (lane & 15)) * QG_LD + i * 16 + (lane >> 4) * 8]);
          const uint32_t words[4] = {wcur[i].x, wcur[i].y, wcur[i].z, wcur[i].w};
#pragma unroll
          for (int j = 0; j < 4; j++) {
            uint32_t b[4];
            if (BITS == 4) {
              dequant<4>(words[j], sb + 2 * j, b);
#pragma unroll
              for (int f = 0; f < 2; f++) {
                mmaF16(acc[f][2 * j], a[f], b[0], b[1]);
                mmaF16(acc[f][2 * j + 1], a[f], b[2], b[3]);
              }
            } else {
              dequant<8>(words[j], sb + j, b);
#pragma unroll
              for (int f = 0; f < 2; f++) mmaF16(acc[f][j], a[f], b[0], b[1]);
            }
          }
        }
      }
    }
    if (st + 1 < stages) {
      storeX(buf ^ 1);
      wcur[0] = wnxt[0];
      wcur[1] = wnxt[1];
    }
    __syncthreads();
  }
  if (!active) return;
  const int r0 = lane >> 2, cq = 2 * (lane & 3);
#pragma unroll
  for (int f = 0; f < 2; f++) {
#pragma unroll
    for (int s = 0; s < NSUB; s++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int m = m0 + wm * 32 + f * 16 + r0 + (e >> 1) * 8, n = nt * T + 8 * s + cq + (e & 1);
        if (m < M && n < N) y[(size_t)m * N + n] = acc[f][s][e] + (bias ? bias[n] : 0.f);
      }
    }
  }
}

// ---- synthetic fill -------------------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t qhash(uint32_t seed, uint32_t i) {
  uint32_t x = i * 0x9e3779b1u ^ seed * 0x85ebca6bu;
  x = (x ^ (x >> 16)) * 0x7feb352du;
  x = (x ^ (x >> 15)) * 0x846ca68bu;
  return x ^ (x >> 16);
}

// qweight [words] u32 random; scaleBias [nG, Np]: columns < N get s = amp * 2 / qmax * (0.75 .. 1.25) (so weights
// span about [-amp, amp]), z = qmax / 2 + 1, b = f16(-z * s); padded columns (0, 0).
template <int BITS>
__device__ void qfill(uint32_t* qweight, uint32_t* scaleBias, int words, int nG, int N, int Np, unsigned seed,
                      float amp) {
  const float qmax = (float)((1 << BITS) - 1), z = (float)((1 << (BITS - 1)) + 1);
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < words; i += stride)
    qweight[i] = qhash(seed, (uint32_t)i);
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)nG * Np; i += stride) {
    const int n = (int)(i % Np);
    uint32_t out = 0u;
    if (n < N) {
      const float u = (qhash(seed ^ 0x5bd1e995u, (uint32_t)i) >> 8) * (1.f / 16777216.f);
      const f16 s = __float2half_rn(amp * 2.f / qmax * (0.75f + 0.5f * u));
      const f16 b = __float2half_rn(-z * __half2float(s));
      out = (uint32_t)__half_as_ushort(s) | ((uint32_t)__half_as_ushort(b) << 16);
    }
    scaleBias[i] = out;
  }
}

#define QARGS                                                                                                   \
  const f16 *x, const int *perm, const uint32_t *qweight, const uint32_t *scaleBias, const float *bias, float *y
#define INSTANTIATE_Q(B)                                                                                        \
  extern "C" __global__ void __launch_bounds__(128) qgemm_w##B(QARGS, int M, int N, int K, int Np, int KT,      \
                                                                int G) {                                         \
    qgemm<B>(x, perm, qweight, scaleBias, bias, y, M, N, K, Np, KT, G);                                         \
  }                                                                                                             \
  extern "C" __global__ void qfill_w##B(uint32_t* qweight, uint32_t* scaleBias, int words, int nG, int N,  \
                                        int Np, unsigned seed, float amp) {                                      \
    qfill<B>(qweight, scaleBias, words, nG, N, Np, seed, amp);                                                  \
  }

INSTANTIATE_Q(4)
INSTANTIATE_Q(8)

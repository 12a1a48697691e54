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
// qgemms_w{4,8}_*: M > 16 (batched decode and prefill), skinny-M split-K, below.
// qgemm_w{4,8}: the earlier kernel for any M (kept as the baseline of bench/cuda_quant.ts). Block tile 64 (m) x 2 n-tiles, 4 warps of 32 x T; x tiles of 64 x 32 double
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

// FP8 E4M3 (QB_FP8, qgemv.cuh): the int8 word order; e4m3 * 2^-8 in f16, then (256 s, 0).
template <> __device__ __forceinline__ void dequant<QB_FP8>(uint32_t w, const uint32_t* sb, uint32_t* b) {
  const half2 s = u2h(__byte_perm(sb[0], 0, 0x1010)), z = u2h(__byte_perm(sb[0], 0, 0x3232));
  b[0] = h2u(__hfma2(u2h(fp8x2<0x1404>(w)), s, z));
  b[1] = h2u(__hfma2(u2h(fp8x2<0x3424>(w)), s, z));
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
// ---- skinny-M split-K GEMM (batched decode, M 17..256; also any M) --------------------------------------------

// qgemms_w{B}_m{BM}c{CW}k{KS}s{STAGES}: block = 8 warps on a BM (rows) x BN = 32 * CW (columns) output tile and a
// K-range of `tps` pipeline stages of KS k-tiles (16 channels each). Each of the STAGES cp.async stages holds, in
// shared memory: x [BM, 16 KS (+8 pad)] f16 (packed channel order; act-order or unaligned x is gathered through
// registers instead, one stage ahead), the block's weight tiles [BN / T n-tiles][KS k-tiles][128 words] u32 as
// packed (a warp reads its B fragments with one 64 / 128-bit load), and the (scale, bias) rows [KS][BN] u32 of the
// stage's k-tiles (a row repeated within the stage is staged once: slot = first k-tile of its group in the stage).
// Warp w takes column slice w % CW (32 columns = 4 mma subtiles: half an int4 n-tile, one int8 n-tile) and k-slice
// w / CW (k-tiles ks, ks + KW, ... of each stage; KW = 8 / CW), dequantizes its weights once per k-tile in
// registers (dequant<BITS>) and feeds BM / 16 m16n8k16 MMAs per subtile. k-slices are summed through shared memory in
// slice order after the loop.
// grid (mTiles, ceil(Np / BN), S): the m-tiles of one weight tile are adjacent block indices (they run together, so
// repeated weight reads hit L2). Split z covers stages [z * tps, +tps). S > 1: each block writes its tile to part
// [S, M, N] f32; the last block of a tile to arrive (counters [mTiles * nBlocks] u32, zero between launches; that
// block resets its slot) sums the S partials in split order and adds the bias: results do not depend on arrival order.

__device__ __forceinline__ void qsCp16(uint32_t smem, const void* g, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem), "l"(g), "r"(ok ? 16 : 0) : "memory");
}

template <int BITS, int BM, int CW, int KS> struct QS {
  static constexpr int T = QT<BITS>::T, BN = 32 * CW, NTB = BN / T, KW = 8 / CW, MI = BM / 16, LD = KS * 16 + 8;
  static constexpr int XB = BM * LD * 2, WB = NTB * KS * 512, SB = KS * BN * 4, STAGE = XB + WB + SB;
  static constexpr int XCH = BM * 2 * KS / 256;  // 16-byte x chunks per thread and stage
  static_assert(BM * 2 * KS % 256 == 0 && NTB >= 1, "tile");
};

template <int BITS, int BM, int CW, int QS_KS, int QS_STAGES>
__device__ void qgemms(const f16* x, const int* perm, const uint32_t* qweight, const uint32_t* scaleBias,
                       const float* bias, float* y, float* part, unsigned* counters, int M, int N, int K, int Np,
                       int KT, int gt, int tps) {
  using C = QS<BITS, BM, CW, QS_KS>;
  constexpr int T = C::T, BN = C::BN, KW = C::KW, MI = C::MI, QS_LD = C::LD;
  extern __shared__ __align__(16) unsigned char qsm[];  // [QS_STAGES][x | weights | scales]; after: [KW-1][BM, BN] f32
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, cs = warp % CW, ks = warp / CW;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN, S = gridDim.z, split = blockIdx.z;
  const int nst = (KT + QS_KS - 1) / QS_KS, st0 = split * tps, ns = min(nst, st0 + tps) - st0;
  const int nTiles = Np / T;
  const bool vec = !perm && K % 8 == 0 && ((uintptr_t)x & 15) == 0;
  const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(qsm);
  auto xs = [&](int s) { return reinterpret_cast<f16*>(qsm + s * C::STAGE); };
  auto ws = [&](int s) { return reinterpret_cast<const uint32_t*>(qsm + s * C::STAGE + C::XB); };
  auto ss = [&](int s) { return reinterpret_cast<const uint32_t*>(qsm + s * C::STAGE + C::XB + C::WB); };
  // Weights and scale rows of stage `st` (k-tiles from kt0) into ring slot s.
  auto loadWS = [&](int s, int st) {
    const int kt0 = st * QS_KS, sOff = s * C::STAGE;
    for (int c = tid; c < C::NTB * QS_KS * 32; c += 256) {
      const int j = c / (QS_KS * 32), i = (c / 32) % QS_KS, l = c % 32, nt = n0 / T + j, kt = kt0 + i;
      if (nt < nTiles && kt < KT)
        qsCp16(sbase + sOff + C::XB + c * 16,
               reinterpret_cast<const uint4*>(qweight) + ((size_t)nt * KT + kt) * 32 + l, true);
    }
    for (int c = tid; c < QS_KS * BN / 4; c += 256) {
      const int i = c / (BN / 4), col = (c % (BN / 4)) * 4, kt = kt0 + i, g = kt / gt;
      if (kt < KT && (i == 0 || (kt - 1) / gt != g) && n0 + col < Np)
        qsCp16(sbase + sOff + C::XB + C::WB + (i * BN + col) * 4, scaleBias + (size_t)g * Np + n0 + col, true);
    }
  };
  auto loadX = [&](int s, int st) {  // vec: cp.async, zero-filled outside [M, K]
#pragma unroll
    for (int j = 0; j < C::XCH; j++) {
      const int c = tid + j * 256, r = c / (2 * QS_KS), kc = (c % (2 * QS_KS)) * 8, k = st * QS_KS * 16 + kc;
      const bool ok = m0 + r < M && k < K;
      const void* src = ok ? x + (size_t)(m0 + r) * K + k : x;
      qsCp16(sbase + s * C::STAGE + (r * QS_LD + kc) * 2, src, ok);
    }
  };
  uint4 xr[C::XCH];  // !vec: the next stage's x, gathered into registers before this stage's MMAs
  auto fetchX = [&](int st) {
#pragma unroll
    for (int j = 0; j < C::XCH; j++) {
      const int c = tid + j * 256, r = c / (2 * QS_KS), k = st * QS_KS * 16 + (c % (2 * QS_KS)) * 8;
      xr[j] = m0 + r < M ? qvX8(x, perm, K, m0 + r, k, false) : make_uint4(0, 0, 0, 0);
    }
  };
  auto storeX = [&](int s) {
#pragma unroll
    for (int j = 0; j < C::XCH; j++) {
      const int c = tid + j * 256;
      *reinterpret_cast<uint4*>(xs(s) + (c / (2 * QS_KS)) * QS_LD + (c % (2 * QS_KS)) * 8) = xr[j];
    }
  };
  float acc[MI][4][4];
#pragma unroll
  for (int i = 0; i < MI; i++)
#pragma unroll
    for (int s = 0; s < 4; s++) acc[i][s][0] = acc[i][s][1] = acc[i][s][2] = acc[i][s][3] = 0.f;
  const bool active = n0 + 32 * cs < N;
  int gs = (st0 * QS_KS + ks) / gt * gt;  // first k-tile of the group of the warp's current k-tile
#pragma unroll
  for (int s = 0; s < QS_STAGES - 1; s++) {
    if (s < ns) {
      loadWS(s, st0 + s);
      if (vec) loadX(s, st0 + s);
      else {
        fetchX(st0 + s);
        storeX(s);
      }
    }
    qvCommit();
  }
  for (int i = 0; i < ns; i++) {
    qvWaitGroups<QS_STAGES - 2>();
    __syncthreads();
    const int nxt = i + QS_STAGES - 1, slot = i % QS_STAGES;
    if (nxt < ns) {
      loadWS(nxt % QS_STAGES, st0 + nxt);
      if (vec) loadX(nxt % QS_STAGES, st0 + nxt);
      else fetchX(st0 + nxt);
    }
    qvCommit();
    if (active) {
      // The warp's k-tiles of this stage, unrolled: A fragments first (their latency hides behind the dequant),
      // then the weights and scales, then BM / 16 x 4 independent MMAs.
      const int ktS = (st0 + i) * QS_KS;
      const f16* xsl = xs(slot);
      const uint32_t* wsl = ws(slot);
#pragma unroll
      for (int tt = 0; tt < QS_KS / KW; tt++) {
        const int t = ks + tt * KW, kt = ktS + t;
        if (kt < KT) {
          uint32_t a[MI][4];
#pragma unroll
          for (int mi = 0; mi < MI; mi++)
            ldmatrix4(a[mi], xsl + (mi * 16 + (lane & 15)) * QS_LD + t * 16 + (lane >> 4) * 8);
          while (kt >= gs + gt) gs += gt;
          const uint32_t* srow = ss(slot) + max(0, gs - ktS) * BN + 32 * cs + (lane >> 2);
          const uint32_t sb[4] = {srow[0], srow[8], srow[16], srow[24]};
          uint32_t b[4][2];
          if (BITS == 4) {
            const uint2 w = *reinterpret_cast<const uint2*>(wsl + ((cs >> 1) * QS_KS + t) * 128 + lane * 4 + 2 * (cs & 1));
            dequant<4>(w.x, sb, &b[0][0]);
            dequant<4>(w.y, sb + 2, &b[2][0]);
          } else {
            const uint4 w = *reinterpret_cast<const uint4*>(wsl + (cs * QS_KS + t) * 128 + lane * 4);
            dequant<BITS>(w.x, sb, b[0]);
            dequant<BITS>(w.y, sb + 1, b[1]);
            dequant<BITS>(w.z, sb + 2, b[2]);
            dequant<BITS>(w.w, sb + 3, b[3]);
          }
#pragma unroll
          for (int mi = 0; mi < MI; mi++)
#pragma unroll
            for (int s = 0; s < 4; s++) mmaF16(acc[mi][s], a[mi], b[s][0], b[s][1]);
        }
      }
    }
    if (!vec && nxt < ns) storeX(nxt % QS_STAGES);
  }
  qvWaitGroups<0>();
  __syncthreads();
  // acc[mi][s][e]: row mi * 16 + lane / 4 (+8 for e >= 2), column 32 cs + 8 s + 2 (lane % 4) + (e & 1) of the tile.
  float* red = reinterpret_cast<float*>(qsm);
  const int r0 = lane >> 2, cq = 2 * (lane & 3);
  auto at = [&](int mi, int s, int e) { return (mi * 16 + r0 + (e >> 1) * 8) * BN + 32 * cs + 8 * s + cq + (e & 1); };
  if (KW > 1 && ks > 0) {
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int s = 0; s < 4; s++)
#pragma unroll
        for (int e = 0; e < 4; e++) red[(ks - 1) * BM * BN + at(mi, s, e)] = acc[mi][s][e];
  }
  if (KW > 1) __syncthreads();
  if (ks == 0 && active) {
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int s = 0; s < 4; s++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          float v = acc[mi][s][e];
          for (int r = 1; r < KW; r++) v += red[(r - 1) * BM * BN + at(mi, s, e)];
          const int m = m0 + mi * 16 + r0 + (e >> 1) * 8, n = n0 + 32 * cs + 8 * s + cq + (e & 1);
          if (m < M && n < N) {
            if (S == 1) y[(size_t)m * N + n] = v + (bias ? bias[n] : 0.f);
            else part[((size_t)split * M + m) * N + n] = v;
          }
        }
  }
  if (S == 1) return;
  unsigned* slot = counters + blockIdx.y * gridDim.x + blockIdx.x;
  if (splitKLast(slot, S)) splitKSumTile<BM, BN, 256>(part, y, bias, slot, M, N, m0, n0, S);
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
              dequant<BITS>(words[j], sb + j, b);
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
// fp8 (QB_FP8): codes with exponent field <= 7 (|e4m3| < 2, no NaN), s = amp / 2 * (0.75 .. 1.25) stored as 256 s, b = 0.
template <int BITS>
__device__ void qfill(uint32_t* qweight, uint32_t* scaleBias, int words, int nG, int N, int Np, unsigned seed,
                      float amp) {
  constexpr bool F8 = BITS == QB_FP8;
  const float qmax = (float)((1 << (F8 ? 8 : BITS)) - 1), z = F8 ? 0.f : (float)((1 << (BITS - 1)) + 1);
  const float s0 = F8 ? 128.f * amp : amp * 2.f / qmax;  // fp8: 256 * amp / 2
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < words; i += stride)
    qweight[i] = qhash(seed, (uint32_t)i) & (F8 ? 0xbfbfbfbfu : 0xffffffffu);
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)nG * Np; i += stride) {
    const int n = (int)(i % Np);
    uint32_t out = 0u;
    if (n < N) {
      const float u = (qhash(seed ^ 0x5bd1e995u, (uint32_t)i) >> 8) * (1.f / 16777216.f);
      const f16 s = __float2half_rn(s0 * (0.75f + 0.5f * u));
      const f16 b = F8 ? __ushort_as_half((unsigned short)0) : __float2half_rn(-z * __half2float(s));
      out = (uint32_t)__half_as_ushort(s) | ((uint32_t)__half_as_ushort(b) << 16);
    }
    scaleBias[i] = out;
  }
}

#define QARGS                                                                                                   \
  const f16 *x, const int *perm, const uint32_t *qweight, const uint32_t *scaleBias, const float *bias, float *y
#define INSTANTIATE_Q(NAME, B)                                                                                  \
  extern "C" __global__ void __launch_bounds__(128) qgemm_##NAME(QARGS, int M, int N, int K, int Np, int KT,     \
                                                                 int G) {                                        \
    qgemm<B>(x, perm, qweight, scaleBias, bias, y, M, N, K, Np, KT, G);                                         \
  }                                                                                                             \
  extern "C" __global__ void qfill_##NAME(uint32_t* qweight, uint32_t* scaleBias, int words, int nG, int N,     \
                                          int Np, unsigned seed, float amp) {                                    \
    qfill<B>(qweight, scaleBias, words, nG, N, Np, seed, amp);                                                  \
  }

INSTANTIATE_Q(w4, 4)
INSTANTIATE_Q(w8, 8)
INSTANTIATE_Q(f8, QB_FP8)
// qgemms_{w4,w8,f8}_m{BM}c{CW}k{KS}s{STAGES}
#define QS_INST(NAME, B, BM, CW, KS, ST)                                                                        \
  extern "C" __global__ void __launch_bounds__(256, 2) qgemms_##NAME##_m##BM##c##CW##k##KS##s##ST(              \
      QARGS, float* part, unsigned* counters, int M, int N, int K, int Np, int KT, int gt, int tps) {           \
    qgemms<B, BM, CW, KS, ST>(x, perm, qweight, scaleBias, bias, y, part, counters, M, N, K, Np, KT, gt, tps);  \
  }
#define QS_ALL(NAME, B)                                                                                         \
  QS_INST(NAME, B, 32, 4, 4, 4)                                                                                 \
  QS_INST(NAME, B, 64, 4, 4, 4)                                                                                 \
  QS_INST(NAME, B, 32, 4, 8, 4)                                                                                 \
  QS_INST(NAME, B, 64, 4, 8, 3)
QS_ALL(w4, 4)
QS_ALL(w8, 8)
QS_ALL(f8, QB_FP8)
QS_INST(w4, 4, 64, 8, 4, 4)  // 256 columns: int4 only

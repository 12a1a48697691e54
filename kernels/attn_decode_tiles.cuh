// Key tiles of the split-K decode attention (attn_decode.cu): where a split's keys live (DecCtx), the tile loads
// (registers for f16 / bf16, cp.async stages for int8 / int4) and the per-tile math of the quantized caches.
// Included by attn_decode.cu only.
#pragma once
#include "attn_decode_ops.cuh"

// acc [NT][MT][4] (O^T accumulators, column e & 1 of head tile nt) *= corr [NT][2]: the online softmax's rescale.
template <int NT, int MT> __device__ __forceinline__ void rescaleAcc(float (&acc)[NT][MT][4], const float (&corr)[NT][2]) {
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[nt][mt][e] *= corr[nt][e & 1];
}

// Where the keys of one split live: block-table entries from tb0 on (shared memory or global), and the mapping
// key position -> cache row.
struct DecCtx {
  const int* tab;  // tab[b - tb0] = physical block of the sequence's block b
  int tb0, j1, nkv, kvh, bs;
  float invBs;
  bool whole;  // every tile of 16 keys lies in one cache block (bs % 16 == 0, tiles start at multiples of 16)
};
// Cache row of key j (j >= the split's first key), or -1 when j >= j1 or its block is missing. b = j / bs through
// a float reciprocal, corrected to the exact quotient.
__device__ __forceinline__ int decRow(const DecCtx& c, int j) {
  if (j >= c.j1) return -1;
  int b = __float2int_rz(((float)j + 0.5f) * c.invBs);
  b += (j - b * c.bs >= c.bs) - (j < b * c.bs);
  const int blk = c.tab[b - c.tb0];
  return blk < 0 ? -1 : (blk * c.nkv + c.kvh) * c.bs + (j - b * c.bs);
}

// One tile of 16 keys in flight: K chunks of key rows g, g+8 (lane t: chunks 4 ls + t), V segments of keys 2t, 2t+1,
// 2t+8, 2t+9 (lane g: values [g VPL, (g+1) VPL)), (scale, zero) of K and V of key rows g, g+8 (int8 / int4).
template <typename KT, int D> struct DecStage {
  using S = DecShape<KT, D>;
  uint4 k[2][S::LS];
  uint32_t v[4][S::VW];
  uint32_t ksz[2], vsz[2];
  int krow[2];
  int base;  // cache row of the tile's first key when ctx.whole (-1: its block is missing or no tile)
};

template <typename KT, int D>
__device__ __forceinline__ void decIssueK(DecStage<KT, D>& st, const DecCtx& c, const uint8_t* kCache,
                                          const __half2* kSz, int jt, bool on, int g, int t) {
  using S = DecShape<KT, D>;
  st.base = c.whole && on ? decRow(c, jt) : -1;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int j = jt + g + 8 * r;
    const int row = c.whole ? (st.base >= 0 && j < c.j1 ? st.base + g + 8 * r : -1) : on ? decRow(c, j) : -1;
    st.krow[r] = row;
    const uint8_t* base = kCache + (size_t)(row < 0 ? 0 : row) * S::RB;
#pragma unroll
    for (int ls = 0; ls < S::LS; ls++) {
      const int ch = 4 * ls + t;
      st.k[r][ls] = row >= 0 && ch < S::CH ? __ldg(reinterpret_cast<const uint4*>(base + 16 * ch))
                                           : make_uint4(0, 0, 0, 0);
    }
    if constexpr (S::QUANT) st.ksz[r] = row >= 0 ? __ldg(reinterpret_cast<const unsigned*>(kSz + row)) : 0u;
  }
}

template <typename KT, int D>
__device__ __forceinline__ void decIssueV(DecStage<KT, D>& st, const DecCtx& c, const uint8_t* vCache,
                                          const __half2* vSz, int jt, bool on, int g, int t) {
  using S = DecShape<KT, D>;
  const bool segOk = g * S::VPL < D;
#pragma unroll
  for (int kk = 0; kk < 4; kk++) {
    const int r = 2 * t + (kk & 1) + 8 * (kk >> 1);
    const int row = c.whole ? (st.base >= 0 && jt + r < c.j1 ? st.base + r : -1) : on ? decRow(c, jt + r) : -1;
    loadLane<S::VB, S::VW>(vCache + (size_t)(row < 0 ? 0 : row) * S::RB + g * S::VB, row >= 0 && segOk, st.v[kk]);
  }
  if constexpr (S::QUANT) {
#pragma unroll
    for (int r = 0; r < 2; r++)
      st.vsz[r] = st.krow[r] >= 0 ? __ldg(reinterpret_cast<const unsigned*>(vSz + st.krow[r])) : 0u;
  }
}

// ---- int8 / int4: cp.async stages in shared memory (no registers hold tiles in flight) ----
__device__ __forceinline__ uint32_t smemAddr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
// 16 (4) bytes global -> shared, asynchronously; zeros where !ok.
__device__ __forceinline__ void cpAsync16(void* dst, const void* src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smemAddr(dst)), "l"(src), "r"(ok ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cpAsync4(void* dst, const void* src, bool ok) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smemAddr(dst)), "l"(src), "r"(ok ? 4 : 0)
               : "memory");
}
__device__ __forceinline__ void cpCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cpWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// The warp copies the tile of 16 keys from jt into stage stg (DecShape::SB bytes; the general path, decIssueF is the
// common one): lane r (and r + 16) resolves key jt + r's cache row; K / V rows go in 16-byte chunks (missing rows as
// zeros), scales in 4-byte pieces. One commit group. Returns the mask of present rows (bit r: key jt + r).
template <typename KT, int D>
__device__ __forceinline__ unsigned decIssueS(uint8_t* stg, const DecCtx& c, const uint8_t* kCache,
                                               const uint8_t* vCache, const __half2* kSz, const __half2* vSz, int jt,
                                               int lane) {
  using S = DecShape<KT, D>;
  const int r = lane & 15;
  int row, base = -1;
  if (c.whole) {
    base = decRow(c, jt);
    row = base >= 0 && jt + r < c.j1 ? base + r : -1;
  } else {
    row = decRow(c, jt + r);
  }
  if (base >= 0 && jt + 16 <= c.j1) {  // 16 consecutive cache rows from base: lane-constant offsets
    const uint8_t *kp = kCache + (size_t)base * S::RB, *vp = vCache + (size_t)base * S::RB;
#pragma unroll
    for (int k = 0; k < S::CPI; k++) {
      const int qc = lane + 32 * k, rr = qc / S::CH, cc = qc % S::CH;
      if (qc < S::NCH) {
        cpAsync16(stg + rr * S::KSTR + 16 * cc, kp + rr * S::RB + 16 * cc, true);
        cpAsync16(stg + 16 * S::KSTR + rr * S::VSTR + 16 * cc, vp + rr * S::RB + 16 * cc, true);
      }
    }
  } else {
#pragma unroll
    for (int k = 0; k < S::CPI; k++) {
      const int qc = lane + 32 * k, rr = qc / S::CH, cc = qc % S::CH;
      const int rw = __shfl_sync(0xffffffffu, row, rr & 15);
      if (qc < S::NCH) {
        const size_t off = (size_t)(rw < 0 ? 0 : rw) * S::RB + 16 * cc;
        cpAsync16(stg + rr * S::KSTR + 16 * cc, kCache + off, rw >= 0);
        cpAsync16(stg + 16 * S::KSTR + rr * S::VSTR + 16 * cc, vCache + off, rw >= 0);
      }
    }
  }
  uint8_t* sc = stg + 16 * (S::KSTR + S::VSTR);
  cpAsync4(sc + 4 * lane, (lane < 16 ? kSz : vSz) + (row < 0 ? 0 : row), row >= 0);
  cpCommit();
  return __ballot_sync(0xffffffffu, row >= 0) & 0xffffu;
}

// The common tile copy: 16 present keys in consecutive cache rows from row0 (one block: 16 RB contiguous bytes of K,
// of V, 64 of each one's scales). Lane l copies 16-byte chunks l + 32 i of K and V (kLane / vLane: the caches + 16 l),
// lanes 0..7 16 bytes of scales (szLane: K's (lanes 0..3) or V's scales + 4 (l & 3) half2). One commit group.
template <typename KT, int D>
__device__ __forceinline__ void decIssueF(uint32_t stg, const uint8_t* kLane, const uint8_t* vLane,
                                          const __half2* szLane, int row0, int lane) {
  using S = DecShape<KT, D>;
  const uint8_t *kp = kLane + (size_t)row0 * S::RB, *vp = vLane + (size_t)row0 * S::RB;
#pragma unroll
  for (int k = 0; k < S::CPI; k++) {
    const int qc = lane + 32 * k, rr = qc / S::CH, cc = qc % S::CH;
    if (S::NCH % 32 == 0 || qc < S::NCH) {
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(stg + rr * S::KSTR + 16 * cc), "l"(kp + 512 * k)
                   : "memory");
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(stg + 16 * S::KSTR + rr * S::VSTR + 16 * cc),
                   "l"(vp + 512 * k)
                   : "memory");
    }
  }
  if (lane < 8)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(stg + 16 * (S::KSTR + S::VSTR) + 16 * lane),
                 "l"(szLane + row0)
                 : "memory");
  cpCommit();
}

// VB bytes at p (shared memory, aligned like loadLane's) into words.
template <int VB, int VW> __device__ __forceinline__ void ldsLane(const uint8_t* p, uint32_t (&w)[VW]) {
  if constexpr (VB % 16 == 0) {
#pragma unroll
    for (int i = 0; i < VB / 16; i++) {
      const uint4 u = reinterpret_cast<const uint4*>(p)[i];
      w[4 * i] = u.x, w[4 * i + 1] = u.y, w[4 * i + 2] = u.z, w[4 * i + 3] = u.w;
    }
  } else if constexpr (VB % 8 == 0) {
#pragma unroll
    for (int i = 0; i < VB / 8; i++) {
      const uint2 u = reinterpret_cast<const uint2*>(p)[i];
      w[2 * i] = u.x, w[2 * i + 1] = u.y;
    }
  } else if constexpr (VB % 4 == 0) {
#pragma unroll
    for (int i = 0; i < VB / 4; i++) w[i] = reinterpret_cast<const unsigned*>(p)[i];
  } else {
#pragma unroll
    for (int i = 0; i < VW; i++) w[i] = 0u;
#pragma unroll
    for (int b = 0; b < VB; b++) w[b / 4] |= (uint32_t)p[b] << (8 * (b % 4));
  }
}

__device__ __forceinline__ float2 h2f(uint32_t x) { return __half22float2(*reinterpret_cast<const __half2*>(&x)); }

// TT (1, 2) tiles of int8 / int4 keys in stages stg[] (mask[]: their present rows) into the running softmax and output
// of a warp; two tiles interleave their dependency chains (ILP) and share one max update. Scores: s = kScale (dq .
// (K q)) + kZero sum(q) from three s32 dot products (K chunks 4 ls + t of key rows g, g+8); online softmax whose max is
// only re-reduced (3 shuffles per head) when some score beats the running max (a warp vote): otherwise p = 2^(s - m)
// as before, the same numbers. o^T += V^T (p vScale)^T with p vScale * PS in two f16 pieces and V as f16 subnormals
// (LDM: vFragL from ldmatrix.trans; else vFragQ of lane g's segments of keys 2t, 2t+1, 2t+8, 2t+9); zs += p vZero.
template <typename KT, int D, bool LDM, int NT, int QKS, int TT>
__device__ __forceinline__ void decTileQ(const uint8_t* const (&stg)[TT], const unsigned (&mask)[TT], int lane,
                                         const uint32_t (&qq)[NT][QKS][2][3], const float (&sumq)[NT][2],
                                         const float (&dq)[NT][2], float (&m)[NT][2], float (&l)[NT][2],
                                         float (&zs)[NT][2], float (&acc)[NT][DecShape<KT, D>::MT][4]) {
  using S = DecShape<KT, D>;
  constexpr bool MAGIC = KT::BITS == 4 || D <= 128;  // |dot| < 2^22 (DEC_QMAGIC)
  constexpr int QSUB = QKS / S::LS;
  const int g = lane >> 2, t = lane & 3;
  float sc[TT][NT][4];  // key row g (e 0, 1) and g+8 (e 2, 3), heads 2t + (e & 1)
#pragma unroll
  for (int tt = 0; tt < TT; tt++) {
    uint4 kw[2][S::LS];
#pragma unroll
    for (int r = 0; r < 2; r++)
#pragma unroll
      for (int ls = 0; ls < S::LS; ls++) {
        const int ch = 4 * ls + t;
        kw[r][ls] = ch < S::CH ? *reinterpret_cast<const uint4*>(stg[tt] + (g + 8 * r) * S::KSTR + 16 * ch)
                               : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      int ia[3][4];
#pragma unroll
      for (int pc = 0; pc < 3; pc++)
#pragma unroll
        for (int e = 0; e < 4; e++) ia[pc][e] = MAGIC ? DEC_QMAGIC : 0;
#pragma unroll
      for (int ls = 0; ls < S::LS; ls++)
#pragma unroll
        for (int u = 0; u < QSUB; u++) {
          uint32_t a0, a1, a2, a3;
          kFragQ<KT>(kw[0][ls], u, a0, a2);
          kFragQ<KT>(kw[1][ls], u, a1, a3);
#pragma unroll
          for (int pc = 0; pc < 3; pc++)
            imma16832(ia[pc], a0, a1, a2, a3, qq[nt][ls * QSUB + u][0][pc], qq[nt][ls * QSUB + u][1][pc]);
        }
#pragma unroll
      for (int e = 0; e < 4; e++) {
        if constexpr (MAGIC) {  // (M + a0 - M - 99072) + (M + a1) / 2^7 + (M + a2) / 2^14, M = 1.5 * 2^23
          const float x0 = __int_as_float(ia[0][e]) - 12681984.f;
          sc[tt][nt][e] =
              fmaf(__int_as_float(ia[2][e]), 1.f / 16384.f, fmaf(__int_as_float(ia[1][e]), 1.f / 128.f, x0));
        } else {
          sc[tt][nt][e] = fmaf((float)ia[2][e], 1.f / 16384.f, fmaf((float)ia[1][e], 1.f / 128.f, (float)ia[0][e]));
        }
      }
    }
  }
  float2 vz[TT][2];  // V (scale, zero) of key rows g, g+8
  bool up = false;
#pragma unroll
  for (int tt = 0; tt < TT; tt++) {
    const unsigned* szS = reinterpret_cast<const unsigned*>(stg[tt] + 16 * (S::KSTR + S::VSTR));  // K, V [16] half2
    const float2 k0 = h2f(szS[g]), k1 = h2f(szS[g + 8]);
    vz[tt][0] = h2f(szS[16 + g]), vz[tt][1] = h2f(szS[24 + g]);
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        sc[tt][nt][h] = fmaf(k0.x * dq[nt][h], sc[tt][nt][h], k0.y * sumq[nt][h]);
        sc[tt][nt][2 + h] = fmaf(k1.x * dq[nt][h], sc[tt][nt][2 + h], k1.y * sumq[nt][h]);
      }
    if (mask[tt] != 0xffffu) {  // warp-uniform: missing keys score -inf and weigh 0 (their stage may be stale)
      const bool ok0 = (mask[tt] >> g) & 1u, ok1 = (mask[tt] >> (g + 8)) & 1u;
      if (!ok0) vz[tt][0] = make_float2(0.f, 0.f);
      if (!ok1) vz[tt][1] = make_float2(0.f, 0.f);
#pragma unroll
      for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
          sc[tt][nt][h] = ok0 ? sc[tt][nt][h] : -INFINITY;
          sc[tt][nt][2 + h] = ok1 ? sc[tt][nt][2 + h] : -INFINITY;
        }
    }
  }
  float mx[NT][2];
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      mx[nt][h] = fmaxf(sc[0][nt][h], sc[0][nt][2 + h]);
#pragma unroll
      for (int tt = 1; tt < TT; tt++) mx[nt][h] = fmaxf(mx[nt][h], fmaxf(sc[tt][nt][h], sc[tt][nt][2 + h]));
      up = up || mx[nt][h] > m[nt][h];
    }
  if (__any_sync(0xffffffffu, up)) {  // a new max somewhere: reduce over the 8 lanes of equal t and rescale
    float corr[NT][2];
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        float x = mx[nt][h];
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 4));
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 8));
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 16));
        const float mNew = fmaxf(m[nt][h], x), cr = ex2(m[nt][h] - mNew);  // m starts at -1e30: cr 0
        m[nt][h] = mNew;
        l[nt][h] *= cr;
        zs[nt][h] *= cr;
        corr[nt][h] = cr;
      }
    rescaleAcc<NT, S::MT>(acc, corr);
  }
#pragma unroll
  for (int tt = 0; tt < TT; tt++) {
    uint32_t pb[NT][2][2];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      float pp[4];
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const float p0 = ex2(sc[tt][nt][h] - m[nt][h]), p1 = ex2(sc[tt][nt][2 + h] - m[nt][h]);  // masked: 0
        l[nt][h] += p0 + p1;
        zs[nt][h] = fmaf(p0, vz[tt][0].y, fmaf(p1, vz[tt][1].y, zs[nt][h]));
        pp[h] = p0 * (vz[tt][0].x * S::PS);
        pp[2 + h] = p1 * (vz[tt][1].x * S::PS);
      }
      uint32_t r0[2], r1[2];
      splitPair<false, 2>(pp[0], pp[1], r0);  // key row g, heads 2t, 2t+1
      splitPair<false, 2>(pp[2], pp[3], r1);  // key row g+8
#pragma unroll
      for (int pc = 0; pc < 2; pc++) pb[nt][0][pc] = movTrans(r0[pc]), pb[nt][1][pc] = movTrans(r1[pc]);
    }
    // O^T += V^T P^T.
    const uint8_t* vs = stg[tt] + 16 * S::KSTR;  // V rows [16, VSTR]
    if constexpr (LDM) {
      // ldmatrix c: matrices (keys 0-7, segment 2c), (8-15, 2c), (0-7, 2c+1), (8-15, 2c+1); lane l: row l & 7.
      constexpr int MPS = KT::BITS == 4 ? 2 : 1;  // m-tiles per 16-byte segment
      const uint32_t va = smemAddr(vs) + ((lane & 7) + 8 * ((lane >> 3) & 1)) * S::VSTR + 16 * (lane >> 4);
#pragma unroll
      for (int c = 0; c < S::MT / (2 * MPS); c++) {
        uint32_t x[4];
        ldsm4t(va + 32 * c, x);
#pragma unroll
        for (int sg = 0; sg < 2; sg++)
#pragma unroll
          for (int j = 0; j < MPS; j++) {
            const int mt = (2 * c + sg) * MPS + j;
            uint32_t a0, a1, a2, a3;
            vFragL<KT>(x[2 * sg], x[2 * sg + 1], j, a0, a1, a2, a3);
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
              for (int pc = 0; pc < 2; pc++)
                mma16816<false>(acc[nt][mt], a0, a1, a2, a3, pb[nt][0][pc], pb[nt][1][pc]);
          }
      }
    } else {
      uint32_t v[4][S::VW];
#pragma unroll
      for (int kk = 0; kk < 4; kk++) {
        const int r = 2 * t + (kk & 1) + 8 * (kk >> 1);
        if (g * S::VPL < D) ldsLane<S::VB, S::VW>(vs + r * S::VSTR + g * S::VB, v[kk]);
        else
#pragma unroll
          for (int i = 0; i < S::VW; i++) v[kk][i] = 0u;
      }
#pragma unroll
      for (int mt = 0; mt < S::MT; mt++) {
        uint32_t a0, a1, a2, a3;
        vFragQ<KT, S::VW>(v[0], v[1], mt, a0, a1);
        vFragQ<KT, S::VW>(v[2], v[3], mt, a2, a3);
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
          for (int pc = 0; pc < 2; pc++)
            mma16816<false>(acc[nt][mt], a0, a1, a2, a3, pb[nt][0][pc], pb[nt][1][pc]);
      }
    }
  }
}

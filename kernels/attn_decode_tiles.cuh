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

// The warp copies the tile of 16 keys from jt (`on`: the tile exists) into stage stg (DecShape::SB bytes): lane r
// (and r + 16) resolves key jt + r's cache row; K / V rows go in 16-byte chunks (missing rows as zeros), scales in
// 4-byte pieces, and lane 0 stores the mask of present rows. One commit group per call (empty when !on).
template <typename KT, int D>
__device__ __forceinline__ void decIssueS(uint8_t* stg, const DecCtx& c, const uint8_t* kCache, const uint8_t* vCache,
                                          const __half2* kSz, const __half2* vSz, int jt, bool on, int lane) {
  using S = DecShape<KT, D>;
  if (on) {  // warp-uniform
    const int r = lane & 15;
    int row, base = -1;
    if (c.whole) {
      base = decRow(c, jt);
      row = base >= 0 && jt + r < c.j1 ? base + r : -1;
    } else {
      row = decRow(c, jt + r);
    }
    constexpr int NCH = 16 * S::CH;
    if (base >= 0 && jt + 16 <= c.j1) {  // 16 consecutive cache rows from base: lane-constant offsets
      const uint8_t *kp = kCache + (size_t)base * S::RB, *vp = vCache + (size_t)base * S::RB;
#pragma unroll
      for (int k = 0; k < (NCH + 31) / 32; k++) {
        const int qc = lane + 32 * k, rr = qc / S::CH, cc = qc % S::CH;
        if (qc < NCH) {
          cpAsync16(stg + rr * S::KSTR + 16 * cc, kp + rr * S::RB + 16 * cc, true);
          cpAsync16(stg + 16 * S::KSTR + rr * S::VSTR + 16 * cc, vp + rr * S::RB + 16 * cc, true);
        }
      }
    } else {
#pragma unroll
      for (int k = 0; k < (NCH + 31) / 32; k++) {
        const int qc = lane + 32 * k, rr = qc / S::CH, cc = qc % S::CH;
        const int rw = __shfl_sync(0xffffffffu, row, rr & 15);
        if (qc < NCH) {
          const size_t off = (size_t)(rw < 0 ? 0 : rw) * S::RB + 16 * cc;
          cpAsync16(stg + rr * S::KSTR + 16 * cc, kCache + off, rw >= 0);
          cpAsync16(stg + 16 * S::KSTR + rr * S::VSTR + 16 * cc, vCache + off, rw >= 0);
        }
      }
    }
    uint8_t* sc = stg + 16 * (S::KSTR + S::VSTR);
    cpAsync4(sc + 4 * lane, (lane < 16 ? kSz : vSz) + (row < 0 ? 0 : row), row >= 0);
    const unsigned mask = __ballot_sync(0xffffffffu, row >= 0) & 0xffffu;
    if (lane == 0) *reinterpret_cast<unsigned*>(sc + 128) = mask;
  }
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

// Lane (g, t)'s fragment words of the tile in stage stg (the DecStage that decIssueK / decIssueV would have loaded):
// K chunks 4 ls + t of key rows g, g+8, V segments of keys 2t, 2t+1, 2t+8, 2t+9, scales, presence (krow 0 / -1).
template <typename KT, int D>
__device__ __forceinline__ void decReadS(DecStage<KT, D>& st, const uint8_t* stg, int g, int t) {
  using S = DecShape<KT, D>;
  const uint8_t* sc = stg + 16 * (S::KSTR + S::VSTR);
  const unsigned mask = *reinterpret_cast<const unsigned*>(sc + 128);
#pragma unroll
  for (int r = 0; r < 2; r++) {
#pragma unroll
    for (int ls = 0; ls < S::LS; ls++) {
      const int ch = 4 * ls + t;
      st.k[r][ls] = ch < S::CH ? *reinterpret_cast<const uint4*>(stg + (g + 8 * r) * S::KSTR + 16 * ch)
                               : make_uint4(0, 0, 0, 0);
    }
    st.ksz[r] = reinterpret_cast<const unsigned*>(sc)[g + 8 * r];
    st.vsz[r] = reinterpret_cast<const unsigned*>(sc)[16 + g + 8 * r];
    st.krow[r] = (mask >> (g + 8 * r)) & 1u ? 0 : -1;
  }
#pragma unroll
  for (int kk = 0; kk < 4; kk++) {
    const int r = 2 * t + (kk & 1) + 8 * (kk >> 1);
    if (g * S::VPL < D) ldsLane<S::VB, S::VW>(stg + 16 * S::KSTR + r * S::VSTR + g * S::VB, st.v[kk]);
    else
#pragma unroll
      for (int i = 0; i < S::VW; i++) st.v[kk][i] = 0u;
  }
}

__device__ __forceinline__ float2 h2f(uint32_t x) { return __half22float2(*reinterpret_cast<const __half2*>(&x)); }

// One tile of int8 / int4 keys (DecStage st) into the running softmax and output of a warp; kFree() runs once st's
// K words are used (the register path puts the next K in flight there), vFree() once its V words are. Scores:
// s = kScale (dq . (K q)) + kZero sum(q) from three s32 dot products; online softmax whose max is only re-reduced
// (3 shuffles per head) when some score beats the running max (a warp vote): otherwise p = 2^(s - m) as before, the
// same numbers. o^T += V^T (p vScale)^T with p vScale * PS in two f16 pieces and V as f16 subnormals (vFragQ);
// zs += p vZero.
template <typename KT, int D, int NT, int QKS, typename KF, typename VF>
__device__ __forceinline__ void decTileQ(DecStage<KT, D>& st, const uint32_t (&qq)[NT][QKS][2][3],
                                         const float (&sumq)[NT][2], const float (&dq)[NT][2], float (&m)[NT][2],
                                         float (&l)[NT][2], float (&zs)[NT][2],
                                         float (&acc)[NT][DecShape<KT, D>::MT][4], KF kFree, VF vFree) {
  using S = DecShape<KT, D>;
  constexpr bool MAGIC = KT::BITS == 4 || D <= 128;  // |dot| < 2^22 (DEC_QMAGIC)
  constexpr int QSUB = QKS / S::LS;
  float sc[NT][4];  // key row g (e 0, 1) and g+8 (e 2, 3), heads 2t + (e & 1)
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
        kFragQ<KT>(st.k[0][ls], u, a0, a2);
        kFragQ<KT>(st.k[1][ls], u, a1, a3);
#pragma unroll
        for (int pc = 0; pc < 3; pc++)
          imma16832(ia[pc], a0, a1, a2, a3, qq[nt][ls * QSUB + u][0][pc], qq[nt][ls * QSUB + u][1][pc]);
      }
#pragma unroll
    for (int e = 0; e < 4; e++) {
      if constexpr (MAGIC) {  // (M + a0 - M - 99072) + (M + a1) / 2^7 + (M + a2) / 2^14, M = 1.5 * 2^23
        const float x0 = __int_as_float(ia[0][e]) - 12681984.f;
        sc[nt][e] = fmaf(__int_as_float(ia[2][e]), 1.f / 16384.f, fmaf(__int_as_float(ia[1][e]), 1.f / 128.f, x0));
      } else {
        sc[nt][e] = fmaf((float)ia[2][e], 1.f / 16384.f, fmaf((float)ia[1][e], 1.f / 128.f, (float)ia[0][e]));
      }
    }
  }
  const bool ok0 = st.krow[0] >= 0, ok1 = st.krow[1] >= 0;
  const float2 k0 = h2f(st.ksz[0]), k1 = h2f(st.ksz[1]), v0 = h2f(st.vsz[0]), v1 = h2f(st.vsz[1]);
  kFree();
  bool up = false;
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const float s0 = fmaf(k0.x * dq[nt][h], sc[nt][h], k0.y * sumq[nt][h]);
      const float s1 = fmaf(k1.x * dq[nt][h], sc[nt][2 + h], k1.y * sumq[nt][h]);
      sc[nt][h] = ok0 ? s0 : -INFINITY;
      sc[nt][2 + h] = ok1 ? s1 : -INFINITY;
      up = up || fmaxf(sc[nt][h], sc[nt][2 + h]) > m[nt][h];
    }
  if (__any_sync(0xffffffffu, up)) {  // a new max somewhere: reduce over the 8 lanes of equal t and rescale
    float corr[NT][2];
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        float mx = fmaxf(sc[nt][h], sc[nt][2 + h]);
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 8));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
        const float mNew = fmaxf(m[nt][h], mx), cr = ex2(m[nt][h] - mNew);  // m starts at -1e30: cr 0
        m[nt][h] = mNew;
        l[nt][h] *= cr;
        zs[nt][h] *= cr;
        corr[nt][h] = cr;
      }
    rescaleAcc<NT, S::MT>(acc, corr);
  }
  uint32_t pb[NT][2][2];
#pragma unroll
  for (int nt = 0; nt < NT; nt++) {
    float pp[4];
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const float p0 = ex2(sc[nt][h] - m[nt][h]), p1 = ex2(sc[nt][2 + h] - m[nt][h]);  // masked: 2^-inf = 0
      l[nt][h] += p0 + p1;
      zs[nt][h] = fmaf(p0, v0.y, fmaf(p1, v1.y, zs[nt][h]));
      pp[h] = p0 * (v0.x * S::PS);
      pp[2 + h] = p1 * (v1.x * S::PS);
    }
    uint32_t r0[2], r1[2];
    splitPair<false, 2>(pp[0], pp[1], r0);  // key row g, heads 2t, 2t+1
    splitPair<false, 2>(pp[2], pp[3], r1);  // key row g+8
#pragma unroll
    for (int pc = 0; pc < 2; pc++) pb[nt][0][pc] = movTrans(r0[pc]), pb[nt][1][pc] = movTrans(r1[pc]);
  }
  // O^T += V^T P^T.
#pragma unroll
  for (int mt = 0; mt < S::MT; mt++) {
    uint32_t a0, a1, a2, a3;
    vFragQ<KT, S::VW>(st.v[0], st.v[1], mt, a0, a1);
    vFragQ<KT, S::VW>(st.v[2], st.v[3], mt, a2, a3);
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int pc = 0; pc < 2; pc++) mma16816<false>(acc[nt][mt], a0, a1, a2, a3, pb[nt][0][pc], pb[nt][1][pc]);
  }
  vFree();
}

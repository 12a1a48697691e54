// Split-K decode attention on tensor cores over the paged KV cache (kv_cache.cuh: f16, bf16, int8, int4): attn_split
// computes any token's causal context in splits, attn_combine merges the splits.
#include "kv_cache.cuh"

// ---------------------------------------------------------------------------------------------------------------
// Split-K decode attention on tensor cores (mma.sync m16n8k16, f32 accumulation).
//
// Block (kvh, y, split): the G = nh/nkv query heads of KV head kvh for token t = tokenList[y] (or y), keys
// [j0, j1) = first + split * splitLen + [0, splitLen) of its causal (windowed) context. DEC_WARPS warps work
// independently on interleaved tiles of 16 keys (warp w: tiles w, w + 4, ...), each with its own online softmax, and
// are merged once at the end: no block-wide barrier in the main loop. f16 / bf16: K/V bytes go straight from global
// memory into the registers of the mma fragments, DecShape::DEPTH (1-2) tiles in flight per warp. int8 / int4: each
// warp streams its tiles through decStages (2) cp.async stages in shared memory (decIssueS / decReadS), so a tile in
// flight costs no registers (128 per thread: 4 blocks per SM). The block-table segment of the split is staged once in
// shared memory (up to DEC_TAB entries), and when every tile lies in one cache block (block size % 16 == 0) a tile
// costs one table lookup. Softmax in base 2 (q pre-scaled by log2 e). attn_combine is launched as a programmatic
// dependent and waits with griddepcontrol.wait.
//
// Scores S^T [16 keys, 8 heads] = K [16 keys, d] . Q^T [d, 8 heads] (heads in the mma's N dimension: GQA groups of
// 1..8 heads take one n-tile, 9..16 two). Values O^T [d, 8 heads] += V^T [d, 16 keys] . P^T [16 keys, 8 heads];
// P^T's B fragment is S^T's accumulator transposed in registers (movmatrix). The order of d inside a k-step and the
// rows of O^T are permuted so that each lane's K / V bytes are contiguous (qDim / qDimQ, the V row map below); q and
// the output follow the same permutation.
//
// Exactness: q * scale and p are split into pieces so that every product is exact to ~2^-22 relative: the result
// matches the f32 CUDA-core kernel this replaced to f32 rounding (the tests keep their 1e-5 bounds).
//   f16 cache:  K, V are f16 operands as stored; q: 2 f16 pieces; p * 2^10: 2 f16 pieces (p <= 1).
//   bf16 cache: bf16 operands; q and p: 3 bf16 pieces each.
//   int8/int4:  QK^T on integer tensor cores (m16n8k32 u8 x s8, s32 accumulation: exact): K's stored q values (int4
//               nibbles spread to bytes: a shift, two LOP3) against q * scale as 3 s8 pieces per head (fixed point
//               on the head's max |q|, 2^-22 of it); s = kScale * dq * (K . Q) + kZero * sum(q). PV on f16 tensor cores
//               with V's q values as f16 subnormals (bytes / nibbles masked into place, no subtraction: value *
//               2^-24, or 2^-20 for high nibbles, undone in the epilogue): o = sum_j (p_j vScale_j) vq_j + sum_j p_j
//               vZero_j, p_j vScale_j * 2^8 in 2 f16 pieces (needs vScale < 256, i.e. a V row range below ~65000
//               for int8 / ~3800 for int4). The running max is re-reduced across lanes only when a score beats it.
// ---------------------------------------------------------------------------------------------------------------
#define DEC_WARPS 4
#define DEC_THREADS (DEC_WARPS * 32)
#define DEC_TAB 512  // block-table entries of one split staged in shared memory (else read from global)

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t s) { return __byte_perm(a, b, s); }
// (x & 0x000f000f) | 0x64006400: the nibbles at bits 0 and 16 as f16 (1024 + n, 1024 + n').
__device__ __forceinline__ uint32_t nib2h(uint32_t x) {
  uint32_t y;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;\n" : "=r"(y) : "r"(x), "r"(0x000f000fu), "r"(0x64006400u));
  return y;
}
// f16x2 (1024 + a, 1024 + b) -> (a, b), exact.
__device__ __forceinline__ uint32_t sub1024(uint32_t x) {
  uint32_t y;
  asm("sub.f16x2 %0, %1, %2;\n" : "=r"(y) : "r"(x), "r"(0x64006400u));
  return y;
}
// Bytes 0, 1 (sel 0x4140) or 2, 3 (sel 0x4342) of x as f16x2 (1024 + b, 1024 + b').
__device__ __forceinline__ uint32_t byte2h(uint32_t x, uint32_t sel) { return prmt(x, 0x64646464u, sel); }

__device__ __forceinline__ uint32_t movTrans(uint32_t x) {
  uint32_t y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

// (x0, x1) as NP pairs of the operand type whose sum is (x0, x1) to 2^-22 (f16, NP 2) / 2^-24 (bf16, NP 3).
template <bool BF, int NP> __device__ __forceinline__ void splitPair(float x0, float x1, uint32_t (&out)[NP]) {
#pragma unroll
  for (int i = 0; i < NP; i++) {
    if constexpr (BF) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
      out[i] = *reinterpret_cast<const uint32_t*>(&h);
      const float2 f = __bfloat1622float2(h);
      x0 -= f.x, x1 -= f.y;
    } else {
      const __half2 h = __floats2half2_rn(x0, x1);
      out[i] = *reinterpret_cast<const uint32_t*>(&h);
      const float2 f = __half22float2(h);
      x0 -= f.x, x1 -= f.y;
    }
  }
}

// Compile-time shape of attn_split<KT, D>.
template <typename KT, int D, int DEPTH_ = 0> struct DecShape {
  static constexpr bool QUANT = KT::BITS < 16, BF = KT::BF;
  static constexpr int NP = BF ? 3 : 2;                    // pieces of q and p
  static constexpr int RB = kvRowBytes<KT>(D), CH = RB / 16;  // row bytes, 16-byte chunks per row
  static constexpr int LS = (CH + 3) / 4;                  // K: chunk steps (lane t takes chunk 4 ls + t)
  static constexpr int VPC = 128 / KT::BITS, SUB = VPC / 4, KS = LS * SUB;  // values per chunk, k-steps
  static constexpr int MT = (D + 15) / 16, VPL = 2 * MT;   // V: m-tiles of 16 dims; values per lane and key
  static constexpr int VB = VPL * KT::BITS / 8, VW = (VB + 3) / 4;  // V bytes / words per lane and key
  static constexpr int STAGE_REGS = 8 * LS + 4 * VW + 4;
  // tiles in flight per warp (register budget; DEPTH_ > 0 overrides: bench variants)
  static constexpr int DEPTH = DEPTH_ > 0 ? DEPTH_ : STAGE_REGS <= 40 ? 2 : 1;
  static constexpr float PS = QUANT ? 256.f : BF ? 1.f : 1024.f;  // p scale before splitting
  // int8 / int4 cp.async stage of one tile (decIssueS): K rows [16, KSTR], V rows [16, VSTR] (padded against bank
  // conflicts of the fragment loads), (scale, zero) of K and V [16] half2 each, the mask of present rows (16 bytes).
  static constexpr int KSTR = RB % 128 == 0 ? RB + 16 : RB, VSTR = RB % 64 == 0 ? RB + 16 : RB;
  static constexpr int SB = 16 * (KSTR + VSTR) + 144;
};
// cp.async stages per warp of attn_split for int8 / int4 (kv.ts decodeStages): 2, one tile in flight while one is
// computed (3 or 4: no faster at d 128, H100, bench/cuda_attention.ts); 0 (16-bit caches, a bench variant) loads
// into registers instead.
template <typename KT> __host__ __device__ constexpr int decStages() { return KT::BITS < 16 ? 2 : 0; }
// Blocks per SM asked of ptxas (register cap 65536 / (128 * MINB)) for attn_split<KT, D, GP>. 16-bit caches: 3
// (168 registers) for one n-tile up to d = 128. int8 / int4 (cp.async stages, no tile registers): 4 (128 registers)
// for one n-tile up to d = 128 (H100, batch 16, context 8k: 4 blocks with one register tile in flight per warp beat
// 2-3 blocks with two by 10-20 points of the copy roofline, bench/cuda_attention.ts, 2026-11-24), 2 for two n-tiles.
template <typename KT, int D, int GP> constexpr int decMinBlocks() {
  if constexpr (KT::BITS < 16) return D <= 128 && GP <= 8 ? 4 : D <= 128 ? 2 : 1;
  return D <= 128 && GP <= 8 ? 3 : 1;
}

// Dim of q (and of the cache row) behind k-slot s (0, 1: b0 low/high; 2, 3: b1) of sub-step u of chunk c.
// 16-bit and int8 rows: consecutive; int4: word i = u/2 of the chunk, nibble pairs (2h, 2h+4), (2h+1, 2h+5).
template <typename KT> __device__ __forceinline__ int qDim(int c, int u, int s) {
  if constexpr (KT::BITS == 4) return c * 32 + 8 * (u >> 1) + 2 * (u & 1) + ((s & 2) ? 1 : 0) + ((s & 1) ? 4 : 0);
  else return c * (128 / KT::BITS) + 4 * u + s;
}

// A fragment (a0 | a2 for key row g, a1 | a3 for g+8: pass each row's chunk) of sub-step u: two f16/bf16 pairs.
template <typename KT> __device__ __forceinline__ void kFrag(const uint4& w, int u, uint32_t& lo, uint32_t& hi) {
  const uint32_t x[4] = {w.x, w.y, w.z, w.w};
  if constexpr (KT::BITS == 16) {
    lo = x[2 * u], hi = x[2 * u + 1];
  } else if constexpr (KT::BITS == 8) {
    lo = sub1024(byte2h(x[u], 0x4140)), hi = sub1024(byte2h(x[u], 0x4342));
  } else {
    const uint32_t v = x[u >> 1] >> (8 * (u & 1));
    lo = sub1024(nib2h(v)), hi = sub1024(nib2h(v >> 4));
  }
}

// V^T A fragment rows of m-tile mt from the lane's bytes of two keys A, B (k cols 2t, 2t+1 or 2t+8, 2t+9):
// lo = (A[2mt], B[2mt]) (row g), hi = (A[2mt+1], B[2mt+1]) (row g+8), where X[j] is value j of the lane's segment.
template <typename KT, int VW>
__device__ __forceinline__ void vFrag(const uint32_t (&A)[VW], const uint32_t (&B)[VW], int mt, uint32_t& lo,
                                      uint32_t& hi) {
  if constexpr (KT::BITS == 16) {
    lo = prmt(A[mt], B[mt], 0x5410), hi = prmt(A[mt], B[mt], 0x7632);
  } else if constexpr (KT::BITS == 8) {
    const uint32_t x = prmt(A[mt >> 1], B[mt >> 1], (mt & 1) ? 0x7362 : 0x5140);  // (A b, B b, A b+1, B b+1)
    lo = sub1024(byte2h(x, 0x4140)), hi = sub1024(byte2h(x, 0x4342));
  } else {
    const uint32_t x = prmt(A[mt >> 2], B[mt >> 2], (mt & 2) ? 0x7632 : 0x5410) >> (8 * (mt & 1));
    lo = sub1024(nib2h(x)), hi = sub1024(nib2h(x >> 4));
  }
}

// ---- int8 / int4 operands (QK^T on integer tensor cores, PV on f16 ones) ----
// QK^T: mma.m16n8k32 u8 x s8 -> s32, K's q values as stored (int4: nibbles spread to bytes), q * scale as three s8
// pieces per head (fixed point against the head's max |q|: y = 127 q / max = p0 + p1 / 2^7 + p2 / 2^14 to 2^-15,
// i.e. 2^-22 of the max). Accumulators start at 0x4B400000 (1.5 * 2^23 as f32 bits): while |sum| < 2^22 (always
// for int4; int8 up to d = 128) the s32 result read as f32 is 1.5 * 2^23 + sum, exactly, and three FADD / FFMA
// turn the three pieces into their f32 sum without a conversion.
#define DEC_QMAGIC 0x4B400000
__device__ __forceinline__ void imma16832(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                          uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
// 2^x (MUFU.EX2, what exp2f uses, without exp2f's rescaling of results below 2^-126: those flush to 0).
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
// Dim of q behind byte i of A word `slot` (0: a0 | a1, 1: a2 | a3) of k-step u of chunk ch (m16n8k32: lane t's a0
// holds k-cols 4t..4t+3, a2 16+4t..; q's b0 / b1 bytes of lane (g, t) are those k rows). int8: the chunk's words
// 2u, 2u+1; int4: word u, low nibbles in a0 (dims 2i), high in a2 (2i+1).
template <typename KT> __device__ __forceinline__ int qDimQ(int ch, int u, int slot, int i) {
  if constexpr (KT::BITS == 4) return ch * 32 + 8 * u + 2 * i + slot;
  else return ch * 16 + 8 * u + 4 * slot + i;
}
template <typename KT> __device__ __forceinline__ void kFragQ(const uint4& w, int u, uint32_t& lo, uint32_t& hi) {
  const uint32_t x[4] = {w.x, w.y, w.z, w.w};
  if constexpr (KT::BITS == 8) {
    lo = x[2 * u], hi = x[2 * u + 1];
  } else {
    lo = x[u] & 0x0f0f0f0fu, hi = (x[u] >> 4) & 0x0f0f0f0fu;
  }
}
// V^T A fragment rows of m-tile mt as f16 subnormals (value v * 2^-24 from the bits alone: no magic subtraction):
// int8 (A[2mt], B[2mt]) | (A[2mt+1], B[2mt+1]) * 2^-24; int4 row g: nibble value * 2^-24, row g+8: * 2^-20
// (nibble at bits 4..7). Same dims as vFrag; attnDecode scales the rows back in its epilogue (vRowScale).
template <typename KT, int VW>
__device__ __forceinline__ void vFragQ(const uint32_t (&A)[VW], const uint32_t (&B)[VW], int mt, uint32_t& lo,
                                       uint32_t& hi) {
  if constexpr (KT::BITS == 8) {
    const uint32_t x = prmt(A[mt >> 1], B[mt >> 1], (mt & 1) ? 0x7632 : 0x5410);  // (A b, A b+1, B b, B b+1)
    lo = prmt(x, 0u, 0x4240), hi = prmt(x, 0u, 0x4341);
  } else {
    const uint32_t x = prmt(A[mt >> 2], B[mt >> 2], (mt & 2) ? 0x7632 : 0x5410) >> (8 * (mt & 1));
    lo = x & 0x000f000fu, hi = x & 0x00f000f0u;
  }
}
// Factor from a V accumulator row (0: rows g, 1: g+8) to output units: 1 / PS, times 2^24 (2^20) for the subnormal
// int8 / int4 operands of vFragQ.
template <typename KT, int PSI> __host__ __device__ constexpr float vRowScale(int r) {
  return (KT::BITS == 16 ? 1.f : KT::BITS == 4 && r ? 1048576.f : 16777216.f) / (float)PSI;
}

// VB bytes at p (aligned to the largest power of two dividing VB, up to 16) into words; zeros when !ok.
template <int VB, int VW> __device__ __forceinline__ void loadLane(const uint8_t* p, bool ok, uint32_t (&w)[VW]) {
  if constexpr (VB % 16 == 0) {
#pragma unroll
    for (int i = 0; i < VB / 16; i++) {
      const uint4 u = ok ? __ldg(reinterpret_cast<const uint4*>(p) + i) : make_uint4(0, 0, 0, 0);
      w[4 * i] = u.x, w[4 * i + 1] = u.y, w[4 * i + 2] = u.z, w[4 * i + 3] = u.w;
    }
  } else if constexpr (VB % 8 == 0) {
#pragma unroll
    for (int i = 0; i < VB / 8; i++) {
      const uint2 u = ok ? __ldg(reinterpret_cast<const uint2*>(p) + i) : make_uint2(0, 0);
      w[2 * i] = u.x, w[2 * i + 1] = u.y;
    }
  } else if constexpr (VB % 4 == 0) {
#pragma unroll
    for (int i = 0; i < VB / 4; i++) w[i] = ok ? __ldg(reinterpret_cast<const unsigned*>(p) + i) : 0u;
  } else {
#pragma unroll
    for (int i = 0; i < VW; i++) w[i] = 0u;
    if (ok) {
#pragma unroll
      for (int b = 0; b < VB; b++) w[b / 4] |= (uint32_t)__ldg(p + b) << (8 * (b % 4));
    }
  }
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
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int mt = 0; mt < S::MT; mt++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[nt][mt][e] *= corr[nt][e & 1];
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

// q: [n, nh, D] f32 (RoPE applied); blockTables [B, maxBlocks] i32; tokenSeq, positions [n] i32; tokenList [rows]
// i32 or null. partO [rows, nh, splits, D] f32 (unnormalized), partML [rows, nh, splits, 2] f32 (max of the scores
// in log2 units, i.e. times log2(e), sum of 2^(score - max)). grid (nkv, rows, splits), block DEC_THREADS, dynamic
// smem (kv.ts attentionSmemBytes): per-warp partial outputs [DEC_WARPS, G, D] f32, max and sum [DEC_WARPS, G] f32
// each, block-table entries [DEC_TAB] i32; int8 / int4 then (16-byte aligned) the warps' cp.async stages
// [DEC_WARPS, NS, DecShape::SB] bytes.
template <typename KT, int D, int GP, int DEPTH_ = 0, int NS_ = -1>
__device__ void attnDecode(const float* q, const uint8_t* kCache, const uint8_t* vCache, const __half2* kSz,
                           const __half2* vSz, const int* blockTables, const int* tokenSeq, const int* positions,
                           const int* tokenList, float* partO, float* partML, int nh, int nkv, int blockSize,
                           int maxBlocks, int splitLen, int window, float scale) {
  using S = DecShape<KT, D, DEPTH_>;
  constexpr int NT = GP > 8 ? 2 : 1, NW = DEC_WARPS, NP = S::NP, DEPTH = S::DEPTH;
  constexpr int NS = S::QUANT ? (NS_ < 0 ? decStages<KT>() : NS_) : 0;  // cp.async stages (0: registers)
  static_assert(D % 8 == 0 && GP <= 16, "decode shape");
  extern __shared__ __align__(16) uint8_t dsmem[];
  const int kvh = blockIdx.x, y = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int tk = tokenList ? tokenList[y] : y;
  const int G = nh / nkv;
  const int p = positions[tk];
  const int first = window > 0 ? max(0, p - window + 1) : 0;
  const int j0 = first + split * splitLen, j1 = min(p + 1, j0 + splitLen);
  if (j1 <= j0) {  // an empty split (graphs launch splits for the longest context)
    for (int h = tid; h < G; h += DEC_THREADS) {
      const size_t row = ((size_t)y * nh + kvh * G + h) * splits + split;
      partML[row * 2] = -INFINITY;
      partML[row * 2 + 1] = 0.f;
    }
    return;
  }
  float* red = reinterpret_cast<float*>(dsmem);  // [NW, G, D]
  float* mS = red + NW * G * D;                  // [NW, G]
  float* lS = mS + NW * G;                       // [NW, G]
  int* tabS = reinterpret_cast<int*>(lS + NW * G);
  const int* table = blockTables + (size_t)tokenSeq[tk] * maxBlocks;
  const int tb0 = j0 / blockSize, ntab = (j1 - 1) / blockSize - tb0 + 1;
  const bool staged = ntab <= DEC_TAB;
  if (staged)
    for (int i = tid; i < ntab; i += DEC_THREADS) tabS[i] = table[tb0 + i];
  const DecCtx ctx{staged ? tabS : table + tb0, tb0, j1, nkv, kvh, blockSize, 1.f / (float)blockSize,
                   blockSize % 16 == 0 && j0 % 16 == 0};
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");  // attn_combine may launch (it waits for us)
#endif
  const int ntiles = (j1 - j0 + 15) / 16;
  const int myTiles = warp < ntiles ? (ntiles - warp + NW - 1) / NW : 0;
  auto tileStart = [&](int i) { return j0 + (warp + i * NW) * 16; };

  // q * scale as B fragments (lane (g, t): head nt*8 + g, the k-slots of lane t): 16-bit caches NP pieces of the
  // operand type each; int8 / int4 three s8 pieces (qq, with dq = max |q| / 127 per head). Sums of q for the zero
  // points and dq, per head of this lane's accumulator columns (2t, 2t+1).
  constexpr int QKS = S::QUANT ? S::KS / 2 : 1;  // k-steps of 32 (int8 / int4)
  uint32_t qf[NT][S::QUANT ? 1 : S::KS][2][NP];
  uint32_t qq[NT][QKS][2][3];
  float sumq[NT][2], dq[NT][2];
  const float qs = scale * 1.4426950408889634f;  // scores in log2 units: softmax with exp2
  if constexpr (S::QUANT) {
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      const int hq = nt * 8 + g;
      const float* qrow = q + ((size_t)tk * nh + kvh * G + (hq < G ? hq : 0)) * D;
      auto qAt = [&](int ls, int u, int slot, int i) {
        const int ch = 4 * ls + t, dim = qDimQ<KT>(ch, u, slot, i);
        return hq < G && ch < S::CH && dim < D ? qrow[dim] * qs : 0.f;
      };
      float part = 0.f, mx = 0.f;
#pragma unroll
      for (int ls = 0; ls < S::LS; ls++)
#pragma unroll
        for (int u = 0; u < QKS / S::LS; u++)
#pragma unroll
          for (int slot = 0; slot < 2; slot++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
              const float x = qAt(ls, u, slot, i);
              part += x;
              mx = fmaxf(mx, fabsf(x));
            }
#pragma unroll
      for (int o = 1; o < 4; o <<= 1) {
        part += __shfl_xor_sync(0xffffffffu, part, o);
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      }
      const float R = mx > 1e-30f ? 127.f / mx : 0.f;
#pragma unroll
      for (int ls = 0; ls < S::LS; ls++)
#pragma unroll
        for (int u = 0; u < QKS / S::LS; u++)
#pragma unroll
          for (int slot = 0; slot < 2; slot++) {
            uint32_t w[3] = {0u, 0u, 0u};
#pragma unroll
            for (int i = 0; i < 4; i++) {
              const float y = qAt(ls, u, slot, i) * R, p0 = rintf(y), r1 = (y - p0) * 128.f, p1 = rintf(r1);
              const float p2 = rintf((r1 - p1) * 128.f);
              w[0] |= ((uint32_t)(int)p0 & 0xffu) << (8 * i);
              w[1] |= ((uint32_t)(int)p1 & 0xffu) << (8 * i);
              w[2] |= ((uint32_t)(int)p2 & 0xffu) << (8 * i);
            }
#pragma unroll
            for (int pc = 0; pc < 3; pc++) qq[nt][ls * (QKS / S::LS) + u][slot][pc] = w[pc];
          }
#pragma unroll
      for (int e = 0; e < 2; e++) {
        sumq[nt][e] = __shfl_sync(0xffffffffu, part, 8 * t + 4 * e);
        dq[nt][e] = __shfl_sync(0xffffffffu, mx, 8 * t + 4 * e) / 127.f;
      }
    }
  } else {
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      const int hq = nt * 8 + g;
      const float* qrow = q + ((size_t)tk * nh + kvh * G + (hq < G ? hq : 0)) * D;
      float part = 0.f;
#pragma unroll
      for (int ls = 0; ls < S::LS; ls++)
#pragma unroll
        for (int u = 0; u < S::SUB; u++)
#pragma unroll
          for (int b = 0; b < 2; b++) {
            float x[2];
#pragma unroll
            for (int e = 0; e < 2; e++) {
              const int ch = 4 * ls + t, dim = qDim<KT>(ch, u, 2 * b + e);
              x[e] = hq < G && ch < S::CH && dim < D ? qrow[dim] * qs : 0.f;
            }
            part += x[0] + x[1];
            splitPair<S::BF, NP>(x[0], x[1], qf[nt][ls * S::SUB + u][b]);
          }
      part += __shfl_xor_sync(0xffffffffu, part, 1);
      part += __shfl_xor_sync(0xffffffffu, part, 2);
      sumq[nt][0] = __shfl_sync(0xffffffffu, part, 8 * t);
      sumq[nt][1] = __shfl_sync(0xffffffffu, part, 8 * t + 4);
    }
  }
  __syncthreads();  // tabS

  float m[NT][2], l[NT][2], zs[NT][2], acc[NT][S::MT][4];
#pragma unroll
  for (int nt = 0; nt < NT; nt++) {
#pragma unroll
    for (int h = 0; h < 2; h++) m[nt][h] = S::QUANT ? -1e30f : -INFINITY, l[nt][h] = 0.f, zs[nt][h] = 0.f;
#pragma unroll
    for (int mt = 0; mt < S::MT; mt++)
#pragma unroll
      for (int i = 0; i < 4; i++) acc[nt][mt][i] = 0.f;
  }
  if constexpr (NS > 0) {  // int8 / int4: NS - 1 tiles in flight per warp through cp.async stages
    const int stageOff = (4 * (NW * G * (D + 2) + DEC_TAB) + 15) / 16 * 16;
    uint8_t* stw = dsmem + stageOff + warp * NS * S::SB;  // this warp's stages [NS, SB]
#pragma unroll
    for (int s = 0; s < NS - 1; s++)
      decIssueS<KT, D>(stw + s * S::SB, ctx, kCache, vCache, kSz, vSz, tileStart(s), s < myTiles, lane);
    uint8_t *rd = stw, *wr = stw + (NS - 1) * S::SB, *const last = stw + (NS - 1) * S::SB;  // stages i, i + NS - 1
    for (int i = 0; i < myTiles; i++) {
      decIssueS<KT, D>(wr, ctx, kCache, vCache, kSz, vSz, tileStart(i + NS - 1), i + NS - 1 < myTiles, lane);
      wr = wr == last ? stw : wr + S::SB;
      cpWait<NS - 1>();  // tile i's group has landed
      __syncwarp();
      DecStage<KT, D> cur;
      decReadS<KT, D>(cur, rd, g, t);
      decTileQ<KT, D, NT, QKS>(cur, qq, sumq, dq, m, l, zs, acc, [] {}, [] {});
      rd = rd == last ? stw : rd + S::SB;
      __syncwarp();  // stage i is read: a later call refills it
    }
  } else {
    DecStage<KT, D> st[DEPTH];
#pragma unroll
    for (int s = 0; s < DEPTH; s++) {
      decIssueK<KT, D>(st[s], ctx, kCache, kSz, tileStart(s), s < myTiles, g, t);
      decIssueV<KT, D>(st[s], ctx, vCache, vSz, tileStart(s), s < myTiles, g, t);
    }
    for (int i0 = 0; i0 < myTiles; i0 += DEPTH) {
#pragma unroll
      for (int s = 0; s < DEPTH; s++) {
        const int i = i0 + s;
        if (i < myTiles) {  // warp-uniform
          if constexpr (S::QUANT) {
            const int jn = tileStart(i + DEPTH);
            const bool on = i + DEPTH < myTiles;
            decTileQ<KT, D, NT, QKS>(
                st[s], qq, sumq, dq, m, l, zs, acc,
                [&] { decIssueK<KT, D>(st[s], ctx, kCache, kSz, jn, on, g, t); },
                [&] { decIssueV<KT, D>(st[s], ctx, vCache, vSz, jn, on, g, t); });
          } else {
            // Scores of key rows g, g+8 for heads 2t, 2t+1 (per n-tile).
            // 2 * NP independent accumulator chains (even / odd k-steps x pieces), summed at the end.
            float sc[NT][4];
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
              float part[2][NP][4];
#pragma unroll
              for (int a = 0; a < 2; a++)
#pragma unroll
                for (int pc = 0; pc < NP; pc++)
#pragma unroll
                  for (int e = 0; e < 4; e++) part[a][pc][e] = 0.f;
#pragma unroll
              for (int ls = 0; ls < S::LS; ls++)
#pragma unroll
                for (int u = 0; u < S::SUB; u++) {
                  uint32_t a0, a1, a2, a3;
                  kFrag<KT>(st[s].k[0][ls], u, a0, a2);
                  kFrag<KT>(st[s].k[1][ls], u, a1, a3);
                  const int ks = ls * S::SUB + u;
#pragma unroll
                  for (int pc = 0; pc < NP; pc++)
                    mma16816<S::BF>(part[ks & 1][pc], a0, a1, a2, a3, qf[nt][ks][0][pc], qf[nt][ks][1][pc]);
                }
#pragma unroll
              for (int e = 0; e < 4; e++) {
                float x = 0.f;
#pragma unroll
                for (int pc = NP - 1; pc >= 0; pc--) x += part[0][pc][e] + part[1][pc][e];
                sc[nt][e] = x;
              }
            }
            const bool ok0 = st[s].krow[0] >= 0, ok1 = st[s].krow[1] >= 0;
            const uint32_t ksz0 = st[s].ksz[0], ksz1 = st[s].ksz[1];
            // This stage's K registers are free: the tile DEPTH ahead goes in flight.
            decIssueK<KT, D>(st[s], ctx, kCache, kSz, tileStart(i + DEPTH), i + DEPTH < myTiles, g, t);
            float k0s = 1.f, k0z = 0.f, k1s = 1.f, k1z = 0.f, v0s = S::PS, v0z = 0.f, v1s = S::PS, v1z = 0.f;
            if constexpr (S::QUANT) {
              const float2 a = h2f(ksz0), b = h2f(ksz1), c = h2f(st[s].vsz[0]), d = h2f(st[s].vsz[1]);
              k0s = a.x, k0z = a.y, k1s = b.x, k1z = b.y;
              v0s = c.x * S::PS, v0z = c.y, v1s = d.x * S::PS, v1z = d.y;
            }
            // Online softmax per head; the max over the tile's 16 keys across the 8 lanes of equal t.
            uint32_t pb[NT][2][NP];
            float corr[NT][2];
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
              float pp[4];
#pragma unroll
              for (int h = 0; h < 2; h++) {
                float s0 = sc[nt][h], s1 = sc[nt][2 + h];
                if constexpr (S::QUANT) {
                  s0 = fmaf(k0s, s0, k0z * sumq[nt][h]);
                  s1 = fmaf(k1s, s1, k1z * sumq[nt][h]);
                }
                s0 = ok0 ? s0 : -INFINITY;
                s1 = ok1 ? s1 : -INFINITY;
                float mx = fmaxf(s0, s1);
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 8));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
                const float mNew = fmaxf(m[nt][h], mx);
                const float cr = mNew == -INFINITY ? 1.f : exp2f(m[nt][h] - mNew);
                const float p0 = s0 == -INFINITY ? 0.f : exp2f(s0 - mNew);
                const float p1 = s1 == -INFINITY ? 0.f : exp2f(s1 - mNew);
                m[nt][h] = mNew;
                corr[nt][h] = cr;
                l[nt][h] = fmaf(l[nt][h], cr, p0 + p1);
                if constexpr (S::QUANT) zs[nt][h] = fmaf(zs[nt][h], cr, fmaf(p0, v0z, p1 * v1z));
                pp[h] = p0 * v0s;
                pp[2 + h] = p1 * v1s;
              }
              uint32_t r0[NP], r1[NP];
              splitPair<S::BF, NP>(pp[0], pp[1], r0);  // key row g, heads 2t, 2t+1
              splitPair<S::BF, NP>(pp[2], pp[3], r1);  // key row g+8
#pragma unroll
              for (int pc = 0; pc < NP; pc++) pb[nt][0][pc] = movTrans(r0[pc]), pb[nt][1][pc] = movTrans(r1[pc]);
            }
            bool rescale = false;  // once the maxima settle, corr is 1 and the rescale is skipped (warp vote)
#pragma unroll
            for (int nt = 0; nt < NT; nt++) rescale = rescale || corr[nt][0] != 1.f || corr[nt][1] != 1.f;
            if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
              for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int mt = 0; mt < S::MT; mt++)
#pragma unroll
                  for (int e = 0; e < 4; e++) acc[nt][mt][e] *= corr[nt][e & 1];
            }
            // O^T += V^T P^T.
#pragma unroll
            for (int mt = 0; mt < S::MT; mt++) {
              uint32_t a0, a1, a2, a3;
              vFrag<KT, S::VW>(st[s].v[0], st[s].v[1], mt, a0, a1);
              vFrag<KT, S::VW>(st[s].v[2], st[s].v[3], mt, a2, a3);
#pragma unroll
              for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int pc = 0; pc < NP; pc++)
                  mma16816<S::BF>(acc[nt][mt], a0, a1, a2, a3, pb[nt][0][pc], pb[nt][1][pc]);
            }
            decIssueV<KT, D>(st[s], ctx, vCache, vSz, tileStart(i + DEPTH), i + DEPTH < myTiles, g, t);
          }
        }
      }
    }
  }
  // Lane sums over the 8 lanes of equal t, then this warp's partial output (d = g VPL + 2 mt (+1 for rows g+8)).
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
      for (int o = 4; o < 32; o <<= 1) {
        l[nt][h] += __shfl_xor_sync(0xffffffffu, l[nt][h], o);
        if constexpr (S::QUANT) zs[nt][h] += __shfl_xor_sync(0xffffffffu, zs[nt][h], o);
      }
#pragma unroll
  for (int nt = 0; nt < NT; nt++) {
#pragma unroll
    for (int mt = 0; mt < S::MT; mt++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int h = nt * 8 + 2 * t + (e & 1), d = g * S::VPL + 2 * mt + (e >> 1);
        if (h < G && d < D)
          red[(warp * G + h) * D + d] = fmaf(acc[nt][mt][e], vRowScale<KT, (int)S::PS>(e >> 1), zs[nt][e & 1]);
      }
    if (g == 0)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int h = nt * 8 + 2 * t + e;
        if (h < G) mS[warp * G + h] = m[nt][e] <= -1e30f ? -INFINITY : m[nt][e], lS[warp * G + h] = l[nt][e];
      }
  }
  __syncthreads();
  for (int o = tid; o < G * D; o += DEC_THREADS) {
    const int h = o / D, i = o % D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < NW; w++) M = fmaxf(M, mS[w * G + h]);
    float sum = 0.f, L = 0.f;
#pragma unroll
    for (int w = 0; w < NW; w++) {
      const float mw = mS[w * G + h], wt = mw == -INFINITY ? 0.f : exp2f(mw - M);
      sum = fmaf(wt, red[(w * G + h) * D + i], sum);
      L = fmaf(wt, lS[w * G + h], L);
    }
    const size_t row = ((size_t)y * nh + kvh * G + h) * splits + split;
    partO[row * D + i] = sum;
    if (i == 0) {
      partML[row * 2] = M;
      partML[row * 2 + 1] = L;
    }
  }
}

#define COMB_THREADS 128
#define COMB_CHUNK 256
// out[t, h*d + i] = sum_s 2^(m_s - M) partO_s / sum_s 2^(m_s - M) l_s over the splits that hold keys
// (ceil(span / splitLen) of them; m_s in log2 units); t = tokenList[y] (or y). out: [n, nh*d] A; d <= 2 *
// COMB_THREADS. grid rows*nh, block COMB_THREADS; launched as a programmatic dependent of attn_split on sm_90. The
// split weights are computed once per chunk of COMB_CHUNK splits into shared memory; each thread then sums its dims
// over the chunk with independent loads in flight.
template <typename A>
__device__ void attnCombine(const float* partO, const float* partML, A* out, const int* positions,
                            const int* tokenList, int nh, int d, int splits, int splitLen, int window) {
  __shared__ float wS[COMB_CHUNK];
  __shared__ float rS[COMB_THREADS / 32];
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");  // attn_split's partials are complete and visible
#endif
  const size_t row = blockIdx.x;
  const int y = row / nh, h = row % nh, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int t = tokenList ? tokenList[y] : y;
  const int p = positions[t];
  const int span = window > 0 ? min(p + 1, window) : p + 1;
  const int used = min(splits, (span + splitLen - 1) / splitLen);
  const float* ml = partML + row * splits * 2;
  float M = -INFINITY;
  for (int s = tid; s < used; s += COMB_THREADS) M = fmaxf(M, ml[2 * s]);
  M = warpMax(M);
  if (lane == 0) rS[warp] = M;
  __syncthreads();
  M = rS[0];
#pragma unroll
  for (int w = 1; w < COMB_THREADS / 32; w++) M = fmaxf(M, rS[w]);
  float acc0 = 0.f, acc1 = 0.f, Lp = 0.f;
  const int i0 = tid, i1 = tid + COMB_THREADS;
  for (int c0 = 0; c0 < used; c0 += COMB_CHUNK) {
    const int n = min(COMB_CHUNK, used - c0);
    __syncthreads();  // rS read / the previous chunk's wS consumed
    for (int s = tid; s < n; s += COMB_THREADS) {
      const float ls = ml[2 * (c0 + s) + 1];
      const float w = ls > 0.f ? exp2f(ml[2 * (c0 + s)] - M) : 0.f;
      wS[s] = w;
      Lp = fmaf(w, ls, Lp);
    }
    __syncthreads();
    const float* po = partO + (row * splits + c0) * d;
    if (i0 < d) {
      float a = 0.f;
#pragma unroll 8
      for (int s = 0; s < n; s++) a = fmaf(wS[s], po[(size_t)s * d + i0], a);
      acc0 += a;
    }
    if (i1 < d) {
      float a = 0.f;
#pragma unroll 8
      for (int s = 0; s < n; s++) a = fmaf(wS[s], po[(size_t)s * d + i1], a);
      acc1 += a;
    }
  }
  Lp = warpSum(Lp);
  __syncthreads();
  if (lane == 0) rS[warp] = Lp;
  __syncthreads();
  float L = 0.f;
#pragma unroll
  for (int w = 0; w < COMB_THREADS / 32; w++) L += rS[w];
  A* dst = out + ((size_t)t * nh + h) * d;
  if (i0 < d) dst[i0] = fromf<A>(L > 0.f ? acc0 / L : 0.f);
  if (i1 < d) dst[i1] = fromf<A>(L > 0.f ? acc1 / L : 0.f);
}

// attn_split_<kv>_d<D>_g<GP>[_variant]: kv in bf16, f16, int8, int4; D in 8, 32, 64, 80, 96, 128, 256; GP 8 (groups of
// 1..8 query heads: one n-tile) or 16 (9..16: two) (ops.ts DECODE_DIMS / decodeGroupPad pick one).
#define INSTANTIATE_DEC_V(NAME, KT, D, GP, VAR, MINB, DEPTH, NS)                                                 \
  extern "C" __global__ void __launch_bounds__(DEC_THREADS, MINB) attn_split_##NAME##_d##D##_g##GP##VAR(          \
      const float* q, const uint8_t* kCache, const uint8_t* vCache, const __half2* kScale, const __half2* vScale, \
      const int* blockTables, const int* tokenSeq, const int* positions, const int* tokenList, float* partO,      \
      float* partML, int nh, int nkv, int blockSize, int maxBlocks, int splitLen, int window, float scale) {      \
    attnDecode<KT, D, GP, DEPTH, NS>(q, kCache, vCache, kScale, vScale, blockTables, tokenSeq, positions,         \
                                     tokenList, partO, partML, nh, nkv, blockSize, maxBlocks, splitLen, window,   \
                                     scale);                                                                      \
  }
#define INSTANTIATE_DEC(NAME, KT, D, GP) INSTANTIATE_DEC_V(NAME, KT, D, GP, , (decMinBlocks<KT, D, GP>()), 0, -1)
#define INSTANTIATE_DEC_G(NAME, KT, D) \
  INSTANTIATE_DEC(NAME, KT, D, 8)      \
  INSTANTIATE_DEC(NAME, KT, D, 16)
#define INSTANTIATE_DEC_D(NAME, KT)  \
  INSTANTIATE_DEC_G(NAME, KT, 8)     \
  INSTANTIATE_DEC_G(NAME, KT, 32)    \
  INSTANTIATE_DEC_G(NAME, KT, 64)    \
  INSTANTIATE_DEC_G(NAME, KT, 80)    \
  INSTANTIATE_DEC_G(NAME, KT, 96)    \
  INSTANTIATE_DEC_G(NAME, KT, 128)   \
  INSTANTIATE_DEC_G(NAME, KT, 256)
#define INSTANTIATE_A(A)                                                                                           \
  extern "C" __global__ void attn_combine_##A(const float* partO, const float* partML, A* out, const int* positions, \
                                               const int* tokenList, int nh, int d, int splits, int splitLen,     \
                                               int window) {                                                      \
    attnCombine<A>(partO, partML, out, positions, tokenList, nh, d, splits, splitLen, window);                    \
  }
INSTANTIATE_DEC_D(bf16, KvBf16)
INSTANTIATE_DEC_D(f16, KvF16)
INSTANTIATE_DEC_D(int8, KvI8)
INSTANTIATE_DEC_D(int4, KvI4)
// Bench-only variants (ops.ts DECODE_VARIANTS) of the Llama-3 shape: _s3 3 cp.async stages per warp, _b5 / _b6 5 / 6
// blocks per SM asked (register caps 96 / 80, with spills), _reg tiles in flight in registers (one per warp).
INSTANTIATE_DEC_V(int8, KvI8, 128, 8, _s3, 3, 0, 3)
INSTANTIATE_DEC_V(int4, KvI4, 128, 8, _s3, 4, 0, 3)
INSTANTIATE_DEC_V(int4, KvI4, 128, 8, _b5, 5, 0, 2)
INSTANTIATE_DEC_V(int4, KvI4, 128, 8, _b6, 6, 0, 2)
INSTANTIATE_DEC_V(int8, KvI8, 128, 8, _reg, 4, 1, 0)
INSTANTIATE_DEC_V(int4, KvI4, 128, 8, _reg, 4, 1, 0)
INSTANTIATE_A(bf16)
INSTANTIATE_A(f16)
INSTANTIATE_A(f32)


// Operand helpers of the split-K decode attention (attn_decode.cu): launch constants, the register layout of K / V
// fragments for each cache type, and the int8 / int4 integer-tensor-core operands. Included by attn_decode.cu only.
#pragma once
#include "kv_cache.cuh"

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
  // V fragments by ldmatrix.trans from the stage (vFragL): int4 rows of whole 64-byte pairs of segments, int8 of 32.
  static constexpr bool LDM = QUANT && (KT::BITS == 4 ? D % 64 == 0 : D % 32 == 0);
  static constexpr int NCH = 16 * CH, CPI = (NCH + 31) / 32;  // 16-byte chunks of a tile's K (or V), per lane
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
// V^T A fragments from ldmatrix.x4.trans of the stage's V rows (DecShape::LDM): xa / xb hold, for keys 2t, 2t+1 / 2t+8,
// 2t+9 (low / high half), b16 column g of a 16-byte segment s of the rows. int4: nibbles 4g..4g+3 of the segment,
// m-tiles 2s (nibbles 0, 1) and 2s+1 (2, 3: x >> 8), row g the low nibble (value * 2^-24), row g+8 the high one (*
// 2^-20); int8: bytes 2g, 2g+1, m-tile s, both rows * 2^-24. Same scaling as vFragQ (vRowScale); dims: vDim.
template <typename KT>
__device__ __forceinline__ void vFragL(uint32_t xa, uint32_t xb, int j, uint32_t& a0, uint32_t& a1, uint32_t& a2,
                                       uint32_t& a3) {
  if constexpr (KT::BITS == 8) {
    a0 = prmt(xa, 0u, 0x4240), a1 = prmt(xa, 0u, 0x4341), a2 = prmt(xb, 0u, 0x4240), a3 = prmt(xb, 0u, 0x4341);
  } else {
    if (j) xa >>= 8, xb >>= 8;
    a0 = xa & 0x000f000fu, a1 = xa & 0x00f000f0u, a2 = xb & 0x000f000fu, a3 = xb & 0x00f000f0u;
  }
}
// ldmatrix.x4.trans (b16) at shared address a: lane l gives the row address of matrix l / 8.
__device__ __forceinline__ void ldsm4t(uint32_t a, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
// Output dim of V accumulator row r (0: g, 1: g+8) of m-tile mt for lane group g: ldmatrix layouts (vFragL) or the
// lane-segment ones (vFrag / vFragQ: lane g holds dims [g VPL, (g+1) VPL)).
template <typename KT, int D, bool LDM> __device__ __forceinline__ int vDim(int g, int mt, int r) {
  if constexpr (LDM && KT::BITS == 4) return 32 * (mt >> 1) + 4 * g + 2 * (mt & 1) + r;
  else if constexpr (LDM) return 16 * mt + 2 * g + r;
  else return g * (2 * ((D + 15) / 16)) + 2 * mt + r;
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

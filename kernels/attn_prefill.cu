// Prefill attention over the paged KV cache (kv_cache.cuh): attn_prefill, tiled flash-style on CUDA cores (any KV
// type, d <= 128, exact to f32 rounding), and attn_prefill_tc, the same on tensor cores (f16 / bf16 KV, d 64/80/96/128).
#include "kv_cache.cuh"

#define PF_ROWS 64  // query rows (token x head) per prefill tile
#define PF_KEYS 32  // keys per step
#define PF_MAXD 128

// Causal paged attention for prefill chunks, flash style (online softmax), on CUDA cores: one block per (KV
// head, tile); a tile is up to PF_ROWS/G consecutive query tokens of one sequence, all G heads of the group.
// tiles: [numTiles, 3] i32 (sequence, first token, token count). Each K/V block of the tile's causal range is
// read once per tile (dequantized on load). out: [n, nh*d] A (normalized). d <= 128, d % 8 == 0. grid (nkv,
// numTiles), block 128, dynamic smem (PF_ROWS*(d+1) + PF_KEYS*(d+1) + PF_KEYS*d + PF_ROWS*PF_KEYS) floats +
// PF_KEYS ints.
template <typename KT, typename A>
__device__ void attnPrefill(const float* q, const uint8_t* kCache, const uint8_t* vCache, const __half2* kSz,
                            const __half2* vSz, const int* blockTables, const int* positions, const int* tiles, A* out,
                            int nh, int nkv, int d, int blockSize, int maxBlocks, int window, float scale) {
  extern __shared__ __align__(16) uint8_t dsmem[];
  float* smem = reinterpret_cast<float*>(dsmem);
  const int kvh = blockIdx.x, tile = blockIdx.y, G = nh / nkv, tid = threadIdx.x;
  const int seq = tiles[3 * tile], t0 = tiles[3 * tile + 1], cnt = tiles[3 * tile + 2];
  const int R = cnt * G, LQ = d + 1, LK = d + 1, RB = kvRowBytes<KT>(d);
  float* qs = smem;                       // [PF_ROWS, d+1] scaled queries
  float* ks = qs + PF_ROWS * LQ;          // [PF_KEYS, d+1]
  float* vs = ks + PF_KEYS * LK;          // [PF_KEYS, d]
  float* ss = vs + PF_KEYS * d;           // [PF_ROWS, PF_KEYS] scores, then probabilities
  int* kpos = (int*)(ss + PF_ROWS * PF_KEYS);  // [PF_KEYS] key position, -1: masked for everyone
  const int* table = blockTables + (size_t)seq * maxBlocks;
  for (int o = tid; o < R * d; o += blockDim.x) {
    const int r = o / d, i = o % d;
    qs[r * LQ + i] = q[((size_t)(t0 + r / G) * nh + kvh * G + r % G) * d + i] * scale;
  }
  const int pFirst = positions[t0], pLast = positions[t0 + cnt - 1];
  const int kStart = window > 0 ? max(0, pFirst - window + 1) : 0;
  // Thread roles: row r = tid / 2 (scores, softmax, output); half = tid % 2 takes keys [half*16, +16) and
  // output dims [half*d/2, +d/2).
  const int r = tid >> 1, half = tid & 1, dh = d / 2;
  const bool rowOk = r < R;
  const int pr = rowOk ? positions[t0 + r / G] : -1;
  float m = -INFINITY, l = 0.f, o[PF_MAXD / 2];
#pragma unroll
  for (int e = 0; e < PF_MAXD / 2; e++) o[e] = 0.f;
  for (int k0 = kStart; k0 <= pLast; k0 += PF_KEYS) {
    __syncthreads();  // previous step's ks/vs/ss reads are done
    for (int kk = tid; kk < PF_KEYS; kk += blockDim.x) {
      const int j = k0 + kk;
      const int blk = j <= pLast ? table[j / blockSize] : -1;
      kpos[kk] = blk < 0 ? -1 : j;
    }
    for (int c = tid; c < PF_KEYS * (d / 8); c += blockDim.x) {
      const int kk = c / (d / 8), i0 = (c % (d / 8)) * 8, j = k0 + kk;
      const int blk = j <= pLast ? table[j / blockSize] : -1;
      float kf[8], vf[8];
      if (blk >= 0) {
        const size_t row = ((size_t)blk * nkv + kvh) * blockSize + j % blockSize;
        const float2 kz = kvScale<KT>(kSz, row), vz = kvScale<KT>(vSz, row);
        kvLoad8<KT>(kCache + row * RB, i0, kz.x, kz.y, kf);
        kvLoad8<KT>(vCache + row * RB, i0, vz.x, vz.y, vf);
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) kf[e] = 0.f, vf[e] = 0.f;
      }
#pragma unroll
      for (int e = 0; e < 8; e++) ks[kk * LK + i0 + e] = kf[e], vs[kk * d + i0 + e] = vf[e];
    }
    __syncthreads();
    // Scores of this thread's 16 keys, masked (causal, window, missing block), and the running max.
    float sc[PF_KEYS / 2];
    float tmax = -INFINITY;
#pragma unroll
    for (int u = 0; u < PF_KEYS / 2; u++) sc[u] = 0.f;
    if (rowOk) {
      for (int i = 0; i < d; i++) {
        const float qv = qs[r * LQ + i];
#pragma unroll
        for (int u = 0; u < PF_KEYS / 2; u++) sc[u] += qv * ks[(half * 16 + u) * LK + i];
      }
#pragma unroll
      for (int u = 0; u < PF_KEYS / 2; u++) {
        const int j = kpos[half * 16 + u];
        const bool ok = j >= 0 && j <= pr && (window <= 0 || j > pr - window);
        sc[u] = ok ? sc[u] : -INFINITY;
        tmax = fmaxf(tmax, sc[u]);
      }
    }
    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
    const float mNew = fmaxf(m, tmax);
    const float corr = mNew == -INFINITY ? 1.f : expf(m - mNew);
    float psum = 0.f;
#pragma unroll
    for (int u = 0; u < PF_KEYS / 2; u++) {
      const float pu = mNew == -INFINITY || sc[u] == -INFINITY ? 0.f : expf(sc[u] - mNew);
      if (rowOk) ss[r * PF_KEYS + half * 16 + u] = pu;
      psum += pu;
    }
    psum += __shfl_xor_sync(0xffffffffu, psum, 1);
    l = l * corr + psum;
    m = mNew;
    __syncwarp();
    if (rowOk) {
#pragma unroll
      for (int e = 0; e < PF_MAXD / 2; e++) o[e] *= corr;
      for (int kk = 0; kk < PF_KEYS; kk++) {
        const float pk = ss[r * PF_KEYS + kk];
        if (pk == 0.f) continue;
        const float* vrow = vs + kk * d + half * dh;
#pragma unroll
        for (int e = 0; e < PF_MAXD / 2; e++)
          if (e < dh) o[e] += pk * vrow[e];
      }
    }
  }
  if (rowOk) {
    A* dst = out + ((size_t)(t0 + r / G) * nh + kvh * G + r % G) * d + half * dh;
#pragma unroll
    for (int e = 0; e < PF_MAXD / 2; e++)
      if (e < dh) dst[e] = fromf<A>(l > 0.f ? o[e] / l : 0.f);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Prefill attention on tensor cores (flash-attention-2 style), f16 / bf16 KV caches, head dims PFT_DIMS.
//
// Same tile list and grid as attn_prefill: block (kvh, tile) takes the R = cnt*G query rows (token x head of KV group
// kvh, row r = token r/G, head r%G) of one tile, PFT_WARPS warps of 16 rows each (PF_ROWS = 64 rows: every query head
// of the group shares each K/V tile). Tiles run last-first (gridDim.y - 1 - blockIdx.y): the longest causal ranges of
// a sequence start first. Keys step by PFT_KEYS; K and V rows of a step are copied with cp.async (zero-filled where
// the block table has no block) into shared memory [2 stages][PFT_KEYS][D + 8] (the 16-byte pad makes the ldmatrix
// rows conflict-free), the next step's copy in flight while this one is computed.
// Per warp: S [16 rows, PFT_KEYS] = Q . K^T (mma.sync m16n8k16, f32 accumulators; K fragments by ldmatrix), masked
// (causal, window, missing block), online softmax in base 2 in registers (q pre-scaled by scale * log2 e; the row
// sums stay per lane until the end), P re-packed from the S accumulators as the A operand of O += P . V (V fragments by
// ldmatrix.trans).
// Rounding: q * scale * log2 e and p are rounded to the cache's 16-bit type (K and V are used as stored). With u the
// type's unit roundoff (bf16 2^-8, f16 2^-11) each score is off by at most d_j = u * scale * sum_i |q_i k_ji| and each
// p_j by a factor e^{d_j} (1 + u) (the row sum l uses the unrounded p), so |o - o_exact| <= 2a / (1 - a) * max |v|
// with a = e^{max d_j} (1 + u) - 1 (tests/cuda_attention_test.ts checks this bound and a relative one).
// out: [n, nh*D] A. grid (nkv, numTiles), block PFT_WARPS*32, dynamic smem pftSmemBytes(D).
// ---------------------------------------------------------------------------------------------------------------
#define PFT_WARPS 4
#define PFT_KEYS 64

__device__ __forceinline__ void cpAsync16(void* smem, const void* gmem, int bytes) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cpAsyncWait1() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }

__device__ __forceinline__ void ldsm4(const void* p, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(s));
}
__device__ __forceinline__ void ldsm4t(const void* p, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(s));
}
// (x, y) rounded to the operand type, x in the low half.
template <bool BF> __device__ __forceinline__ uint32_t pack2(float x, float y) {
  if constexpr (BF) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

template <int D> constexpr int pftSmemBytes() { return 2 * 2 * PFT_KEYS * (D + 8) * 2 + 2 * (PFT_KEYS / 32) * 4; }

template <typename KT, int D, typename A>
__device__ __forceinline__ void attnPrefillTc(const float* q, const uint8_t* kCache, const uint8_t* vCache,
                                              const int* blockTables, const int* positions, const int* tiles, A* out,
                                              int nh, int nkv, int blockSize, int maxBlocks, int window, float scale) {
  static_assert(KT::BITS == 16 && D % 16 == 0 && D <= 256, "attn_prefill_tc: 16-bit KV, D % 16 == 0");
  constexpr bool BF = KT::BF;
  constexpr int LDS = D + 8;              // shared row stride in 16-bit values
  constexpr int KSTEPS = D / 16;          // k-steps of Q . K^T
  constexpr int NT = PFT_KEYS / 8;        // n-tiles of S
  constexpr int DT = D / 8;               // n-tiles of O
  constexpr int CH = D / 8;               // 16-byte chunks per cache row
  constexpr int OKW = PFT_KEYS / 32;      // mask words per stage
  extern __shared__ __align__(16) uint8_t dsmem[];
  uint16_t* kS = reinterpret_cast<uint16_t*>(dsmem);                       // [2][PFT_KEYS][LDS] K rows
  uint16_t* vS = kS + 2 * PFT_KEYS * LDS;                                  // [2][PFT_KEYS][LDS] V rows
  uint32_t* okS = reinterpret_cast<uint32_t*>(vS + 2 * PFT_KEYS * LDS);    // [2][OKW] bit: the key's block exists
  const int kvh = blockIdx.x, tile = gridDim.y - 1 - blockIdx.y, G = nh / nkv;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  const int seq = tiles[3 * tile], t0 = tiles[3 * tile + 1], cnt = tiles[3 * tile + 2], R = cnt * G;
  const int* table = blockTables + (size_t)seq * maxBlocks;
  const int pFirst = positions[t0], pLast = positions[t0 + cnt - 1];
  const int kStart = window > 0 ? max(0, pFirst - window + 1) : 0;
  const int nSteps = (pLast - kStart) / PFT_KEYS + 1;

  // Stage `step`'s K/V rows into buffer `buf` (cp.async, one group per call).
  auto load = [&](int step, int buf) {
    const int k0 = kStart + step * PFT_KEYS;
    uint16_t* kb = kS + buf * PFT_KEYS * LDS;
    uint16_t* vb = vS + buf * PFT_KEYS * LDS;
    for (int c = tid; c < PFT_KEYS * CH; c += PFT_WARPS * 32) {
      const int kk = c / CH, ch = c % CH, j = k0 + kk;
      const int blk = j <= pLast ? table[j / blockSize] : -1;
      const size_t row = blk < 0 ? 0 : ((size_t)blk * nkv + kvh) * blockSize + j % blockSize;
      const size_t off = row * (2 * D) + ch * 16;
      cpAsync16(kb + kk * LDS + ch * 8, kCache + off, blk < 0 ? 0 : 16);
      cpAsync16(vb + kk * LDS + ch * 8, vCache + off, blk < 0 ? 0 : 16);
    }
    if (warp == 0) {
#pragma unroll
      for (int w = 0; w < OKW; w++) {
        const int j = k0 + 32 * w + lane;
        const unsigned ok = __ballot_sync(0xffffffffu, j <= pLast && table[j / blockSize] >= 0);
        if (lane == 0) okS[buf * OKW + w] = ok;
      }
    }
    cpAsyncCommit();
  };
  load(0, 0);

  // Q fragments (a0: row g, dims 2t..2t+1; a1: row g+8; a2, a3: dims + 8), rounded to the operand type.
  const float qScale = scale * 1.4426950408889634f;
  int pr[2];
  uint32_t qa[KSTEPS][4];
#pragma unroll
  for (int rr = 0; rr < 2; rr++) {
    const int r = warp * 16 + g + 8 * rr;
    const bool ok = r < R;
    pr[rr] = ok ? positions[t0 + r / G] : -1;  // -1: every key masked
    const float* qrow = q + ((size_t)(t0 + (ok ? r / G : 0)) * nh + kvh * G + (ok ? r % G : 0)) * D;
#pragma unroll
    for (int ks = 0; ks < KSTEPS; ks++) {
#pragma unroll
      for (int hh = 0; hh < 2; hh++) {
        const float2 x = ok ? *reinterpret_cast<const float2*>(qrow + ks * 16 + 8 * hh + 2 * t4) : make_float2(0.f, 0.f);
        qa[ks][rr + 2 * hh] = pack2<BF>(x.x * qScale, x.y * qScale);
      }
    }
  }

  float o[DT][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
  for (int dt = 0; dt < DT; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
  // ldmatrix lane offsets: K (non-trans): key (lane & 7) + 8 (lane >> 4), dim 8 ((lane >> 3) & 1);
  // V (trans): key (lane & 7) + 8 ((lane >> 3) & 1), dim 8 (lane >> 4).
  const int kOff = ((lane & 7) + 8 * (lane >> 4)) * LDS + 8 * ((lane >> 3) & 1);
  const int vOff = ((lane & 7) + 8 * ((lane >> 3) & 1)) * LDS + 8 * (lane >> 4);

  for (int s = 0; s < nSteps; s++) {
    const int buf = s & 1, k0 = kStart + s * PFT_KEYS;
    if (s + 1 < nSteps) load(s + 1, buf ^ 1);
    else cpAsyncCommit();  // empty group: wait_group 1 below then waits for this step's copy
    cpAsyncWait1();
    __syncthreads();
    const uint16_t* kb = kS + buf * PFT_KEYS * LDS;
    const uint16_t* vb = vS + buf * PFT_KEYS * LDS;

    float sc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KSTEPS; ks++) {
#pragma unroll
      for (int np = 0; np < NT / 2; np++) {
        uint32_t b0, b1, b2, b3;
        ldsm4(kb + np * 16 * LDS + ks * 16 + kOff, b0, b1, b2, b3);
        mma16816<BF>(sc[2 * np], qa[ks][0], qa[ks][1], qa[ks][2], qa[ks][3], b0, b1);
        mma16816<BF>(sc[2 * np + 1], qa[ks][0], qa[ks][1], qa[ks][2], qa[ks][3], b2, b3);
      }
    }
    // Mask unless every key of the step is present and visible to every row of the tile.
    uint32_t okw[OKW];
    bool full = k0 + PFT_KEYS - 1 <= pFirst && (window <= 0 || k0 > pLast - window);
#pragma unroll
    for (int w = 0; w < OKW; w++) okw[w] = okS[buf * OKW + w], full = full && okw[w] == 0xffffffffu;
    if (!full) {
#pragma unroll
      for (int nt = 0; nt < NT; nt++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int kk = nt * 8 + 2 * t4 + (e & 1), j = k0 + kk, p = pr[e >> 1];
          const bool ok = ((okw[nt >> 2] >> (kk & 31)) & 1u) && j <= p && (window <= 0 || j > p - window);
          if (!ok) sc[nt][e] = -INFINITY;
        }
      }
    }
    // Online softmax (base 2): rows g (e = 0, 1) and g+8 (e = 2, 3); a row's 4 lanes share max and correction.
    float base[2];
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < NT; nt++) mx = fmaxf(mx, fmaxf(sc[nt][2 * rr], sc[nt][2 * rr + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mNew = fmaxf(m[rr], mx);
      const float corr = mNew == -INFINITY ? 1.f : exp2f(m[rr] - mNew);
      base[rr] = mNew == -INFINITY ? 0.f : mNew;
      m[rr] = mNew;
      l[rr] *= corr;
#pragma unroll
      for (int dt = 0; dt < DT; dt++) o[dt][2 * rr] *= corr, o[dt][2 * rr + 1] *= corr;
    }
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const float p = exp2f(sc[nt][e] - base[e >> 1]);  // exp2(-inf) = 0
        sc[nt][e] = p;
        l[e >> 1] += p;
      }
    }
    // O += P . V, 16 keys per k-step.
#pragma unroll
    for (int kq = 0; kq < PFT_KEYS / 16; kq++) {
      const uint32_t a0 = pack2<BF>(sc[2 * kq][0], sc[2 * kq][1]), a1 = pack2<BF>(sc[2 * kq][2], sc[2 * kq][3]);
      const uint32_t a2 = pack2<BF>(sc[2 * kq + 1][0], sc[2 * kq + 1][1]);
      const uint32_t a3 = pack2<BF>(sc[2 * kq + 1][2], sc[2 * kq + 1][3]);
#pragma unroll
      for (int dp = 0; dp < DT / 2; dp++) {
        uint32_t b0, b1, b2, b3;
        ldsm4t(vb + kq * 16 * LDS + dp * 16 + vOff, b0, b1, b2, b3);
        mma16816<BF>(o[2 * dp], a0, a1, a2, a3, b0, b1);
        mma16816<BF>(o[2 * dp + 1], a0, a1, a2, a3, b2, b3);
      }
    }
    __syncthreads();  // every warp is done with buf before step s + 2's copy reuses it
  }

#pragma unroll
  for (int rr = 0; rr < 2; rr++) {
    float L = l[rr];
    L += __shfl_xor_sync(0xffffffffu, L, 1);
    L += __shfl_xor_sync(0xffffffffu, L, 2);
    const int r = warp * 16 + g + 8 * rr;
    if (r >= R) continue;
    const float inv = L > 0.f ? 1.f / L : 0.f;
    A* dst = out + ((size_t)(t0 + r / G) * nh + kvh * G + r % G) * D + 2 * t4;
#pragma unroll
    for (int dt = 0; dt < DT; dt++) {
      dst[dt * 8] = fromf<A>(o[dt][2 * rr] * inv);
      dst[dt * 8 + 1] = fromf<A>(o[dt][2 * rr + 1] * inv);
    }
  }
}

#define INSTANTIATE_PF(NAME, KT, A)                                                                               \
  extern "C" __global__ void __launch_bounds__(128) attn_prefill_##NAME##_##A(                                    \
      const float* q, const uint8_t* kCache, const uint8_t* vCache, const __half2* kScale, const __half2* vScale, \
      const int* blockTables, const int* positions, const int* tiles, A* out, int nh, int nkv, int d,             \
      int blockSize, int maxBlocks, int window, float scale) {                                                    \
    attnPrefill<KT, A>(q, kCache, vCache, kScale, vScale, blockTables, positions, tiles, out, nh, nkv, d,         \
                       blockSize, maxBlocks, window, scale);                                                      \
  }
#define INSTANTIATE_PF_A(NAME, KT) \
  INSTANTIATE_PF(NAME, KT, bf16)   \
  INSTANTIATE_PF(NAME, KT, f16)    \
  INSTANTIATE_PF(NAME, KT, f32)

INSTANTIATE_PF_A(bf16, KvBf16)
INSTANTIATE_PF_A(f16, KvF16)
INSTANTIATE_PF_A(int8, KvI8)
INSTANTIATE_PF_A(int4, KvI4)
// attn_prefill_tc_<kv>_d<D>_<act>: kv bf16 / f16, D in 64, 80, 96, 128 (ops.ts PFT_DIMS).
#define INSTANTIATE_PFT(NAME, KT, D, A)                                                                          \
  extern "C" __global__ void __launch_bounds__(PFT_WARPS * 32, 2) attn_prefill_tc_##NAME##_d##D##_##A(           \
      const float* q, const uint8_t* kCache, const uint8_t* vCache, const int* blockTables, const int* positions, \
      const int* tiles, A* out, int nh, int nkv, int blockSize, int maxBlocks, int window, float scale) {       \
    attnPrefillTc<KT, D, A>(q, kCache, vCache, blockTables, positions, tiles, out, nh, nkv, blockSize, maxBlocks, \
                            window, scale);                                                                     \
  }
#define INSTANTIATE_PFT_A(NAME, KT, D) \
  INSTANTIATE_PFT(NAME, KT, D, bf16)   \
  INSTANTIATE_PFT(NAME, KT, D, f16)    \
  INSTANTIATE_PFT(NAME, KT, D, f32)
#define INSTANTIATE_PFT_D(NAME, KT) \
  INSTANTIATE_PFT_A(NAME, KT, 64)   \
  INSTANTIATE_PFT_A(NAME, KT, 80)   \
  INSTANTIATE_PFT_A(NAME, KT, 96)   \
  INSTANTIATE_PFT_A(NAME, KT, 128)
INSTANTIATE_PFT_D(bf16, KvBf16)
INSTANTIATE_PFT_D(f16, KvF16)


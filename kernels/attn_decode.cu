// Split-K decode attention on tensor cores over the paged KV cache (kv_cache.cuh: f16, bf16, int8, int4): attn_split
// computes any token's causal context in splits, attn_combine merges the splits.
#include "kv_cache.cuh"
#include "ptx.cuh"  // pdlWait / pdlLaunchDependents

// ---------------------------------------------------------------------------------------------------------------
// Split-K decode attention on tensor cores (mma.sync m16n8k16, f32 accumulation).
//
// Block (kvh, y, split): the G = nh/nkv query heads of KV head kvh for token t = tokenList[y] (or y), keys
// [j0, j1) = first + split * splitLen + [0, splitLen) of its causal (windowed) context. DEC_WARPS warps work
// independently on interleaved tiles of 16 keys (warp w: tiles w, w + 4, ...), each with its own online softmax, and
// are merged once at the end: no block-wide barrier in the main loop. f16 / bf16: K/V bytes go straight from global
// memory into the registers of the mma fragments, DecShape::DEPTH (1-2) tiles in flight per warp; the block-table
// segment of the split is staged once in shared memory (up to DEC_TAB entries). int8 / int4: each warp streams its
// tiles through decStages (2) cp.async stages in shared memory (decIssueTile), so a tile in flight costs no registers
// (128 per thread: 4 blocks per SM); when every tile lies in one cache block (block size % 16 == 0) the prologue puts
// each tile's first cache row in shared memory, and a tile costs one lookup and five 16-byte cp.async per lane
// (decIssueF; partial tiles and missing blocks take decIssueS). The first tiles go in flight before q is prepared.
// Softmax in base 2 (q pre-scaled by log2 e). attn_split and attn_combine are launched as programmatic dependents
// (of rope_kv, of attn_split) and wait with griddepcontrol.wait before reading anything.
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
//               with V's q values as f16 subnormals (ldmatrix.trans pairs two keys' values per word, then bytes /
//               nibbles are masked into place, no subtraction: value * 2^-24, or 2^-20 for high nibbles, undone in
//               the epilogue): o = sum_j (p_j vScale_j) vq_j + sum_j p_j
//               vZero_j, p_j vScale_j * 2^8 in 2 f16 pieces (needs vScale < 256, i.e. a V row range below ~65000
//               for int8 / ~3800 for int4). The running max is re-reduced across lanes only when a score beats it.
// ---------------------------------------------------------------------------------------------------------------
#include "attn_decode_tiles.cuh"

// Tile i of warp `warp` (keys j0 + 16 (warp + i DEC_WARPS) ..) into its stage s (stw: the warp's stages) for attn_split
// on int8 / int4; returns the tile's mask of present keys (bit r: key r). Tiles past myTiles commit an empty group.
template <typename KT, int D, int OPT>
__device__ __forceinline__ unsigned decIssueTile(uint8_t* stw, int s, int i, int myTiles, int warp, bool tileRows,
                                                 const int* tabS, const DecCtx& ctx, int j0, int lane,
                                                 const uint8_t* kCache, const uint8_t* vCache, const __half2* kSz,
                                                 const __half2* vSz, const uint8_t* kLane, const uint8_t* vLane,
                                                 const __half2* szLane) {
  using S = DecShape<KT, D>;
  if (i >= myTiles || (OPT & 8)) {  // warp-uniform (OPT bit 3, a bench variant: compute only, on stale stages)
    cpCommit();
    return i >= myTiles ? 0u : 0xffffu;
  }
  const int ti = warp + i * DEC_WARPS, row0 = tileRows ? tabS[ti] : -1;
  if (row0 >= 0) {
    decIssueF<KT, D>(smemAddr(stw + s * S::SB), kLane, vLane, szLane, row0, lane);
    return 0xffffu;
  }
  return decIssueS<KT, D>(stw + s * S::SB, ctx, kCache, vCache, kSz, vSz, j0 + 16 * ti, lane);
}

// q: [n, nh, D] f32 (RoPE applied); blockTables [B, maxBlocks] i32; tokenSeq, positions [n] i32; tokenList [rows]
// i32 or null. partO [rows, nh, splits, D] f32 (unnormalized), partML [rows, nh, splits, 2] f32 (max of the scores
// in log2 units, i.e. times log2(e), sum of 2^(score - max)). grid (nkv, rows, splits), block DEC_THREADS, dynamic
// smem (kv.ts attentionSmemBytes): per-warp partial outputs [DEC_WARPS, G, D] f32, max and sum [DEC_WARPS, G] f32
// each, block-table entries [DEC_TAB] i32; int8 / int4 then (16-byte aligned) the warps' cp.async stages
// [DEC_WARPS, NS, DecShape::SB] bytes.
template <typename KT, int D, int GP, int DEPTH_ = 0, int NS_ = -1, int OPT = 0>
__device__ void attnDecode(const float* q, const uint8_t* kCache, const uint8_t* vCache, const __half2* kSz,
                           const __half2* vSz, const int* blockTables, const int* tokenSeq, const int* positions,
                           const int* tokenList, float* partO, float* partML, int nh, int nkv, int blockSize,
                           int maxBlocks, int splitLen, int window, float scale) {
  using S = DecShape<KT, D, DEPTH_>;
  constexpr int NT = GP > 8 ? 2 : 1, NW = DEC_WARPS, NP = S::NP, DEPTH = S::DEPTH;
  constexpr int NS = S::QUANT ? (NS_ < 0 ? decStages<KT>() : NS_) : 0;  // cp.async stages (0: registers)
  constexpr bool LDM = S::LDM && !(OPT & 1);  // V fragments by ldmatrix.trans (OPT bit 0: bench variant without)
  static_assert(!S::QUANT || NS >= 2, "int8 / int4 stream through cp.async stages");
  static_assert(D % 8 == 0 && GP <= 16, "decode shape");
  extern __shared__ __align__(16) uint8_t dsmem[];
  // Launched as a programmatic dependent of rope_kv (ops.ts): everything below reads q and the cache or writes the
  // partials, so wait first; attn_combine may launch at once (it waits for this grid in turn).
  pdlWait();
  pdlLaunchDependents();
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
  const int ntiles = (j1 - j0 + 15) / 16;
  const bool whole = blockSize % 16 == 0 && j0 % 16 == 0;
  // int8 / int4 with whole tiles: tabS [ntiles] holds each tile's first cache row, or -1 where the tile is partial
  // (past j1) or its block missing (those take decIssueS, which reads the table from global memory).
  const bool tileRows = S::QUANT && whole && ntiles <= DEC_TAB;
  const bool staged = !tileRows && ntab <= DEC_TAB;
  if (tileRows) {
    for (int i = tid; i < ntiles; i += DEC_THREADS) {
      const int j = j0 + 16 * i, b = j / blockSize, blk = table[b];
      tabS[i] = blk < 0 || j + 16 > j1 ? -1 : (blk * nkv + kvh) * blockSize + (j - b * blockSize);
    }
  } else if (staged) {
    for (int i = tid; i < ntab; i += DEC_THREADS) tabS[i] = table[tb0 + i];
  }
  const DecCtx ctx{staged ? tabS : table + tb0, tb0, j1, nkv, kvh, blockSize, 1.f / (float)blockSize, whole};
  const int myTiles = warp < ntiles ? (ntiles - warp + NW - 1) / NW : 0;
  auto tileStart = [&](int i) { return j0 + (warp + i * NW) * 16; };
  // int8 / int4: the warp's first tiles go in flight (cp.async stages) before q is prepared.
  const int stageOff = (4 * (NW * G * (D + 2) + DEC_TAB) + 15) / 16 * 16;
  uint8_t* stw = dsmem + stageOff + warp * NS * S::SB;  // this warp's stages [NS, SB]
  const uint8_t *kLane = kCache + 16 * lane, *vLane = vCache + 16 * lane;
  const __half2* szLane = (lane < 4 ? kSz : vSz) + 4 * (lane & 3);
  // TT tiles per iteration (OPT bit 2: 2, interleaved by decTileQ), NS - TT of them in flight meanwhile.
  constexpr int TT = (OPT & 4) ? 2 : 1;
  static_assert(NS == 0 || (NS % TT == 0 && NS >= 2 * TT), "stages hold whole iterations");
  unsigned mq[NS > 0 ? NS - TT : 1];  // masks of the tiles in flight, oldest first
  if constexpr (NS > 0) {
    __syncthreads();  // tabS
#pragma unroll
    for (int s = 0; s < NS - TT; s++)
      mq[s] = decIssueTile<KT, D, OPT>(stw, s, s, myTiles, warp, tileRows, tabS, ctx, j0, lane, kCache, vCache, kSz,
                                       vSz, kLane, vLane, szLane);
  }

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
  if constexpr (NS == 0) __syncthreads();  // tabS

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
  if constexpr (NS > 0) {  // int8 / int4: NS - TT tiles in flight per warp through cp.async stages
    int rs = 0, ws = NS - TT;  // stages of tiles i, i + NS - TT
    for (int i = 0; i < myTiles; i += TT) {
      unsigned mNew[TT];
#pragma unroll
      for (int tt = 0; tt < TT; tt++)
        mNew[tt] = decIssueTile<KT, D, OPT>(stw, ws + tt, i + NS - TT + tt, myTiles, warp, tileRows, tabS, ctx, j0,
                                            lane, kCache, vCache, kSz, vSz, kLane, vLane, szLane);
      ws = ws + TT == NS ? 0 : ws + TT;
      cpWait<NS - TT>();  // tiles i .. i + TT - 1 have landed
      __syncwarp();
      const uint8_t* stg[TT];
      unsigned mk[TT];
#pragma unroll
      for (int tt = 0; tt < TT; tt++) stg[tt] = stw + (rs + tt) * S::SB, mk[tt] = mq[tt];
      if constexpr (!(OPT & 2)) decTileQ<KT, D, LDM, NT, QKS, TT>(stg, mk, lane, qq, sumq, dq, m, l, zs, acc);
      rs = rs + TT == NS ? 0 : rs + TT;
#pragma unroll
      for (int s = 0; s < NS - 2 * TT; s++) mq[s] = mq[s + TT];
#pragma unroll
      for (int tt = 0; tt < TT; tt++) mq[NS - 2 * TT + tt] = mNew[tt];
      __syncwarp();  // these stages are read: later calls refill them
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
          {
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
            if (__any_sync(0xffffffffu, rescale)) rescaleAcc<NT, S::MT>(acc, corr);
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
        const int h = nt * 8 + 2 * t + (e & 1), d = vDim<KT, D, LDM>(g, mt, e >> 1);
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
#define COMB_FAST 8  // up to this many splits: one pass with every load in flight
// out[t, h*d + i] = sum_s 2^(m_s - M) partO_s / sum_s 2^(m_s - M) l_s over the splits that hold keys
// (ceil(span / splitLen) of them; m_s in log2 units); t = tokenList[y] (or y). out: [n, nh*d] A; d <= 2 *
// COMB_THREADS. grid rows*nh, block COMB_THREADS; launched as a programmatic dependent of attn_split on sm_90. The
// split weights are computed once per chunk of COMB_CHUNK splits into shared memory; each thread then sums its dims
// over the chunk with independent loads in flight. Up to COMB_FAST splits (batched int8 / int4 plans: 4) each thread
// loads every split's max, sum and its dims at once and merges them alone (one memory round trip after the wait).
template <typename A>
__device__ void attnCombine(const float* partO, const float* partML, A* out, const int* positions,
                            const int* tokenList, int nh, int d, int splits, int splitLen, int window) {
  __shared__ float wS[COMB_CHUNK];
  __shared__ float rS[COMB_THREADS / 32];
  pdlLaunchDependents();  // the o projection may launch and start its weight copies: it waits for this grid
  pdlWait();              // attn_split's partials are complete and visible
  const size_t row = blockIdx.x;
  const int y = row / nh, h = row % nh, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int t = tokenList ? tokenList[y] : y;
  const int p = positions[t];
  const int span = window > 0 ? min(p + 1, window) : p + 1;
  const int used = min(splits, (span + splitLen - 1) / splitLen);
  const float* ml = partML + row * splits * 2;
  const int i0 = tid, i1 = tid + COMB_THREADS;
  A* dst = out + ((size_t)t * nh + h) * d;
  if (used <= COMB_FAST) {  // block-uniform: every load in flight at once, no block reductions
    float mv[COMB_FAST], lv[COMB_FAST], o0[COMB_FAST], o1[COMB_FAST];
    const float* po = partO + row * splits * d;
#pragma unroll
    for (int s = 0; s < COMB_FAST; s++) {
      const bool on = s < used;
      mv[s] = on ? ml[2 * s] : -INFINITY, lv[s] = on ? ml[2 * s + 1] : 0.f;
      o0[s] = on && i0 < d ? po[(size_t)s * d + i0] : 0.f, o1[s] = on && i1 < d ? po[(size_t)s * d + i1] : 0.f;
    }
    float M = -INFINITY, L = 0.f, a0 = 0.f, a1 = 0.f;
#pragma unroll
    for (int s = 0; s < COMB_FAST; s++) M = fmaxf(M, mv[s]);
#pragma unroll
    for (int s = 0; s < COMB_FAST; s++) {
      const float w = lv[s] > 0.f ? exp2f(mv[s] - M) : 0.f;
      L = fmaf(w, lv[s], L), a0 = fmaf(w, o0[s], a0), a1 = fmaf(w, o1[s], a1);
    }
    if (i0 < d) dst[i0] = fromf<A>(L > 0.f ? a0 / L : 0.f);
    if (i1 < d) dst[i1] = fromf<A>(L > 0.f ? a1 / L : 0.f);
    return;
  }
  float M = -INFINITY;
  for (int s = tid; s < used; s += COMB_THREADS) M = fmaxf(M, ml[2 * s]);
  M = warpMax(M);
  if (lane == 0) rS[warp] = M;
  __syncthreads();
  M = rS[0];
#pragma unroll
  for (int w = 1; w < COMB_THREADS / 32; w++) M = fmaxf(M, rS[w]);
  float acc0 = 0.f, acc1 = 0.f, Lp = 0.f;
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
  if (i0 < d) dst[i0] = fromf<A>(L > 0.f ? acc0 / L : 0.f);
  if (i1 < d) dst[i1] = fromf<A>(L > 0.f ? acc1 / L : 0.f);
}

// attn_split_<kv>_d<D>_g<GP>[_variant]: kv in bf16, f16, int8, int4; D in 8, 32, 64, 80, 96, 128, 256; GP 8 (groups of
// 1..8 query heads: one n-tile) or 16 (9..16: two) (ops.ts DECODE_DIMS / decodeGroupPad pick one).
#define INSTANTIATE_DEC_V(NAME, KT, D, GP, VAR, MINB, DEPTH, NS, OPT)                                            \
  extern "C" __global__ void __launch_bounds__(DEC_THREADS, MINB) attn_split_##NAME##_d##D##_g##GP##VAR(          \
      const float* q, const uint8_t* kCache, const uint8_t* vCache, const __half2* kScale, const __half2* vScale, \
      const int* blockTables, const int* tokenSeq, const int* positions, const int* tokenList, float* partO,      \
      float* partML, int nh, int nkv, int blockSize, int maxBlocks, int splitLen, int window, float scale) {      \
    attnDecode<KT, D, GP, DEPTH, NS, OPT>(q, kCache, vCache, kScale, vScale, blockTables, tokenSeq, positions,         \
                                     tokenList, partO, partML, nh, nkv, blockSize, maxBlocks, splitLen, window,   \
                                     scale);                                                                      \
  }
#define INSTANTIATE_DEC(NAME, KT, D, GP) INSTANTIATE_DEC_V(NAME, KT, D, GP, , (decMinBlocks<KT, D, GP>()), 0, -1, 0)
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
// Bench-only variants (ops.ts DECODE_VARIANTS) of the Llama-3 shape: _s3 3 cp.async stages per warp, _v0 V fragments
// from per-lane shared-memory words (vFragQ) instead of ldmatrix.trans, _p2 two tiles per iteration (4 stages), and
// two diagnostics with wrong results: _lo loads only (no math), _co math only (no loads, stale stages).
INSTANTIATE_DEC_V(int8, KvI8, 128, 8, _s3, 4, 0, 3, 0)
INSTANTIATE_DEC_V(int4, KvI4, 128, 8, _s3, 4, 0, 3, 0)
INSTANTIATE_DEC_V(int8, KvI8, 128, 8, _v0, 4, 0, 2, 1)
INSTANTIATE_DEC_V(int4, KvI4, 128, 8, _v0, 4, 0, 2, 1)
INSTANTIATE_DEC_V(int8, KvI8, 128, 8, _p2, 4, 0, 4, 4)
INSTANTIATE_DEC_V(int4, KvI4, 128, 8, _p2, 4, 0, 4, 4)
INSTANTIATE_DEC_V(int8, KvI8, 128, 8, _lo, 4, 0, 2, 2)
INSTANTIATE_DEC_V(int4, KvI4, 128, 8, _lo, 4, 0, 2, 2)
INSTANTIATE_DEC_V(int8, KvI8, 128, 8, _co, 4, 0, 2, 8)
INSTANTIATE_DEC_V(int4, KvI4, 128, 8, _co, 4, 0, 2, 8)
INSTANTIATE_A(bf16)
INSTANTIATE_A(f16)
INSTANTIATE_A(f32)


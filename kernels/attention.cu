// Paged attention, one kernel for decode and prefill: each block takes one query token, the G = nh/nkv query
// heads that share one KV head, and one split of that token's causal context (split-K); attn_combine merges the
// splits. Caches: [numBlocks, nkv, blockSize, d] KV. A simple, correct first version: prefill re-reads K/V per
// query token (no flash-style tiling yet).
#include "common.cuh"

#define MAX_G 16
#define V_G 4

// q: [n, nh, d] f32 (RoPE applied); blockTables: [B, maxBlocks] i32; tokenSeq, positions: [n] i32.
// tokenList: [rows] i32 tokens this launch handles (null: rows = all n tokens, in order); grid y runs over rows.
// partO: [rows, nh, splits, d] f32 (unnormalized), partML: [rows, nh, splits, 2] f32 (max, sum of exp).
// d % 8 == 0 (16-byte K/V rows), d <= 1024. grid (nkv, n, splits), block 128, dynamic smem:
// (G*d + G*splitLen + 1) floats, 8 bytes of alignment, splitLen offsets (8 bytes), floor(128/(d/8))*V_G*d floats.
template <typename KV>
__device__ void attnSplit(const float* q, const KV* kCache, const KV* vCache, const int* blockTables,
                          const int* tokenSeq, const int* positions, const int* tokenList, float* partO,
                          float* partML, int nh, int nkv, int d, int blockSize, int maxBlocks, int splitLen, int window,
                          float scale) {
  extern __shared__ float smem[];
  const int kvh = blockIdx.x, y = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
  const int t = tokenList ? tokenList[y] : y;
  const int G = nh / nkv, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  float* qs = smem;                                          // [G, d]
  float* sc = smem + G * d;                                  // [G, splitLen]
  long long* rowOff = (long long*)(sc + G * splitLen + 1);  // [splitLen] element offset of each key row, -1: none
  rowOff = (long long*)(((uintptr_t)rowOff + 7) & ~(uintptr_t)7);
  float* red = (float*)(rowOff + splitLen);                  // [blockDim.x / (d/8), V_G, d]
  __shared__ float mS[MAX_G], lS[MAX_G];
  const int p = positions[t];
  const int first = window > 0 ? max(0, p - window + 1) : 0;
  const int j0 = first + split * splitLen, j1 = min(p + 1, j0 + splitLen);
  const int n = max(0, j1 - j0);
  if (n == 0) {  // an empty split (graphs launch splits for the longest context)
    for (int o = threadIdx.x; o < G; o += blockDim.x) {
      const size_t row = ((size_t)y * nh + kvh * G + o) * splits + split;
      partML[row * 2] = -INFINITY;
      partML[row * 2 + 1] = 0.f;
    }
    return;
  }
  const int* table = blockTables + (size_t)tokenSeq[t] * maxBlocks;
  for (int i = threadIdx.x; i < G * d; i += blockDim.x) qs[i] = q[((size_t)t * nh + kvh * G) * d + i];
  for (int jj = threadIdx.x; jj < n; jj += blockDim.x) {
    const int j = j0 + jj, blk = table[j / blockSize];
    rowOff[jj] = blk < 0 ? -1 : (((long long)blk * nkv + kvh) * blockSize + j % blockSize) * d;
  }
  __syncthreads();
  // Scores: one thread per key, 16-byte loads along d (d % 8 == 0), all G heads at once (q reads broadcast).
  for (int jj = threadIdx.x; jj < n; jj += blockDim.x) {
    const long long off = rowOff[jj];
    float acc[MAX_G];
#pragma unroll
    for (int g = 0; g < MAX_G; g++) acc[g] = 0.f;
    if (off >= 0) {
      const uint4* k = reinterpret_cast<const uint4*>(kCache + off);
#pragma unroll 4
      for (int c = 0; c < d / 8; c++) {
        const uint4 kv = k[c];
        const KV* ke = reinterpret_cast<const KV*>(&kv);
#pragma unroll
        for (int e = 0; e < 8; e++) {
          const float kf = tof(ke[e]);
#pragma unroll
          for (int g = 0; g < MAX_G; g++)
            if (g < G) acc[g] += qs[g * d + c * 8 + e] * kf;
        }
      }
    }
#pragma unroll
    for (int g = 0; g < MAX_G; g++)
      if (g < G) sc[g * splitLen + jj] = off >= 0 ? acc[g] * scale : -INFINITY;
  }
  __syncthreads();
  // Softmax pieces per head: one warp per head.
  for (int g = warp; g < G; g += nw) {
    float m = -INFINITY;
    for (int jj = lane; jj < n; jj += 32) m = fmaxf(m, sc[g * splitLen + jj]);
    m = warpMax(m);
    float l = 0.f;
    for (int jj = lane; jj < n; jj += 32) {
      const float e = m == -INFINITY ? 0.f : expf(sc[g * splitLen + jj] - m);
      sc[g * splitLen + jj] = e;
      l += e;
    }
    l = warpSum(l);
    if (lane == 0) {
      mS[g] = m;
      lS[g] = l;
    }
  }
  __syncthreads();
  // Weighted values: thread = (key group kg, 8-dim chunk c); heads in chunks of V_G. Partial sums per key group
  // meet in shared memory (red: [V_KG, V_G, d]).
  const int chunks = d / 8, kgs = blockDim.x / chunks;  // key groups; threads past kgs * chunks idle here
  const int c = threadIdx.x % chunks, kg = threadIdx.x / chunks;
  const bool active = kg < kgs;
  for (int g0 = 0; g0 < G; g0 += V_G) {
    float acc[V_G][8];
#pragma unroll
    for (int g = 0; g < V_G; g++)
#pragma unroll
      for (int e = 0; e < 8; e++) acc[g][e] = 0.f;
#pragma unroll 4
    for (int jj = kg; active && jj < n; jj += kgs) {
      const long long off = rowOff[jj];
      if (off < 0) continue;
      const uint4 vv = *reinterpret_cast<const uint4*>(vCache + off + c * 8);
      const KV* ve = reinterpret_cast<const KV*>(&vv);
#pragma unroll
      for (int g = 0; g < V_G; g++) {
        if (g0 + g < G) {
          const float pg = sc[(g0 + g) * splitLen + jj];
#pragma unroll
          for (int e = 0; e < 8; e++) acc[g][e] += pg * tof(ve[e]);
        }
      }
    }
    __syncthreads();  // red is reused across head chunks
    if (active) {
#pragma unroll
      for (int g = 0; g < V_G; g++)
#pragma unroll
        for (int e = 0; e < 8; e++) red[(kg * V_G + g) * d + c * 8 + e] = acc[g][e];
    }
    __syncthreads();
    for (int o = threadIdx.x; o < V_G * d; o += blockDim.x) {
      const int g = o / d, i = o % d;
      if (g0 + g >= G) continue;
      float sum = 0.f;
      for (int k2 = 0; k2 < kgs; k2++) sum += red[(k2 * V_G + g) * d + i];
      const size_t row = ((size_t)y * nh + kvh * G + g0 + g) * splits + split;
      partO[row * d + i] = sum;
      if (i == 0) {
        partML[row * 2] = mS[g0 + g];
        partML[row * 2 + 1] = lS[g0 + g];
      }
    }
  }
}

// out[t, h*d + i] = sum_s e^(m_s - M) partO_s / sum_s e^(m_s - M) l_s over the splits that hold keys
// (ceil(span / splitLen) of them); t = tokenList[y] (or y). out: [n, nh*d] A. grid rows*nh, block 32..128.
template <typename A>
__device__ void attnCombine(const float* partO, const float* partML, A* out, const int* positions,
                            const int* tokenList, int nh, int d, int splits, int splitLen, int window) {
  const size_t row = blockIdx.x;
  const int y = row / nh, h = row % nh;
  const int t = tokenList ? tokenList[y] : y;
  const int p = positions[t];
  const int span = window > 0 ? min(p + 1, window) : p + 1;
  const int used = min(splits, (span + splitLen - 1) / splitLen);
  const float* ml = partML + row * splits * 2;
  float M = -INFINITY;
  for (int s = 0; s < used; s++) M = fmaxf(M, ml[2 * s]);
  float L = 0.f;
  for (int s = 0; s < used; s++)
    if (ml[2 * s + 1] > 0.f) L += expf(ml[2 * s] - M) * ml[2 * s + 1];
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float acc = 0.f;
    for (int s = 0; s < used; s++)
      if (ml[2 * s + 1] > 0.f) acc += expf(ml[2 * s] - M) * partO[(row * splits + s) * d + i];
    out[((size_t)t * nh + h) * d + i] = fromf<A>(L > 0.f ? acc / L : 0.f);
  }
}

#define PF_ROWS 64  // query rows (token x head) per prefill tile
#define PF_KEYS 32  // keys per step
#define PF_MAXD 128

// Causal paged attention for prefill chunks, flash style (online softmax), on CUDA cores: one block per (KV
// head, tile); a tile is up to PF_ROWS/G consecutive query tokens of one sequence, all G heads of the group.
// tiles: [numTiles, 3] i32 (sequence, first token, token count). Each K/V block of the tile's causal range is
// read once per tile. out: [n, nh*d] A (normalized). d <= 128, d % 8 == 0. grid (nkv, numTiles), block 128,
// dynamic smem (PF_ROWS*(d+1) + PF_KEYS*(d+1) + PF_KEYS*d + PF_ROWS*PF_KEYS) floats + PF_KEYS ints.
template <typename KV, typename A>
__device__ void attnPrefill(const float* q, const KV* kCache, const KV* vCache, const int* blockTables,
                            const int* positions, const int* tiles, A* out, int nh, int nkv, int d, int blockSize,
                            int maxBlocks, int window, float scale) {
  extern __shared__ float smem[];
  const int kvh = blockIdx.x, tile = blockIdx.y, G = nh / nkv, tid = threadIdx.x;
  const int seq = tiles[3 * tile], t0 = tiles[3 * tile + 1], cnt = tiles[3 * tile + 2];
  const int R = cnt * G, LQ = d + 1, LK = d + 1;
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
        const size_t off = (((size_t)blk * nkv + kvh) * blockSize + j % blockSize) * d + i0;
        const uint4 kv4 = *reinterpret_cast<const uint4*>(kCache + off);
        const uint4 vv4 = *reinterpret_cast<const uint4*>(vCache + off);
        const KV* ke = reinterpret_cast<const KV*>(&kv4);
        const KV* ve = reinterpret_cast<const KV*>(&vv4);
#pragma unroll
        for (int e = 0; e < 8; e++) kf[e] = tof(ke[e]), vf[e] = tof(ve[e]);
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

#define INSTANTIATE_KV(KV)                                                                                       \
  extern "C" __global__ void attn_split_##KV(const float* q, const KV* kCache, const KV* vCache,                \
                                             const int* blockTables, const int* tokenSeq, const int* positions, \
                                             const int* tokenList, float* partO, float* partML, int nh, int nkv, \
                                             int d, int blockSize, int maxBlocks, int splitLen, int window,     \
                                             float scale) {                                                     \
    attnSplit<KV>(q, kCache, vCache, blockTables, tokenSeq, positions, tokenList, partO, partML, nh, nkv, d,    \
                  blockSize, maxBlocks, splitLen, window, scale);                                               \
  }
#define INSTANTIATE_A(A)                                                                                           \
  extern "C" __global__ void attn_combine_##A(const float* partO, const float* partML, A* out, const int* positions, \
                                               const int* tokenList, int nh, int d, int splits, int splitLen,     \
                                               int window) {                                                      \
    attnCombine<A>(partO, partML, out, positions, tokenList, nh, d, splits, splitLen, window);                    \
  }
#define INSTANTIATE_PF(KV, A)                                                                                    \
  extern "C" __global__ void __launch_bounds__(128)                                                            \
      attn_prefill_##KV##_##A(const float* q, const KV* kCache, const KV* vCache, const int* blockTables,      \
                              const int* positions, const int* tiles, A* out, int nh, int nkv, int d,          \
                              int blockSize, int maxBlocks, int window, float scale) {                         \
    attnPrefill<KV, A>(q, kCache, vCache, blockTables, positions, tiles, out, nh, nkv, d, blockSize, maxBlocks, \
                       window, scale);                                                                         \
  }

INSTANTIATE_KV(bf16)
INSTANTIATE_KV(f16)
INSTANTIATE_A(bf16)
INSTANTIATE_A(f16)
INSTANTIATE_A(f32)
INSTANTIATE_PF(bf16, bf16)
INSTANTIATE_PF(bf16, f32)
INSTANTIATE_PF(f16, f16)
INSTANTIATE_PF(f16, f32)
INSTANTIATE_PF(bf16, f16)
INSTANTIATE_PF(f16, bf16)

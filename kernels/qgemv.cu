// W4A16 / W8A16 decode GEMV (M <= 16 rows): y[M, N] (f32) = x[M, K] (f16) · W[N, K]^T + bias[N] (f32), W in the
// "mma-m16n8k16" layout of src/quant/pack.ts (qgemm.cu's header describes it; qgemm.cu has the prefill kernel).
//
// Weights are the MMA A operand (y^T = W · x^T): the words a lane loads for one 16-k tile already hold the A
// fragments of 16-column blocks (int4 word j = columns 16j .. 16j+15 of the n-tile; int8 words 2p, 2p+1 = block p),
// so a tile takes 4 (int4) or 2 (int8) m16n8k16 MMAs per 8 rows of x, and x (the B operand, 8 rows) is padded to 8
// rows only (MB = 1: M <= 8; MB = 2: M <= 16). Each group's (scale, bias) pairs are split into half2 splats once per
// group (the words of the next two groups are in flight).
//
// Work: warp = one n-tile (64 / 32 columns) over `tps` consecutive k-tiles (a contiguous run of 512-byte tiles).
// Block = 4 warps = (4 / ksb) n-tiles x ksb k-ranges (ksb 1, 2 or 4; il = 1: the ksb warps of an n-tile take every
// ksb-th tile of the block's range instead of runs), reduced in shared memory in warp order; grid
// [ceil(nTiles / (4 / ksb)), S]: S > 1 block-level splits write f32 partials part[S, M, Np], and the last block of a
// column group to arrive (atomic counter, reset by that block) sums them in a fixed order: deterministic, one
// launch. Weights stream through a per-warp shared-memory ring with cp.async (no registers held by loads in
// flight): D groups of 4 tiles are in flight; each lane reads back only the 16-byte words it copied itself, so
// cp.async.wait_group alone orders them (no barrier).
// Programmatic dependent launch (sm_90): the first D groups of weight copies and the first group's scales are
// issued before griddepcontrol.wait (weights are never written by kernels); x, part, counters and y only after it.
// H100, int4 g128, M = 1 (bench/cuda_quant.ts, 2026-11-24): 28672x4096 and 4096x14336 at ~60% of copy bandwidth,
// 6144x4096 / 4096x4096 at ~40% (launch, x staging and the split-K tail are ~5 us of their ~8-11 us).
#include "common.cuh"
#include "ptx.cuh"

#define QV_GROUP 4  // weight tiles per cp.async group

__device__ __forceinline__ void qvCpAsync(uint32_t smem, const uint4* g) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem), "l"(g) : "memory");
}
__device__ __forceinline__ void qvCommit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void qvWaitGroups() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

template <int BITS> struct QV {
  static constexpr int T = BITS == 4 ? 64 : 32;  // columns per n-tile
  static constexpr int NB = T / 16;              // 16-column A blocks per n-tile
  static constexpr int SBW = BITS == 4 ? 8 : 4;  // (scale, bias) words a lane needs per group
};

// A fragments of one tile's 16-column block j, w = the lane's 4 words, s / z = (scale, bias) splats per word half.
// int4: word j, halves h = 0 (column 16j + r, r = lane / 4) and 1 (column 16j + 8 + r); lo = k-pair k0, k0 + 1,
// hi = k0 + 8, k0 + 9 (r rows / r + 8 rows of A, cols k / k + 8): a = {lo0, lo1, hi0, hi1}.
// int8: words 2j (column 16j + r) and 2j + 1 (column 16j + 8 + r).
template <int BITS>
__device__ __forceinline__ void fragA(const uint32_t* w, int j, const half2* s, const half2* z, uint32_t* a) {
  if (BITS == 4) {
    const half2 k1024 = u2h(0x64006400u), k16th = u2h(0x2c002c00u), km64 = u2h(0xd400d400u);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const uint32_t v = h ? w[j] >> 8 : w[j];
      const half2 lo = __hsub2(u2h(lop3AndOr(v, 0x000f000fu, 0x64006400u)), k1024);
      const half2 hi = __hfma2(u2h(lop3AndOr(v, 0x00f000f0u, 0x64006400u)), k16th, km64);
      a[h] = h2u(__hfma2(lo, s[2 * j + h], z[2 * j + h]));
      a[2 + h] = h2u(__hfma2(hi, s[2 * j + h], z[2 * j + h]));
    }
  } else {
    const half2 k1024 = u2h(0x64006400u);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const uint32_t v = w[2 * j + h];
      const half2 lo = __hsub2(u2h(__byte_perm(v, 0x64646464u, 0x4140)), k1024);
      const half2 hi = __hsub2(u2h(__byte_perm(v, 0x64646464u, 0x4342)), k1024);
      a[h] = h2u(__hfma2(lo, s[2 * j + h], z[2 * j + h]));
      a[2 + h] = h2u(__hfma2(hi, s[2 * j + h], z[2 * j + h]));
    }
  }
}

// Group scales of one lane: the current group's splats and the raw words of the next two groups (loaded two groups
// ahead, so that warps taking every ksb-th tile, two tiles per group, do not wait on them).
template <int BITS> struct QvScales {
  static constexpr int W = QV<BITS>::SBW;
  half2 s[W], z[W];
  uint32_t r1[W], r2[W];  // groups g + 1, g + 2
  int g, gEnd;            // current group, its first k-tile past the end
  __device__ __forceinline__ static void load(const uint32_t* scaleBias, int gi, int nG, int Np, int nt, int lane,
                                              uint32_t* raw) {
    if (gi >= nG) return;
    const uint32_t* row = scaleBias + (size_t)gi * Np + nt * QV<BITS>::T + (lane >> 2);
#pragma unroll
    for (int i = 0; i < W; i++) raw[i] = __ldg(row + (BITS == 4 ? 16 * (i >> 1) + 8 * (i & 1) : 8 * i));
  }
  // Starts before group g0 (its words and the next group's in flight).
  __device__ __forceinline__ void start(const uint32_t* scaleBias, int g0, int nG, int Np, int nt, int lane) {
    load(scaleBias, g0, nG, Np, nt, lane, r1);
    load(scaleBias, g0 + 1, nG, Np, nt, lane, r2);
    g = g0 - 1;
    gEnd = -1;
  }
  // Makes the group of k-tile kt current (tiles are visited in increasing order); gt = k-tiles per group.
  __device__ __forceinline__ void at(const uint32_t* scaleBias, int kt, int gt, int nG, int KT, int Np, int nt,
                                     int lane) {
    if (kt < gEnd) return;
    const int gk = kt / gt;
    if (gk == g + 2) {
#pragma unroll
      for (int i = 0; i < W; i++) r1[i] = r2[i];
    } else if (gk != g + 1) {
      load(scaleBias, gk, nG, Np, nt, lane, r1);
    }
#pragma unroll
    for (int i = 0; i < W; i++) {
      s[i] = u2h(__byte_perm(r1[i], 0, 0x1010));
      z[i] = u2h(__byte_perm(r1[i], 0, 0x3232));
    }
    if (gk == g + 1) {
#pragma unroll
      for (int i = 0; i < W; i++) r1[i] = r2[i];
    } else {
      load(scaleBias, gk + 1, nG, Np, nt, lane, r1);
    }
    load(scaleBias, gk + 2, nG, Np, nt, lane, r2);
    g = gk;
    gEnd = min(KT, (gk + 1) * gt);
  }
};

// 8 consecutive activations of row m, packed channels k .. k+7 (zero beyond K), as f16.
__device__ __forceinline__ uint4 qvX8(const f16* x, const int* perm, int K, int m, int k, bool vec) {
  if (k >= K) return make_uint4(0, 0, 0, 0);
  if (vec) return __ldg(reinterpret_cast<const uint4*>(x + (size_t)m * K + k));
  uint4 v;
  unsigned short* e = reinterpret_cast<unsigned short*>(&v);
  const unsigned short* xr = reinterpret_cast<const unsigned short*>(x + (size_t)m * K);
#pragma unroll
  for (int i = 0; i < 8; i++) e[i] = k + i < K ? xr[perm ? __ldg(perm + k + i) : k + i] : (unsigned short)0;
  return v;
}

template <int BITS, int MB, int D>
__device__ void qgemv(const f16* x, const int* perm, const uint32_t* qweight, const uint32_t* scaleBias,
                      const float* bias, float* y, float* part, unsigned* counters, int M, int N, int K, int Np,
                      int KT, int G, int tps, int ksb, int il, int S) {
  constexpr int T = QV<BITS>::T, NB = QV<BITS>::NB, NACC = MB * NB * 4, GU = QV_GROUP, RING = D * GU;
  static_assert(NACC * 32 * 4 <= RING * 512, "a warp's reduction slice must fit in its ring slice");
  extern __shared__ __align__(16) unsigned char qsm[];
  // [8] f16 zeros (rows >= M of the B operand read these); ring [4 warps, RING tiles, 32 lanes] uint4: each lane's
  // 16-byte weight words in flight (cp.async), later the warp's slice of the in-block reduction [NACC, 32] f32;
  // xs [M, ld] f16: x rows, packed channels of the block's k-range.
  f16* zeros = reinterpret_cast<f16*>(qsm);
  uint4* ring = reinterpret_cast<uint4*>(qsm + 16);
  f16* xs = reinterpret_cast<f16*>(ring + 4 * RING * 32);
  __shared__ bool lastBlock;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, ntb = 4 / ksb;
  const int nTiles = Np / T, nt = blockIdx.x * ntb + warp / ksb, ks = warp % ksb;
  const int bk0 = blockIdx.y * ksb * tps, bk1 = min(KT, bk0 + ksb * tps);
  // The warp's k-tiles: f + st * i for i < nw; il = 0: the ks-th run of tps tiles of the block's range, il = 1:
  // every ksb-th tile from bk0 + ks (the block's warps stream adjacent 512-byte tiles side by side).
  const int f = il ? bk0 + ks : min(bk1, bk0 + ks * tps), st = il ? ksb : 1;
  const int nw = il ? (f < bk1 ? (bk1 - f + ksb - 1) / ksb : 0) : min(bk1, f + tps) - f;
  const int ld = ksb * tps * 16 + 8;
  const bool active = nt < nTiles && nw > 0;
  const uint4* wp = reinterpret_cast<const uint4*>(qweight) + (size_t)(nt < nTiles ? nt : 0) * KT * 32 + lane;
  const int gt = G >= K ? KT : G / 16, nG = (KT + gt - 1) / gt;
  uint4* myRing = ring + warp * RING * 32 + lane;  // slot i of this lane: myRing[32 * i]
  const uint32_t ringS = (uint32_t)__cvta_generic_to_shared(myRing);
  // Group q of the warp's run: tiles i = q * GU + u into slots (q % D) * GU + u; one commit per group, empty or
  // not, so that cp.async.wait_group counts groups.
  auto issue = [&](int q) {
#pragma unroll
    for (int u = 0; u < GU; u++) {
      const int i = q * GU + u;
      if (i < nw) qvCpAsync(ringS + ((q % D) * GU + u) * 512, wp + (size_t)(f + st * i) * 32);
    }
    qvCommit();
  };

  QvScales<BITS> sc;
  if (active) {
#pragma unroll
    for (int q = 0; q < D; q++) issue(q);
    sc.start(scaleBias, f / gt, nG, Np, nt, lane);
  }
  pdlWait();
  if (threadIdx.x < 2) reinterpret_cast<uint2*>(zeros)[threadIdx.x] = make_uint2(0u, 0u);
  {
    const bool vec = !perm && K % 8 == 0 && ((uintptr_t)x & 15) == 0;
    const int chunksPerRow = (bk1 - bk0) * 2;
    for (int c = threadIdx.x; c < M * chunksPerRow; c += blockDim.x) {
      const int m = c / chunksPerRow, kc = (c % chunksPerRow) * 8;
      *reinterpret_cast<uint4*>(xs + m * ld + kc) = qvX8(x, perm, K, m, bk0 * 16 + kc, vec);
    }
  }
  __syncthreads();

  float acc[MB][NB][4];
#pragma unroll
  for (int b = 0; b < MB; b++)
#pragma unroll
    for (int j = 0; j < NB; j++) acc[b][j][0] = acc[b][j][1] = acc[b][j][2] = acc[b][j][3] = 0.f;

  if (active) {
    // B operand rows: ldmatrix lanes 0-7 address rows 0-7 at k, lanes 8-15 at k + 8 (x2); MB = 2 (x4): lanes
    // 16-31 the same for rows 8-15. Rows >= M read the zeros.
    const int r = (lane & 7) + (MB == 2 ? 8 * (lane >> 4) : 0);
    const f16* bp = r < M ? xs + r * ld + ((lane >> 3) & 1) * 8 : zeros;
    const int bstep = r < M ? 16 : 0;
    const int groups = (nw + GU - 1) / GU;
    for (int q = 0; q < groups; q++) {
      qvWaitGroups<D - 1>();  // D + q groups committed: group q has landed
      uint4 wv[GU];
#pragma unroll
      for (int u = 0; u < GU; u++) wv[u] = myRing[32 * ((q % D) * GU + u)];
#pragma unroll
      for (int u = 0; u < GU; u++) {
        const int i = q * GU + u, k = f + st * i;
        if (i < nw) {
          sc.at(scaleBias, k, gt, nG, KT, Np, nt, lane);
          const uint32_t sm = (uint32_t)__cvta_generic_to_shared(bp + (k - bk0) * bstep);
          uint32_t xb[4];
          if (MB == 2) {
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                         : "=r"(xb[0]), "=r"(xb[1]), "=r"(xb[2]), "=r"(xb[3])
                         : "r"(sm));
          } else {
            asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
                         : "=r"(xb[0]), "=r"(xb[1])
                         : "r"(sm));
          }
          const uint32_t w[4] = {wv[u].x, wv[u].y, wv[u].z, wv[u].w};
#pragma unroll
          for (int j = 0; j < NB; j++) {
            uint32_t a[4];
            fragA<BITS>(w, j, sc.s, sc.z, a);
#pragma unroll
            for (int b = 0; b < MB; b++) mmaF16(acc[b][j], a, xb[2 * b], xb[2 * b + 1]);
          }
        }
      }
      // The slots of group q were read (their words are consumed above): refill them with group q + D.
      issue(q + D);
    }
    qvWaitGroups<0>();
  }
  pdlLaunchDependents();

  // acc[b][j][e]: column 16j + 8 (e >> 1) + lane / 4 of the n-tile, row 8b + 2 (lane % 4) + (e & 1).
  // In-block reduction: warp w's partial sums in its own ring slice (its cp.asyncs have all landed).
  auto red = [&](int w) { return reinterpret_cast<float*>(ring + w * RING * 32); };
  if (ksb > 1) {
    if (ks > 0) {
#pragma unroll
      for (int b = 0; b < MB; b++)
#pragma unroll
        for (int j = 0; j < NB; j++)
#pragma unroll
          for (int e = 0; e < 4; e++) red(warp)[((b * NB + j) * 4 + e) * 32 + lane] = acc[b][j][e];
    }
    __syncthreads();
    if (ks == 0) {
      for (int o = 1; o < ksb; o++) {
#pragma unroll
        for (int b = 0; b < MB; b++)
#pragma unroll
          for (int j = 0; j < NB; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[b][j][e] += red(warp + o)[((b * NB + j) * 4 + e) * 32 + lane];
      }
    }
  }
  const int rq = 2 * (lane & 3), cr = lane >> 2;
  if (ks == 0 && nt < nTiles) {
#pragma unroll
    for (int b = 0; b < MB; b++)
#pragma unroll
      for (int j = 0; j < NB; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int m = 8 * b + rq + (e & 1), n = nt * T + 16 * j + 8 * (e >> 1) + cr;
          if (m >= M) continue;
          if (S == 1) {
            if (n < N) y[(size_t)m * N + n] = acc[b][j][e] + (bias ? bias[n] : 0.f);
          } else {
            part[((size_t)blockIdx.y * M + m) * Np + n] = acc[b][j][e];
          }
        }
  }
  if (S == 1) return;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) lastBlock = atomicAdd(counters + blockIdx.x, 1u) == (unsigned)(S - 1);
  __syncthreads();
  if (!lastBlock) return;
  __threadfence();
  // Columns [c0, c1) of the column group (c1 <= Np: padded columns hold partials too) as `total` float4 chunks.
  const int c0 = blockIdx.x * ntb * T, wq = (min(Np, c0 + ntb * T) - c0) / 4, total = M * wq;
  const size_t stride = (size_t)M * Np / 4;
  auto chunk = [&](int i) {
    return reinterpret_cast<const float4*>(part + (size_t)(i / wq) * Np + c0 + 4 * (i % wq));
  };
  auto store = [&](int i, float4 v) {
    const int m = i / wq, n0 = c0 + 4 * (i % wq);
    const float e[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int q = 0; q < 4; q++)
      if (n0 + q < N) y[(size_t)m * N + n0 + q] = e[q] + (bias ? bias[n0 + q] : 0.f);
  };
  const int P = min(S, 128 / total);
  if (P >= 2) {
    // Few chunks (small M): P threads per chunk, thread p summing splits p, p + P, ... in order (all its loads in
    // flight together), then the P sums added in p order through shared memory (the ring, no longer in use).
    float4* rs = reinterpret_cast<float4*>(ring);  // [P, total]
    if (threadIdx.x < P * total) {
      const int c = threadIdx.x % total, p = threadIdx.x / total;
      const float4* sp = chunk(c);
      float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 4
      for (int s = p; s < S; s += P) {
        const float4 q = __ldcg(sp + s * stride);
        a.x += q.x, a.y += q.y, a.z += q.z, a.w += q.w;
      }
      rs[p * total + c] = a;
    }
    __syncthreads();
    if (threadIdx.x < total) {
      float4 a = rs[threadIdx.x];
      for (int p = 1; p < P; p++) {
        const float4 q = rs[p * total + threadIdx.x];
        a.x += q.x, a.y += q.y, a.z += q.z, a.w += q.w;
      }
      store(threadIdx.x, a);
    }
  } else {
    // Thread t sums chunks t, t + 128, ... (at most JMAX: M <= 8 x 256 or 16 x 256 columns) over splits 0..S-1 in
    // order, two splits' loads in flight.
    constexpr int JMAX = 4 * MB;
    const float4* src[JMAX];
    float4 v[JMAX];
#pragma unroll
    for (int j = 0; j < JMAX; j++) {
      const int i = threadIdx.x + 128 * j;
      src[j] = i < total ? chunk(i) : nullptr;
      v[j] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
    int s = 0;
    for (; s + 1 < S; s += 2) {
      float4 a[JMAX], b[JMAX];
#pragma unroll
      for (int j = 0; j < JMAX; j++)
        if (src[j]) {
          a[j] = __ldcg(src[j] + s * stride);
          b[j] = __ldcg(src[j] + (s + 1) * stride);
        }
#pragma unroll
      for (int j = 0; j < JMAX; j++)
        if (src[j]) {
          v[j].x += a[j].x, v[j].y += a[j].y, v[j].z += a[j].z, v[j].w += a[j].w;
          v[j].x += b[j].x, v[j].y += b[j].y, v[j].z += b[j].z, v[j].w += b[j].w;
        }
    }
    if (s < S) {
#pragma unroll
      for (int j = 0; j < JMAX; j++)
        if (src[j]) {
          const float4 a = __ldcg(src[j] + s * stride);
          v[j].x += a.x, v[j].y += a.y, v[j].z += a.z, v[j].w += a.w;
        }
    }
#pragma unroll
    for (int j = 0; j < JMAX; j++)
      if (threadIdx.x + 128 * j < total) store(threadIdx.x + 128 * j, v[j]);
  }
  if (threadIdx.x == 0) counters[blockIdx.x] = 0u;
}

#define QV_ARGS                                                                                                  \
  const f16 *x, const int *perm, const uint32_t *qweight, const uint32_t *scaleBias, const float *bias, float *y, \
      float *part, unsigned *counters, int M, int N, int K, int Np, int KT, int G, int tps, int ksb, int il, int S
#define QV_CALL x, perm, qweight, scaleBias, bias, y, part, counters, M, N, K, Np, KT, G, tps, ksb, il, S
// D: groups of QV_GROUP tiles in flight per warp (ring slots D * QV_GROUP; 20 tiles = 40 KiB per block at M <= 8, 8 =
// 16 KiB at M <= 16, leaving room for the staged x rows at 4 blocks per SM; qgemvPlan mirrors these).
#define INSTANTIATE_QV(B)                                                                                       \
  extern "C" __global__ void __launch_bounds__(128, 4) qgemv_w##B##_m8(QV_ARGS) { qgemv<B, 1, 5>(QV_CALL); }  \
  extern "C" __global__ void __launch_bounds__(128, 4) qgemv_w##B##_m16(QV_ARGS) { qgemv<B, 2, 2>(QV_CALL); }

INSTANTIATE_QV(4)
INSTANTIATE_QV(8)

// W4A16 / W8A16 / FP8 (e4m3) weight decode GEMV (M <= 16 rows): y[M, N] (f32) = x[M, K] (f16) · W[N, K]^T + bias[N] (f32), W in the
// "mma-m16n8k16" layout of src/quant/pack.ts (qgemm.cu's header describes it; qgemm.cu has the prefill kernel).
//
// Weights are the MMA A operand (y^T = W · x^T): the words a lane loads for one 16-k tile already hold the A
// fragments of 16-column blocks (int4 word j = columns 16j .. 16j+15 of the n-tile; int8 words 2p, 2p+1 = block p),
// so a tile takes 4 (int4) or 2 (int8) m16n8k16 MMAs per 8 rows of x, and x (the B operand, 8 rows) is padded to 8
// rows only (MB = 1: M <= 8; MB = 2: M <= 16). The MMAs take the exact integers q (two instructions per weight pair);
// each group's per-column scale s and bias z (w = s q + z) are applied once per group to the f32 sums:
// sum_k w x = s sum_k q x + z sum_k x, the x sums per k-tile precomputed when x is staged. (This halved the
// instructions per 512-byte tile, ~124 -> ~60, but not the time: see kernels/NOTES.md "W4A16 decode GEMV".)
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
// Fused decode-step ends (forward_decode_quant.ts): xg != null: the input is f16(xg * 1 / rms), xg [M, K] f32 =
// x * gamma and 1 / rms from the producer's partial sums ss [M, parts]; rx != null: instead of y, rx [M, N] f32 +=
// y, xgOut = rx * gNext and ssOut [M, gridDim.x] = this block column's sums of rx^2 (in a fixed order); act != null
// (gate_up, rows paired per n-tile as src/backends/cuda/gate_up.ts lays them out; M <= 8): instead of y, act [M, F] f16
// = silu(gate) * up, gate and up (+ bias) of column c being columns c % (T/2) and T/2 + c % (T/2) of n-tile c / (T/2).
// H100, int4 g128, M = 1 (bench/cuda_quant.ts, 2026-11-24): 28672x4096 and 4096x14336 at ~60% of copy bandwidth,
// 6144x4096 / 4096x4096 at ~40% (launch, x staging and the split-K tail are ~5 us of their ~8-11 us).

#include "qgemv.cuh"

template <int BITS, int MB, int D, int AHEAD>
__device__ void qgemv(const f16* x, const int* perm, const uint32_t* qweight, const uint32_t* scaleBias,
                      const float* bias, float* y, float* part, unsigned* counters, int M, int N, int K, int Np,
                      int KT, int G, int tps, int ksb, int il, int S, const float* xg, const float* ss, int parts,
                      float eps, float* rx, const float* gNext, float* xgOut, float* ssOut, int early, f16* act,
                      int F) {
  constexpr int T = QV<BITS>::T, NB = QV<BITS>::NB, NACC = MB * NB * 4, GU = QV_GROUP, RING = D * GU;
  constexpr bool DEFER = MB == 1;  // scales applied once per group (below); MB = 2 scales each weight
  static_assert(NACC * 32 * 4 <= RING * 512, "a warp's reduction slice must fit in its ring slice");
  extern __shared__ __align__(16) unsigned char qsm[];
  // [8] f16 zeros (rows >= M of the B operand read these); ring [4 warps, RING tiles, 32 lanes] uint4: each lane's
  // 16-byte weight words in flight (cp.async), later the warp's slice of the in-block reduction [NACC, 32] f32;
  // xs [M, ld] f16: x rows, packed channels of the block's k-range; DEFER only: xsum [ksb * tps, R] f32 (R = M rounded up to
  // even; 16-byte aligned after xs): per k-tile of the block's range, the sum of the 16 x values of each row.
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
  float* xsum = reinterpret_cast<float*>(xs + ((M * ld + 7) & ~7));
  const int R = (M + 1) & ~1;
  // Rows 9-16 (MB = 2) have no SiLU epilogue: its code cost them registers (spills 64 -> 76 bytes, batch-16 8B
  // decode 3161 -> 2854 tok/s on the H100); quantLinear refuses act there (the fused decode layer runs at n <= 8).
  if constexpr (MB > 1) act = nullptr;
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

  QvScales<BITS, AHEAD> sc;
  if (active) {
#pragma unroll
    for (int q = 0; q < D; q++) issue(q);
    sc.start(scaleBias, f / gt, nG, Np, nt, lane);
  }
  // early: the next kernel may launch now (its blocks take the SM room this launch's plan leaves free and start their
  // own weight copies while this one streams); it waits for this grid's completion before touching its outputs.
  if (early) pdlLaunchDependents();
  pdlWait();
  if (threadIdx.x < 2) reinterpret_cast<uint2*>(zeros)[threadIdx.x] = make_uint2(0u, 0u);
  // Fused RMSNorm input (xg != null): row m's 1 / rms from the producer's partial sums of squares, summed in order.
  __shared__ float sInv[16];
  if (xg) {
    for (int m = warp; m < M; m += 4) {
      float sum = 0.f;
      for (int i = lane; i < parts; i += 32) sum += ss[(size_t)m * parts + i];
      sum = warpSum(sum);
      if (lane == 0) sInv[m] = rsqrtf(sum / K + eps);
    }
    __syncthreads();
  }
  {
    const bool vec = !perm && K % 8 == 0 && ((uintptr_t)(xg ? (const void*)xg : (const void*)x) & 15) == 0;
    // One k-tile (16 channels) of one B row per item: staged as f16, and its sum (of the f16 values the MMA reads).
    const int tiles = bk1 - bk0;
    // Rows 9-16 (MB = 2) scale per weight and need no x sums: only the M rows are staged.
    for (int c = threadIdx.x; c < (DEFER ? R : M) * tiles; c += blockDim.x) {
      const int m = c / tiles, t = c % tiles;
      float sum = 0.f;
      if (m < M) {
        uint4 v[2];
        if (xg) {
          v[0] = qvX8Norm(xg, perm, K, m, (bk0 + t) * 16, sInv[m], vec);
          v[1] = qvX8Norm(xg, perm, K, m, (bk0 + t) * 16 + 8, sInv[m], vec);
        } else {
          v[0] = qvX8(x, perm, K, m, (bk0 + t) * 16, vec);
          v[1] = qvX8(x, perm, K, m, (bk0 + t) * 16 + 8, vec);
        }
        *reinterpret_cast<uint4*>(xs + m * ld + 16 * t) = v[0];
        *reinterpret_cast<uint4*>(xs + m * ld + 16 * t + 8) = v[1];
        const half2* hv = reinterpret_cast<const half2*>(v);
#pragma unroll
        for (int i = 0; i < 8; i++) {
          const float2 p = __half22float2(hv[i]);
          sum += p.x + p.y;
        }
      }
      if (DEFER) xsum[t * R + m] = sum;
    }
  }
  __syncthreads();

  // acc: the result; accg: sum over the current group's tiles of q · x (exact integer weights, f32 MMA sums); xg: sum
  // of the x values those tiles met (xgs), for the lane's two B rows per 8-row block. At the end of a group (flush),
  // with the group's per-column scale s and bias z (w = s q + z): acc += s accg + z xgs, so the scale and bias cost two
  // FMAs per accumulator per group instead of one per weight pair. MB = 2 does not defer (DEFER false): its MMAs take
  // f16(q * s + z) (fragScaled) straight into acc, as the 64 accumulators of deferring cost it occupancy (H100, M =
  // 16: 1.4-1.6x slower deferred at 3 blocks per SM; non-deferred, 3 blocks per SM were ~1.45x slower than 4).
  float acc[MB][NB][4], accg[DEFER ? MB : 1][NB][4], xgs[MB][2];
#pragma unroll
  for (int b = 0; b < MB; b++) {
    xgs[b][0] = xgs[b][1] = 0.f;
#pragma unroll
    for (int j = 0; j < NB; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[b][j][e] = accg[DEFER ? b : 0][j][e] = 0.f;
  }
  auto flush = [&]() {
    if (!DEFER) return;
#pragma unroll
    for (int b = 0; b < MB; b++) {
#pragma unroll
      for (int j = 0; j < NB; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const float2 sz = __half22float2(u2h(sc.r[0][2 * j + (e >> 1)]));  // (scale, bias)
          // fp8: the MMAs took exact e4m3 values (fragQ EXACT) and the stored scale is 256 s.
          const float sx = BITS == QB_FP8 ? sz.x * (1.f / 256.f) : sz.x;
          acc[b][j][e] = fmaf(sz.y, xgs[b][e & 1], fmaf(sx, accg[b][j][e], acc[b][j][e]));
          accg[b][j][e] = 0.f;
        }
      xgs[b][0] = xgs[b][1] = 0.f;
    }
  };

  if (active) {
    // B operand rows: ldmatrix lanes 0-7 address rows 0-7 at k, lanes 8-15 at k + 8 (x2); MB = 2 (x4): lanes
    // 16-31 the same for rows 8-15. Rows >= M read the zeros.
    const int r = (lane & 7) + (MB == 2 ? 8 * (lane >> 4) : 0);
    const f16* bp = r < M ? xs + r * ld + ((lane >> 3) & 1) * 8 : zeros;
    const int bstep = r < M ? 16 : 0;
    const int groups = (nw + GU - 1) / GU;
    // One k-tile: the lane's 16-byte word wv of tile k.
    auto tile = [&](int k, uint4 wv) {
      if (sc.ends(k)) {
        flush();
        sc.next(scaleBias, k, gt, nG, KT, Np, nt, lane);
      }
#pragma unroll
      for (int b = 0; b < (DEFER ? MB : 0); b++) {
        // Rows >= M read row 0's sums: their results are never stored.
        const int m0 = 8 * b + 2 * (lane & 3);
        const float2 xv = *reinterpret_cast<const float2*>(xsum + (k - bk0) * R + (m0 < M ? m0 : 0));
        xgs[b][0] += xv.x;
        xgs[b][1] += xv.y;
      }
      const uint32_t sm = (uint32_t)__cvta_generic_to_shared(bp + (k - bk0) * bstep);
      uint32_t xb[4];
      if (MB == 2) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(xb[0]), "=r"(xb[1]), "=r"(xb[2]), "=r"(xb[3])
                     : "r"(sm));
      } else {
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];" : "=r"(xb[0]), "=r"(xb[1]) : "r"(sm));
      }
      const uint32_t w[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
      for (int j = 0; j < NB; j++) {
        uint32_t a[4];
        if (DEFER) {
          fragQ<BITS, true>(w, j, a);
#pragma unroll
          for (int b = 0; b < MB; b++) mmaF16(accg[DEFER ? b : 0][j], a, xb[2 * b], xb[2 * b + 1]);
        } else {
          fragScaled<BITS>(w, j, sc.r[0], a);
#pragma unroll
          for (int b = 0; b < MB; b++) mmaF16(acc[b][j], a, xb[2 * b], xb[2 * b + 1]);
        }
      }
    };
    for (int q = 0; q < groups; q++) {
      qvWaitGroups<D - 1>();  // D + q groups committed: group q has landed
#pragma unroll
      for (int u = 0; u < GU; u++) {
        const int i = q * GU + u;
        if (i < nw) tile(f + st * i, myRing[32 * ((q % D) * GU + u)]);
      }
      // The slots of group q were read (their words are consumed above): refill them with group q + D.
      issue(q + D);
    }
    qvWaitGroups<0>();
    flush();
  }
  if (!early) pdlLaunchDependents();

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
  // Residual epilogue (rx != null), S == 1: each finishing warp's sums of x^2 for its rows, [4 warps, 16 rows].
  __shared__ float sSS[4][16];
  if (ks == 0 && nt < nTiles) {
    float v2[MB][2];
#pragma unroll
    for (int b = 0; b < MB; b++) v2[b][0] = v2[b][1] = 0.f;
#pragma unroll
    for (int b = 0; b < MB; b++)
#pragma unroll
      for (int j = 0; j < NB; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int m = 8 * b + rq + (e & 1), n = nt * T + 16 * j + 8 * (e >> 1) + cr;
          if (m >= M) continue;
          if (S == 1 && act) {
            // SiLU epilogue: gate block j < NB / 2 and up block j + NB / 2 hold the same column c of the pair.
            const int c = nt * (T / 2) + 16 * j + 8 * (e >> 1) + cr;
            if (j >= NB / 2 || c >= F) continue;
            const float g = acc[b][j][e] + (bias ? bias[n] : 0.f);
            const float u = acc[b][j + NB / 2 < NB ? j + NB / 2 : j][e] + (bias ? bias[n + T / 2] : 0.f);
            act[(size_t)m * F + c] = __float2half(g / (1.f + expf(-g)) * u);
          } else if (S == 1) {
            if (n >= N) continue;
            const size_t i = (size_t)m * N + n;
            const float v = acc[b][j][e] + (bias ? bias[n] : 0.f);
            if (rx) {
              const float xv = rx[i] + v;
              rx[i] = xv;
              xgOut[i] = xv * gNext[n];
              v2[b][e & 1] += xv * xv;
            } else {
              y[i] = v;
            }
          } else {
            part[((size_t)blockIdx.y * M + m) * Np + n] = acc[b][j][e];
          }
        }
    if (S == 1 && rx) {
      // Lanes with the same lane % 4 hold the same rows: sum over the other lane bits, in a fixed order.
#pragma unroll
      for (int b = 0; b < MB; b++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
          float v = v2[b][r];
          v += __shfl_xor_sync(~0u, v, 4);
          v += __shfl_xor_sync(~0u, v, 8);
          v += __shfl_xor_sync(~0u, v, 16);
          const int m = 8 * b + rq + r;
          if (lane < 4 && m < M) sSS[warp / ksb][m] = v;
        }
    }
  }
  if (S == 1) {
    if (rx) {
      // ssOut [M, gridDim.x]: this block's partial sum of x^2 per row, its n-tiles added in order.
      __syncthreads();
      if ((int)threadIdx.x < M) {
        float sum = 0.f;
        for (int w = 0; w < ntb && blockIdx.x * ntb + w < nTiles; w++) sum += sSS[w][threadIdx.x];
        ssOut[(size_t)threadIdx.x * gridDim.x + blockIdx.x] = sum;
      }
    }
    return;
  }
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
  // Residual epilogue: chunkSS [total] f32 (in the ring, past rs below): each chunk's sum of x^2. SiLU epilogue:
  // fin [total] float4 (past rs: [128] float4) the finished sums (+ bias), paired up once all are in (qgemvPlan
  // sizes the shared memory for it).
  float* chunkSS = reinterpret_cast<float*>(ring) + 1024;
  float4* fin = reinterpret_cast<float4*>(ring) + 128;
  auto store = [&](int i, float4 v) {
    const int m = i / wq, n0 = c0 + 4 * (i % wq);
    const float e[4] = {v.x, v.y, v.z, v.w};
    if (act) {
      float o[4];
#pragma unroll
      for (int q = 0; q < 4; q++) o[q] = n0 + q < N ? e[q] + (bias ? bias[n0 + q] : 0.f) : 0.f;
      fin[i] = make_float4(o[0], o[1], o[2], o[3]);
      return;
    }
    float v2 = 0.f;
#pragma unroll
    for (int q = 0; q < 4; q++) {
      if (n0 + q >= N) continue;
      const size_t o = (size_t)m * N + n0 + q;
      const float val = e[q] + (bias ? bias[n0 + q] : 0.f);
      if (rx) {
        const float xv = rx[o] + val;
        rx[o] = xv;
        xgOut[o] = xv * gNext[n0 + q];
        v2 += xv * xv;
      } else {
        y[o] = val;
      }
    }
    if (rx) chunkSS[i] = v2;
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
  if (rx) {
    __syncthreads();
    if ((int)threadIdx.x < M) {
      float sum = 0.f;
      for (int c = 0; c < wq; c++) sum += chunkSS[threadIdx.x * wq + c];
      ssOut[(size_t)threadIdx.x * gridDim.x + blockIdx.x] = sum;
    }
  }
  if (act) {
    // Chunk i of a gate half (column cc % T < T / 2 of its tile) pairs with chunk i + T / 8: the same row, up half.
    __syncthreads();
    for (int i = threadIdx.x; i < total; i += blockDim.x) {
      const int m = i / wq, cc = 4 * (i % wq);
      if (cc % T >= T / 2) continue;
      const float4 g4 = fin[i], u4 = fin[i + T / 8];
      const float g[4] = {g4.x, g4.y, g4.z, g4.w}, u[4] = {u4.x, u4.y, u4.z, u4.w};
      const int c = (c0 + cc) / T * (T / 2) + cc % T;  // gate column of the chunk's first value
#pragma unroll
      for (int q = 0; q < 4; q++)
        if (c + q < F) act[(size_t)m * F + c + q] = __float2half(g[q] / (1.f + expf(-g[q])) * u[q]);
    }
  }
  if (threadIdx.x == 0) counters[blockIdx.x] = 0u;
}

#define QV_ARGS                                                                                                  \
  const f16 *x, const int *perm, const uint32_t *qweight, const uint32_t *scaleBias, const float *bias, float *y, \
      float *part, unsigned *counters, int M, int N, int K, int Np, int KT, int G, int tps, int ksb, int il, int S,  \
      const float *xg, const float *ss, int parts, float eps, float *rx, const float *gNext, float *xgOut,         \
      float *ssOut, int early, f16 *act, int F
#define QV_CALL \
  x, perm, qweight, scaleBias, bias, y, part, counters, M, N, K, Np, KT, G, tps, ksb, il, S, xg, ss, parts, eps, rx, \
      gNext, xgOut, ssOut, early, act, F
// D: groups of QV_GROUP tiles in flight per warp (ring slots D * QV_GROUP; 12 tiles = 24 KiB per block at M <= 8,
// QV_D16 = 2 groups (16 KiB) at M <= 16, leaving room for the staged x rows at 4 blocks per SM; qgemvPlan mirrors
// these). H100 at M = 1: D = 3 beat D = 5 by 4-6% on the large shapes (deeper rings, 8 or 16, were slower); at M = 16
// D = 3 was slower (qkv / o / gate_up / down 19.4 / 15.1 / 54.9 / 31.7 vs 16.9 / 13.5 / 45.9 / 28.2 us: the bigger
// blocks no longer fit 4 per SM). M <= 16 scales in f16 per weight (no second accumulator set, no x sums) and
// prefetches scales one group ahead: 128 registers, 4 blocks per SM.
#define QV_D16 2
#define INSTANTIATE_QV(NAME, B)                                                                                  \
  extern "C" __global__ void __launch_bounds__(128, 4) qgemv_##NAME##_m8(QV_ARGS) { qgemv<B, 1, 3, 2>(QV_CALL); }  \
  extern "C" __global__ void __launch_bounds__(128, 4) qgemv_##NAME##_m16(QV_ARGS) { qgemv<B, 2, QV_D16, 1>(QV_CALL); }

INSTANTIATE_QV(w4, 4)
INSTANTIATE_QV(w8, 8)
INSTANTIATE_QV(f8, QB_FP8)  // FP8 E4M3 weights

// Token selection on the GPU, so only the chosen ids are read back (src/backends/cuda/sampling.ts launches it;
// the rule for which rows come here is src/sampling/device_rule.ts). Per row, with its config (temperature, topK,
// topP, u) from a device buffer, so a captured decode graph reads new settings every step:
//   temperature < 1e-5 (or a +-inf max): argmax, lowest id on ties; NaN counts as -inf.
//   otherwise: w_i = exp((l_i - max) / T); top-k keeps ids whose logit >= the k-th largest; top-p keeps the smallest
//   set of most likely survivors whose mass reaches topP (ties at the edge kept); then the id where the running mass
//   in id order first exceeds u * kept mass.
// Weights are summed in 2^-40 fixed point (u64; w <= 1, so 2^23 ids cannot overflow): every sum is exact and
// order-free, the passes agree with each other bit for bit, and the result does not depend on scheduling.
// Thresholds are exact, without a sort: the largest key (order-preserving u32 of the logit) whose count / mass at
// or above it reaches the target, found in 4 histogram rounds: buckets of 1/64 logit below the max (monotone in the
// logit, so the edge bucket is one key range), then bits 31-21, 20-10 and 9-0 of the keys in the edge bucket.
//
// sample_c8_f32 / sample_c8t512_f32 (sm_90): a cluster of 8 blocks per row, each on 1/8 of the row (cached in
// shared memory when it fits), histograms merged through distributed shared memory. sample_f32: one block per row
// (any arch). grid [CL, rows], block TH threads, dynamic smem: the block's slice in f32 when `cached` (else 0).
#include <cooperative_groups.h>

#include "common.cuh"

namespace cg = cooperative_groups;
typedef unsigned long long u64;

#define NBIN 2048
#define TAIL (NBIN - 1)
#define BUCKETS_PER_LOGIT 64.f
#define FIX_ONE 1099511627776.f  // 2^40: fixed-point weight of the max logit
#define LIST_CAP 2048             // keys of the edge bucket kept after round 1 for rounds 2 and 3

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define HAS_CLUSTER 1
#define CLUSTER8 __cluster_dims__(8, 1, 1)
#else
#define HAS_CLUSTER 0
#define CLUSTER8
#endif

struct RowCfg {
  float temperature;
  unsigned topK;
  float topP;
  float u;
};

struct SampleSmem {
  u64 hist[2][NBIN];       // [2][NBIN] u64 (mass) or u32 (count) partial histograms, double-buffered over rounds
  u64 scan[32];            // block scan scratch
  unsigned list[LIST_CAP];  // [LIST_CAP] u32 keys of this block's edge-bucket ids (round 1), in no order
  unsigned listN;           // keys appended (more than LIST_CAP: rounds 2 and 3 scan the slice)
  u64 kept;           // this block's kept mass (draw; read by the other ranks)
  float partV;        // this block's max logit and its lowest id (read by the other ranks)
  int partI;
  float maxV;  // the row's
  int maxI;
  u64 above;  // mass / count ranked above the chosen bin (round decision)
  int bin;
  u64 offset;  // kept mass of lower ranks, and of the whole row
  u64 total;
};

template <int CL> __device__ __forceinline__ void clusterSync() {
#if HAS_CLUSTER
  if constexpr (CL > 1) {
    cg::this_cluster().sync();
    return;
  }
#endif
  __syncthreads();
}

template <int CL, typename T> __device__ __forceinline__ const T* rankPtr(const T* p, int rank) {
#if HAS_CLUSTER
  if constexpr (CL > 1) return cg::this_cluster().map_shared_rank(const_cast<T*>(p), rank);
#endif
  return p;
}

__device__ __forceinline__ unsigned okey(float f) {
  const unsigned b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float unkey(unsigned k) { return __uint_as_float((k & 0x80000000u) ? k & 0x7fffffffu : ~k); }
__device__ __forceinline__ float clean(float v) { return v == v ? v : -INFINITY; }
__device__ __forceinline__ u64 fixw(float v, float maxV, float invT) {
  return __float2ull_rn(expf((v - maxV) * invT) * FIX_ONE);
}
// Bucket of round 0: 1/64 logit wide below the max; monotone (a larger logit never gets a larger bucket).
__device__ __forceinline__ int bucket0(float v, float maxV) {
  const float d = (maxV - v) * BUCKETS_PER_LOGIT;
  return d < (float)TAIL ? (int)d : TAIL;
}
__device__ __forceinline__ void argmaxStep(float v, int i, float& best, int& idx) {
  if (v > best || (v == best && i < idx)) {
    best = v;
    idx = i;
  }
}
__device__ __forceinline__ void warpArgmax(float& best, int& idx) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    argmaxStep(ov, oi, best, idx);
  }
}
__device__ __forceinline__ u64 warpSum64(u64 v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ u64 warpScan64(u64 v, int lane) {
  for (int o = 1; o < 32; o <<= 1) {
    const u64 t = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += t;
  }
  return v;
}
// Inclusive scan over the block's TH threads in thread order; `total` gets the block's sum.
template <int TH> __device__ u64 blockScan(u64 v, SampleSmem& sh, u64& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warpScan64(v, lane);
  __syncthreads();  // scratch free
  if (lane == 31) sh.scan[warp] = v;
  __syncthreads();
  if (warp == 0) sh.scan[lane] = warpScan64(lane < TH / 32 ? sh.scan[lane] : 0ull, lane);
  __syncthreads();
  total = sh.scan[31];
  return v + (warp > 0 ? sh.scan[warp - 1] : 0ull);
}

// The largest key T with F(key >= T) >= target over the row's ids with key >= floorKey; F counts ids (MASS false)
// or sums their fixed-point weights. MASS: the target is ceil(topP * total mass), topPFix = topP * 2^64.
template <int CL, int TH, bool MASS>
__device__ unsigned selectKey(const float* src, int n, float maxV, float invT, unsigned floorKey, u64 target,
                              u64 topPFix, SampleSmem& sh, int& phase) {
  const int tid = threadIdx.x, lane = tid & 31;
  u64 above = 0;
  int edge = 0;
  unsigned prefix = 0;
  for (int rnd = 0; rnd < 4; rnd++) {
    u64* h = sh.hist[phase++ & 1];
    unsigned* h32 = reinterpret_cast<unsigned*>(h);  // counts: u32 atomics (native; u64 ones are CAS loops)
    const int nb = rnd == 3 ? 1024 : NBIN;
    const int shift = rnd == 1 ? 21 : rnd == 2 ? 10 : 0;  // rnd 1: bits 31-21, rnd 2: 20-10, rnd 3: 9-0
    const int prevShift = rnd == 2 ? 21 : 10;
    for (int b = tid; b < nb; b += TH) h[b] = 0;
    if (rnd == 1 && tid == 0) sh.listN = 0;
    __syncthreads();
    const auto add = [&](float v, int bin) {
      if (MASS) {
        const u64 q = fixw(v, maxV, invT);
        if (q) atomicAdd(&h[bin], q);
      } else {
        atomicAdd(&h32[bin], 1u);
      }
    };
    const unsigned listN = rnd >= 2 ? sh.listN : 0u;  // appended in round 1, before its cluster barrier
    if (rnd >= 2 && listN <= LIST_CAP) {
      // Rounds 2 and 3 over the edge bucket's keys listed in round 1.
      for (unsigned j = tid; j < listN; j += TH) {
        const unsigned k = sh.list[j];
        if ((k >> prevShift) == prefix) add(unkey(k), (k >> shift) & (nb - 1));
      }
    } else {
      u64 tail = 0;
      for (int i = tid; i < n; i += TH) {
        const float v = src[i];
        const unsigned k = okey(v);
        if (k < floorKey) continue;
        const int b0 = bucket0(v, maxV);
        if (rnd == 0) {
          if (b0 < TAIL) add(v, b0);
          else tail += MASS ? fixw(v, maxV, invT) : 1ull;  // the open-ended bucket is hot: add once per warp
          continue;
        }
        if (b0 != edge || (rnd > 1 && (k >> prevShift) != prefix)) continue;
        if (rnd == 1) {
          const unsigned at = atomicAdd(&sh.listN, 1u);
          if (at < LIST_CAP) sh.list[at] = k;
        }
        add(v, (k >> shift) & (nb - 1));
      }
      if (rnd == 0) {
        tail = warpSum64(tail);
        if (lane == 0 && tail) {
          if (MASS) atomicAdd(&h[TAIL], tail);
          else atomicAdd(&h32[TAIL], (unsigned)tail);
        }
      }
    }
    clusterSync<CL>();
    // Merge the ranks' histograms in priority order (largest logits first) and find where the target is reached.
    const int per = nb / TH;
    u64 vals[NBIN / TH], s = 0;
#pragma unroll
    for (int j = 0; j < NBIN / TH; j++) {
      vals[j] = 0;
      if (j >= per) continue;
      const int p = tid * per + j, bin = rnd == 0 ? p : nb - 1 - p;
#pragma unroll
      for (int r = 0; r < CL; r++) vals[j] += MASS ? rankPtr<CL>(h, r)[bin] : rankPtr<CL>(h32, r)[bin];
      s += vals[j];
    }
    u64 total;
    const u64 incl = blockScan<TH>(s, sh, total);
    if (MASS && rnd == 0) target = max(1ull, __umul64hi(total, topPFix) + (total * topPFix != 0 ? 1 : 0));
    const u64 excl = incl - s;
    if (above + excl < target && above + incl >= target) {
      u64 acc = above + excl;
      bool done = false;
#pragma unroll
      for (int j = 0; j < NBIN / TH; j++) {
        if (!done && j < per && acc + vals[j] >= target) {
          const int p = tid * per + j;
          sh.bin = rnd == 0 ? p : nb - 1 - p;
          sh.above = acc;
          done = true;
        }
        acc += vals[j];
      }
    }
    __syncthreads();
    above = sh.above;
    const int bin = sh.bin;
    if (rnd == 0) edge = bin;
    else prefix = (prefix << (rnd == 3 ? 10 : 11)) | (unsigned)bin;
  }
  return prefix;
}

template <int CL, int TH>
__device__ void sampleRow(const float* logits, const RowCfg* cfg, int* ids, int vocab, int cached) {
  __shared__ SampleSmem sh;
  extern __shared__ __align__(16) float cache[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int rank = CL > 1 ? (int)blockIdx.x : 0;
  const size_t row = blockIdx.y;
  const int S = ((vocab + CL - 1) / CL + 3) & ~3;
  const int base = min(vocab, rank * S), n = min(vocab, base + S) - base;
  const float* g = logits + row * (size_t)vocab + base;
  const RowCfg c = cfg[row];

  // Load (and cache) this block's slice; its max logit, lowest id on ties.
  float best = -INFINITY;
  int idx = 0x7fffffff;
  if ((vocab & 3) == 0) {
    const float4* g4 = reinterpret_cast<const float4*>(g);
#pragma unroll 4
    for (int i = tid; i < n / 4; i += TH) {
      float4 v = __ldg(g4 + i);
      v = make_float4(clean(v.x), clean(v.y), clean(v.z), clean(v.w));
      if (cached) reinterpret_cast<float4*>(cache)[i] = v;
      argmaxStep(v.x, base + 4 * i, best, idx);
      argmaxStep(v.y, base + 4 * i + 1, best, idx);
      argmaxStep(v.z, base + 4 * i + 2, best, idx);
      argmaxStep(v.w, base + 4 * i + 3, best, idx);
    }
  } else {
    for (int i = tid; i < n; i += TH) {
      const float v = clean(__ldg(g + i));
      if (cached) cache[i] = v;
      argmaxStep(v, base + i, best, idx);
    }
  }
  warpArgmax(best, idx);
  __shared__ float wv[32];
  __shared__ int wi[32];
  if (lane == 0) wv[warp] = best, wi[warp] = idx;
  __syncthreads();
  if (warp == 0) {
    best = lane < TH / 32 ? wv[lane] : -INFINITY;
    idx = lane < TH / 32 ? wi[lane] : 0x7fffffff;
    warpArgmax(best, idx);
    if (lane == 0) sh.partV = best, sh.partI = idx;
  }
  clusterSync<CL>();
  if (warp == 0) {
    best = -INFINITY, idx = 0x7fffffff;
    if (lane < CL) {
      best = *rankPtr<CL>(&sh.partV, lane);
      idx = *rankPtr<CL>(&sh.partI, lane);
    }
    warpArgmax(best, idx);
    if (lane == 0) sh.maxV = best, sh.maxI = idx == 0x7fffffff ? 0 : idx;
  }
  __syncthreads();
  const float maxV = sh.maxV;
  const float* src = cached ? cache : g;

  if (!(c.temperature >= 1e-5f) || !(fabsf(maxV) < INFINITY)) {
    // Greedy; also an infinite max (it takes all the mass) or a row of -inf / NaN (id 0), as on the host.
    if (rank == 0 && tid == 0) ids[row] = sh.maxI;
    clusterSync<CL>();  // the other ranks may still read this block's partial max
    return;
  }
  const float invT = 1.f / c.temperature;
  int phase = 0;
  unsigned thr = 0;
  if (c.topK > 0 && c.topK < (unsigned)vocab) {
    thr = selectKey<CL, TH, false>(src, n, maxV, invT, 0u, c.topK, 0, sh, phase);
  }
  if (c.topP > 0.f && c.topP < 1.f) {
    const u64 topPFix = (u64)(c.topP * 18446744073709551616.f);  // exact for topP >= 2^-40
    thr = selectKey<CL, TH, true>(src, n, maxV, invT, thr, 0, topPFix, sh, phase);
  }

  // Draw: warp w owns a contiguous segment of the slice; kept mass per warp, scanned in id order over the block
  // and then over the cluster's ranks; the warp holding u * kept mass walks its segment 32 ids at a time.
  const int seg = (n + TH - 1) / TH * 32;  // ceil(n / (TH / 32 warps)), in steps of 32 ids
  const int s0 = min(n, warp * seg), s1 = min(n, s0 + seg);
  u64 m = 0;
  for (int i = s0 + lane; i < s1; i += 32) {
    const float v = src[i];
    if (okey(v) >= thr) m += fixw(v, maxV, invT);
  }
  m = warpSum64(m);
  u64 blockKept;
  const u64 warpIncl = blockScan<TH>(lane == 0 ? m : 0ull, sh, blockKept);  // lane 0 of each warp carries its mass
  const u64 warpExcl = __shfl_sync(0xffffffffu, warpIncl, 0) - m;
  if (tid == 0) sh.kept = blockKept;
  clusterSync<CL>();
  if (tid == 0) {
    u64 off = 0, tot = 0;
    for (int r = 0; r < CL; r++) {
      const u64 k = *rankPtr<CL>(&sh.kept, r);
      if (r < rank) off += k;
      tot += k;
    }
    sh.offset = off, sh.total = tot;
  }
  __syncthreads();
  float u = c.u;
  if (!(u >= 0.f)) u = 0.f;
  if (u >= 1.f) u = 0.99999994f;
  const u64 goal = __umul64hi(sh.total, (u64)(u * 18446744073709551616.f));  // floor(u * kept) < kept
  u64 run = sh.offset + warpExcl;
  if (m > 0 && goal >= run && goal < run + m) {
    for (int i0 = s0; i0 < s1; i0 += 32) {
      const int i = i0 + lane;
      u64 q = 0;
      if (i < s1) {
        const float v = src[i];
        if (okey(v) >= thr) q = fixw(v, maxV, invT);
      }
      const u64 incl = warpScan64(q, lane);
      const bool hit = q > 0 && goal >= run + incl - q && goal < run + incl;
      if (hit) ids[row] = base + i;
      if (__ballot_sync(0xffffffffu, hit)) break;
      run += __shfl_sync(0xffffffffu, incl, 31);
    }
  }
  clusterSync<CL>();  // the other ranks may still read this block's histograms and kept mass
}

// logits [rows, vocab] f32, cfg [rows] RowCfg, ids [rows] i32; grid [1, rows], 1024 threads.
extern "C" __global__ void __launch_bounds__(1024, 1)
    sample_f32(const float* logits, const RowCfg* cfg, int* ids, int vocab, int cached) {
  sampleRow<1, 1024>(logits, cfg, ids, vocab, cached);
}

// Same buffers; grid [8, rows], one cluster of 8 blocks per row (sm_90 only): 1024 threads (one block per SM), or
// 512 (two blocks per SM, for large batches).
#define INSTANTIATE_CLUSTER(NAME, TH, MINB)                                                                       \
  extern "C" __global__ void CLUSTER8 __launch_bounds__(TH, MINB)                                                 \
      NAME(const float* logits, const RowCfg* cfg, int* ids, int vocab, int cached) {                             \
    if (HAS_CLUSTER) sampleRow<8, TH>(logits, cfg, ids, vocab, cached);                                           \
    else __trap();                                                                                                 \
  }
INSTANTIATE_CLUSTER(sample_c8_f32, 1024, 1)
INSTANTIATE_CLUSTER(sample_c8t512_f32, 512, 2)

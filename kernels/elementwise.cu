// Embedding, RMSNorm (+ fused residual add), SiLU-and-multiply, RoPE fused with the paged KV write, argmax.
// Residual stream x is f32; matmul inputs (activations) are f32 or the weight dtype; KV caches are the KV dtype.
#include "common.cuh"

// x[t, :] = f32(table[ids[t], :]). table: [vocab, h] T; x: [n, h] f32. grid n, block 256.
template <typename T>
__device__ void embed(const T* table, const int* ids, float* x, int n, int h, int vocab) {
  const int t = blockIdx.x;
  int id = ids[t];
  id = id < 0 ? 0 : (id >= vocab ? vocab - 1 : id);  // the host validates; clamp keeps reads in bounds
  for (int i = threadIdx.x; i < h; i += blockDim.x) x[(size_t)t * h + i] = tof(table[(size_t)id * h + i]);
}

// out[r] = T(f32(x[src] / rms(x[src])) * w), src = rowIdx ? rowIdx[r] : r. When res is given, first
// x[src] += res[src] (written back). x: [*, h] f32; w: [h] f32; out: [rows, h] T. grid rows, block 256.
template <typename T>
__device__ void rmsnorm(float* x, const float* res, const int* rowIdx, const float* w, T* out, int h, float eps) {
  const int r = blockIdx.x;
  const size_t src = (size_t)(rowIdx ? rowIdx[r] : r) * h;
  float ss = 0.f;
  for (int i = threadIdx.x; i < h; i += blockDim.x) {
    float v = x[src + i];
    if (res) {
      v += res[src + i];
      x[src + i] = v;
    }
    ss += v * v;
  }
  const float inv = rsqrtf(blockSum(ss) / h + eps);
  for (int i = threadIdx.x; i < h; i += blockDim.x) out[(size_t)r * h + i] = fromf<T>(x[src + i] * inv * w[i]);
}

// out[r, j] = T(silu(gu[r, j]) * gu[r, f + j]). gu: [rows, 2f] f32 (gate | up); out: [rows, f] T.
template <typename T>
__device__ void siluMul(const float* gu, T* out, int rows, int f) {
  const size_t n = (size_t)rows * f;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / f, j = i % f;
    const float g = gu[r * 2 * f + j], u = gu[r * 2 * f + f + j];
    out[i] = fromf<T>(g / (1.f + expf(-g)) * u);
  }
}

// One warp per (token, head) over nh query heads, nkv key heads, nkv value heads. qkv: [n, (nh+2nkv)*d] f32.
// Queries: optional per-head RMSNorm (qNorm [d] f32), RoPE, written to q [n, nh, d] f32. Keys: same with kNorm,
// written to the cache at slots[t]; values copied. Caches: [numBlocks, nkv, blockSize, d] KV. cos/sin:
// [maxPos, d/2] f32. Slots < 0 are skipped. grid (n, ceil((nh+2nkv)/4)), block 128.
template <typename KV>
__device__ void ropeKv(const float* qkv, const float* cosT, const float* sinT, const float* qNorm, const float* kNorm,
                       const int* positions, const int* slots, float* q, KV* kCache, KV* vCache, int nh, int nkv,
                       int d, int blockSize, float eps) {
  const int t = blockIdx.x, lane = threadIdx.x & 31;
  const int head = blockIdx.y * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (head >= nh + 2 * nkv) return;
  const float* src = qkv + (size_t)t * (nh + 2 * nkv) * d + (size_t)head * d;
  const int slot = slots[t];
  const bool isQ = head < nh, isK = !isQ && head < nh + nkv;
  KV* dst = nullptr;
  if (!isQ) {
    if (slot < 0) return;
    const int kvh = isK ? head - nh : head - nh - nkv;
    const size_t off = (((size_t)(slot / blockSize) * nkv + kvh) * blockSize + slot % blockSize) * d;
    dst = (isK ? kCache : vCache) + off;
  }
  if (!isQ && !isK) {
    for (int i = lane; i < d; i += 32) dst[i] = fromf<KV>(src[i]);
    return;
  }
  const float* nw = isQ ? qNorm : kNorm;
  float inv = 1.f;
  if (nw) {
    float ss = 0.f;
    for (int i = lane; i < d; i += 32) ss += src[i] * src[i];
    inv = rsqrtf(warpSum(ss) / d + eps);
  }
  const int half = d / 2, p = positions[t];
  float* qo = q + ((size_t)t * nh + head) * d;
  for (int i = lane; i < half; i += 32) {
    float a = src[i], b = src[i + half];
    if (nw) {
      a = a * inv * nw[i];
      b = b * inv * nw[i + half];
    }
    const float c = cosT[(size_t)p * half + i], s = sinT[(size_t)p * half + i];
    const float ra = a * c - b * s, rb = b * c + a * s;
    if (isQ) {
      qo[i] = ra;
      qo[i + half] = rb;
    } else {
      dst[i] = fromf<KV>(ra);
      dst[i + half] = fromf<KV>(rb);
    }
  }
}

// ids[r] = argmax(logits[r, :]), ties to the lowest index, NaN never wins. logits: [rows, vocab] f32.
// grid rows, block 1024.
__device__ __forceinline__ void argmaxStep(float v, int i, float& best, int& idx) {
  if (v > best || (v == best && i < idx)) {
    best = v;
    idx = i;
  }
}
extern "C" __global__ void argmax_f32(const float* logits, int* ids, int vocab) {
  __shared__ float bv[32];
  __shared__ int bi[32];
  const float* row = logits + (size_t)blockIdx.x * vocab;
  float best = -INFINITY;
  int idx = 0x7fffffff;
  if (vocab % 4 == 0 && ((uintptr_t)row & 15) == 0) {
    const float4* r4 = reinterpret_cast<const float4*>(row);
#pragma unroll 4
    for (int i = threadIdx.x; i < vocab / 4; i += blockDim.x) {
      const float4 v = r4[i];
      argmaxStep(v.x, 4 * i, best, idx);
      argmaxStep(v.y, 4 * i + 1, best, idx);
      argmaxStep(v.z, 4 * i + 2, best, idx);
      argmaxStep(v.w, 4 * i + 3, best, idx);
    }
  } else {
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) argmaxStep(row[i], i, best, idx);
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    argmaxStep(ov, oi, best, idx);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    bv[warp] = best;
    bi[warp] = idx;
  }
  __syncthreads();
  if (warp == 0) {
    best = lane < (int)(blockDim.x >> 5) ? bv[lane] : -INFINITY;
    idx = lane < (int)(blockDim.x >> 5) ? bi[lane] : 0x7fffffff;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
      argmaxStep(ov, oi, best, idx);
    }
    if (lane == 0) ids[blockIdx.x] = idx == 0x7fffffff ? 0 : idx;
  }
}

// Synthetic-model weights (src/model/synthetic.ts syntheticValue): element e = base + amp * u(e), u in (-1, 1) from
// the same u32 hash of (seed, stream, e) as the host, so `--model synthetic:NAME` needs no host-side generation.
template <typename T>
__device__ void synthFill(T* dst, int n, unsigned seed, unsigned stream, float amp, float base) {
  for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < n; e += gridDim.x * blockDim.x) {
    unsigned x = ((unsigned)e * 0x9e3779b1u) ^ stream ^ (seed * 0x85ebca6bu);
    x = (x ^ (x >> 16)) * 0x7feb352du;
    x = (x ^ (x >> 15)) * 0x846ca68bu;
    x ^= x >> 16;
    dst[e] = fromf<T>(base + amp * ((float)((x >> 8) * 2u + 1u) / 16777216.0f - 1.0f));
  }
}

#define INSTANTIATE_W(T)                                                                                    \
  extern "C" __global__ void embed_##T(const T* table, const int* ids, float* x, int n, int h, int vocab) { \
    embed<T>(table, ids, x, n, h, vocab);                                                                   \
  }                                                                                                         \
  extern "C" __global__ void synth_fill_##T(T* dst, int n, unsigned seed, unsigned stream, float amp,       \
                                            float base) {                                                   \
    synthFill<T>(dst, n, seed, stream, amp, base);                                                          \
  }
#define INSTANTIATE_ACT(T)                                                                                        \
  extern "C" __global__ void rmsnorm_##T(float* x, const float* res, const int* rowIdx, const float* w, T* out,   \
                                         int h, float eps) {                                                      \
    rmsnorm<T>(x, res, rowIdx, w, out, h, eps);                                                                   \
  }                                                                                                               \
  extern "C" __global__ void silu_mul_##T(const float* gu, T* out, int rows, int f) { siluMul<T>(gu, out, rows, f); }

#define INSTANTIATE_KV(KV)                                                                                         \
  extern "C" __global__ void rope_kv_##KV(const float* qkv, const float* cosT, const float* sinT,                 \
                                          const float* qNorm, const float* kNorm, const int* positions,           \
                                          const int* slots, float* q, KV* kCache, KV* vCache, int nh, int nkv,    \
                                          int d, int blockSize, float eps) {                                      \
    ropeKv<KV>(qkv, cosT, sinT, qNorm, kNorm, positions, slots, q, kCache, vCache, nh, nkv, d, blockSize, eps); \
  }

INSTANTIATE_W(bf16)
INSTANTIATE_W(f16)
INSTANTIATE_ACT(bf16)
INSTANTIATE_ACT(f16)
INSTANTIATE_ACT(f32)
INSTANTIATE_KV(bf16)
INSTANTIATE_KV(f16)

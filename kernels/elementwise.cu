// Embedding, RMSNorm (+ fused residual add), SiLU-and-multiply, RoPE fused with the paged KV write, argmax.
// Residual stream x is f32; matmul inputs (activations) are f32 or the weight dtype; KV caches are the KV dtype.
#include "common.cuh"
#include "ptx.cuh"

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

// out[r, j] = T(silu(gate) * up). gu: [rows, N] f32; half == 0: N = 2f, gate | up (gate j at j, up at f + j);
// half > 0 (a quantized gate_up paired per n-tile, src/backends/cuda/gate_up.ts): gate j at 2 half (j / half) +
// j % half, up half further. out: [rows, f] T.
template <typename T>
__device__ void siluMul(const float* gu, T* out, int rows, int f, int half) {
  pdlLaunchDependents();  // launched as a programmatic dependent (ops.ts): the next GEMV may start its weight loads
  pdlWait();
  const size_t n = (size_t)rows * f;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / f, j = i % f;
    const size_t N = half ? 2 * (size_t)half * ((f + half - 1) / half) : 2 * (size_t)f;
    const size_t gc = half ? 2 * half * (j / half) + j % half : j, uc = gc + (half ? half : f);
    const float g = gu[r * N + gc], u = gu[r * N + uc];
    out[i] = fromf<T>(g / (1.f + expf(-g)) * u);
  }
}

// KV cache quantization on write, bit-identical to quant/reference.ts kvRoundTrip (which works in f64): of the head
// vector x (d f32 values), zero = largest f16 <= min x, scale = smallest f16 >= (max x - zero) / qmax (0 when
// max x == zero), q = clamp(round half up ((x - zero) / scale), 0, qmax). The f64 arithmetic here is the
// reference's, operation for operation. Cache layout (kv_cache.cuh): rows [numBlocks, nkv, blockSize, RB] bytes,
// RB = d * bits / 8 rounded up to 16 (int4: value 2i in the low nibble of byte i; padding bytes 0), scales
// [numBlocks, nkv, blockSize] half2 (scale, zero).
__device__ __forceinline__ double f16Val(unsigned short b) { return (double)__half2float(__ushort_as_half(b)); }
__device__ __forceinline__ unsigned short f16NextUp(unsigned short b) {
  return b == 0x8000 ? 0x0001 : (b & 0x8000) ? b - 1 : b + 1;
}
__device__ __forceinline__ unsigned short f16NextDown(unsigned short b) {
  return b == 0x0000 ? 0x8001 : (b & 0x8000) ? b + 1 : b - 1;
}
// Bits of the smallest f16 >= x (up) or the largest f16 <= x (down); |x| < 65504.
__device__ unsigned short f16Bound(double x, bool up) {
  unsigned short b = __half_as_ushort(__float2half_rn((float)x));
  if (up) {
    while (f16Val(b) < x) b = f16NextUp(b);
    while (f16Val(f16NextDown(b)) >= x) b = f16NextDown(b);
  } else {
    while (f16Val(b) > x) b = f16NextDown(b);
    while (f16Val(f16NextUp(b)) <= x) b = f16NextUp(b);
  }
  return b;
}
__device__ __forceinline__ uint32_t kvQuant(float x, double zero, double scale, int qm) {
  if (scale == 0.0) return 0;
  const double v = ((double)x - zero) / scale;
  double r = floor(v);
  if (v - r >= 0.5) r += 1.0;  // Math.round: halves up
  return (uint32_t)fmin((double)qm, fmax(0.0, r));
}
// One warp quantizes vals[0 .. d) (shared memory) into row `dst` (RB bytes) and its (scale, zero) pair.
template <int BITS>
__device__ void kvQuantizeRow(const float* vals, int d, uint8_t* dst, __half2* sz) {
  const int lane = threadIdx.x & 31, qm = (1 << BITS) - 1, rb = (d * BITS / 8 + 15) / 16 * 16;
  float lo = INFINITY, hi = -INFINITY;
  for (int i = lane; i < d; i += 32) lo = fminf(lo, vals[i]), hi = fmaxf(hi, vals[i]);
  for (int o = 16; o > 0; o >>= 1) {
    lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
  }
  const unsigned short zb = f16Bound(lo, false);
  const double zero = f16Val(zb);
  const unsigned short sb = (double)hi > zero ? f16Bound(((double)hi - zero) / qm, true) : 0;
  const double scale = f16Val(sb);
  constexpr int PER = 32 / BITS;  // values per 32-bit word
  for (int w = lane; w < rb / 4; w += 32) {
    uint32_t word = 0;
#pragma unroll
    for (int k = 0; k < PER; k++) {
      const int i = w * PER + k;
      if (i < d) word |= kvQuant(vals[i], zero, scale, qm) << (BITS * k);
    }
    reinterpret_cast<uint32_t*>(dst)[w] = word;
  }
  if (lane == 0) *sz = __halves2half2(__ushort_as_half(sb), __ushort_as_half(zb));
}

#define ROPE_MAXD 1024

// One warp per (token, head) over nh query heads, nkv key heads, nkv value heads. qkv: [n, (nh+2nkv)*d] f32.
// Queries: optional per-head RMSNorm (qNorm [d] f32), RoPE, written to q [n, nh, d] f32. Keys: same with kNorm,
// written to the cache at slots[t]; values copied. Caches (layout above): f16 / bf16 [numBlocks, nkv, blockSize, d];
// int8 / int4 quantized rows plus kScale / vScale (null for 16-bit caches). cos/sin: [maxPos, d/2] f32. Slots < 0
// are skipped. grid (n, ceil((nh+2nkv)/4)), block 128. BITS: 16 (KV = bf16 / f16), 8 or 4 (KV = uint8_t).
template <typename KV, int BITS>
__device__ void ropeKv(const float* qkv, const float* cosT, const float* sinT, const float* qNorm, const float* kNorm,
                       const int* positions, const int* slots, float* q, KV* kCache, KV* vCache, __half2* kScale,
                       __half2* vScale, int nh, int nkv, int d, int blockSize, float eps) {
  __shared__ float stage[BITS < 16 ? 4 : 1][BITS < 16 ? ROPE_MAXD : 1];  // [warp, d] quantizer input
  pdlLaunchDependents();  // launched as a programmatic dependent (ops.ts): wait for the qkv projection first
  pdlWait();
  const int t = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int head = blockIdx.y * (blockDim.x >> 5) + warp;
  if (head >= nh + 2 * nkv) return;
  const float* src = qkv + (size_t)t * (nh + 2 * nkv) * d + (size_t)head * d;
  const int slot = slots[t];
  const bool isQ = head < nh, isK = !isQ && head < nh + nkv;
  KV* dst = nullptr;
  size_t row = 0;
  if (!isQ) {
    if (slot < 0) return;
    const int kvh = isK ? head - nh : head - nh - nkv;
    row = ((size_t)(slot / blockSize) * nkv + kvh) * blockSize + slot % blockSize;
    dst = (isK ? kCache : vCache) + row * (BITS < 16 ? (d * BITS / 8 + 15) / 16 * 16 : d);
  }
  float* vals = stage[0] + (BITS < 16 ? warp * ROPE_MAXD : 0);
  if (!isQ && !isK) {
    if constexpr (BITS < 16) {
      for (int i = lane; i < d; i += 32) vals[i] = src[i];
      __syncwarp();
      kvQuantizeRow<BITS>(vals, d, reinterpret_cast<uint8_t*>(dst), vScale + row);
    } else {
      for (int i = lane; i < d; i += 32) dst[i] = fromf<KV>(src[i]);
    }
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
    } else if constexpr (BITS < 16) {
      vals[i] = ra;
      vals[i + half] = rb;
    } else {
      dst[i] = fromf<KV>(ra);
      dst[i + half] = fromf<KV>(rb);
    }
  }
  if constexpr (BITS < 16) {
    if (isK) {
      __syncwarp();
      kvQuantizeRow<BITS>(vals, d, reinterpret_cast<uint8_t*>(dst), kScale + row);
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
  extern "C" __global__ void silu_mul_##T(const float* gu, T* out, int rows, int f, int half) {                  \
    siluMul<T>(gu, out, rows, f, half);                                                                           \
  }

#define INSTANTIATE_KV(NAME, KV, BITS)                                                                            \
  extern "C" __global__ void rope_kv_##NAME(const float* qkv, const float* cosT, const float* sinT,               \
                                            const float* qNorm, const float* kNorm, const int* positions,         \
                                            const int* slots, float* q, KV* kCache, KV* vCache, __half2* kScale,  \
                                            __half2* vScale, int nh, int nkv, int d, int blockSize, float eps) {  \
    ropeKv<KV, BITS>(qkv, cosT, sinT, qNorm, kNorm, positions, slots, q, kCache, vCache, kScale, vScale, nh, nkv, \
                     d, blockSize, eps);                                                                          \
  }

INSTANTIATE_W(bf16)
INSTANTIATE_W(f16)
INSTANTIATE_ACT(bf16)
INSTANTIATE_ACT(f16)
INSTANTIATE_ACT(f32)
INSTANTIATE_KV(bf16, bf16, 16)
INSTANTIATE_KV(f16, f16, 16)
INSTANTIATE_KV(int8, uint8_t, 8)
INSTANTIATE_KV(int4, uint8_t, 4)

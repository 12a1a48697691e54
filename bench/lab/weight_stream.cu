// Lab (not part of the server): how fast can one W4A16 decode step's weight bytes stream on this GPU? Loads-only
// kernels over 32 layers of the Llama-3-8B int4 g128 matrices (qkv, o, gate_up, down with their scales: 3.71 GB),
// captured in one CUDA graph: 128 launches (with / without programmatic dependent launch, with a dependency wait after
// the first weight copies as qgemv.cu has), a persistent kernel without / with grid barriers between the matrices,
// and the qgemv plan's grid shapes. kernels/NOTES.md ("What the weight stream alone costs") has the results.
// Build and run on the GPU machine: nvcc -O3 -arch=sm_90a -std=c++17 -o /tmp/ws bench/lab/weight_stream.cu && /tmp/ws
#include <cstdio>
#include <cstdint>
#include <vector>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); exit(1); } } while (0)

__device__ unsigned sink;
__device__ __forceinline__ uint4 ldg(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
__device__ __forceinline__ void pdlWait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void pdlLaunch() { asm volatile("griddepcontrol.launch_dependents;"); }

// A: warp-contiguous runs (qgemv-like), U loads in flight per lane.
template <int U>
__global__ void __launch_bounds__(128) runs(const uint4* p, size_t n16, int early) {
  const int lane = threadIdx.x & 31;
  const size_t warps = (size_t)gridDim.x * 4, w = blockIdx.x * 4 + (threadIdx.x >> 5);
  const size_t per = (n16 / 32 + warps - 1) / warps;  // 512-byte tiles per warp
  size_t t0 = w * per, t1 = t0 + per; if (t1 > n16 / 32) t1 = n16 / 32;
  unsigned acc = 0;
  if (early) pdlLaunch();
  for (size_t t = t0; t < t1; t += U) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; u++) if (t + u < t1) v[u] = ldg(p + (t + u) * 32 + lane); else v[u] = make_uint4(0,0,0,0);
#pragma unroll
    for (int u = 0; u < U; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  pdlWait();
  if (acc == 0x12345678u) sink = acc;
}
// B: grid-stride, U loads in flight per thread.
template <int U>
__global__ void __launch_bounds__(128) gstride(const uint4* p, size_t n16, int early) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  unsigned acc = 0;
  if (early) pdlLaunch();
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n16; i += stride * U) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; u++) { size_t j = i + u * stride; v[u] = j < n16 ? ldg(p + j) : make_uint4(0,0,0,0); }
#pragma unroll
    for (int u = 0; u < U; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  pdlWait();
  if (acc == 0x12345678u) sink = acc;
}


template <int U>
__global__ void __launch_bounds__(128) runsDep(const uint4* p, size_t n16, int early) {
  const int lane = threadIdx.x & 31;
  const size_t warps = (size_t)gridDim.x * 4, w = blockIdx.x * 4 + (threadIdx.x >> 5);
  const size_t per = (n16 / 32 + warps - 1) / warps;
  size_t t0 = w * per, t1 = t0 + per; if (t1 > n16 / 32) t1 = n16 / 32;
  unsigned acc = 0;
  if (early) pdlLaunch();
  bool first = true;
  for (size_t t = t0; t < t1; t += U) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; u++) if (t + u < t1) v[u] = ldg(p + (t + u) * 32 + lane); else v[u] = make_uint4(0,0,0,0);
    if (first) { pdlWait(); first = false; }
#pragma unroll
    for (int u = 0; u < U; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  if (first) pdlWait();
  if (acc == 0x12345678u) sink = acc;
}

// Grid barrier (all blocks resident: cooperative launch).
__device__ unsigned barCount, barGen;
__device__ __forceinline__ void gridBar() {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned g = *(volatile unsigned*)&barGen;
    __threadfence();
    if (atomicAdd(&barCount, 1u) == gridDim.x - 1) { barCount = 0; __threadfence(); atomicExch(&barGen, g + 1); }
    else while (*(volatile unsigned*)&barGen == g) {}
    __threadfence();
  }
  __syncthreads();
}
// C / D: one persistent kernel over all segments; bar = 1: a grid barrier between segments, with the first U loads of
// the next segment issued before it (weights need no dependency); pre = 0: no prefetch across the barrier.
template <int U>
__global__ void __launch_bounds__(128) persist(const uint4* p, const size_t* segs, int nseg, int bar, int pre) {
  const int lane = threadIdx.x & 31;
  const size_t warps = (size_t)gridDim.x * 4, w = blockIdx.x * 4 + (threadIdx.x >> 5);
  unsigned acc = 0;
  size_t base = 0;
  uint4 v[U];
  bool have = false;
  for (int s = 0; s < nseg; s++) {
    const size_t nt = segs[s] / 32, per = (nt + warps - 1) / warps;
    size_t t0 = w * per, t1 = t0 + per; if (t1 > nt) t1 = nt;
    const uint4* q = p + base;
    size_t t = t0;
    if (have) { t += U; }  // first U tiles already in v
    else {
#pragma unroll
      for (int u = 0; u < U; u++) v[u] = t0 + u < t1 ? ldg(q + (t0 + u) * 32 + lane) : make_uint4(0,0,0,0);
      t += U;
    }
    for (; t < t1; t += U) {
      uint4 nv[U];
#pragma unroll
      for (int u = 0; u < U; u++) nv[u] = t + u < t1 ? ldg(q + (t + u) * 32 + lane) : make_uint4(0,0,0,0);
#pragma unroll
      for (int u = 0; u < U; u++) { acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w; v[u] = nv[u]; }
    }
    // next segment's first tiles
    have = false;
    if (pre && s + 1 < nseg) {
      const size_t nt2 = segs[s + 1] / 32, per2 = (nt2 + warps - 1) / warps;
      const size_t u0 = w * per2; const uint4* q2 = q + segs[s];
      uint4 nv[U];
#pragma unroll
      for (int u = 0; u < U; u++) nv[u] = u0 + u < nt2 && u < per2 ? ldg(q2 + (u0 + u) * 32 + lane) : make_uint4(0,0,0,0);
#pragma unroll
      for (int u = 0; u < U; u++) { acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w; v[u] = nv[u]; }
      have = true;
    } else {
#pragma unroll
      for (int u = 0; u < U; u++) { acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w; v[u] = make_uint4(0,0,0,0); }
    }
    if (bar) gridBar();
    base += segs[s];
  }
#pragma unroll
  for (int u = 0; u < U; u++) acc ^= v[u].x;
  if (acc == 0x12345678u) sink = acc;
}


__device__ __forceinline__ void cpAsync16(uint32_t s, const void* g) { asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(s), "l"(g)); }
__device__ __forceinline__ void commit() { asm volatile("cp.async.commit_group;"); }
template <int N> __device__ __forceinline__ void waitG() { asm volatile("cp.async.wait_group %0;" :: "n"(N)); }
// E: runs through a per-warp cp.async ring of R tiles; the dependency wait after the first R tiles are issued (qgemv-like);
// then a dependent read of 4 KB "x" written by the previous kernel, output written at the end.
template <int R>
__global__ void __launch_bounds__(128) ringk(const uint4* p, size_t n16, int early, const float* xin, float* xout) {
  extern __shared__ uint4 sm[];
  const int lane = threadIdx.x & 31, wi = threadIdx.x >> 5;
  const size_t warps = (size_t)gridDim.x * 4, w = blockIdx.x * 4 + wi;
  const size_t per = (n16 / 32 + warps - 1) / warps;
  size_t t0 = w * per, t1 = t0 + per; if (t1 > n16 / 32) t1 = n16 / 32; if (t0 > t1) t0 = t1;
  uint4* ring = sm + wi * R * 32 + lane;
  const uint32_t rs = (uint32_t)__cvta_generic_to_shared(ring);
  const size_t n = t1 - t0;
  for (int i = 0; i < R; i++) { if (i < (int)n) cpAsync16(rs + i * 512, p + (t0 + i) * 32 + lane); commit(); }
  if (early) pdlLaunch();
  pdlWait();
  float xs = xin[threadIdx.x] ;
  unsigned acc = __float_as_uint(xs);
  for (size_t i = 0; i < n; i++) {
    waitG<R - 1>();
    const uint4 v = ring[32 * (i % R)];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
    if (i + R < n) cpAsync16(rs + ((i + R) % R) * 512, p + (t0 + i + R) * 32 + lane);
    commit();
  }
  waitG<0>();
  if (blockIdx.x == 0) xout[threadIdx.x] = (float)(acc & 1);
  if (acc == 0x12345678u) sink = acc;
}

// G: ring kernel with an explicit grid and tiles per warp (qgemv's plan shapes); warp w streams tiles [w*per, (w+1)*per).
template <int R>
__global__ void __launch_bounds__(128) ringp(const uint4* p, int per, const float* xin, float* xout) {
  extern __shared__ uint4 sm[];
  const int lane = threadIdx.x & 31, wi = threadIdx.x >> 5;
  const size_t w = blockIdx.x * 4 + wi, t0 = w * per;
  uint4* ring = sm + wi * R * 32 + lane;
  const uint32_t rs = (uint32_t)__cvta_generic_to_shared(ring);
  for (int i = 0; i < R; i++) { if (i < per) cpAsync16(rs + i * 512, p + (t0 + i) * 32 + lane); commit(); }
  pdlLaunch();
  pdlWait();
  unsigned acc = __float_as_uint(xin[threadIdx.x]);
  for (int i = 0; i < per; i++) {
    waitG<R - 1>();
    const uint4 v = ring[32 * (i % R)];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
    if (i + R < per) cpAsync16(rs + ((i + R) % R) * 512, p + (t0 + i + R) * 32 + lane);
    commit();
  }
  waitG<0>();
  if (blockIdx.x == 0) xout[threadIdx.x] = (float)(acc & 1);
  if (acc == 0x12345678u) sink = acc;
}

int main() {
  setvbuf(stdout, NULL, _IONBF, 0);
  int sms; CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const size_t layerSeg[4] = {13369344, 8912896, 62390272, 31195136};  // qkv, o, gate_up, down bytes (int4 g128 + scales)
  const int L = 32;
  std::vector<size_t> segs16;
  size_t total = 0;
  for (int l = 0; l < L; l++) for (int m = 0; m < 4; m++) { segs16.push_back(layerSeg[m] / 16); total += layerSeg[m]; }
  uint4* buf; CK(cudaMalloc(&buf, total)); CK(cudaMemset(buf, 1, total));
  size_t* dsegs; CK(cudaMalloc(&dsegs, segs16.size() * 8));
  CK(cudaMemcpy(dsegs, segs16.data(), segs16.size() * 8, cudaMemcpyHostToDevice));
  // copy roofline
  uint4* dst; CK(cudaMalloc(&dst, 1ull << 30));
  cudaStream_t st; CK(cudaStreamCreate(&st));
  cudaEvent_t e0, e1; CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
  auto timeGraph = [&](auto body) {
    cudaGraph_t g; cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    body();
    CK(cudaStreamEndCapture(st, &g)); CK(cudaGraphInstantiate(&ge, g, 0));
    float best = 1e30f;
    for (int r = 0; r < 6; r++) {
      CK(cudaEventRecord(e0, st)); CK(cudaGraphLaunch(ge, st)); CK(cudaEventRecord(e1, st)); CK(cudaEventSynchronize(e1));
      float ms; CK(cudaEventElapsedTime(&ms, e0, e1)); if (r > 0 && ms < best) best = ms;
    }
    CK(cudaGraphExecDestroy(ge)); CK(cudaGraphDestroy(g));
    return best;
  };
  float copyMs = timeGraph([&] { for (int i = 0; i < 4; i++) CK(cudaMemcpyAsync(dst, buf, 1ull << 30, cudaMemcpyDeviceToDevice, st)); });
  const double copyGBs = 4.0 * 2 * (1ull << 30) / (copyMs * 1e6);
  printf("device copy: %.0f GB/s (read+write)\n", copyGBs);
  auto launchPdl = [&](void (*k)(const uint4*, size_t, int), int blocks, const uint4* p, size_t n16, int pdl) {
    cudaLaunchConfig_t cfg = {}; cfg.gridDim = blocks; cfg.blockDim = 128; cfg.stream = st;
    cudaLaunchAttribute at[1]; at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization; at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at; cfg.numAttrs = pdl ? 1 : 0;
    CK(cudaLaunchKernelEx(&cfg, k, p, n16, pdl));
  };
  struct R { const char* name; float ms; };
  std::vector<R> res;
  auto perLayer = [&](const char* name, void (*k)(const uint4*, size_t, int), int bpsm, int pdl) {
    float ms = timeGraph([&] {
      size_t off = 0;
      for (size_t i = 0; i < segs16.size(); i++) { launchPdl(k, sms * bpsm, buf + off, segs16[i], pdl); off += segs16[i]; }
    });
    res.push_back({name, ms}); printf("%s %.3f\n", name, ms);
  };
  perLayer("runs U8, 4 blk/SM, 128 launches", runs<8>, 4, 0);
  perLayer("runs U8, 4 blk/SM, PDL early", runs<8>, 4, 1);
  perLayer("runs U12, 4 blk/SM, PDL early", runs<12>, 4, 1);
  perLayer("runs U4, 8 blk/SM, PDL early", runs<4>, 8, 1);
  perLayer("gstride U4, 4 blk/SM, 128 launches", gstride<4>, 4, 0);
  perLayer("gstride U4, 4 blk/SM, PDL early", gstride<4>, 4, 1);
  perLayer("gstride U8, 8 blk/SM, PDL early", gstride<8>, 8, 1);
  perLayer("gstride U4, 16 blk/SM, PDL early", gstride<4>, 16, 1);
  auto pers = [&](const char* name, void (*k)(const uint4*, const size_t*, int, int, int), int bpsm, int bar, int pre) {
    int occ; CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, k, 128, 0));
    if (bpsm > occ) { printf("%s: occupancy %d < %d\n", name, occ, bpsm); return; }
    float ms = timeGraph([&] {
      const uint4* p = buf; const size_t* s = dsegs; int n = (int)segs16.size();
      void* args[] = {(void*)&p, (void*)&s, (void*)&n, (void*)&bar, (void*)&pre};
      CK(cudaLaunchCooperativeKernel((void*)k, sms * bpsm, 128, args, 0, st));
    });
    res.push_back({name, ms}); printf("%s %.3f\n", name, ms);
  };
  pers("persistent U8, 4 blk/SM, no barriers", persist<8>, 4, 0, 0);
  pers("persistent U8, 4 blk/SM, barriers, no prefetch", persist<8>, 4, 1, 0);
  pers("persistent U8, 4 blk/SM, barriers + prefetch", persist<8>, 4, 1, 1);
  pers("persistent U8, 8 blk/SM, barriers + prefetch", persist<8>, 8, 1, 1);
  pers("persistent U4, 8 blk/SM, barriers + prefetch", persist<4>, 8, 1, 1);
  pers("persistent U16, 4 blk/SM, barriers + prefetch", persist<16>, 4, 1, 1);

  perLayer("runs U8, PDL early, wait after first 8 tiles", runsDep<8>, 4, 1);
  float* xb; CK(cudaMalloc(&xb, 2 * 4096));
  auto ringL = [&](const char* name, void (*k)(const uint4*, size_t, int, const float*, float*), int R, int bpsm) {
    const int smem = 4 * R * 512;
    CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    float ms = timeGraph([&] {
      size_t off = 0;
      for (size_t i = 0; i < segs16.size(); i++) {
        cudaLaunchConfig_t cfg = {}; cfg.gridDim = sms * bpsm; cfg.blockDim = 128; cfg.stream = st; cfg.dynamicSmemBytes = smem;
        cudaLaunchAttribute at[1]; at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization; at[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = at; cfg.numAttrs = 1;
        const float* xi = xb + (i & 1) * 1024; float* xo = xb + ((i + 1) & 1) * 1024;
        CK(cudaLaunchKernelEx(&cfg, k, (const uint4*)(buf + off), segs16[i], 1, xi, xo)); off += segs16[i];
      }
    });
    res.push_back({name, ms}); printf("%s %.3f\n", name, ms);
  };
  ringL("ring 12 (qgemv-like dep. wait + x read), 4 blk/SM", ringk<12>, 12, 4);
  ringL("ring 24, dep. wait, 4 blk/SM", ringk<24>, 24, 4);
  ringL("ring 24, dep. wait, 3 blk/SM", ringk<24>, 24, 3);

  {
    // qgemv plan shapes (int4 g128, M = 1, 132 SMs): [blocks, tiles per warp] for qkv, o, gate_up, down
    const int shp[4][2] = {{480, 13}, {512, 8}, {448, 64}, {512, 28}};
    auto tilesOf = [&](int m) { return (size_t)shp[m][0] * 4 * shp[m][1]; };
    auto ringPlan = [&](const char* name, bool uniform) {
      const int R = 12, smem = 4 * R * 512;
      CK(cudaFuncSetAttribute(ringp<12>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      size_t bytes = 0;
      float ms = timeGraph([&] {
        size_t off = 0; bytes = 0;
        for (int l = 0; l < 32; l++) for (int m = 0; m < 4; m++) {
          const size_t tiles = tilesOf(m);
          int blocks = shp[m][0], per = shp[m][1];
          if (uniform) { blocks = sms * 4; per = (int)((tiles + blocks * 4 - 1) / (blocks * 4)); }
          cudaLaunchConfig_t cfg = {}; cfg.gridDim = blocks; cfg.blockDim = 128; cfg.stream = st; cfg.dynamicSmemBytes = smem;
          cudaLaunchAttribute at[1]; at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization; at[0].val.programmaticStreamSerializationAllowed = 1;
          cfg.attrs = at; cfg.numAttrs = 1;
          const int i = l * 4 + m;
          const float* xi = xb + (i & 1) * 1024; float* xo = xb + ((i + 1) & 1) * 1024;
          CK(cudaLaunchKernelEx(&cfg, ringp<12>, (const uint4*)(buf + off), per, xi, xo));
          off += tiles * 32; bytes += tiles * 512;
        }
      });
      printf("%s: %.3f ms, %.0f GB/s\n", name, ms, bytes / (ms * 1e6));
    };
    ringPlan("ring 12, qgemv plan shapes (448..512 blocks)", false);
    ringPlan("ring 12, same bytes, 528 blocks, equal runs", true);
  }
  {
    std::vector<size_t> z(128, 0); size_t* dz; CK(cudaMalloc(&dz, 128 * 8)); CK(cudaMemcpy(dz, z.data(), 128 * 8, cudaMemcpyHostToDevice));
    float ms = timeGraph([&] { const uint4* p = buf; const size_t* s = dz; int n = 128, bar = 1, pre = 0;
      void* args[] = {(void*)&p, (void*)&s, (void*)&n, (void*)&bar, (void*)&pre};
      CK(cudaLaunchCooperativeKernel((void*)persist<8>, sms * 4, 128, args, 0, st)); });
    printf("128 empty grid barriers (528 blocks): %.3f ms\n", ms);
  }
  printf("\n%-52s %9s %9s %7s\n", "variant (32 layers x 4 matrices, 3.71 GB)", "ms", "GB/s", "%copy");
  for (auto& r : res) { double gbs = total / (r.ms * 1e6); printf("%-52s %9.3f %9.0f %6.1f%%\n", r.name, r.ms, gbs, 100 * gbs / copyGBs); }
  return 0;
}

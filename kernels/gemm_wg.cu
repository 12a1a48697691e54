// Dense GEMM on Hopper's warpgroup MMA (sm_90 wgmma): C[M, N] (f32) = A[M, K] · W[N, K]^T + bias[N] (f32), A the
// activations and W the weights, both 16-bit (bf16 or f16, the same type), W row-major as Hugging Face stores it.
//
// Block = 2 warpgroups (256 threads; two blocks per SM, 2 x 96 KiB of stages) on a 128 x 128 tile of C: warpgroup g
// owns rows 64g .. 64g + 63 and all 128 columns (64 f32 accumulators per thread, wgmma m64n128k16). K advances by 64
// per stage through a 3-stage cp.async pipeline in shared memory, one group of wgmmas kept in flight while the next
// stage is refilled. Both operands are K-major, each 64-wide k-tile row is 128 bytes: in the 128-byte swizzle
// layout (the default), row r at r * 128 with its 16-byte chunk c at (c ^ (r % 8)) * 16; in the no-swizzle layout
// (gemm_wg_ns_*, for comparison), 8 x 8 core matrices of 128 contiguous bytes, (row group r, k chunk c) at
// (r * 8 + c) * 128. Rows past M / N and k past K are
// zero-filled by the copies (K must be a multiple of 8).
// Only the sm_90a image (kernels/build.ts ARCH_SPECIFIC) has the wgmma code; the other images compile to a trap, and
// the host launches the kernel on compute capability 9.0 only (ops.ts matmulKind).
#include <type_traits>
#include "common.cuh"

#define WG_BM 128
#define WG_BN 128
#define WG_BK 64
#define WG_STAGES 3
// Bytes of one operand tile in a stage: 128 rows x 64 k x 2 bytes.
#define WG_TILE_BYTES (128 * WG_BK * 2)

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// Shared-memory matrix descriptor: start address, leading / stride byte offsets (>> 4), swizzle mode (bits 62-63).
// SW: 128-byte swizzle (each 128-byte row of 64 k values holds its 16-byte chunks at c ^ (row % 8); 8-row groups of
// 1024 bytes; the leading offset is unused); else no swizzle (core matrices as described above).
template <bool SW> __device__ __forceinline__ uint64_t wgDesc(uint32_t smemAddr) {
  const uint64_t addr = (smemAddr & 0x3FFFF) >> 4;
  if (SW) return addr | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
  return addr | ((uint64_t)(128 >> 4) << 16) | ((uint64_t)(1024 >> 4) << 32);
}

template <bool BF> __device__ __forceinline__ void wgmma128(float (&d)[64], uint64_t descA, uint64_t descB, int accumulate) {
  if (BF) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(descA), "l"(descB), "r"(accumulate));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(descA), "l"(descB), "r"(accumulate));
  }
}

__device__ __forceinline__ void wgCpAsync(uint32_t dst, const void* src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0) : "memory");
}
#endif

// A: [M, K] T; W: [N, K] T; bias [N] f32 or null; C: [M, N] f32. grid (ceil(N / 128), ceil(M / 128)), block 256,
// dynamic smem WG_STAGES x 2 x WG_TILE_BYTES (96 KiB).
template <typename T, bool SW>
__device__ void gemmWg(const T* A, const T* W, const float* bias, float* C, int M, int N, int K) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char wgsm[];  // [stage][A tile | W tile], canonical layout
  const int tid = threadIdx.x, wg = tid >> 7, m0 = blockIdx.y * WG_BM, n0 = blockIdx.x * WG_BN;
  const uint32_t smBase = (uint32_t)__cvta_generic_to_shared(wgsm);
  const int kTiles = (K + WG_BK - 1) / WG_BK;
  // Stage s, k-tile kt: each thread copies 4 16-byte chunks of A and 4 of W (128 rows x 8 chunks each).
  auto load = [&](int s, int kt) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int chunk = tid + 256 * i, r = chunk >> 3, c = chunk & 7, k = kt * WG_BK + 8 * c;
      const uint32_t off = SW ? (uint32_t)(r * 128 + ((c ^ (r & 7)) * 16))
                              : (uint32_t)(((r >> 3) * 8 + c) * 128 + (r & 7) * 16);
      const uint32_t sa = smBase + s * 2 * WG_TILE_BYTES + off, sw = sa + WG_TILE_BYTES;
      const bool okA = m0 + r < M && k < K, okW = n0 + r < N && k < K;
      wgCpAsync(sa, okA ? A + (size_t)(m0 + r) * K + k : A, okA);
      wgCpAsync(sw, okW ? W + (size_t)(n0 + r) * K + k : W, okW);
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
  };
  float d[64];
#pragma unroll
  for (int i = 0; i < 64; i++) d[i] = 0.f;
#pragma unroll
  for (int s = 0; s < WG_STAGES - 1; s++) {
    if (s < kTiles) load(s, s);
    else asm volatile("cp.async.commit_group;" ::: "memory");
  }
  // Iteration kt: wait for k-tile kt, issue its wgmmas (asynchronous), then wait for k-tile kt - 1's wgmmas only, so
  // the tensor cores always have a group queued while the stage kt - 1 used is refilled with k-tile kt + 2.
  for (int kt = 0; kt < kTiles; kt++) {
    const int s = kt % WG_STAGES;
    asm volatile("cp.async.wait_group %0;" ::"n"(WG_STAGES - 2) : "memory");  // k-tile kt has landed (this thread)
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");                // visible to the wgmma (async proxy)
    __syncthreads();                                                            // ... for every thread's copies
    const uint32_t aTile = smBase + s * 2 * WG_TILE_BYTES + wg * 64 * 128;  // rows 64 wg .. 64 wg + 63
    const uint32_t wTile = smBase + s * 2 * WG_TILE_BYTES + WG_TILE_BYTES;
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
    for (int ks = 0; ks < WG_BK / 16; ks++) {
      // k16 step ks: bytes 32 ks .. 32 ks + 31 of each row (swizzled: the descriptor's start moves within the row;
      // no swizzle: core matrices 2 ks and 2 ks + 1).
      const uint32_t ko = SW ? 32 * ks : 2 * ks * 128;
      wgmma128<std::is_same<T, bf16>::value>(d, wgDesc<SW>(aTile + ko), wgDesc<SW>(wTile + ko), 1);
    }
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");  // k-tile kt - 1's wgmmas are done
    __syncthreads();  // ... in both warpgroups: its stage may be refilled
    const int nk = kt + WG_STAGES - 1;
    if (nk < kTiles) load(nk % WG_STAGES, nk);
    else asm volatile("cp.async.commit_group;" ::: "memory");
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
  // d[4i + e]: row 64 wg + 16 warp + lane / 4 (+ 8 for e >= 2), column 8i + 2 (lane % 4) + (e & 1).
  const int warp = (tid >> 5) & 3, lane = tid & 31;
  const int rowBase = m0 + 64 * wg + 16 * warp + (lane >> 2);
#pragma unroll
  for (int i = 0; i < 16; i++) {
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int row = rowBase + (e >= 2 ? 8 : 0), col = n0 + 8 * i + 2 * (lane & 3) + (e & 1);
      if (row < M && col < N) C[(size_t)row * N + col] = d[4 * i + e] + (bias ? bias[col] : 0.f);
    }
  }
#else
  __trap();
#endif
}

// Suffix: the 16-bit type; ns_: the no-swizzle layout (benchmark comparison only).
#define INSTANTIATE_WG(T)                                                                                           \
  extern "C" __global__ void __launch_bounds__(256, 2)                                                              \
      gemm_wg_##T(const T* A, const T* W, const float* bias, float* C, int M, int N, int K) {                       \
    gemmWg<T, true>(A, W, bias, C, M, N, K);                                                                        \
  }                                                                                                                 \
  extern "C" __global__ void __launch_bounds__(256, 2)                                                              \
      gemm_wg_ns_##T(const T* A, const T* W, const float* bias, float* C, int M, int N, int K) {                    \
    gemmWg<T, false>(A, W, bias, C, M, N, K);                                                                       \
  }
INSTANTIATE_WG(bf16)
INSTANTIATE_WG(f16)

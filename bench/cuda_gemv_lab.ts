// GEMV experiments (M = 1, f32 x, bf16 W): rows per warp R, loads in flight U, vs a plain streaming-read kernel,
// each timed over 20 back-to-back launches. Compiles its own kernels with nvcc into /tmp (not part of lib/).
// Usage: deno run -A bench/cuda_gemv_lab.ts
import { check, cuda, outPtr } from "../src/backends/cuda/ffi.ts";
import { CudaDevice, CudaTimer } from "../src/backends/cuda/device.ts";
import { exitUnlessCuda } from "./cuda_common.ts";

const SRC = String.raw`
#include <cuda_bf16.h>
#include <stdint.h>
__device__ __forceinline__ float warpSum(float v) { for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(~0u, v, o); return v; }
template <int R, int U> __device__ void gemv(const float* x, const __nv_bfloat16* W, float* y, int N, int K) {
  const int lane = threadIdx.x & 31;
  const int n0 = (blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * R;
  if (n0 >= N) return;
  float acc[R];
  for (int r = 0; r < R; r++) acc[r] = 0.f;
  for (int base = lane * 8; base < K; base += 256 * U) {
    uint4 wv[R][U];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int k = base + u * 256;
        wv[r][u] = (k < K && n0 + r < N) ? __ldg(reinterpret_cast<const uint4*>(W + (size_t)(n0 + r) * K + k)) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int k = base + u * 256;
      if (k >= K) break;
      const float4 a = *reinterpret_cast<const float4*>(x + k), b = *reinterpret_cast<const float4*>(x + k + 4);
      const float xf[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
      for (int r = 0; r < R; r++) {
        const __nv_bfloat16* we = reinterpret_cast<const __nv_bfloat16*>(&wv[r][u]);
#pragma unroll
        for (int e = 0; e < 8; e++) acc[r] += __bfloat162float(we[e]) * xf[e];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; r++) {
    const float s = warpSum(acc[r]);
    if (lane == 0 && n0 + r < N) y[n0 + r] = s;
  }
}
extern "C" __global__ void g_r1_u4(const float* x, const __nv_bfloat16* W, float* y, int N, int K) { gemv<1, 4>(x, W, y, N, K); }
extern "C" __global__ void g_r2_u4(const float* x, const __nv_bfloat16* W, float* y, int N, int K) { gemv<2, 4>(x, W, y, N, K); }
extern "C" __global__ void g_r4_u2(const float* x, const __nv_bfloat16* W, float* y, int N, int K) { gemv<4, 2>(x, W, y, N, K); }
extern "C" __global__ void g_r2_u8(const float* x, const __nv_bfloat16* W, float* y, int N, int K) { gemv<2, 8>(x, W, y, N, K); }
extern "C" __global__ void g_r1_u8(const float* x, const __nv_bfloat16* W, float* y, int N, int K) { gemv<1, 8>(x, W, y, N, K); }
extern "C" __global__ void readsum(const uint4* p, size_t n, float* out) {
  float s = 0.f;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const uint4 v = __ldg(p + i); s += __uint_as_float(v.x ^ v.y ^ v.z ^ v.w);
  }
  if (s == 1234.5f) out[0] = s;
}
`;

exitUnlessCuda("cuda_gemv_lab");
await Deno.writeTextFile("/tmp/gemv_lab.cu", SRC);
const cc = await new Deno.Command("nvcc", {
  args: ["-cubin", "-O3", "-arch=sm_90", "-o", "/tmp/gemv_lab.cubin", "/tmp/gemv_lab.cu"],
}).output();
if (!cc.success) throw new Error(new TextDecoder().decode(cc.stderr));
await using dev = CudaDevice.open(0);
const s = cuda();
const mod = new BigUint64Array(1);
check("cuModuleLoadData", s.cuModuleLoadData(mod, await Deno.readFile("/tmp/gemv_lab.cubin")));
const fn = (name: string) => {
  const f = new BigUint64Array(1);
  check(name, s.cuModuleGetFunction(f, outPtr(mod), new TextEncoder().encode(name + "\0")));
  return outPtr(f);
};
function launch(f: Deno.PointerValue, grid: number, block: number, args: (bigint | number)[], kinds: string[]) {
  const buf = new ArrayBuffer(8 * args.length), v = new DataView(buf);
  args.forEach((a, i) =>
    kinds[i] === "p" ? v.setBigUint64(8 * i, a as bigint, true) : v.setInt32(8 * i, a as number, true)
  );
  const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
  const ptrs = BigUint64Array.from(args, (_, i) => base + BigInt(8 * i));
  check("cuLaunchKernel", s.cuLaunchKernel(f, grid, 1, 1, block, 1, 1, 0, dev.stream, ptrs, null));
}
const rows: string[] = [];
using t = new CudaTimer(dev);
const REPS = 20;
for (
  const [N, K, what] of [[6144, 4096, "qkv"], [4096, 4096, "o"], [28672, 4096, "gate_up"], [
    4096,
    14336,
    "down",
  ]] as const
) {
  using x = dev.alloc(K * 4), w = dev.alloc(N * K * 2), y = dev.alloc(N * 4);
  dev.memset(x.ptr, 0x3c, K * 4);
  dev.memset(w.ptr, 0x3c, N * K * 2);
  const bytes = N * K * 2;
  const time = async (go: () => void) => {
    go();
    t.start();
    for (let i = 0; i < REPS; i++) go();
    return (await t.stop()) / REPS;
  };
  const rs = fn("readsum");
  const ms = await time(() => launch(rs, 132 * 8, 256, [w.ptr, BigInt(bytes / 16), y.ptr], ["p", "p", "p"]));
  rows.push(`| ${what} ${N}x${K} | readsum | ${(ms * 1e3).toFixed(1)} us | ${(bytes / ms / 1e6).toFixed(0)} GB/s |`);
  for (const [name, R] of [["g_r1_u4", 1], ["g_r1_u8", 1], ["g_r2_u4", 2], ["g_r2_u8", 2], ["g_r4_u2", 4]] as const) {
    for (const warps of [4, 8]) {
      const f = fn(name);
      const grid = Math.ceil(N / (R * warps));
      const ms = await time(() => launch(f, grid, 32 * warps, [x.ptr, w.ptr, y.ptr, N, K], ["p", "p", "p", "i", "i"]));
      rows.push(
        `| ${what} ${N}x${K} | ${name} ${warps} warps | ${(ms * 1e3).toFixed(1)} us | ${
          (bytes / ms / 1e6).toFixed(0)
        } GB/s |`,
      );
    }
  }
}
console.log("| shape | kernel | time | weight GB/s |\n| --- | --- | --- | --- |\n" + rows.join("\n"));

// Helpers for the CUDA tests and benches: why CUDA cannot run here (for test names), GPU-gated tests, and
// host<->device arrays.
import { fromF32, toF32 } from "../../model/dtype.ts";
import { CudaDevice, type DeviceBuffer } from "./device.ts";
import { Kernels } from "./kernels.ts";
import type { ActDType } from "./ops.ts";

/** null when an NVIDIA driver and libcuda.so.1 are present, else the reason the GPU tests are skipped. */
export function cudaSkipReason(): string | null {
  let driver = false;
  for (const p of ["/proc/driver/nvidia/version", "/dev/nvidiactl"]) {
    try {
      Deno.statSync(p);
      driver = true;
    } catch { /* not here */ }
  }
  if (!driver) return "no NVIDIA driver: /dev/nvidiactl not found";
  try {
    Deno.dlopen("libcuda.so.1", {}).close();
  } catch {
    return "no NVIDIA driver: libcuda.so.1 not found";
  }
  return null;
}

let probed: { reason: string | null } | null = null;

/**
 * Deno.test that runs where CUDA can, and is ignored elsewhere with the reason in its name ("NAME (skipped: ...)"),
 * never a silent pass.
 */
export function cudaTest(name: string, fn: () => Promise<void>): void {
  probed ??= { reason: cudaSkipReason() };
  const skip = probed.reason;
  Deno.test({ name: skip ? `${name} (skipped: ${skip})` : name, ignore: skip !== null, fn });
}

/** cudaTest on a fresh device with every kernel module loaded (both released afterwards). */
export function cudaKernelTest(name: string, fn: (k: Kernels, dev: CudaDevice) => Promise<void>): void {
  cudaTest(name, async () => {
    await using dev = CudaDevice.open(0);
    using k = await Kernels.load(dev);
    await fn(k, dev);
  });
}

/** Deterministic uniform [-scale, scale) values, never exactly zero. */
export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    const u = (s + 0.5) / 2 ** 32;
    out[i] = (2 * u - 1) * scale || scale * 1e-3;
  }
  return out;
}

export function upload(dev: CudaDevice, data: Float32Array | Int32Array, dtype: "i32" | ActDType): DeviceBuffer {
  const bytes = dtype === "bf16" || dtype === "f16"
    ? fromF32(data as Float32Array, dtype === "bf16" ? "BF16" : "F16")
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const b = dev.alloc(Math.max(4, bytes.byteLength), "test");
  dev.upload(b.ptr, bytes);
  return b;
}

/** Allocates n elements filled with 0xff bytes (NaN for floats), so unwritten outputs show. */
export function poisoned(dev: CudaDevice, n: number, bytesPer: number): DeviceBuffer {
  const b = dev.alloc(Math.max(4, n * bytesPer), "test.out");
  dev.memset(b.ptr, 0xff, n * bytesPer);
  return b;
}

export async function download(dev: CudaDevice, b: DeviceBuffer, n: number, dtype: ActDType): Promise<Float32Array> {
  const raw = new Uint8Array(n * (dtype === "f32" ? 4 : 2));
  dev.download(raw, b.ptr);
  await dev.sync();
  return toF32(raw, dtype === "f32" ? "F32" : dtype === "bf16" ? "BF16" : "F16");
}

export async function downloadI32(dev: CudaDevice, b: DeviceBuffer, n: number): Promise<Int32Array> {
  const out = new Int32Array(n);
  dev.download(out, b.ptr);
  await dev.sync();
  return out;
}

/** max |a - ref| / max |ref|; Infinity when a holds NaN. */
export function relErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(a[i]! - ref[i]!);
    if (Number.isNaN(d)) return Infinity;
    diff = Math.max(diff, d);
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  return diff / scale;
}

/** Device buffers released together: `using arena = new DeviceArena(dev)`, then `arena.alloc(bytes, label)`. */
export class DeviceArena implements Disposable {
  readonly #owned: DeviceBuffer[] = [];
  constructor(readonly dev: CudaDevice) {}
  readonly alloc = (bytes: number, label: string): DeviceBuffer => {
    const b = this.dev.alloc(bytes, label);
    this.#owned.push(b);
    return b;
  };
  [Symbol.dispose](): void {
    for (const b of this.#owned.splice(0)) b[Symbol.dispose]();
  }
}

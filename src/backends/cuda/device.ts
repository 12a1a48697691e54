// One CUDA device: primary context, one stream, allocations with explicit lifetimes, copies and synchronization.
import {
  check,
  cuda,
  CUDA_ERROR_INVALID_CONTEXT,
  CUDA_ERROR_NOT_READY,
  CUDA_SUCCESS,
  type DevPtr,
  outPtr,
} from "./ffi.ts";

const ATTR_CC_MAJOR = 75;
const ATTR_CC_MINOR = 76;
const ATTR_SM_COUNT = 16;

/** A device allocation; freed by dispose (or by the owning device's dispose). */
export class DeviceBuffer implements Disposable {
  #freed = false;
  constructor(readonly dev: CudaDevice, readonly ptr: DevPtr, readonly bytes: number) {}
  get freed(): boolean {
    return this.#freed;
  }
  /** Address `offsetBytes` into the buffer. */
  at(offsetBytes: number): DevPtr {
    if (offsetBytes < 0 || offsetBytes > this.bytes) throw new RangeError(`offset ${offsetBytes} outside buffer`);
    return this.ptr + BigInt(offsetBytes);
  }
  [Symbol.dispose](): void {
    if (this.#freed) return;
    this.#freed = true;
    this.dev.free(this);
  }
}

export class CudaDevice implements AsyncDisposable {
  readonly ordinal: number;
  readonly name: string;
  readonly cc: [number, number];
  readonly smCount: number;
  readonly totalBytes: number;
  readonly ctx: Deno.PointerValue;
  readonly stream: Deno.PointerValue;
  readonly #live = new Set<DeviceBuffer>();
  #syncMode: "thread" | "poll" = "thread";
  #disposed = false;

  private constructor(ordinal: number) {
    const s = cuda();
    check("cuInit", s.cuInit(0));
    const dev = new Int32Array(1);
    check("cuDeviceGet", s.cuDeviceGet(dev, ordinal));
    this.ordinal = dev[0]!;
    const name = new Uint8Array(256);
    check("cuDeviceGetName", s.cuDeviceGetName(name, 256, this.ordinal));
    this.name = new TextDecoder().decode(name.subarray(0, name.indexOf(0)));
    const attr = (a: number, label: string) => {
      const v = new Int32Array(1);
      check(`cuDeviceGetAttribute(${label})`, s.cuDeviceGetAttribute(v, a, this.ordinal));
      return v[0]!;
    };
    this.cc = [attr(ATTR_CC_MAJOR, "cc major"), attr(ATTR_CC_MINOR, "cc minor")];
    this.smCount = attr(ATTR_SM_COUNT, "SM count");
    const total = new BigUint64Array(1);
    check("cuDeviceTotalMem_v2", s.cuDeviceTotalMem_v2(total, this.ordinal));
    this.totalBytes = Number(total[0]!);
    const ctx = new BigUint64Array(1);
    check("cuDevicePrimaryCtxRetain", s.cuDevicePrimaryCtxRetain(ctx, this.ordinal));
    this.ctx = outPtr(ctx);
    check("cuCtxSetCurrent", s.cuCtxSetCurrent(this.ctx));
    const st = new BigUint64Array(1);
    check("cuStreamCreate", s.cuStreamCreate(st, 1 /* CU_STREAM_NON_BLOCKING */));
    this.stream = outPtr(st);
  }

  static open(ordinal = 0): CudaDevice {
    return new CudaDevice(ordinal);
  }

  /** "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)" */
  get description(): string {
    return `${this.name} (sm_${this.cc[0]}${this.cc[1]}, ${this.smCount} SMs)`;
  }

  memInfo(): { freeBytes: number; totalBytes: number } {
    const f = new BigUint64Array(1), t = new BigUint64Array(1);
    check("cuMemGetInfo_v2", cuda().cuMemGetInfo_v2(f, t));
    return { freeBytes: Number(f[0]!), totalBytes: Number(t[0]!) };
  }

  alloc(bytes: number, label = "buffer"): DeviceBuffer {
    if (!(bytes > 0) || !Number.isSafeInteger(bytes)) throw new RangeError(`alloc(${label}): bad size ${bytes}`);
    const p = new BigUint64Array(1);
    check(`cuMemAlloc_v2(${label}, ${bytes} bytes)`, cuda().cuMemAlloc_v2(p, BigInt(bytes)));
    const b = new DeviceBuffer(this, p[0]!, bytes);
    this.#live.add(b);
    return b;
  }

  /** Called by DeviceBuffer's dispose. */
  free(b: DeviceBuffer): void {
    if (!this.#live.delete(b)) return;
    check("cuMemFree_v2", cuda().cuMemFree_v2(b.ptr));
  }

  /** Bytes currently allocated through this device object. */
  get liveBytes(): number {
    let n = 0;
    for (const b of this.#live) n += b.bytes;
    return n;
  }

  upload(dst: DevPtr, src: ArrayBufferView): void {
    const u8 = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    if (u8.byteLength === 0) return;
    check("cuMemcpyHtoDAsync_v2", cuda().cuMemcpyHtoDAsync_v2(dst, u8, BigInt(u8.byteLength), this.stream));
  }

  /** Enqueues a copy into host memory; valid after the next sync(). `dst` must stay alive until then. */
  download(dst: ArrayBufferView, src: DevPtr): void {
    const u8 = new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength);
    if (u8.byteLength === 0) return;
    check("cuMemcpyDtoHAsync_v2", cuda().cuMemcpyDtoHAsync_v2(u8, src, BigInt(u8.byteLength), this.stream));
  }

  copy(dst: DevPtr, src: DevPtr, bytes: number): void {
    if (bytes === 0) return;
    check("cuMemcpyDtoDAsync_v2", cuda().cuMemcpyDtoDAsync_v2(dst, src, BigInt(bytes), this.stream));
  }

  memset(dst: DevPtr, byte: number, bytes: number): void {
    check("cuMemsetD8Async", cuda().cuMemsetD8Async(dst, byte, BigInt(bytes), this.stream));
  }

  /**
   * Waits for the stream without blocking the event loop: a nonblocking cuStreamSynchronize on a worker thread;
   * if the driver refuses that thread (no current context), polls cuStreamQuery between macrotasks instead.
   * An idle stream returns at once: after a download into pageable memory (which returns only once the stream has
   * reached it, e.g. a decode step's sampled ids) the worker-thread round trip would add ~0.1 ms per step.
   */
  async sync(): Promise<void> {
    const s = cuda();
    if (s.cuStreamQuery(this.stream) === CUDA_SUCCESS) return;
    if (this.#syncMode === "thread") {
      const code = await s.cuStreamSynchronize(this.stream);
      if (code !== CUDA_ERROR_INVALID_CONTEXT) return check("cuStreamSynchronize", code);
      this.#syncMode = "poll";
    }
    for (;;) {
      const code = s.cuStreamQuery(this.stream);
      if (code !== CUDA_ERROR_NOT_READY) return check("cuStreamQuery", code);
      await new Promise((r) => setTimeout(r, 0));
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const s = cuda();
    await this.sync().catch(() => {});
    for (const b of [...this.#live]) b[Symbol.dispose]();
    check("cuStreamDestroy_v2", s.cuStreamDestroy_v2(this.stream));
    check("cuDevicePrimaryCtxRelease_v2", s.cuDevicePrimaryCtxRelease_v2(this.ordinal));
  }
}

/** Device events for timing regions of the stream. */
export class CudaTimer implements Disposable {
  readonly #a: Deno.PointerValue;
  readonly #b: Deno.PointerValue;
  constructor(readonly dev: CudaDevice) {
    const s = cuda(), a = new BigUint64Array(1), b = new BigUint64Array(1);
    check("cuEventCreate", s.cuEventCreate(a, 0));
    check("cuEventCreate", s.cuEventCreate(b, 0));
    this.#a = outPtr(a);
    this.#b = outPtr(b);
  }
  start(): void {
    check("cuEventRecord", cuda().cuEventRecord(this.#a, this.dev.stream));
  }
  /** Records the end event and resolves with the milliseconds between the two. */
  async stop(): Promise<number> {
    const s = cuda();
    check("cuEventRecord", s.cuEventRecord(this.#b, this.dev.stream));
    const code = await s.cuEventSynchronize(this.#b);
    if (code === CUDA_ERROR_INVALID_CONTEXT) await this.dev.sync();
    else check("cuEventSynchronize", code);
    const ms = new Float32Array(1);
    check("cuEventElapsedTime", s.cuEventElapsedTime(ms, this.#a, this.#b));
    return ms[0]!;
  }
  [Symbol.dispose](): void {
    const s = cuda();
    check("cuEventDestroy_v2", s.cuEventDestroy_v2(this.#a));
    check("cuEventDestroy_v2", s.cuEventDestroy_v2(this.#b));
  }
}

// GPU buffer ownership: every buffer the backend creates goes through one pool, which counts the bytes (for
// memory()), keeps grow-only scratch buffers by name (sized by the step's token count, never shrunk, so the hot
// path allocates nothing once warm), and destroys everything on dispose.

/**
 * WebGPU flag values, fixed by the spec. Deno defines the GPUBufferUsage / GPUMapMode / GPUShaderStage globals at
 * run time, but the project's TypeScript libs declare only the interfaces, so the numbers are spelled out here.
 */
export const USAGE = {
  MAP_READ: 0x1,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY_RESOLVE: 0x200,
} as const;
export const MAP_READ = 0x1;
export const COMPUTE_STAGE = 0x4;

export const STORAGE = USAGE.STORAGE | USAGE.COPY_DST | USAGE.COPY_SRC;

/** Rounds up to a multiple of `m`. */
export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

export class BufferPool {
  readonly #device: GPUDevice;
  readonly #live = new Set<GPUBuffer>();
  readonly #scratch = new Map<string, GPUBuffer>();
  readonly #ids = new WeakMap<GPUBuffer, number>();
  #nextId = 1;
  #bytes = 0;
  /** Called when a scratch buffer was replaced by a bigger one (bind groups that named it are stale). */
  onRegrow: (() => void) | null = null;

  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** Bytes held by live buffers. */
  get bytes(): number {
    return this.#bytes;
  }

  /** A small stable number per buffer, for bind group cache keys. */
  id(b: GPUBuffer): number {
    let id = this.#ids.get(b);
    if (id === undefined) {
      id = this.#nextId++;
      this.#ids.set(b, id);
    }
    return id;
  }

  create(label: string, size: number, usage = STORAGE): GPUBuffer {
    const limit = this.#device.limits.maxBufferSize;
    if (size > limit) throw new RangeError(`webgpu: buffer ${label} needs ${size} bytes; maxBufferSize is ${limit}`);
    const b = this.#device.createBuffer({ label, size: Math.max(16, roundUp(size, 4)), usage });
    this.#live.add(b);
    this.#bytes += b.size;
    return b;
  }

  /** A new storage buffer holding `data` (padded to 4 bytes). */
  upload(label: string, data: ArrayBufferView, usage = STORAGE): GPUBuffer {
    const b = this.create(label, data.byteLength, usage);
    this.write(b, data);
    return b;
  }

  /** queue.writeBuffer of a whole typed array at `offset`, padding odd lengths to 4 bytes. */
  write(b: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    if (data.byteLength === 0) return; // (Deno 2.9 panics on an empty writeBuffer)
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4) {
      const padded = new Uint8Array(roundUp(bytes.byteLength, 4));
      padded.set(bytes);
      bytes = padded;
    }
    if (offset + bytes.byteLength > b.size) {
      throw new RangeError(`webgpu: write of ${bytes.byteLength} bytes at ${offset} overflows ${b.label} (${b.size})`);
    }
    this.#device.queue.writeBuffer(b, offset, bytes);
  }

  /**
   * The scratch buffer `name` with at least `size` bytes. Grows by 1.5x steps and never shrinks; a growth
   * destroys the old buffer (queued work that uses it still completes) and calls onRegrow.
   */
  scratch(name: string, size: number, usage = STORAGE): GPUBuffer {
    const old = this.#scratch.get(name);
    if (old && old.size >= size) return old;
    let cap = Math.max(256, roundUp(size, 256));
    if (old) cap = Math.max(cap, roundUp(Math.floor(old.size * 1.5), 256));
    const binding = this.#device.limits.maxStorageBufferBindingSize;
    if (usage & USAGE.STORAGE) {
      if (size > binding) {
        throw new RangeError(`webgpu: scratch ${name} needs ${size} bytes; maxStorageBufferBindingSize is ${binding}`);
      }
      cap = Math.min(cap, binding);
    }
    if (old) this.destroy(old);
    const b = this.create(`scratch:${name}`, cap, usage);
    this.#scratch.set(name, b);
    if (old) this.onRegrow?.();
    return b;
  }

  destroy(b: GPUBuffer): void {
    if (!this.#live.delete(b)) return;
    this.#bytes -= b.size;
    b.destroy();
  }

  destroyAll(): void {
    for (const b of this.#live) b.destroy();
    this.#live.clear();
    this.#scratch.clear();
    this.#bytes = 0;
  }
}

/** Copies `bytes` from `src` into a fresh staging buffer and maps it (tests and debugging; not the hot path). */
export async function readBuffer(
  device: GPUDevice,
  src: GPUBuffer,
  bytes = src.size,
  offset = 0,
): Promise<ArrayBuffer> {
  const size = roundUp(bytes, 4);
  const staging = device.createBuffer({ size, usage: USAGE.MAP_READ | USAGE.COPY_DST });
  try {
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(src, offset, staging, 0, size);
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(MAP_READ);
    return staging.getMappedRange().slice(0, bytes);
  } finally {
    staging.destroy();
  }
}

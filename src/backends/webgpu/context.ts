// What every kernel call needs: the device, the buffer pool, the pipeline cache, per-call-site uniform slots and
// a bind group cache. Bind groups are keyed by (kernel, buffers by pool id), so a layer's bind groups are built on
// the first step and reused on every later one until a scratch buffer grows or the KV pool is reallocated.
import { BufferPool, USAGE } from "./buffers.ts";
import { type Kernel, type ParamLayout, PipelineCache } from "./shaders.ts";

export type Grid = readonly [number, number?, number?];

/** Timestamp queries of the profiler: a (start, end) pair per step of a multi-step decode call. */
export const TIMESTAMP_QUERIES = 32;

/** A uniform buffer for one call site (all layers share it within a step), written only when its values change. */
export class ParamSlot {
  readonly buffer: GPUBuffer;
  readonly #layout: ParamLayout;
  readonly #data: ArrayBuffer;
  readonly #view: DataView;
  readonly #last: Uint32Array;
  #written = false;

  constructor(pool: BufferPool, label: string, layout: ParamLayout) {
    this.#layout = layout;
    this.buffer = pool.create(`params:${label}`, layout.size, USAGE.UNIFORM | USAGE.COPY_DST);
    this.#data = new ArrayBuffer(layout.size);
    this.#view = new DataView(this.#data);
    this.#last = new Uint32Array(layout.size / 4);
  }

  /** Packs `values` by the reflected field offsets; every field must be given, and only those. */
  write(device: GPUDevice, values: Readonly<Record<string, number>>): void {
    const f = this.#layout.fields;
    for (const [name, { offset, type }] of f) {
      const v = values[name];
      if (v === undefined || !Number.isFinite(v)) throw new Error(`kernel param ${name} is missing or not finite`);
      if (type === "f32") this.#view.setFloat32(offset, v, true);
      else if (type === "u32") {
        if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`kernel param ${name}=${v} not u32`);
        this.#view.setUint32(offset, v, true);
      } else this.#view.setInt32(offset, v, true);
    }
    for (const k of Object.keys(values)) if (!f.has(k)) throw new Error(`unknown kernel param ${k}`);
    const words = new Uint32Array(this.#data);
    if (this.#written && words.every((w, i) => w === this.#last[i])) return;
    device.queue.writeBuffer(this.buffer, 0, new Uint8Array(this.#data));
    this.#last.set(words);
    this.#written = true;
  }
}

export class GpuContext {
  readonly device: GPUDevice;
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  readonly hasF16: boolean;
  /** 256-byte stand-in bound where a kernel's optional input (bias, norm weight, residual) is absent. */
  readonly dummy: GPUBuffer;
  /** Dispatches recorded so far (the bench reads it per step). */
  dispatches = 0;
  /** Timing of the last forward step: host preparing + encoding, waiting for the read-back, and (when profiling)
   * GPU time of its compute passes from timestamp queries (NaN otherwise). After a multi-step decode call
   * (multistep.ts) each figure is the mean per step over its `steps` steps. */
  lastStep = { encodeMs: 0, waitMs: 0, gpuMs: NaN, dispatches: 0, steps: 1 };
  /** Timestamp query set (TIMESTAMP_QUERIES entries: a start / end pair per step) and its resolve buffer
   * [TIMESTAMP_QUERIES] u64 ns, when profiling. */
  readonly profiler: { readonly querySet: GPUQuerySet; readonly resolve: GPUBuffer } | null;
  readonly #slots = new Map<string, ParamSlot>();
  readonly #groups = new Map<string, GPUBindGroup>();

  constructor(device: GPUDevice, hasF16: boolean, profile = false) {
    this.device = device;
    this.hasF16 = hasF16;
    this.pool = new BufferPool(device);
    this.pool.onRegrow = () => this.#groups.clear();
    this.pipelines = new PipelineCache(device);
    this.dummy = this.pool.create("dummy", 256);
    this.profiler = profile
      ? {
        querySet: device.createQuerySet({ type: "timestamp", count: TIMESTAMP_QUERIES }),
        resolve: this.pool.create("timestamps", TIMESTAMP_QUERIES * 8, USAGE.QUERY_RESOLVE | USAGE.COPY_SRC),
      }
      : null;
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /** The uniform slot of a call site, created on first use. */
  slot(name: string, kernel: Kernel): ParamSlot {
    let s = this.#slots.get(name);
    if (!s) {
      if (!kernel.params) throw new Error(`${kernel.key} has no params uniform`);
      s = new ParamSlot(this.pool, name, kernel.params);
      this.#slots.set(name, s);
    }
    return s;
  }

  /** Drops cached bind groups (after buffers they name were destroyed). */
  invalidateBindGroups(): void {
    this.#groups.clear();
  }

  bindGroup(kernel: Kernel, buffers: Readonly<Record<string, GPUBuffer>>): GPUBindGroup {
    let key = kernel.key;
    for (const name of kernel.bindings.keys()) {
      const b = buffers[name];
      if (!b) throw new Error(`${kernel.key}: no buffer for binding ${name}`);
      key += `|${this.pool.id(b)}`;
    }
    let g = this.#groups.get(key);
    if (!g) {
      for (const name of Object.keys(buffers)) {
        if (!kernel.bindings.has(name)) throw new Error(`${kernel.key}: unknown binding ${name}`);
      }
      g = this.device.createBindGroup({
        label: kernel.key,
        layout: kernel.layout,
        entries: [...kernel.bindings].map(([name, b]) => ({
          binding: b.binding,
          resource: { buffer: buffers[name]! },
        })),
      });
      this.#groups.set(key, g);
    }
    return g;
  }

  /** setPipeline + setBindGroup + dispatchWorkgroups; a grid with a zero dimension dispatches nothing. */
  dispatch(pass: GPUComputePassEncoder, kernel: Kernel, buffers: Readonly<Record<string, GPUBuffer>>, grid: Grid) {
    const [x, y = 1, z = 1] = grid;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    for (const n of [x, y, z]) {
      if (!Number.isInteger(n) || n < 0 || n > max) throw new RangeError(`${kernel.key}: grid ${grid} exceeds ${max}`);
    }
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, this.bindGroup(kernel, buffers));
    pass.dispatchWorkgroups(x, y, z);
    this.dispatches++;
  }

  /** Splits `n` workgroups over x and y so that x stays within the per-dimension limit (kernels use wg_index). */
  grid2d(n: number): Grid {
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    return n <= max ? [n, 1] : [max, Math.ceil(n / max)];
  }

  destroy(): void {
    this.#groups.clear();
    this.#slots.clear();
    this.pool.destroyAll();
  }
}

/** Throws unless `buf` holds at least `bytes` (a kernel would otherwise read or write out of bounds). */
export function need(buf: GPUBuffer, bytes: number, what: string): void {
  if (buf.size < bytes) throw new RangeError(`${what}: buffer ${buf.label} has ${buf.size} bytes, needs ${bytes}`);
}

/** Throws unless `v` is a positive integer (or zero when allowed). */
export function dim(v: number, what: string, allowZero = false): void {
  if (!Number.isInteger(v) || v < (allowZero ? 0 : 1)) throw new RangeError(`${what} must be a positive integer: ${v}`);
}

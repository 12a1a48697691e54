// A TensorSource over tensors held in memory (the demo model, synthetic models, tests).
import type { SafetensorsDType, TensorInfo, TensorSource } from "../core/types.ts";
import { CheckpointError } from "../core/errors.ts";
import { fromF32, toF32 } from "./dtype.ts";
import { DTYPE_BYTES } from "./safetensors.ts";

export interface MemoryTensor {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

export class MemoryTensorSource implements TensorSource {
  readonly #tensors = new Map<string, MemoryTensor>();

  constructor(readonly label = "memory") {}

  /** Adds an f32 tensor, stored as `dtype`. */
  addF32(name: string, shape: readonly number[], data: Float32Array, dtype: "F32" | "F16" | "BF16" = "F32"): this {
    return this.add(name, { dtype, shape, data: fromF32(data, dtype) });
  }

  add(name: string, t: MemoryTensor): this {
    const need = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (need !== t.data.byteLength) throw new Error(`${name}: ${t.data.byteLength} bytes, shape needs ${need}`);
    this.#tensors.set(name, t);
    return this;
  }

  names(): string[] {
    return [...this.#tensors.keys()];
  }

  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.#tensors.get(name);
    if (!t) throw new CheckpointError(`missing tensor "${name}" (not in ${this.label})`, this.label, name);
    return { name, dtype: t.dtype, shape: t.shape, file: this.label, byteLength: t.data.byteLength };
  }

  bytes(name: string): Promise<Uint8Array> {
    this.info(name);
    return Promise.resolve(this.#tensors.get(name)!.data);
  }

  f32(name: string, shape?: readonly number[]): Promise<Float32Array> {
    const i = this.info(name);
    if (shape && (shape.length !== i.shape.length || shape.some((d, k) => d !== i.shape[k]))) {
      throw new CheckpointError(
        `${this.label}: tensor "${name}" has shape ${JSON.stringify(i.shape)}, expected ${JSON.stringify(shape)}`,
        this.label,
        name,
      );
    }
    return Promise.resolve(toF32(this.#tensors.get(name)!.data, i.dtype));
  }

  close(): void {}
}

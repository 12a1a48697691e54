// Packs a checkpoint into GPU buffers in this backend's layout (TurboMind-style offline packing):
//   - q, k and v projections concatenated into one [(numHeads + 2 kvHeads) headDim, hidden] matrix, so one GEMM
//     (or GEMV) produces the fused qkv rows that rope_kv and attention read;
//   - gate and up concatenated into one [2 ffn, hidden] matrix, consumed by silu_mul;
//   - matrices in WT (f16 when the precision asks for 16-bit weights and the device has shader-f16, else f32),
//     norms and biases always stored f32 (they are tiny and feed f32 math), f16-rounded in 16-bit precisions.
// bf16 checkpoints become f16 on the host: every bf16 value inside f16's range is exact in f16; a weight beyond
// f16's range (|w| > 65504) is refused with its tensor name rather than silently turned into infinity.
import type { ModelSpec, ProgressFn, TensorSource, WeightDType } from "../../core/types.ts";
import { f32ToF16, roundTo } from "../../model/dtype.ts";
import { EMBED, expectedTensors, FINAL_NORM, layerNames, LM_HEAD } from "../../model/weights.ts";
import type { GpuContext } from "./context.ts";
import type { StorageType } from "./shaders.ts";
import { BYTES } from "./kernels.ts";
import { fillSyntheticF16, syntheticFill } from "./synthetic.ts";

export interface GpuLayer {
  /** [hidden] f32 */ readonly inputNorm: GPUBuffer;
  /** [(numHeads + 2 kvHeads) headDim, hidden] WT: q rows, then k rows, then v rows */ readonly qkv: GPUBuffer;
  /** [(numHeads + 2 kvHeads) headDim] f32 (Qwen2) */ readonly qkvBias: GPUBuffer | null;
  /** [headDim] f32 (Qwen3) */ readonly qNorm: GPUBuffer | null;
  /** [headDim] f32 (Qwen3) */ readonly kNorm: GPUBuffer | null;
  /** [hidden, numHeads headDim] WT */ readonly o: GPUBuffer;
  /** [hidden] f32 */ readonly oBias: GPUBuffer | null;
  /** [hidden] f32 */ readonly postNorm: GPUBuffer;
  /** [2 ffn, hidden] WT: gate rows, then up rows */ readonly gu: GPUBuffer;
  /** [2 ffn] f32 */ readonly guBias: GPUBuffer | null;
  /** [hidden, ffn] WT */ readonly down: GPUBuffer;
  /** [hidden] f32 */ readonly downBias: GPUBuffer | null;
}

export interface GpuWeights {
  readonly wt: StorageType;
  /** [vocab, hidden] WT */ readonly embed: GPUBuffer;
  readonly layers: readonly GpuLayer[];
  /** [hidden] f32 */ readonly finalNorm: GPUBuffer;
  /** [vocab, hidden] WT (the embedding buffer itself when tied) */ readonly lmHead: GPUBuffer;
}

/** Storage type of matrices for a requested weight precision. */
export function weightStorage(weight: WeightDType, hasF16: boolean): StorageType {
  return weight !== "f32" && hasF16 ? "f16" : "f32";
}

/** f32 values → f16 bits, refusing values beyond f16's range. */
export function toF16Bits(data: Float32Array, name: string): Uint16Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (Math.abs(v) > 65504) throw new RangeError(`${name}: value ${v} at ${i} exceeds the f16 range`);
    out[i] = f32ToF16(v);
  }
  return out;
}

export async function loadGpuWeights(
  ctx: GpuContext,
  spec: ModelSpec,
  src: TensorSource,
  weight: WeightDType,
  onProgress?: ProgressFn,
): Promise<GpuWeights> {
  if (weight !== "f32" && weight !== "f16" && weight !== "bf16") {
    throw new Error(`webgpu backend: weight precision ${weight} is not supported (f32, f16, bf16)`);
  }
  const wt = weightStorage(weight, ctx.hasF16);
  const expected = expectedTensors(spec);
  const shapes = new Map(expected.map((e) => [e.name, e.shape]));
  for (const e of expected) src.info(e.name); // fail on a missing tensor before any big read
  const total = expected.reduce((a, e) => a + src.info(e.name).byteLength, 0);
  let done = 0;
  const read = async (name: string): Promise<Float32Array> => {
    const data = await src.f32(name, shapes.get(name));
    done += src.info(name).byteLength;
    onProgress?.(done, total, name);
    return data;
  };
  const binding = ctx.limits.maxStorageBufferBindingSize;
  // Synthetic models (src/model/synthetic.ts) are generated on the GPU when matrices are f16.
  const fill = wt === "f16" ? syntheticFill(src) : null;
  /** One WT matrix buffer made of the named tensors stacked by rows. */
  const matrix = async (label: string, names: string[]): Promise<GPUBuffer> => {
    const elems = names.reduce((a, n) => a + shapes.get(n)!.reduce((x, y) => x * y, 1), 0);
    const bytes = elems * BYTES[wt];
    if (bytes > binding) {
      throw new RangeError(`webgpu: ${label} needs ${bytes} bytes; the device binds at most ${binding} per buffer`);
    }
    const buf = ctx.pool.create(label, bytes);
    let off = 0;
    for (const n of names) {
      if (fill) {
        const elems = shapes.get(n)!.reduce((x, y) => x * y, 1);
        await fillSyntheticF16(ctx, fill, n, buf, off, elems);
        off += elems * 2;
        done += src.info(n).byteLength;
        onProgress?.(done, total, n);
        continue;
      }
      const f = await read(n);
      // 16-bit precision without shader-f16: f32 storage of the f16-rounded values (same numbers as f16 storage).
      const data = wt === "f16" ? toF16Bits(f, n) : weight === "f32" ? f : roundTo(f, "f16");
      ctx.pool.write(buf, data, off);
      off += data.byteLength;
    }
    return buf;
  };
  const vector = async (names: string[]): Promise<GPUBuffer> => {
    const parts = await Promise.all(names.map(read));
    const all = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let off = 0;
    for (const p of parts) {
      all.set(p, off);
      off += p.length;
    }
    // 16-bit precision rounds norms and biases too (as model.half() would), but keeps them in f32 buffers.
    return ctx.pool.upload(names[0]!, weight === "f32" ? all : roundTo(all, "f16"));
  };
  const opt = (names: string[], on: boolean) => (on ? vector(names) : Promise.resolve(null));

  const embed = await matrix(EMBED, [EMBED]);
  const layers: GpuLayer[] = [];
  for (let i = 0; i < spec.numLayers; i++) {
    const n = layerNames(i);
    layers.push({
      inputNorm: await vector([n.inputNorm]),
      qkv: await matrix(`layer${i}.qkv`, [n.q, n.k, n.v]),
      qkvBias: await opt([n.qBias, n.kBias, n.vBias], spec.attentionBias),
      qNorm: await opt([n.qNorm], spec.qkNorm),
      kNorm: await opt([n.kNorm], spec.qkNorm),
      o: await matrix(`layer${i}.o`, [n.o]),
      oBias: await opt([n.oBias], spec.outputBias),
      postNorm: await vector([n.postNorm]),
      gu: await matrix(`layer${i}.gate_up`, [n.gate, n.up]),
      guBias: await opt([n.gateBias, n.upBias], spec.mlpBias),
      down: await matrix(`layer${i}.down`, [n.down]),
      downBias: await opt([n.downBias], spec.mlpBias),
    });
  }
  const finalNorm = await vector([FINAL_NORM]);
  const lmHead = spec.tieEmbeddings ? embed : await matrix(LM_HEAD, [LM_HEAD]);
  return { wt, embed, layers, finalNorm, lmHead };
}

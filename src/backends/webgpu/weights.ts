// Packs a checkpoint into GPU buffers in this backend's layout (TurboMind-style offline packing):
//   - q, k and v projections concatenated into one [(numHeads + 2 kvHeads) headDim, hidden] matrix, so one GEMM
//     (or GEMV) produces the fused qkv rows that rope_kv and attention read;
//   - gate and up concatenated into one [2 ffn, hidden] matrix, consumed by silu_mul;
//   - matrices in WT (f16 when the precision asks for 16-bit weights and the device has shader-f16, else f32),
//     norms and biases always stored f32 (they are tiny and feed f32 math), f16-rounded in 16-bit precisions.
// bf16 checkpoints become f16 on the host: every bf16 value inside f16's range is exact in f16; a weight beyond
// f16's range (|w| > 65504) is refused with its tensor name rather than silently turned into infinity.
// int8 / int4 / fp8 weights (W8A16 / W4A16 / FP8 E4M3): the linear layers (qkv, o, gate|up, down) become QuantMatrix
// buffers (qlinear.ts): quantized at load from a float checkpoint (int: quant/reference.ts quantizeRtn; fp8:
// quant/fp8.ts quantizeFp8, one scale per row and group; group precision.group, default 128), or read from an AWQ /
// GPTQ / fp8 one, then packed by packFor({ kind: "webgpu" }) with f32 (scale, bias) pairs (fp8: e4m3 codes with
// (256 s, 0)) and stacked by rows as the float path stacks them. Embedding, LM head, norms and biases are not
// quantized and not rounded (as in the reference backend): f32 storage, or f16 where the checkpoint itself is 16-bit
// (exact).
import {
  isQuantizedWeight,
  type ModelSpec,
  type Precision,
  type ProgressFn,
  quantGroup,
  type TensorSource,
  type WeightDType,
} from "../../core/types.ts";
import { f32ToF16, roundTo } from "../../model/dtype.ts";
import {
  EMBED,
  expectedTensors,
  FINAL_NORM,
  layerNames,
  linearWeightNames,
  LM_HEAD,
  quantizedTensorNames,
} from "../../model/weights.ts";
import { readQuantizedLinear } from "../../quant/checkpoint.ts";
import { packFor, type RowsPacked } from "../../quant/pack.ts";
import { quantizeAs } from "../../quant/reference.ts";
import { type QuantFormat, quantFormat } from "../../quant/types.ts";
import { type Matrix, uploadQuantMatrix } from "./qlinear.ts";
import type { GpuContext } from "./context.ts";
import type { StorageType } from "./shaders.ts";
import { BYTES } from "./kernels.ts";
import { fillSyntheticF16, fillSyntheticQuant, syntheticFill } from "./synthetic.ts";
import { tensorStream } from "../../model/synthetic.ts";

export interface GpuLayer {
  /** [hidden] f32 */ readonly inputNorm: GPUBuffer;
  /** [(numHeads + 2 kvHeads) headDim, hidden] WT or QuantMatrix: q rows, then k rows, then v rows */
  readonly qkv: Matrix;
  /** [(numHeads + 2 kvHeads) headDim] f32 (Qwen2) */ readonly qkvBias: GPUBuffer | null;
  /** [headDim] f32 (Qwen3) */ readonly qNorm: GPUBuffer | null;
  /** [headDim] f32 (Qwen3) */ readonly kNorm: GPUBuffer | null;
  /** [hidden, numHeads headDim] WT or QuantMatrix */ readonly o: Matrix;
  /** [hidden] f32 */ readonly oBias: GPUBuffer | null;
  /** [hidden] f32 */ readonly postNorm: GPUBuffer;
  /** [2 ffn, hidden] WT or QuantMatrix: gate rows, then up rows */ readonly gu: Matrix;
  /** [2 ffn] f32 */ readonly guBias: GPUBuffer | null;
  /** [hidden, ffn] WT or QuantMatrix */ readonly down: Matrix;
  /** [hidden] f32 */ readonly downBias: GPUBuffer | null;
}

export interface GpuWeights {
  readonly wt: StorageType;
  /** [vocab, hidden] WT */ readonly embed: GPUBuffer;
  readonly layers: readonly GpuLayer[];
  /** [hidden] f32 */ readonly finalNorm: GPUBuffer;
  /** [vocab, hidden] WT (the embedding buffer itself when tied) */ readonly lmHead: GPUBuffer;
}

/**
 * Storage type of dense matrices for a requested weight precision. With int8/int4/fp8 weights the dense ones
 * (embedding, LM head) keep the checkpoint's values: f16 only where the checkpoint is 16-bit (pass its dtype).
 */
export function weightStorage(
  weight: WeightDType,
  hasF16: boolean,
  checkpoint: ModelSpec["checkpointDType"] = "f16",
): StorageType {
  if (isQuantizedWeight(weight)) return checkpoint !== "f32" && hasF16 ? "f16" : "f32";
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
  precision: Pick<Precision, "weight" | "group">,
  onProgress?: ProgressFn,
): Promise<GpuWeights> {
  const weight = precision.weight;
  const format = quantFormat(weight, spec.quantization);
  const quant = spec.quantization;
  const wt = weightStorage(weight, ctx.hasF16, spec.checkpointDType);
  const expected = expectedTensors(spec);
  const shapes = new Map(expected.map((e) => [e.name, e.shape]));
  const linears = linearWeightNames(spec);
  // The tensors actually read: a quantized checkpoint holds qweight / qzeros / scales instead of each linear weight.
  const stored = (name: string) => (quant && linears.has(name) ? quantizedTensorNames(name, quant) : [name]);
  for (const e of expected) for (const n of stored(e.name)) src.info(n); // fail on a missing tensor first
  const bytesOf = (name: string) => stored(name).reduce((a, n) => a + src.info(n).byteLength, 0);
  const total = expected.reduce((a, e) => a + bytesOf(e.name), 0);
  let done = 0;
  const read = async (name: string): Promise<Float32Array> => {
    const data = await src.f32(name, shapes.get(name));
    done += src.info(name).byteLength;
    onProgress?.(done, total, name);
    return data;
  };
  /** One linear quantized (RTN / fp8 RTN) or read from the quantized checkpoint, packed for this backend. */
  const packed = async (name: string, f: QuantFormat): Promise<RowsPacked> => {
    const [N, K] = shapes.get(name)! as [number, number];
    let ql;
    if (quant) {
      ql = await readQuantizedLinear(src, quant, name, N, K);
      done += bytesOf(name);
      onProgress?.(done, total, name);
    } else ql = quantizeAs(f, await read(name), N, K, quantGroup(precision));
    if (!!ql.fp8 !== f.fp8 || ql.bits !== f.bits) throw new Error(`webgpu: ${name} is not in the checkpoint's format`);
    const p = packFor({ kind: "webgpu" }, ql);
    if (p.layout !== "rows-k") throw new Error("webgpu: unexpected packed layout");
    // An act-order permutation that sorts nothing (g_idx already k / G) is no permutation.
    return p.perm && p.perm.every((v, i) => v === i) ? { ...p, perm: null } : p;
  };
  /** A linear layer's matrix: quantized when the precision or checkpoint says so, else dense WT. */
  const linear = async (label: string, names: string[]): Promise<Matrix> => {
    if (format === null) return await matrix(label, names);
    if (qfill) {
      const N = names.reduce((a, n) => a + shapes.get(n)![0]!, 0), K = shapes.get(names[0]!)![1]!;
      const seed = Math.imul(qfill.seed, 0x9e3779b1) ^ tensorStream(names[0]!);
      const { amp } = qfill.amplitude(names[0]!);
      const m = await fillSyntheticQuant(ctx, label, { format, N, K, group: quantGroup(precision), amp, seed });
      for (const n of names) {
        done += src.info(n).byteLength;
        onProgress?.(done, total, n);
      }
      return m;
    }
    const parts: RowsPacked[] = [];
    for (const n of names) parts.push(await packed(n, format));
    return uploadQuantMatrix(ctx, label, parts);
  };
  const binding = ctx.limits.maxStorageBufferBindingSize;
  // Synthetic models (src/model/synthetic.ts) are generated on the GPU when matrices are f16, and quantized linears
  // (random codes and scales, as on CUDA) whatever the storage.
  const qfill = !quant ? syntheticFill(src) : null;
  const fill = wt === "f16" ? qfill : null;
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
      const data = wt === "f16" ? toF16Bits(f, n) : weight === "f16" || weight === "bf16" ? roundTo(f, "f16") : f;
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
    return ctx.pool.upload(names[0]!, weight === "f16" || weight === "bf16" ? roundTo(all, "f16") : all);
  };
  const opt = (names: string[], on: boolean) => (on ? vector(names) : Promise.resolve(null));

  const embed = await matrix(EMBED, [EMBED]);
  const layers: GpuLayer[] = [];
  for (let i = 0; i < spec.numLayers; i++) {
    const n = layerNames(i);
    layers.push({
      inputNorm: await vector([n.inputNorm]),
      qkv: await linear(`layer${i}.qkv`, [n.q, n.k, n.v]),
      qkvBias: await opt([n.qBias, n.kBias, n.vBias], spec.attentionBias),
      qNorm: await opt([n.qNorm], spec.qkNorm),
      kNorm: await opt([n.kNorm], spec.qkNorm),
      o: await linear(`layer${i}.o`, [n.o]),
      oBias: await opt([n.oBias], spec.outputBias),
      postNorm: await vector([n.postNorm]),
      gu: await linear(`layer${i}.gate_up`, [n.gate, n.up]),
      guBias: await opt([n.gateBias, n.upBias], spec.mlpBias),
      down: await linear(`layer${i}.down`, [n.down]),
      downBias: await opt([n.downBias], spec.mlpBias),
    });
  }
  const finalNorm = await vector([FINAL_NORM]);
  const lmHead = spec.tieEmbeddings ? embed : await matrix(LM_HEAD, [LM_HEAD]);
  return { wt, embed, layers, finalNorm, lmHead };
}

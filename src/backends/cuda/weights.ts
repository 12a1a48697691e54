// Packs a checkpoint straight from its TensorSource into device memory: matrices in the weight dtype (bf16/f16;
// f32 checkpoints are converted), norms and biases in f32 (rounded through the weight dtype, as the reference
// backend does), q/k/v and gate/up fused row-wise.
// int8 / int4 / fp8 weights (W8A16 / W4A16 / FP8, f16 activations): the linears (qkv, o, gate|up, down) become
// QuantMatrix buffers (qlinear.ts) in the mma-m16n8k16 layout: quantized at load (quantizeAs, group precision.group,
// default 128) from a float checkpoint, read from a quantized one, or generated on the GPU (qfill) for synthetic
// models. Embedding, LM head, norms and biases stay dense f16 / f32.
import { type ModelSpec, type Precision, type ProgressFn, quantGroup, type TensorSource } from "../../core/types.ts";
import { fromF32, roundTo } from "../../model/dtype.ts";
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
import { packFor } from "../../quant/pack.ts";
import { quantizeAs } from "../../quant/reference.ts";
import { quantFormat, type QuantizedLinear } from "../../quant/types.ts";
import {
  allocQuantScratch,
  type CudaLinear,
  fillQuantMatrix,
  type QuantScratch,
  scratchNeed,
  stackQuantized,
  uploadQuantMatrix,
} from "./qlinear.ts";
import { pairBias, pairedRows, pairGateUp, pairHalf } from "./gate_up.ts";
import type { CudaDevice, DeviceBuffer } from "./device.ts";
import type { DevPtr } from "./ffi.ts";
import type { Half } from "./ops.ts";
import type { Kernels } from "./kernels.ts";
import type { SyntheticFill } from "../../model/synthetic.ts";
import { tensorStream } from "../../model/synthetic.ts";

export interface CudaLayer {
  /** [h] f32 */ readonly inputNorm: DevPtr;
  /** [(nh+2nkv)*d, h] act or QuantMatrix: q rows, then k, then v */ readonly qkv: CudaLinear;
  /** [(nh+2nkv)*d] f32 or 0n */ readonly qkvBias: DevPtr;
  /** [d] f32 or 0n (Qwen3) */ readonly qNorm: DevPtr;
  /** [d] f32 or 0n (Qwen3) */ readonly kNorm: DevPtr;
  /** [h, nh*d] act or QuantMatrix */ readonly o: CudaLinear;
  /** [h] f32 or 0n */ readonly oBias: DevPtr;
  /** [h] f32 */ readonly postNorm: DevPtr;
  /** [2f, h] act: gate rows, then up; or a QuantMatrix with the rows paired per n-tile (gate_up.ts) */
  readonly gateUp: CudaLinear;
  /** [2f] f32 (dense) or [N'] f32 in the quantized matrix's paired row order, or 0n */ readonly gateUpBias: DevPtr;
  /** [h, f] act or QuantMatrix */ readonly down: CudaLinear;
  /** [h] f32 or 0n */ readonly downBias: DevPtr;
}

export interface CudaWeights extends Disposable {
  /** [vocab, h] act */ readonly embed: DevPtr;
  readonly layers: readonly CudaLayer[];
  /** [h] f32 */ readonly finalNorm: DevPtr;
  /** [vocab, h] act (the embedding when tied) */ readonly lmHead: DevPtr;
  readonly bytes: number;
}

export async function loadCudaWeights(
  dev: CudaDevice,
  spec: ModelSpec,
  src: TensorSource,
  act: Half,
  onProgress?: ProgressFn,
  kernels?: Kernels,
  precision?: Pick<Precision, "weight" | "group">,
): Promise<CudaWeights> {
  const quant = spec.quantization;
  const fmt = quantFormat(precision?.weight ?? act, quant);
  const bits = fmt?.bits ?? null, fp8 = fmt?.fp8 ?? false, what = fp8 ? "fp8" : `int${bits}`;
  if (bits !== null && act !== "f16") throw new Error(`cuda: ${what} weights run with f16 activations, not ${act}`);
  const sm = dev.cc[0] * 10 + dev.cc[1];
  if (bits !== null && sm < 80) throw new Error(`cuda: ${what} weights need sm_80 or newer (this GPU is sm_${sm})`);
  // Synthetic models (src/model/synthetic.ts) are generated on the GPU: no host-side random numbers for 16 GB.
  const synth = (src as { synthetic?: SyntheticFill }).synthetic;
  const fill = synth && kernels ? synth : null;
  const expected = expectedTensors(spec);
  const shapes = new Map(expected.map((e) => [e.name, e.shape]));
  const linears = linearWeightNames(spec);
  // A quantized checkpoint holds qweight / qzeros / scales (GPTQ: g_idx) instead of each linear weight.
  const stored = (name: string) => (quant && linears.has(name) ? quantizedTensorNames(name, quant) : [name]);
  const bytesOf = (name: string) => stored(name).reduce((a, n) => a + src.info(n).byteLength, 0);
  const total = expected.reduce((a, e) => a + bytesOf(e.name), 0); // fails on a missing tensor first
  const owned: DeviceBuffer[] = [];
  let done = 0;
  const tick = (name: string) => {
    done += bytesOf(name);
    onProgress?.(done, total, name);
  };
  const alloc = (bytes: number, label: string) => {
    const b = dev.alloc(bytes, label);
    owned.push(b);
    return b;
  };
  const target = act === "bf16" ? "BF16" : "F16";
  /** Tensor bytes in the activation dtype, shape-checked. */
  const half = async (name: string): Promise<Uint8Array> => {
    const info = src.info(name);
    const shape = shapes.get(name);
    if (shape && info.shape.join() !== shape.join()) {
      throw new Error(`${name}: shape [${info.shape}] but the config implies [${shape}]`);
    }
    const out = info.dtype === target ? await src.bytes(name) : fromF32(await src.f32(name, shape), target);
    tick(name);
    return out;
  };
  /** Norm weights and biases: f32 on the device, holding what a 16-bit checkpoint would (as the reference does). */
  const f32 = async (name: string): Promise<Float32Array> => {
    const out = roundTo(await src.f32(name, shapes.get(name)), act);
    tick(name);
    return out;
  };
  /** Fills the named 16-bit matrices one after another into one buffer on the GPU (synthetic models). */
  const generated = (names: string[], label: string) => {
    const elems = names.map((n) => shapes.get(n)!.reduce((a, b) => a * b, 1));
    const buf = alloc(elems.reduce((a, b) => a + b, 0) * 2, label);
    let off = 0;
    names.forEach((n, k) => {
      const { amp, offset } = fill!.amplitude(n);
      const args = {
        dst: buf.at(off),
        n: elems[k]!,
        seed: fill!.seed >>> 0,
        stream: tensorStream(n),
        amp,
        base: offset,
      };
      kernels!.launch("synth_fill", act, [Math.min(65535, Math.ceil(elems[k]! / 256))], [256], args);
      off += elems[k]! * 2;
      tick(n);
    });
    return Promise.resolve(buf.ptr);
  };
  /** Uploads the named tensors one after another into one buffer. */
  const fused = async (names: string[], conv: (n: string) => Promise<ArrayBufferView>, label: string) => {
    if (fill && conv === half) return await generated(names, label);
    const parts: ArrayBufferView[] = [];
    for (const n of names) parts.push(await conv(n));
    const buf = alloc(parts.reduce((a, b) => a + b.byteLength, 0), label);
    let off = 0;
    for (const part of parts) {
      dev.upload(buf.at(off), part);
      off += part.byteLength;
    }
    return buf.ptr;
  };
  const opt = (on: boolean, names: string[], label: string) => on ? fused(names, f32, label) : Promise.resolve(0n);
  /** Quantized gate / up: rows paired per n-tile (gate_up.ts), half the tile width of each side. */
  const guHalf = bits === null ? 0 : pairHalf(bits), F = spec.intermediateSize;
  /** The gate | up bias [2f] f32 in the quantized matrix's paired row order (or as is for dense weights). */
  const gateUpBias = async (names: string[], label: string): Promise<DevPtr> => {
    if (!spec.mlpBias) return 0n;
    if (guHalf === 0) return await fused(names, f32, label);
    const [g, u] = [await f32(names[0]!), await f32(names[1]!)];
    const both = new Float32Array(2 * F);
    both.set(g);
    both.set(u, F);
    const paired = pairBias(both, F, guHalf), buf = alloc(paired.byteLength, label);
    dev.upload(buf.ptr, paired);
    return buf.ptr;
  };
  let scratch: QuantScratch | null = null;
  /**
   * One linear (q/k/v or gate/up stacked by rows): dense, or quantized and packed in the mma layout (pair: gate and
   * up, paired per n-tile for qgemv's SiLU epilogue).
   */
  const linear = async (names: string[], label: string, pair = false): Promise<CudaLinear> => {
    if (bits === null) return await fused(names, half, label);
    const pairs = pair ? { half: guHalf, f: F } : undefined;
    const K = shapes.get(names[0]!)![1]!;
    const N = pairs ? pairedRows(F, pairs.half) : names.reduce((a, n) => a + shapes.get(n)![0]!, 0);
    if (!scratch) {
      const h = spec.hiddenSize, f = spec.intermediateSize, qkv = (spec.numHeads + 2 * spec.numKvHeads) * spec.headDim;
      const shapeList = [[qkv, h], [h, spec.numHeads * spec.headDim], [2 * f, h], [h, f]] as const;
      const need = scratchNeed(bits, shapeList, dev.smCount);
      scratch = allocQuantScratch(dev, alloc, need.floats, need.slots);
    }
    const group = quant?.groupSize ?? quantGroup(precision);
    if (fill && !quant) {
      const { amp } = fill.amplitude(names[0]!);
      const seed = Math.imul(fill.seed, 0x9e3779b1) ^ tensorStream(names[0]!);
      const m = fillQuantMatrix(kernels!, alloc, { bits, fp8, N, K, group, seed, amp, label }, scratch);
      names.forEach(tick);
      return { ...m, pairs };
    }
    const parts: QuantizedLinear[] = [];
    for (const n of names) {
      const [rows, cols] = shapes.get(n)! as [number, number];
      parts.push(
        quant
          ? await readQuantizedLinear(src, quant, n, rows, cols)
          : quantizeAs(fmt!, await src.f32(n, shapes.get(n)), rows, cols, group),
      );
      tick(n);
    }
    let stacked: QuantizedLinear;
    try {
      stacked = pairs ? pairGateUp(parts[0]!, parts[1]!, pairs.half) : stackQuantized(parts);
    } catch (e) {
      // The CUDA kernels run q/k/v and gate/up as one matrix, so their act-order (g_idx) must agree, as GPTQ makes
      // it for linears that read the same input.
      throw new Error(`cuda: cannot fuse ${names.join(", ")}: ${(e as Error).message}`);
    }
    const p = packFor({ kind: "cuda", sm }, stacked);
    if (p.layout !== "mma-m16n8k16") throw new Error(`cuda: ${label}: unexpected packed layout ${p.layout}`);
    return { ...uploadQuantMatrix(dev, alloc, p, scratch, label), pairs };
  };
  try {
    const embed = await fused([EMBED], half, "embed");
    const layers: CudaLayer[] = [];
    for (let i = 0; i < spec.numLayers; i++) {
      const n = layerNames(i);
      layers.push({
        inputNorm: await fused([n.inputNorm], f32, `L${i}.inputNorm`),
        qkv: await linear([n.q, n.k, n.v], `L${i}.qkv`),
        qkvBias: await opt(spec.attentionBias, [n.qBias, n.kBias, n.vBias], `L${i}.qkvBias`),
        qNorm: await opt(spec.qkNorm, [n.qNorm], `L${i}.qNorm`),
        kNorm: await opt(spec.qkNorm, [n.kNorm], `L${i}.kNorm`),
        o: await linear([n.o], `L${i}.o`),
        oBias: await opt(spec.outputBias, [n.oBias], `L${i}.oBias`),
        postNorm: await fused([n.postNorm], f32, `L${i}.postNorm`),
        gateUp: await linear([n.gate, n.up], `L${i}.gateUp`, true),
        gateUpBias: await gateUpBias([n.gateBias, n.upBias], `L${i}.gateUpBias`),
        down: await linear([n.down], `L${i}.down`),
        downBias: await opt(spec.mlpBias, [n.downBias], `L${i}.downBias`),
      });
    }
    const finalNorm = await fused([FINAL_NORM], f32, "finalNorm");
    const lmHead = spec.tieEmbeddings ? embed : await fused([LM_HEAD], half, "lmHead");
    await dev.sync();
    return {
      embed,
      layers,
      finalNorm,
      lmHead,
      bytes: owned.reduce((a, b) => a + b.bytes, 0),
      [Symbol.dispose]() {
        for (const b of owned) b[Symbol.dispose]();
      },
    };
  } catch (e) {
    for (const b of owned) b[Symbol.dispose]();
    throw e;
  }
}

// Packs a checkpoint straight from its TensorSource into device memory: matrices in the weight dtype (bf16/f16;
// f32 checkpoints are converted), norms and biases in f32 (rounded through the weight dtype, as the reference
// backend does), q/k/v and gate/up fused row-wise.
import type { ModelSpec, ProgressFn, TensorSource } from "../../core/types.ts";
import { fromF32, roundTo } from "../../model/dtype.ts";
import { EMBED, expectedTensors, FINAL_NORM, layerNames, LM_HEAD } from "../../model/weights.ts";
import type { CudaDevice, DeviceBuffer } from "./device.ts";
import type { DevPtr } from "./ffi.ts";
import type { Half } from "./ops.ts";
import type { Kernels } from "./kernels.ts";
import type { SyntheticFill } from "../../model/synthetic.ts";
import { tensorStream } from "../../model/synthetic.ts";

export interface CudaLayer {
  /** [h] f32 */ readonly inputNorm: DevPtr;
  /** [(nh+2nkv)*d, h] act: q rows, then k, then v */ readonly qkv: DevPtr;
  /** [(nh+2nkv)*d] f32 or 0n */ readonly qkvBias: DevPtr;
  /** [d] f32 or 0n (Qwen3) */ readonly qNorm: DevPtr;
  /** [d] f32 or 0n (Qwen3) */ readonly kNorm: DevPtr;
  /** [h, nh*d] act */ readonly o: DevPtr;
  /** [h] f32 or 0n */ readonly oBias: DevPtr;
  /** [h] f32 */ readonly postNorm: DevPtr;
  /** [2f, h] act: gate rows, then up */ readonly gateUp: DevPtr;
  /** [2f] f32 or 0n */ readonly gateUpBias: DevPtr;
  /** [h, f] act */ readonly down: DevPtr;
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
): Promise<CudaWeights> {
  // Synthetic models (src/model/synthetic.ts) are generated on the GPU: no host-side random numbers for 16 GB.
  const synth = (src as { synthetic?: SyntheticFill }).synthetic;
  const fill = synth && kernels ? synth : null;
  const expected = expectedTensors(spec);
  const shapes = new Map(expected.map((e) => [e.name, e.shape]));
  for (const e of expected) src.info(e.name);
  const total = expected.reduce((a, e) => a + src.info(e.name).byteLength, 0);
  const owned: DeviceBuffer[] = [];
  let done = 0;
  const tick = (name: string) => {
    done += src.info(name).byteLength;
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
  try {
    const embed = await fused([EMBED], half, "embed");
    const layers: CudaLayer[] = [];
    for (let i = 0; i < spec.numLayers; i++) {
      const n = layerNames(i);
      layers.push({
        inputNorm: await fused([n.inputNorm], f32, `L${i}.inputNorm`),
        qkv: await fused([n.q, n.k, n.v], half, `L${i}.qkv`),
        qkvBias: await opt(spec.attentionBias, [n.qBias, n.kBias, n.vBias], `L${i}.qkvBias`),
        qNorm: await opt(spec.qkNorm, [n.qNorm], `L${i}.qNorm`),
        kNorm: await opt(spec.qkNorm, [n.kNorm], `L${i}.kNorm`),
        o: await fused([n.o], half, `L${i}.o`),
        oBias: await opt(spec.outputBias, [n.oBias], `L${i}.oBias`),
        postNorm: await fused([n.postNorm], f32, `L${i}.postNorm`),
        gateUp: await fused([n.gate, n.up], half, `L${i}.gateUp`),
        gateUpBias: await opt(spec.mlpBias, [n.gateBias, n.upBias], `L${i}.gateUpBias`),
        down: await fused([n.down], half, `L${i}.down`),
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

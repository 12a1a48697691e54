// A synthetic bf16 checkpoint of any Llama shape, served as a TensorSource without files: every matrix tiles one
// random bf16 pattern (small values, so activations stay finite), norms are near 1. For timing only.
import type { ModelSpec, SafetensorsDType, TensorInfo, TensorSource } from "../src/core/types.ts";
import { expectedTensors } from "../src/model/weights.ts";
import { fromF32 } from "../src/model/dtype.ts";
import { randomArray } from "../src/backends/cuda/testing.ts";

export function llamaSpec(o: {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  maxPositions: number;
}): ModelSpec {
  return {
    architecture: "llama",
    hfArchitecture: "LlamaForCausalLM",
    hiddenSize: o.hidden,
    numLayers: o.layers,
    numHeads: o.heads,
    numKvHeads: o.kvHeads,
    headDim: o.headDim,
    intermediateSize: o.ffn,
    vocabSize: o.vocab,
    maxPositions: o.maxPositions,
    rmsEps: 1e-5,
    rope: {
      type: "default",
      theta: 500000,
      factor: 1,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositions: o.maxPositions,
      betaFast: 32,
      betaSlow: 1,
      attentionFactor: 1,
    },
    tieEmbeddings: false,
    attentionBias: false,
    outputBias: false,
    mlpBias: false,
    qkNorm: false,
    slidingWindow: null,
    bosTokenId: 1,
    eosTokenIds: [2],
    quantization: null,
    checkpointDType: "bf16",
  };
}

export class SyntheticSource implements TensorSource {
  readonly #shapes: Map<string, number[]>;
  readonly #pattern: Uint8Array;

  constructor(spec: ModelSpec, seed = 1) {
    this.#shapes = new Map(expectedTensors(spec).map((e) => [e.name, e.shape]));
    this.#pattern = fromF32(randomArray(1 << 20, seed, 0.02), "BF16");
  }
  names(): string[] {
    return [...this.#shapes.keys()];
  }
  has(name: string): boolean {
    return this.#shapes.has(name);
  }
  info(name: string): TensorInfo {
    const shape = this.#shapes.get(name);
    if (!shape) throw new Error(`no tensor ${name}`);
    const n = shape.reduce((a, b) => a * b, 1);
    return { name, dtype: "BF16" as SafetensorsDType, shape, file: "synthetic", byteLength: 2 * n };
  }
  bytes(name: string): Promise<Uint8Array> {
    const out = new Uint8Array(this.info(name).byteLength);
    for (let o = 0; o < out.length; o += this.#pattern.length) {
      out.set(this.#pattern.subarray(0, Math.min(this.#pattern.length, out.length - o)), o);
    }
    return Promise.resolve(out);
  }
  f32(name: string): Promise<Float32Array> {
    const n = this.info(name).byteLength / 2;
    return Promise.resolve(randomArray(n, n, 0.1).map((v) => 1 + v));
  }
  close(): void {}
}

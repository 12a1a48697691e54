// The quantizer: a float Hugging Face folder → a quantized one. 4-bit is written in AWQ GEMM layout (awq.ts) and
// 8-bit in GPTQ v1 layout (gptq.ts; AWQ GEMM defines no 8-bit), so other AWQ / GPTQ loaders read the result.
// Weights are quantized asymmetrically per group along the input with RTN, optionally after the AWQ scale search.
// fp8 (wDtype "fp8") writes e4m3 weights with block scales in the Hugging Face "fp8" format (quantize_fp8.ts).
// The FFN width is zero-padded up to a multiple of the group size (and 8; fp8: of the block) when needed: zero gate/up
// rows give silu(0) * 0 = 0 and zero down columns add nothing, so the padded model computes the same function.
import type { ModelSpec } from "../core/types.ts";
import { UserError } from "../core/errors.ts";
import { ProgressBar } from "../core/progress.ts";
import { openCheckpoint } from "../model/checkpoint.ts";
import { EMBED, FINAL_NORM, layerNames, LM_HEAD } from "../model/weights.ts";
import { writeSafetensors } from "../model/safetensors.ts";
import { loadReferenceWeights, type ReferenceLayer, type ReferenceWeights } from "../backends/reference/weights.ts";
import { awqTensors } from "./awq.ts";
import { gptqTensors } from "./gptq.ts";
import { quantizeRtn } from "./reference.ts";
import { quantizeGptq } from "./gptq_solve.ts";
import { collectActivations } from "./calib.ts";
import { applyAwqScales, type AwqLayerReport } from "./awq_apply.ts";
import { f16Tensor, type OutTensor } from "./tensors.ts";
import type { QuantBits } from "./types.ts";
import { DEFAULT_FP8_BLOCK, fp8LinearTensors, fp8QuantizationConfig, planFp8 } from "./quantize_fp8.ts";

export interface QuantizeOptions {
  readonly model: string;
  readonly out: string;
  /** int (default): AWQ (4-bit) / GPTQ (8-bit) integers per group; fp8: e4m3 with one scale per block */
  readonly wDtype?: "int" | "fp8";
  /** int only: 4 or 8 (default 4) */
  readonly bits?: QuantBits;
  /** int only: input channels per group (default 128) */
  readonly groupSize?: number;
  /** fp8 only: weight_block_size [rows, input channels] (default 128 x 128) */
  readonly block?: readonly [number, number];
  /** default rtn; fp8 takes rtn only */
  readonly method?: "rtn" | "awq" | "gptq";
  /** calibration token ids (required for awq and gptq) */
  readonly calibIds?: readonly number[];
  readonly quiet?: boolean;
}

export interface QuantizeReport {
  readonly format: "awq" | "gptq" | "fp8";
  readonly intermediateSize: number;
  readonly paddedIntermediateSize: number;
  readonly linears: number;
  readonly bytes: number;
  readonly awq: AwqLayerReport[] | null;
}

const COPY_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
  "added_tokens.json",
  "chat_template.jinja",
  "chat_template.json",
  "generation_config.json",
];

function lcm(a: number, b: number): number {
  const gcd = (x: number, y: number): number => (y === 0 ? x : gcd(y, x % y));
  return a / gcd(a, b) * b;
}

/** Checks the shapes fit the format; returns the padded FFN width. */
function plan(spec: ModelSpec, bits: QuantBits, G: number): number {
  const pack = bits === 4 ? 8 : 4;
  const { hiddenSize: h, numHeads: nh, numKvHeads: nkv, headDim: d } = spec;
  if (!Number.isInteger(G) || G <= 0 || G % pack !== 0) {
    throw new UserError(`--group-size must be a positive multiple of ${pack}, got ${G}`);
  }
  for (const [what, k] of [["hidden_size", h], ["num_attention_heads * head_dim", nh * d]] as const) {
    if (k % G !== 0) throw new UserError(`--group-size ${G} does not divide ${what} = ${k}; pick a divisor`);
  }
  for (const [what, n] of [["num_key_value_heads * head_dim", nkv * d], ["hidden_size", h]] as const) {
    if (n % pack !== 0) throw new UserError(`${what} = ${n} is not a multiple of ${pack}, as the format needs`);
  }
  return Math.ceil(spec.intermediateSize / lcm(G, pack)) * lcm(G, pack);
}

/** Zero-pads the FFN of a layer from f to fp: gate/up rows, their biases, down columns. */
function padLayer(L: ReferenceLayer, h: number, f: number, fp: number): ReferenceLayer {
  if (fp === f) return L;
  const rows = (w: Float32Array) => {
    const o = new Float32Array(fp * h);
    o.set(w);
    return o;
  };
  const down = new Float32Array(h * fp);
  for (let r = 0; r < h; r++) down.set(L.down.subarray(r * f, (r + 1) * f), r * fp);
  const vec = (b: Float32Array | null) => (b ? padVec(b, fp) : null);
  return { ...L, gate: rows(L.gate), up: rows(L.up), down, gateBias: vec(L.gateBias), upBias: vec(L.upBias) };
}

/** [T, f] rows → [T, fp] with zero columns appended. */
function padColumns(x: Float32Array, T: number, f: number, fp: number): Float32Array {
  if (fp === f) return x;
  const o = new Float32Array(T * fp);
  for (let t = 0; t < T; t++) o.set(x.subarray(t * f, (t + 1) * f), t * fp);
  return o;
}

function padVec(b: Float32Array, n: number): Float32Array {
  const o = new Float32Array(n);
  o.set(b);
  return o;
}

/** The options with their defaults filled in, checked for the weight type. */
function resolve(o: QuantizeOptions) {
  const fp8 = o.wDtype === "fp8", method = o.method ?? "rtn";
  if (o.wDtype !== undefined && o.wDtype !== "int" && !fp8) {
    throw new UserError(`--w-dtype must be int or fp8, got ${o.wDtype}`);
  }
  if (fp8) {
    if (method !== "rtn") throw new UserError(`--method ${method} quantizes integer weights; fp8 takes rtn only`);
    if (o.bits !== undefined || o.groupSize !== undefined) {
      throw new UserError("--w-bits / --group-size apply to integer weights; fp8 is e4m3 with --block scales");
    }
  } else if (o.block !== undefined) throw new UserError("--block applies to --w-dtype fp8 (integers use --group-size)");
  return { fp8, method, bits: o.bits ?? 4, groupSize: o.groupSize ?? 128, block: o.block ?? DEFAULT_FP8_BLOCK };
}

export async function quantizeModel(opts: QuantizeOptions): Promise<QuantizeReport> {
  const o = { ...opts, ...resolve(opts) };
  const ckpt = await openCheckpoint(o.model);
  const spec0 = ckpt.spec;
  let w: ReferenceWeights, fp: number;
  try {
    if (spec0.quantization) throw new UserError(`${o.model} is already quantized (${spec0.quantization.method})`);
    if (o.method !== "rtn" && (!o.calibIds || o.calibIds.length < 2)) {
      throw new UserError(`--method ${o.method} needs calibration data (--calib FILE)`);
    }
    fp = o.fp8 ? planFp8(spec0, o.block) : plan(spec0, o.bits, o.groupSize);
    w = await loadReferenceWeights(spec0, ckpt.weights, "f32");
  } finally {
    ckpt.weights.close();
  }
  const { hiddenSize: h, intermediateSize: f } = spec0;
  let awq: AwqLayerReport[] | null = null;
  const acts = o.method === "rtn" ? null : collectActivations(spec0, w, o.calibIds!);
  if (o.method === "awq") awq = applyAwqScales(spec0, w, acts!.layers, o.bits, o.groupSize, acts!.tokens);
  const layers = w.layers.map((L) => padLayer(L, h, f, fp));
  const spec: ModelSpec = { ...spec0, intermediateSize: fp };
  const format = o.fp8 ? "fp8" : o.bits === 4 ? "awq" : "gptq";
  const tensors: OutTensor[] = [f16Tensor(EMBED, [spec.vocabSize, h], w.embed)];
  const to = o.fp8 ? `fp8 e4m3 block ${o.block.join("x")}` : `int${o.bits} g${o.groupSize}`;
  const bar = new ProgressBar(`quantizing ${o.model} to ${to}`, 7 * spec.numLayers, "items", o.quiet);
  let done = 0;
  const { numHeads: nh, numKvHeads: nkv, headDim: d } = spec;
  for (let i = 0; i < spec.numLayers; i++) {
    const L = layers[i]!, n = layerNames(i);
    tensors.push(f16Tensor(n.inputNorm, [h], L.inputNorm), f16Tensor(n.postNorm, [h], L.postNorm));
    const lin: [string, Float32Array, number, number][] = [
      [n.q, L.q, nh * d, h],
      [n.k, L.k, nkv * d, h],
      [n.v, L.v, nkv * d, h],
      [n.o, L.o, h, nh * d],
      [n.gate, L.gate, fp, h],
      [n.up, L.up, fp, h],
      [n.down, L.down, h, fp],
    ];
    const A = acts?.layers[i];
    // GPTQ's calibration inputs per linear: [T, K] (the FFN input zero-padded to fp like the weights).
    const inputs = A && o.method === "gptq"
      ? [
        A.attnIn,
        A.attnIn,
        A.attnIn,
        A.oIn,
        A.mlpIn,
        A.mlpIn,
        padColumns(A.downIn, acts!.tokens, spec0.intermediateSize, fp),
      ]
      : null;
    for (const [idx, [name, data, N, K]] of lin.entries()) {
      const base = name.slice(0, -".weight".length);
      if (format === "fp8") tensors.push(...fp8LinearTensors(name, data, N, K, o.block));
      else {
        const minZero = format === "gptq" ? 1 : 0;
        const ql = inputs
          ? quantizeGptq(data, N, K, o.bits, o.groupSize, inputs[idx]!, acts!.tokens, { minZero })
          : quantizeRtn(data, N, K, o.bits, o.groupSize, { minZero });
        tensors.push(...(format === "awq" ? awqTensors(base, ql) : gptqTensors(base, ql, 1)));
      }
      bar.update(++done, base);
    }
    const biases: [string, Float32Array | null, number][] = [
      [n.qBias, L.qBias, nh * d],
      [n.kBias, L.kBias, nkv * d],
      [n.vBias, L.vBias, nkv * d],
      [n.oBias, L.oBias, h],
      [n.gateBias, L.gateBias, fp],
      [n.upBias, L.upBias, fp],
      [n.downBias, L.downBias, h],
      [n.qNorm, L.qNorm, d],
      [n.kNorm, L.kNorm, d],
    ];
    for (const [name, b, len] of biases) if (b) tensors.push(f16Tensor(name, [len], b));
  }
  tensors.push(f16Tensor(FINAL_NORM, [h], w.finalNorm));
  if (!spec.tieEmbeddings) tensors.push(f16Tensor(LM_HEAD, [spec.vocabSize, h], w.lmHead));
  bar.done();
  await Deno.mkdir(o.out, { recursive: true });
  await writeSafetensors(`${o.out}/model.safetensors`, tensors);
  await writeConfig(o.model, o.out, fp, quantizationConfig(o, format));
  for (const name of COPY_FILES) {
    try {
      await Deno.writeFile(`${o.out}/${name}`, await Deno.readFile(`${o.model}/${name}`));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  const bytes = tensors.reduce((a, t) => a + t.data.byteLength, 0);
  return { format, intermediateSize: f, paddedIntermediateSize: fp, linears: done, bytes, awq };
}

function quantizationConfig(
  o: { bits: QuantBits; groupSize: number; block: readonly [number, number] },
  format: QuantizeReport["format"],
): Record<string, unknown> {
  if (format === "fp8") return fp8QuantizationConfig(o.block);
  return format === "awq"
    ? { quant_method: "awq", bits: o.bits, group_size: o.groupSize, zero_point: true, version: "gemm" }
    : {
      quant_method: "gptq",
      bits: o.bits,
      group_size: o.groupSize,
      sym: false,
      desc_act: false,
      checkpoint_format: "gptq",
    };
}

async function writeConfig(model: string, out: string, fp: number, quant: Record<string, unknown>): Promise<void> {
  const cfg = JSON.parse(await Deno.readTextFile(`${model}/config.json`)) as Record<string, unknown>;
  cfg.intermediate_size = fp;
  if ("torch_dtype" in cfg || !("dtype" in cfg)) cfg.torch_dtype = "float16";
  if ("dtype" in cfg) cfg.dtype = "float16";
  cfg.quantization_config = quant;
  await Deno.writeTextFile(`${out}/config.json`, JSON.stringify(cfg, null, 2) + "\n");
}

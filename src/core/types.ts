// Core data shared by every layer: model description, precision, step inputs and results, the Backend seam.
// Nothing here imports FFI or WebGPU types.

export type WeightDType = "f32" | "f16" | "bf16" | "int8" | "int4" | "fp8";
export type KvDType = "f32" | "f16" | "bf16" | "int8" | "int4";

export interface Precision {
  readonly weight: WeightDType;
  /** Quantization group size along the input dimension, for int8/int4/fp8 weights (default DEFAULT_QUANT_GROUP). */
  readonly group?: number;
  readonly kv: KvDType;
  readonly compute: "f32" | "f16";
}

/** Group size of the weights a backend quantizes at load (RTN) when the precision names none. */
export const DEFAULT_QUANT_GROUP = 128;
/** The group size load-time quantization uses for `p`. */
export const quantGroup = (p?: Pick<Precision, "group">): number => p?.group ?? DEFAULT_QUANT_GROUP;

export type RopeType = "default" | "linear" | "llama3" | "yarn";

export interface RopeSpec {
  readonly type: RopeType;
  readonly theta: number;
  /** Scaling factor for linear / llama3 / yarn (1 for default). */
  readonly factor: number;
  /** llama3 */
  readonly lowFreqFactor: number;
  readonly highFreqFactor: number;
  /** llama3 and yarn: the context the model was trained with before scaling. */
  readonly originalMaxPositions: number;
  /** yarn */
  readonly betaFast: number;
  readonly betaSlow: number;
  /** yarn: multiplier applied to cos/sin (mscale). */
  readonly attentionFactor: number;
}

export type Architecture = "llama" | "mistral" | "qwen2" | "qwen3";

export interface QuantSpec {
  /**
   * fp8: FP8 E4M3 weights with float scales (Hugging Face / vLLM "fp8", or compressed-tensors float-quantized; bits 8,
   * sym, groupSize the block's K or 0). compressed-tensors: its pack-quantized integer weights (4 or 8 bits).
   */
  readonly method: "awq" | "gptq" | "fp8" | "compressed-tensors";
  readonly bits: 4 | 8;
  /** 0: one group per row (fp8 per-tensor or per-channel scales) */
  readonly groupSize: number;
  readonly sym: boolean;
  readonly descAct: boolean;
  /** fp8 only: scale blocks [rows, cols] (weight_block_size), or null for scales per tensor / output channel */
  readonly block?: readonly [number, number] | null;
  /** fp8 only: the scale tensor's suffix (default: weight_scale_inv with a block, else weight_scale) */
  readonly scaleName?: "weight_scale" | "weight_scale_inv";
  /** compressed-tensors integers: packed into I32 words (pack-quantized) or one signed value per I8 (int-quantized) */
  readonly ctFormat?: "pack-quantized" | "int-quantized";
  /** GPTQ only: 1 stores zero - 1 (checkpoint_format "gptq", the default), 2 the zero itself ("gptq_v2") */
  readonly gptqVersion?: 1 | 2;
}

/** The weight precision a quantized checkpoint holds. */
export function quantWeight(q: QuantSpec): WeightDType {
  return q.method === "fp8" ? "fp8" : q.bits === 4 ? "int4" : "int8";
}

/** Weights a backend quantizes or reads as packed integers / fp8 codes. */
export function isQuantizedWeight(w: WeightDType): w is "int8" | "int4" | "fp8" {
  return w === "int8" || w === "int4" || w === "fp8";
}

/** Parsed once from config.json (see src/model/config.ts). */
export interface ModelSpec {
  readonly architecture: Architecture;
  readonly hfArchitecture: string;
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly intermediateSize: number;
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly rmsEps: number;
  readonly rope: RopeSpec;
  readonly tieEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2). */
  readonly attentionBias: boolean;
  /** o_proj carries a bias. */
  readonly outputBias: boolean;
  /** gate/up/down projections carry a bias. */
  readonly mlpBias: boolean;
  /** per-head RMSNorm on q and k before RoPE (Qwen3). */
  readonly qkNorm: boolean;
  readonly slidingWindow: number | null;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
  readonly quantization: QuantSpec | null;
  /** dtype the checkpoint declares (torch_dtype / dtype). */
  readonly checkpointDType: "f32" | "f16" | "bf16";
}

export type SafetensorsDType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "F8_E4M3"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U8"
  | "BOOL";

export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** File the tensor lives in (for error messages). */
  readonly file: string;
  readonly byteLength: number;
}

/** Reads named tensors lazily, so a backend packs each weight into its own layout without holding the checkpoint twice. */
export interface TensorSource {
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** Raw little-endian bytes of one tensor. */
  bytes(name: string): Promise<Uint8Array>;
  /** The tensor converted to f32, shape-checked when `shape` is given. */
  f32(name: string, shape?: readonly number[]): Promise<Float32Array>;
  close(): void;
}

export interface SamplingParams {
  /** 0 means greedy. */
  readonly temperature: number;
  /** 0 (or <0) disables top-k. */
  readonly topK: number;
  readonly topP: number;
  readonly minP: number;
  /** 1 disables. Applied to prompt and output tokens (as in vLLM / HF). */
  readonly repetitionPenalty: number;
  /** Applied to output tokens only (OpenAI semantics). */
  readonly presencePenalty: number;
  readonly frequencyPenalty: number;
  /** Makes sampling reproducible: the draw for output token i depends only on (seed, i). */
  readonly seed: number | null;
  /** Number of top logprobs to return (0: only the sampled token's logprob when `logprobs` is set). */
  readonly topLogprobs: number;
  readonly logprobs: boolean;
}

/** What the sampler needs to know about one sequence besides its logits row. */
export interface SequenceSamplingState {
  readonly params: SamplingParams;
  readonly promptIds: ArrayLike<number>;
  readonly outputIds: ArrayLike<number>;
  /** Random seed used when params.seed is null (fixed per request so preemption replays the same draws). */
  readonly fallbackSeed: number;
}

export interface TokenLogprob {
  readonly id: number;
  readonly logprob: number;
}

export interface SampledLogprobs {
  /** Logprob of the chosen token under the unmodified (temperature 1, unpenalised) distribution. */
  readonly chosen: TokenLogprob;
  readonly top: readonly TokenLogprob[];
}

/**
 * Flat inputs of one engine step. T = number of new tokens in the step, B = number of sequences.
 * Tokens of sequence b are tokens[queryStarts[b] .. queryStarts[b+1]).
 */
export interface StepInputs {
  /** [T] i32 token ids */
  readonly tokens: Int32Array;
  /** [T] i32 absolute position of each token */
  readonly positions: Int32Array;
  /** [B+1] i32 cumulative new-token counts */
  readonly queryStarts: Int32Array;
  /** [B] i32 context length of each sequence after this step (cached + new tokens) */
  readonly contextLens: Int32Array;
  /** [B, maxBlocksPerSeq] i32 physical block ids, row-major, -1 padded */
  readonly blockTables: Int32Array;
  readonly maxBlocksPerSeq: number;
  readonly blockSize: number;
  /** [T] i32 KV slot of each new token: block * blockSize + offset */
  readonly slots: Int32Array;
  /** [B] per sequence: sample a token after this step (false for a prefill chunk that is not the prompt's last). */
  readonly sample: readonly boolean[];
  /** [B] sampling state of each sequence (read only where sample[b]). */
  readonly sampling: readonly SequenceSamplingState[];
  /** Return logits of every new token (the `logits` command and tests). */
  readonly allLogits?: boolean;
}

export interface StepResult {
  /** [B] sampled id per sequence, -1 where sample[b] was false */
  readonly tokens: Int32Array;
  /** [B] logprobs where requested */
  readonly logprobs: (SampledLogprobs | null)[];
  /** [T, vocab] f32 when allLogits was set */
  readonly logits?: Float32Array;
}

export interface BackendSupport {
  readonly weight: readonly WeightDType[];
  readonly kv: readonly KvDType[];
}

export interface MemoryInfo {
  readonly freeBytes: number;
  readonly totalBytes: number;
}

export type BackendName = "reference" | "webgpu" | "cuda";

export type ProgressFn = (done: number, total: number, label?: string) => void;

export interface Backend extends AsyncDisposable {
  readonly name: BackendName;
  readonly supports: BackendSupport;
  /** Human-readable device description for `info` and logs. */
  readonly device: string;
  memory(): MemoryInfo;
  load(spec: ModelSpec, weights: TensorSource, precision: Precision, onProgress?: ProgressFn): Promise<void>;
  /** Bytes one KV block takes over all layers, K and V, at the given precision (scales included). */
  kvBytesPerBlock(blockSize: number, kv: KvDType): number;
  allocateKv(numBlocks: number, blockSize: number): void;
  forward(step: StepInputs): Promise<StepResult>;
  /** Copy-on-write: copy the KV of block src[i] into block dst[i], every layer. */
  copyBlocks(src: Int32Array, dst: Int32Array): void;
  /** Multi-step decode (vLLM-style), where the backend offers it: see MultiStepDecode and decodeSteps(). */
  readonly multiStep?: MultiStepDecode;
  /**
   * Runs k decode steps of the same sequences in one call, the id sampled at step j fed back on the device as step
   * j + 1's input token. `step` is step 0: one token per sequence (T = B), every sequence sampled, no allLogits, its
   * blockTables covering contextLens[b] + k - 1 tokens (the KV of all k steps is reserved). Step j uses positions
   * positions[b] + j, the slots those positions map to through the block tables, and sampling draw index
   * outputIds.length + j. Returns [k, B] i32 ids, step-major; ids after a stop are computed anyway (the caller
   * discards them).
   */
  decodeSteps?(step: StepInputs, k: number): Promise<Int32Array>;
}

/** What a backend's decodeSteps() supports. */
export interface MultiStepDecode {
  /** Most steps one decodeSteps() call takes. */
  readonly maxSteps: number;
  /** Whether a sequence with these settings is sampled on the device (no host-only feature such as logprobs). */
  canSampleOnDevice(params: SamplingParams): boolean;
}

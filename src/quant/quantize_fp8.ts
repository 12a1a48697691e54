// The quantizer's fp8 output (`quantize --w-dtype fp8`): each linear as an F8_E4M3 `.weight` and an F32
// `.weight_scale_inv` with one scale per block of [bn, bk] (weight_block_size), the Hugging Face "fp8" block format
// that transformers' FineGrainedFP8, vLLM and DeepSeek-V3 read (fp8_checkpoint.ts). Round to nearest (quantizeFp8):
// s = fp8Scale(max |x| / 448) per block, q = e4m3(x / s); |x - e4m3(q) s| <= max(|x| / 16, s / 1024).
//
// The format allows partial blocks (scale shape [ceil(N / bn), ceil(K / bk)]) and this project reads them, but vLLM
// refuses a merged gate_up whose gate rows are not a multiple of bn; so, as other fp8 exporters do, the FFN width is
// zero-padded to a multiple of lcm(bn, bk) (quantize.ts pads; zero rows and columns change nothing). Other widths are
// kept as they are (a q / k width that is not a multiple of bn loads here and in transformers, not in vLLM).
import type { ModelSpec } from "../core/types.ts";
import { UserError } from "../core/errors.ts";
import { quantizeFp8 } from "./fp8.ts";
import { fp8Tensors } from "./fp8_checkpoint.ts";
import type { OutTensor } from "./tensors.ts";

/** weight_block_size [rows (N), input channels (K)] when none is given: DeepSeek-V3's and Qwen3-FP8's. */
export const DEFAULT_FP8_BLOCK: readonly [number, number] = [128, 128];

/** The input-channel step of the kernels' weight layouts (pack.ts: mma k-tiles of 16): bk must be a multiple. */
const BK_STEP = 16;

/** "BNxBK" (e.g. "128x128") → [bn, bk]; UserError naming the flag otherwise. */
export function parseFp8Block(text: string): [number, number] {
  const m = /^\s*(\d+)\s*[xX,]\s*(\d+)\s*$/.exec(text);
  if (!m) throw new UserError(`--block must be BNxBK (rows x input channels, e.g. 128x128), got "${text}"`);
  return [Number(m[1]), Number(m[2])];
}

/** Checks a block [bn, bk] for the model; returns the padded FFN width (a multiple of lcm(bn, bk)). */
export function planFp8(spec: ModelSpec, block: readonly [number, number]): number {
  const [bn, bk] = block;
  if (!Number.isInteger(bn) || bn <= 0) throw new UserError(`--block rows must be a positive integer, got ${bn}`);
  if (!Number.isInteger(bk) || bk <= 0 || bk % BK_STEP !== 0) {
    throw new UserError(
      `--block input channels must be a positive multiple of ${BK_STEP} (the kernels' k step), got ${bk}`,
    );
  }
  const gcd = (x: number, y: number): number => (y === 0 ? x : gcd(y, x % y));
  const step = bn / gcd(bn, bk) * bk;
  return Math.ceil(spec.intermediateSize / step) * step;
}

/** The tensors of one linear w [N, K] f32, quantized to e4m3 with one scale per [bn, bk] block. */
export function fp8LinearTensors(
  weightName: string,
  w: Float32Array,
  N: number,
  K: number,
  block: readonly [number, number],
): OutTensor[] {
  const [bn, bk] = block;
  return fp8Tensors(weightName, quantizeFp8(w, N, K, bk, bn), bn);
}

/** config.json quantization_config of the output (weights-only fp8: activations stay 16-bit here). */
export function fp8QuantizationConfig(block: readonly [number, number]): Record<string, unknown> {
  return { quant_method: "fp8", fmt: "e4m3", activation_scheme: "dynamic", weight_block_size: [...block] };
}

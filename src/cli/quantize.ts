// `quantize`: a float Hugging Face folder → an AWQ (4-bit), GPTQ (8-bit) or fp8 e4m3 folder (src/quant/quantize.ts).
import { parseArgs } from "node:util";
import { UserError } from "../core/errors.ts";
import { readModelConfig } from "../model/config.ts";
import { loadTokenizer } from "../tokenizer/mod.ts";
import { readTokenFile } from "../quant/calib.ts";
import { quantizeModel } from "../quant/quantize.ts";
import { DEFAULT_FP8_BLOCK, parseFp8Block } from "../quant/quantize_fp8.ts";

export const QUANTIZE_HELP = `Usage: main.ts quantize --model DIR --out DIR [--w-bits 4|8] [--group-size G] [options]
       main.ts quantize --model DIR --out DIR --w-dtype fp8 [--block BNxBK]

Integer weights (--w-dtype int, the default) are quantized asymmetrically per group of G input channels: round to
nearest, after an AWQ scale search, or with GPTQ's error compensation (O(K^3 + N K^2) per linear on the CPU: minutes
for 7B-class layers). 4-bit output uses the AWQ GEMM layout, 8-bit the GPTQ (v1) layout.
fp8 weights (--w-dtype fp8) are FP8 E4M3 with one F32 scale per block of BN rows x BK input channels, round to
nearest, in the Hugging Face "fp8" layout (weight_scale_inv, weight_block_size; as transformers and vLLM read it); the
FFN width is zero-padded to a multiple of the block. Embeddings, norms and lm_head are kept in f16.
  --model DIR            float model folder (config.json + safetensors)
  --out DIR              output folder (created)
  --w-dtype T            int (default) or fp8 (e4m3)
  --w-bits N             int: 4 (default) or 8
  --group-size G         int: input channels per group (default 128; must divide the hidden size)
  --block BNxBK          fp8: weight_block_size, rows x input channels (default ${DEFAULT_FP8_BLOCK.join("x")};
                         BK a multiple of 16)
  --method M             rtn (default), awq (activation-aware scale search) or gptq (Hessian-weighted error
                         compensation); awq and gptq need --calib and quantize integer weights only
  --calib FILE           calibration data: token ids (one per line or comma-separated), or text with a tokenizer
  --calib-tokens N       use at most N calibration tokens (default 512)
  --quiet                no progress bar`;

export async function quantizeCommand(args: string[]): Promise<void> {
  const { values: f } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      out: { type: "string" },
      "w-dtype": { type: "string", default: "int" },
      "w-bits": { type: "string" },
      "group-size": { type: "string" },
      block: { type: "string" },
      method: { type: "string", default: "rtn" },
      calib: { type: "string" },
      "calib-tokens": { type: "string", default: "512" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (f.help) return console.log(QUANTIZE_HELP);
  if (!f.model || !f.out) throw new UserError("--model and --out are required");
  const method = f.method;
  if (method !== "rtn" && method !== "awq" && method !== "gptq") {
    throw new UserError(`--method must be rtn, awq or gptq, got ${method}`);
  }
  const wDtype = f["w-dtype"];
  if (wDtype === "fp8") {
    if (f["w-bits"] !== undefined) throw new UserError("--w-bits is for --w-dtype int; fp8 weights are 8-bit e4m3");
    if (f["group-size"] !== undefined) {
      throw new UserError("--group-size is for --w-dtype int; fp8 scales are per --block BNxBK");
    }
    if (method !== "rtn") {
      throw new UserError(`--method ${method} quantizes integer weights; --w-dtype fp8 takes --method rtn only`);
    }
    if (f.calib !== undefined) throw new UserError("--calib is for --method awq / gptq; --w-dtype fp8 uses none");
    const block = f.block === undefined ? DEFAULT_FP8_BLOCK : parseFp8Block(f.block);
    const report = await quantizeModel({ model: f.model, out: f.out, wDtype, block, quiet: f.quiet });
    return console.log(JSON.stringify({ out: f.out, w_dtype: wDtype, block, method, ...report }));
  }
  if (wDtype !== "int") throw new UserError(`--w-dtype must be int or fp8, got ${wDtype}`);
  if (f.block !== undefined) throw new UserError("--block is for --w-dtype fp8; integer weights use --group-size");
  const bits = Number(f["w-bits"] ?? "4");
  if (bits !== 4 && bits !== 8) throw new UserError(`--w-bits must be 4 or 8, got ${f["w-bits"]}`);
  const groupSize = Number(f["group-size"] ?? "128");
  const maxCalib = Number(f["calib-tokens"]);
  if (!Number.isInteger(maxCalib) || maxCalib < 2) throw new UserError("--calib-tokens must be an integer >= 2");
  let calibIds: number[] | undefined;
  if (f.calib) {
    const spec = await readModelConfig(f.model);
    calibIds = (await readTokenFile(f.calib, await loadTokenizer(f.model), spec.vocabSize)).slice(0, maxCalib);
  } else if (method !== "rtn") throw new UserError(`--method ${method} needs --calib FILE`);
  const report = await quantizeModel({ model: f.model, out: f.out, bits, groupSize, method, calibIds, quiet: f.quiet });
  console.log(JSON.stringify({ out: f.out, bits, group_size: groupSize, method, ...report }));
}

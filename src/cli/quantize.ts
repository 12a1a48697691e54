// `quantize`: a float Hugging Face folder → an AWQ (4-bit) or GPTQ (8-bit) folder (src/quant/quantize.ts).
import { parseArgs } from "node:util";
import { UserError } from "../core/errors.ts";
import { readModelConfig } from "../model/config.ts";
import { loadTokenizer } from "../tokenizer/mod.ts";
import { readTokenFile } from "../quant/calib.ts";
import { quantizeModel } from "../quant/quantize.ts";

export const QUANTIZE_HELP = `Usage: main.ts quantize --model DIR --out DIR [--w-bits 4|8] [--group-size G] [options]

Quantizes the linear weights asymmetrically per group of G input channels: round to nearest, after an AWQ scale
search, or with GPTQ's error compensation (O(K^3 + N K^2) per linear on the CPU: minutes for 7B-class layers).
4-bit output uses the AWQ GEMM layout, 8-bit the GPTQ (v1) layout; embeddings, norms and lm_head are kept in f16.
  --model DIR            float model folder (config.json + safetensors)
  --out DIR              output folder (created)
  --w-bits N             4 (default) or 8
  --group-size G         input channels per group (default 128; must divide the hidden size)
  --method M             rtn (default), awq (activation-aware scale search) or gptq (Hessian-weighted error
                         compensation); awq and gptq need --calib
  --calib FILE           calibration data: token ids (one per line or comma-separated), or text with a tokenizer
  --calib-tokens N       use at most N calibration tokens (default 512)
  --quiet                no progress bar`;

export async function quantizeCommand(args: string[]): Promise<void> {
  const { values: f } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      out: { type: "string" },
      "w-bits": { type: "string", default: "4" },
      "group-size": { type: "string", default: "128" },
      method: { type: "string", default: "rtn" },
      calib: { type: "string" },
      "calib-tokens": { type: "string", default: "512" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (f.help) return console.log(QUANTIZE_HELP);
  if (!f.model || !f.out) throw new UserError("--model and --out are required");
  const bits = Number(f["w-bits"]);
  if (bits !== 4 && bits !== 8) throw new UserError(`--w-bits must be 4 or 8, got ${f["w-bits"]}`);
  const groupSize = Number(f["group-size"]);
  const method = f.method;
  if (method !== "rtn" && method !== "awq" && method !== "gptq") {
    throw new UserError(`--method must be rtn, awq or gptq, got ${method}`);
  }
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

// compressed-tensors "pack-quantized" fixtures, packed here independently of src/quant/compressed_tensors.ts: values
// along K, the signed value + 2^(bits-1) in bits bits*i of each int32; zero points packed along N; I64 weight_shape.
import { openCheckpoint } from "../../src/model/checkpoint.ts";
import { writeSafetensors } from "../../src/model/safetensors.ts";
import { linearBase, linearWeightNames } from "../../src/model/weights.ts";
import { quantizeRtn } from "../../src/quant/reference.ts";
import { fromF32 } from "../../src/model/dtype.ts";
import type { OutTensor } from "../../src/quant/tensors.ts";
import type { QuantBits, QuantizedLinear } from "../../src/quant/types.ts";
import { STORIES_DIR } from "./models.ts";

/** A small Llama config.json (no weights) for tests of quantization_config parsing. */
export const TINY_LLAMA = {
  architectures: ["LlamaForCausalLM"],
  hidden_size: 64,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 96,
  num_hidden_layers: 1,
  vocab_size: 32,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
};

/** The pack-quantized tensors of `ql` (its zeros written only when asymmetric; g_idx when it has one). */
export function ctTensors(base: string, ql: QuantizedLinear, sym: boolean): OutTensor[] {
  const { outDim: N, inDim: K, bits } = ql, pf = 32 / bits, Kw = Math.ceil(K / pf), nG = ql.scales.length / N;
  const packed = new Uint32Array(N * Kw);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) packed[n * Kw + Math.floor(k / pf)]! |= ql.q[n * K + k]! << (bits * (k % pf));
  }
  const shape = new BigInt64Array([BigInt(N), BigInt(K)]);
  const out: OutTensor[] = [
    { name: `${base}.weight_packed`, dtype: "I32", shape: [N, Kw], data: new Uint8Array(packed.buffer) },
    { name: `${base}.weight_shape`, dtype: "I64", shape: [2], data: new Uint8Array(shape.buffer) },
    { name: `${base}.weight_scale`, dtype: "F16", shape: [N, nG], data: fromF32(ql.scales, "F16") },
  ];
  if (!sym) {
    const zp = new Uint32Array(Math.ceil(N / pf) * nG);
    for (let n = 0; n < N; n++) {
      for (let g = 0; g < nG; g++) zp[Math.floor(n / pf) * nG + g]! |= ql.zeros[n * nG + g]! << (bits * (n % pf));
    }
    out.push({
      name: `${base}.weight_zero_point`,
      dtype: "I32",
      shape: [Math.ceil(N / pf), nG],
      data: new Uint8Array(zp.buffer),
    });
  }
  if (ql.gIdx) {
    const g = Int32Array.from(ql.gIdx);
    out.push({ name: `${base}.weight_g_idx`, dtype: "I32", shape: [K], data: new Uint8Array(g.buffer) });
  }
  return out;
}

export function ctConfig(
  bits: number,
  strategy: "group" | "channel",
  groupSize: number,
  sym: boolean,
  actorder = false,
) {
  return {
    quant_method: "compressed-tensors",
    format: "pack-quantized",
    config_groups: {
      group_0: {
        targets: ["Linear"],
        weights: {
          num_bits: bits,
          type: "int",
          symmetric: sym,
          strategy,
          ...(strategy === "group" ? { group_size: groupSize } : {}),
          actorder: actorder ? "group" : null,
          dynamic: false,
        },
      },
    },
    ignore: ["lm_head"],
  };
}

/**
 * stories260K as an asymmetric pack-quantized folder: every linear quantizeRtn(bits, G) (the same weights as
 * `--dtype int<bits> --group-size G` at load), everything else copied as stored. Returns the (temporary) folder.
 */
export async function writeCtStories(bits: QuantBits, G: number): Promise<string> {
  const ck = await openCheckpoint(STORIES_DIR);
  const linears = linearWeightNames(ck.spec);
  const tensors: OutTensor[] = [];
  for (const name of ck.weights.names()) {
    const info = ck.weights.info(name);
    if (!linears.has(name)) {
      tensors.push({ name, dtype: info.dtype, shape: [...info.shape], data: await ck.weights.bytes(name) });
      continue;
    }
    const [N, K] = info.shape as [number, number];
    tensors.push(...ctTensors(linearBase(name), quantizeRtn(await ck.weights.f32(name), N, K, bits, G), false));
  }
  ck.weights.close();
  const dir = await Deno.makeTempDir({ prefix: "stories_ct_" });
  const cfg = JSON.parse(await Deno.readTextFile(`${STORIES_DIR}/config.json`));
  cfg.quantization_config = ctConfig(bits, "group", G, false);
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(cfg));
  await writeSafetensors(`${dir}/model.safetensors`, tensors);
  return dir;
}

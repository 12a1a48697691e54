import assert from "node:assert/strict";
import { parseModelConfig, readModelConfig } from "../src/model/config.ts";
import { ropeFrequencies } from "../src/model/rope.ts";
import { CheckpointError } from "../src/core/errors.ts";
import { STORIES_DIR } from "./helpers/models.ts";

const llama = {
  architectures: ["LlamaForCausalLM"],
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  vocab_size: 128256,
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  rope_scaling: {
    rope_type: "llama3",
    factor: 8,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 8192,
  },
  eos_token_id: [128001, 128008, 128009],
  torch_dtype: "bfloat16",
};

Deno.test("readModelConfig() reads stories260K with rope_theta inside rope_parameters", async () => {
  const s = await readModelConfig(STORIES_DIR);
  assert.equal(s.architecture, "llama");
  assert.equal(s.headDim, 8);
  assert.equal(s.numKvHeads, 4);
  assert.equal(s.rope.theta, 10000);
  assert.equal(s.rope.type, "default");
  assert.equal(s.tieEmbeddings, true);
  assert.deepEqual(s.eosTokenIds, [2]);
});

Deno.test("parseModelConfig() reads Llama 3.1 with llama3 rope scaling", () => {
  const s = parseModelConfig(llama);
  assert.equal(s.headDim, 128);
  assert.equal(s.rope.type, "llama3");
  assert.equal(s.rope.theta, 500000);
  assert.equal(s.checkpointDType, "bf16");
  assert.deepEqual(s.eosTokenIds, [128001, 128008, 128009]);
  const f = ropeFrequencies(s.rope, 128).invFreq;
  const base = (i: number) => 1 / Math.pow(500000, (2 * i) / 128);
  // High frequencies (short wavelengths) are kept, low ones divided by the factor, the middle smoothed.
  assert.equal(f[0], base(0));
  assert.ok(Math.abs(f[63]! - base(63) / 8) < 1e-18);
  const mid = f.findIndex((x, i) => x !== base(i) && Math.abs(x - base(i) / 8) > 1e-18 * base(i));
  assert.ok(mid > 0, "some frequencies are smoothed between the two regimes");
  assert.ok(f[mid]! < base(mid) && f[mid]! > base(mid) / 8);
});

Deno.test("parseModelConfig() reads Qwen2 biases, Qwen3 q/k norms and explicit head_dim", () => {
  const q2 = parseModelConfig({
    ...llama,
    architectures: ["Qwen2ForCausalLM"],
    rope_scaling: null,
    tie_word_embeddings: true,
  });
  assert.equal(q2.attentionBias, true);
  assert.equal(q2.outputBias, false);
  assert.equal(q2.qkNorm, false);
  assert.equal(q2.tieEmbeddings, true);
  const q3 = parseModelConfig({
    ...llama,
    architectures: ["Qwen3ForCausalLM"],
    head_dim: 128,
    hidden_size: 2560,
    rope_scaling: null,
  });
  assert.equal(q3.qkNorm, true);
  assert.equal(q3.headDim, 128);
  assert.equal(q3.attentionBias, false);
});

Deno.test("parseModelConfig() reads Mistral's sliding window", () => {
  const m = parseModelConfig({
    ...llama,
    architectures: ["MistralForCausalLM"],
    sliding_window: 4096,
    rope_scaling: null,
  });
  assert.equal(m.slidingWindow, 4096);
  assert.equal(m.architecture, "mistral");
});

Deno.test("ropeFrequencies() applies linear and yarn scaling", () => {
  const lin = parseModelConfig({ ...llama, rope_scaling: { type: "linear", factor: 4 } });
  const base = ropeFrequencies({ ...lin.rope, type: "default", factor: 1 }, 128).invFreq;
  const f = ropeFrequencies(lin.rope, 128).invFreq;
  for (let i = 0; i < 64; i++) assert.ok(Math.abs(f[i]! - base[i]! / 4) <= 1e-15 * base[i]!);
  const yarn = parseModelConfig({
    ...llama,
    max_position_embeddings: 131072,
    rope_scaling: { rope_type: "yarn", factor: 4, original_max_position_embeddings: 32768 },
  });
  assert.ok(Math.abs(yarn.rope.attentionFactor - (0.1 * Math.log(4) + 1)) < 1e-12);
  const y = ropeFrequencies(yarn.rope, 128);
  assert.equal(y.scale, yarn.rope.attentionFactor);
  assert.equal(y.invFreq[0], base[0], "highest frequency is extrapolated (unchanged)");
  assert.ok(Math.abs(y.invFreq[63]! - base[63]! / 4) < 1e-15 * base[63]!, "lowest is interpolated");
});

Deno.test("parseModelConfig() errors name the file and field", () => {
  assert.throws(() => parseModelConfig({ ...llama, architectures: ["GPT2LMHeadModel"] }, "x/config.json"), (e) => {
    assert.ok(e instanceof CheckpointError);
    assert.match(e.message, /x\/config\.json: architecture GPT2LMHeadModel is not supported/);
    return true;
  });
  assert.throws(() => parseModelConfig({ ...llama, hidden_size: "big" }), /"hidden_size" must be a number/);
  assert.throws(() => parseModelConfig({ ...llama, vocab_size: undefined }), /missing required field "vocab_size"/);
  assert.throws(
    () => parseModelConfig({ ...llama, rope_scaling: { rope_type: "dynamic", factor: 2 } }),
    /unsupported rope scaling type "dynamic"/,
  );
});

Deno.test("parseModelConfig() refuses modules_to_not_convert entries that name decoder linears (fp8, AWQ)", () => {
  // transformers leaves every module whose name contains an entry in 16 bits; this server runs all decoder linears
  // quantized, so only modules outside them (lm_head, a vision tower) may be listed.
  const fp8 = { quant_method: "fp8", fmt: "e4m3", weight_block_size: [128, 128] };
  const awq = { quant_method: "awq", bits: 4, group_size: 128, zero_point: true, version: "gemm" };
  for (const q of [fp8, awq]) {
    for (const keep of [["lm_head"], ["visual", "lm_head"], null]) {
      const s = parseModelConfig({ ...llama, quantization_config: { ...q, modules_to_not_convert: keep } });
      assert.equal(s.quantization!.method, q.quant_method, JSON.stringify(keep));
    }
    for (const keep of [["down_proj"], ["lm_head", "layers.31.self_attn"], ["mlp.gate"], [7]]) {
      assert.throws(
        () => parseModelConfig({ ...llama, quantization_config: { ...q, modules_to_not_convert: keep } }),
        (e: unknown) =>
          e instanceof CheckpointError && /config\.json: modules_to_not_convert .* unquantized/.test(e.message),
        JSON.stringify(keep),
      );
    }
  }
});

Deno.test("parseModelConfig() reads GPTQ checkpoint_format as the zero-point convention and refuses kernel layouts", () => {
  const gptq = { quant_method: "gptq", bits: 4, group_size: 128, sym: false, desc_act: false };
  const cases: [string | undefined, 1 | 2][] = [[undefined, 1], ["gptq", 1], ["gptq_v2", 2]];
  for (const [format, version] of cases) {
    const s = parseModelConfig({ ...llama, quantization_config: { ...gptq, checkpoint_format: format } });
    assert.equal(s.quantization!.gptqVersion, version, String(format));
  }
  for (const format of ["marlin", "bitblas", 2]) {
    assert.throws(
      () => parseModelConfig({ ...llama, quantization_config: { ...gptq, checkpoint_format: format } }),
      (e: unknown) =>
        e instanceof CheckpointError &&
        /config\.json: GPTQ checkpoint_format .* \(only "gptq" and "gptq_v2" are supported\)/.test(e.message),
      String(format),
    );
  }
  const awq = { quant_method: "awq", bits: 4, group_size: 128, zero_point: true, version: "gemm" };
  assert.equal(parseModelConfig({ ...llama, quantization_config: awq }).quantization!.gptqVersion, undefined);
});

Deno.test("parseModelConfig() refuses AWQ layouts other than GEMM, AWQ int8 and bad group sizes, naming config.json", () => {
  const awq = { quant_method: "awq", bits: 4, group_size: 128, zero_point: true, version: "gemm" };
  for (const version of ["gemm", "GEMM", undefined]) {
    assert.equal(parseModelConfig({ ...llama, quantization_config: { ...awq, version } }).quantization!.groupSize, 128);
  }
  const gptq = { quant_method: "gptq", bits: 8, group_size: -1, sym: true, desc_act: false };
  assert.equal(parseModelConfig({ ...llama, quantization_config: gptq }).quantization!.groupSize, -1);
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...awq, version: "gemv" }, /AWQ version "gemv" \(only the GEMM layout/],
    [{ ...awq, version: "gemv_fast" }, /AWQ version "gemv_fast"/],
    [{ ...awq, version: "exllama" }, /AWQ version "exllama"/],
    [{ ...awq, bits: 8 }, /AWQ bits 8 \(AWQ GEMM defines 4-bit weights only\)/],
    [{ ...awq, group_size: -1 }, /awq group_size -1/],
    [{ ...gptq, group_size: "128" }, /gptq group_size "128"/],
    [{ ...gptq, group_size: 0 }, /gptq group_size 0/],
    [{ ...gptq, group_size: 64.5 }, /gptq group_size 64\.5/],
  ];
  for (const [q, msg] of bad) {
    assert.throws(
      () => parseModelConfig({ ...llama, quantization_config: q }, "m/config.json"),
      (e: unknown) => e instanceof CheckpointError && e.message.startsWith("m/config.json: ") && msg.test(e.message),
      JSON.stringify(q),
    );
  }
});

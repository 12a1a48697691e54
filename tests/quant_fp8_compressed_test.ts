// compressed-tensors "float-quantized" FP8 checkpoints (llm-compressor's format, as vLLM reads it): the config maps to
// an fp8 QuantSpec whose scales are all named weight_scale, and every weight strategy (tensor, channel, block, group)
// reads to e4m3(q) * fp8Scale(s) exactly; configs the loader cannot honour are CheckpointErrors naming config.json.
import assert from "node:assert/strict";
import { parseModelConfig } from "../src/model/config.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { MemoryTensorSource } from "../src/model/memory_source.ts";
import { EMBED, layerNames, LINEAR_KEYS, quantizedTensorNames } from "../src/model/weights.ts";
import { writeSafetensors } from "../src/model/safetensors.ts";
import { readQuantizedLinear } from "../src/quant/checkpoint.ts";
import { dequantize } from "../src/quant/reference.ts";
import { e4m3ToF32, fp8Scale } from "../src/quant/fp8.ts";
import { CheckpointError } from "../src/core/errors.ts";
import type { QuantSpec, SafetensorsDType } from "../src/core/types.ts";
import { loadReferenceWeights } from "../src/backends/reference/weights.ts";
import { FP8_SHAPES, fp8Expected, randomCode, writeFp8Fixture } from "./helpers/fp8_fixtures.ts";
import { mulberry32 } from "../src/core/prng.ts";
import { TINY_LLAMA as LLAMA } from "./helpers/ct_fixtures.ts";

/** A compressed-tensors quantization_config with one group whose weights are `weights`. */
function ct(weights: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    quant_method: "compressed-tensors",
    format: "float-quantized",
    config_groups: {
      group_0: {
        targets: ["Linear"],
        weights: { num_bits: 8, type: "float", symmetric: true, dynamic: false, ...weights },
        input_activations: { num_bits: 8, type: "float", strategy: "token", dynamic: true },
      },
    },
    ignore: ["lm_head"],
    ...extra,
  };
}

/** The QuantSpec a compressed-tensors FP8 config with weight blocks [bn, bk] parses to (scales named weight_scale). */
function ctFp8Spec(block: readonly [number, number]): QuantSpec {
  return { method: "fp8", bits: 8, groupSize: block[1], sym: true, descAct: false, block, scaleName: "weight_scale" };
}

Deno.test("parseModelConfig() maps compressed-tensors FP8 strategies to fp8 QuantSpecs with weight_scale", () => {
  const spec = (w: Record<string, unknown>) => parseModelConfig({ ...LLAMA, quantization_config: ct(w) }).quantization!;
  const expect: [Record<string, unknown>, readonly [number, number] | null, number][] = [
    [{ strategy: "tensor" }, null, 0],
    [{ strategy: "channel" }, null, 0],
    [{ strategy: "block", block_structure: [128, 64] }, [128, 64], 64],
    [{ strategy: "group", group_size: 32 }, [1, 32], 32],
  ];
  for (const [w, block, groupSize] of expect) {
    const q = spec(w);
    assert.equal(q.method, "fp8");
    assert.deepEqual(q.block, block);
    assert.equal(q.groupSize, groupSize);
    assert.equal(q.scaleName, "weight_scale");
    const names = quantizedTensorNames("model.layers.0.mlp.up_proj.weight", q);
    assert.deepEqual(names, ["model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight_scale"]);
  }
});

Deno.test("parseModelConfig() accepts compressed-tensors ignore patterns that leave no decoder linear unquantized", () => {
  // llm-compressor recipes ignore lm_head and modules outside the decoder layers (routers, vision towers) by "re:"
  // patterns, matched from the start of the module name as Python's re.match does.
  for (
    const ignore of [["re:.*lm_head"], ["lm_head", "re:.*mlp\\.gate$", "re:vision_tower.*"], [
      "re:model\\.layers\\.9\\.",
    ]]
  ) {
    const q = parseModelConfig({ ...LLAMA, quantization_config: ct({ strategy: "channel" }, { ignore }) });
    assert.equal(q.quantization!.method, "fp8", JSON.stringify(ignore));
  }
});

Deno.test("parseModelConfig() refuses compressed-tensors configs it cannot run, naming config.json", () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...ct({ strategy: "channel" }), format: "naive-quantized" }, /format "naive-quantized"/],
    [ct({ strategy: "channel", type: "int", num_bits: 4 }), /only static 8-bit float/],
    [ct({ strategy: "channel", dynamic: true }), /only static 8-bit float/],
    [ct({ strategy: "block", block_structure: [128] }), /block_structure/],
    [ct({ strategy: "group" }), /group_size/],
    [ct({ strategy: "token" }), /weight strategy "token"/],
    [ct({ strategy: "channel" }, { ignore: ["lm_head", "model.layers.0.mlp.down_proj"] }), /unquantized/],
    [ct({ strategy: "channel" }, { ignore: ["re:.*down_proj$"] }), /"re:\.\*down_proj\$"\] unquantized/],
    [ct({ strategy: "channel" }, { ignore: ["lm_head", "re:model\\.layers\\.0\\."] }), /unquantized/],
    [ct({ strategy: "channel" }, { ignore: ["re:(unclosed"] }), /unquantized/],
    [{ ...ct({ strategy: "channel" }), config_groups: {} }, /0 config groups/],
  ];
  for (const [q, re] of bad) {
    assert.throws(
      () => parseModelConfig({ ...LLAMA, quantization_config: q }),
      (e: unknown) => e instanceof CheckpointError && /config\.json/.test(e.message) && re.test(e.message),
      JSON.stringify(q),
    );
  }
});

Deno.test("compressed-tensors per-tensor / per-channel fixtures load like the fp8 ones (e4m3(q) * fp8Scale(s))", async () => {
  for (const kind of ["tensor", "channel"] as const) {
    const { dir, linears } = await writeFp8Fixture(kind);
    const cfgPath = `${dir}/config.json`;
    const cfg = JSON.parse(await Deno.readTextFile(cfgPath));
    cfg.quantization_config = ct({ strategy: kind });
    await Deno.writeTextFile(cfgPath, JSON.stringify(cfg));
    const ckpt = await openCheckpoint(dir);
    assert.equal(ckpt.spec.quantization!.scaleName, "weight_scale");
    const w = await loadReferenceWeights(ckpt.spec, ckpt.weights, "fp8");
    for (let l = 0; l < 2; l++) {
      const n = layerNames(l);
      for (const key of LINEAR_KEYS) assert.deepEqual(w.layers[l]![key], fp8Expected(linears.get(n[key])!), n[key]);
    }
    ckpt.weights.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readQuantizedLinear() reads compressed-tensors block and group weight_scale tensors", async () => {
  const r = mulberry32(11);
  const [N, K] = FP8_SHAPES.down!;
  const codes = Uint8Array.from({ length: N * K }, () => randomCode(r));
  const cases: [QuantSpec["block"], string][] = [[[16, 32], "block"], [[1, 24], "group"]];
  for (const [block, what] of cases) {
    const [bn, bk] = block!, rows = Math.ceil(N / bn), cols = Math.ceil(K / bk);
    const raw = Float32Array.from({ length: rows * cols }, () => 1e-3 * (0.5 + r()));
    const src = new MemoryTensorSource("model.safetensors")
      .add("w.weight", { dtype: "F8_E4M3", shape: [N, K], data: codes })
      .addF32("w.weight_scale", [rows, cols], raw);
    const q = ctFp8Spec(block!);
    const ql = await readQuantizedLinear(src, q, "w.weight", N, K);
    const got = dequantize(ql);
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        const want = e4m3ToF32(codes[n * K + k]!) * fp8Scale(raw[Math.floor(n / bn) * cols + Math.floor(k / bk)]!);
        assert.equal(got[n * K + k], want, `${what} (${n}, ${k})`);
      }
    }
    // The transformers name is not read for compressed-tensors checkpoints.
    const wrong = new MemoryTensorSource("model.safetensors")
      .add("w.weight", { dtype: "F8_E4M3", shape: [N, K], data: codes })
      .addF32("w.weight_scale_inv", [rows, cols], raw);
    await assert.rejects(() => readQuantizedLinear(wrong, q, "w.weight", N, K), /w\.weight_scale/);
  }
});

Deno.test("readQuantizedLinear() crops block-padded fp8 weights to weight_shape_original", async () => {
  const r = mulberry32(5);
  const [N, K, bn, bk] = [40, 88, 16, 32], Np = 48, Kp = 96, rows = Np / bn, cols = Kp / bk;
  const padded = Uint8Array.from({ length: Np * Kp }, () => randomCode(r));
  const raw = Float32Array.from({ length: rows * cols }, () => 1e-3 * (0.5 + r()));
  const shape = new BigInt64Array([BigInt(N), BigInt(K)]);
  const src = new MemoryTensorSource("model.safetensors")
    .add("w.weight", { dtype: "F8_E4M3", shape: [Np, Kp], data: padded })
    .add("w.weight_shape_original", { dtype: "I64", shape: [2], data: new Uint8Array(shape.buffer) })
    .addF32("w.weight_scale", [rows, cols], raw);
  const q = ctFp8Spec([bn, bk]);
  const got = dequantize(await readQuantizedLinear(src, q, "w.weight", N, K));
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const want = e4m3ToF32(padded[n * Kp + k]!) * fp8Scale(raw[Math.floor(n / bn) * cols + Math.floor(k / bk)]!);
      assert.equal(got[n * K + k], want, `(${n}, ${k})`);
    }
  }
  await assert.rejects(() => readQuantizedLinear(src, q, "w.weight", N - 1, K), /weight_shape_original/);
});

Deno.test("openCheckpoint() refuses an FP8 embedding with a scale (only the layers' linears are read quantized)", async () => {
  const { dir } = await writeFp8Fixture("block");
  try {
    const ck = await openCheckpoint(dir);
    const tensors: { name: string; dtype: SafetensorsDType; shape: number[]; data: Uint8Array }[] = [];
    for (const name of ck.weights.names()) {
      const i = ck.weights.info(name);
      tensors.push({ name, dtype: i.dtype, shape: [...i.shape], data: await ck.weights.bytes(name) });
    }
    ck.weights.close();
    const e = tensors.find((t) => t.name === EMBED)!;
    const count = e.shape.reduce((a, b) => a * b, 1);
    Object.assign(e, { dtype: "F8_E4M3", data: new Uint8Array(count).fill(0x38) }); // 1.0
    const scale = new Float32Array([0.5]);
    tensors.push({
      name: "model.embed_tokens.weight_scale",
      dtype: "F32",
      shape: [1],
      data: new Uint8Array(scale.buffer),
    });
    await writeSafetensors(`${dir}/model.safetensors`, tensors);
    await assert.rejects(
      () => openCheckpoint(dir),
      (err: unknown) => err instanceof CheckpointError && /model\.embed_tokens\.weight/.test(err.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// compressed-tensors "pack-quantized" integer checkpoints (llm-compressor W4A16 / W8A16): the config maps to a
// QuantSpec, and linears written by this test in the published layout (packed independently of the reader: values
// along K, the signed value + 2^(bits-1) in bits bits*i of each int32; zero points packed along N; I64 weight_shape)
// read back to the same (q - z) * s, symmetric and asymmetric, per group and per channel, with and without act-order;
// the same for "int-quantized" (one signed value per I8, as W8A8 checkpoints store weights).
// stories260K written as an asymmetric int4 g32 pack-quantized folder from quantizeRtn gives exactly the logits of
// the same RTN weights quantized at load.
import assert from "node:assert/strict";
import { parseModelConfig } from "../src/model/config.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { MemoryTensorSource } from "../src/model/memory_source.ts";
import { readQuantizedLinear } from "../src/quant/checkpoint.ts";
import { quantizedTensorNames } from "../src/model/weights.ts";
import { fromF32 } from "../src/model/dtype.ts";
import { dequantize } from "../src/quant/reference.ts";
import { CheckpointError } from "../src/core/errors.ts";
import type { QuantSpec } from "../src/core/types.ts";
import type { QuantBits, QuantizedLinear } from "../src/quant/types.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { sequenceLogits } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { STORIES_DIR } from "./helpers/models.ts";
import { randomLinear } from "./helpers/quant_linear.ts";
import { ctConfig, ctTensors, TINY_LLAMA as LLAMA, writeCtStories } from "./helpers/ct_fixtures.ts";

Deno.test("parseModelConfig() reads compressed-tensors pack-quantized int4 / int8 schemes and refuses others", () => {
  const q = (c: object) => parseModelConfig({ ...LLAMA, quantization_config: c }).quantization!;
  assert.deepEqual({ ...q(ctConfig(4, "group", 128, true)) }, {
    method: "compressed-tensors",
    bits: 4,
    groupSize: 128,
    sym: true,
    descAct: false,
    ctFormat: "pack-quantized",
  });
  assert.deepEqual({ ...q(ctConfig(8, "channel", 0, false, true)) }, {
    method: "compressed-tensors",
    bits: 8,
    groupSize: 0,
    sym: false,
    descAct: true,
    ctFormat: "pack-quantized",
  });
  const w = (over: object) => {
    const c = ctConfig(4, "group", 128, true);
    Object.assign(c.config_groups.group_0.weights, over);
    return c;
  };
  for (
    const [c, re] of [[w({ num_bits: 3 }), /4- or 8-bit/], [w({ strategy: "tensor" }), /strategy "tensor"/], [
      w({ group_size: 0 }),
      /group_size/,
    ], [w({ dynamic: true }), /static/]] as const
  ) {
    assert.throws(
      () => q(c),
      (e: unknown) => e instanceof CheckpointError && /config\.json/.test(e.message) && re.test(e.message),
    );
  }
});

Deno.test("readQuantizedLinear() reads pack-quantized linears to the same (q - z) * s", async () => {
  // bits, N, K (not multiples of the pack or the group), G (0: per channel), symmetric, act-order
  const cases: [QuantBits, number, number, number, boolean, boolean][] = [
    [4, 44, 100, 32, true, false],
    [4, 40, 96, 32, false, true],
    [8, 37, 70, 0, false, false],
    [8, 20, 64, 16, true, false],
  ];
  for (const [bits, N, K, G, sym, act] of cases) {
    const base = randomLinear(bits, N, K, G || K, act);
    const half = 1 << (bits - 1);
    const ql: QuantizedLinear = sym ? { ...base, zeros: base.zeros.map(() => half) } : base;
    const src = new MemoryTensorSource("model.safetensors");
    for (const t of ctTensors("w", ql, sym)) src.add(t.name, t);
    const spec: QuantSpec = { method: "compressed-tensors", bits, groupSize: G, sym, descAct: act };
    const got = await readQuantizedLinear(src, spec, "w.weight", N, K);
    const what = `int${bits} [${N}, ${K}] g${G} ${sym ? "sym" : "asym"}${act ? " act-order" : ""}`;
    assert.deepEqual(got.q, ql.q, what);
    assert.deepEqual(dequantize(got), dequantize(ql), what);
    await assert.rejects(() => readQuantizedLinear(src, spec, "w.weight", N + 1, K), /weight_shape/);
  }
});

Deno.test("readQuantizedLinear() reads int-quantized (unpacked I8) linears to the same (q - z) * s", async () => {
  for (const [bits, N, K, G, sym] of [[8, 37, 70, 0, true], [8, 20, 64, 16, false], [4, 24, 48, 16, false]] as const) {
    const base = randomLinear(bits, N, K, G || K, false), half = 1 << (bits - 1), nG = base.scales.length / N;
    const ql: QuantizedLinear = sym ? { ...base, zeros: base.zeros.map(() => half) } : base;
    const src = new MemoryTensorSource("model.safetensors")
      .add("w.weight", {
        dtype: "I8",
        shape: [N, K],
        data: new Uint8Array(Int8Array.from(ql.q, (u) => u - half).buffer),
      })
      .add("w.weight_scale", { dtype: "F16", shape: [N, nG], data: fromF32(ql.scales, "F16") });
    if (!sym) {
      const z = Int8Array.from(ql.zeros, (u) => u - half);
      src.add("w.weight_zero_point", { dtype: "I8", shape: [N, nG], data: new Uint8Array(z.buffer) });
    }
    const spec: QuantSpec = {
      method: "compressed-tensors",
      bits,
      groupSize: G,
      sym,
      descAct: false,
      ctFormat: "int-quantized",
    };
    const got = await readQuantizedLinear(src, spec, "w.weight", N, K);
    const what = `int-quantized ${bits}-bit [${N}, ${K}] g${G} ${sym ? "sym" : "asym"}`;
    assert.deepEqual(got.q, ql.q, what);
    assert.deepEqual(dequantize(got), dequantize(ql), what);
  }
  const q = parseModelConfig({
    ...LLAMA,
    quantization_config: { ...ctConfig(8, "channel", 0, true), format: "int-quantized" },
  }).quantization!;
  assert.equal(q.ctFormat, "int-quantized");
  assert.deepEqual(quantizedTensorNames("m.weight", q), ["m.weight", "m.weight_scale"]);
});

Deno.test("ReferenceBackend on stories260K as a pack-quantized int4 g32 folder equals the same RTN weights at load", async () => {
  const dir = await writeCtStories(4, 32);
  const logits = async (d: string) => {
    const c = await openCheckpoint(d);
    await using b = new ReferenceBackend();
    await b.load(c.spec, c.weights, { weight: "int4", group: 32, kv: "f32", compute: "f32" });
    c.weights.close();
    return await sequenceLogits(b, [1, 403, 407, 261, 378, 20, 30, 40], { ...defaultSamplingParams(), temperature: 0 });
  };
  try {
    const ct = await logits(dir), rtn = await logits(STORIES_DIR);
    assert.deepEqual(ct, rtn, "pack-quantized folder vs load-time RTN int4 g32");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// FP8 E4M3 weights: the codec and scale grid (src/quant/fp8.ts) against independent formulas, RTN quantization, and
// Hugging Face "fp8" checkpoints (block, per-tensor and per-channel scales) through openCheckpoint and the reference
// backend, corrupt ones included.
import assert from "node:assert/strict";
import { assertForwardEqualsDense } from "./helpers/quant_forward.ts";
import { CheckpointError } from "../src/core/errors.ts";
import { f16ToF32, f32ToF16 } from "../src/model/dtype.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { writeSafetensors } from "../src/model/safetensors.ts";
import { layerNames, LINEAR_KEYS } from "../src/model/weights.ts";
import { loadReferenceWeights } from "../src/backends/reference/weights.ts";
import {
  E4M3_MAX,
  e4m3IsNaN,
  e4m3ToF32,
  f32ToE4m3,
  FP8_SCALE_MAX,
  FP8_SCALE_MIN,
  fp8Scale,
  quantizeFp8,
} from "../src/quant/fp8.ts";
import { readQuantizedLinear } from "../src/quant/checkpoint.ts";
import { dequantize } from "../src/quant/reference.ts";
import type { OutTensor } from "../src/quant/tensors.ts";
import { mulberry32 } from "../src/core/prng.ts";
import { e4m3Value, FP8_BLOCK, FP8_SHAPES, fp8Expected, writeFp8Fixture } from "./helpers/fp8_fixtures.ts";

const FINITE = Array.from({ length: 256 }, (_, c) => c).filter((c) => (c & 0x7f) !== 0x7f);

Deno.test("e4m3ToF32() decodes all 256 codes to the e4m3fn values; only 0x7f / 0xff are NaN", () => {
  for (let c = 0; c < 256; c++) {
    const want = e4m3Value(c);
    assert.ok(Object.is(e4m3ToF32(c), want), `code 0x${c.toString(16)}: ${e4m3ToF32(c)} vs ${want}`);
    assert.equal(e4m3IsNaN(c), c === 0x7f || c === 0xff);
  }
  // Landmarks of the format: 1.0, the largest value, the smallest normal and subnormal, -0.
  const named: [number, number][] = [[0x38, 1], [0x7e, 448], [0xfe, -448], [0x08, 2 ** -6], [0x01, 2 ** -9]];
  for (const [c, v] of named) assert.equal(e4m3ToF32(c), v);
  assert.ok(Object.is(e4m3ToF32(0x80), -0));
  // The kernels' conversion: sign to bit 15, the other 7 bits to bits 13..7 of an f16 gives e4m3 * 2^-8 exactly.
  for (const c of FINITE) assert.equal(f16ToF32(((c & 0x80) << 8) | ((c & 0x7f) << 7)), e4m3Value(c) * 2 ** -8);
});

Deno.test("f32ToE4m3() round-trips every finite code, +0 and -0 included", () => {
  for (const c of FINITE) assert.equal(f32ToE4m3(e4m3Value(c)), c, `code 0x${c.toString(16)}`);
  assert.equal(f32ToE4m3(0), 0x00);
  assert.equal(f32ToE4m3(-0), 0x80);
});

Deno.test("f32ToE4m3() rounds to nearest, ties to the even code, and saturates to +-448", () => {
  const pos = FINITE.filter((c) => c < 0x80); // 0x00..0x7e, increasing values
  for (let i = 0; i + 1 < pos.length; i++) {
    const lo = pos[i]!, hi = pos[i + 1]!, a = e4m3Value(lo), b = e4m3Value(hi), mid = (a + b) / 2;
    const even = lo % 2 === 0 ? lo : hi;
    assert.equal(f32ToE4m3(mid), even, `tie between 0x${lo.toString(16)} and 0x${hi.toString(16)}`);
    assert.equal(f32ToE4m3(-mid), 0x80 | even, `negative tie at ${-mid}`);
    const eps = (b - a) / 64;
    assert.equal(f32ToE4m3(mid - eps), lo);
    assert.equal(f32ToE4m3(mid + eps), hi);
    assert.equal(f32ToE4m3(-(mid + eps)), 0x80 | hi);
  }
  assert.equal(f32ToE4m3(2 ** -10), 0x00); // halfway to the smallest subnormal: ties to 0 (even)
  assert.equal(f32ToE4m3(-(2 ** -11)), 0x80); // rounds to -0
  for (const x of [448, 449, 464, 480, 1e6, 3e38, Infinity]) {
    assert.equal(f32ToE4m3(x), 0x7e, `${x}`);
    assert.equal(f32ToE4m3(-x), 0xfe, `${-x}`);
  }
  assert.throws(() => f32ToE4m3(NaN), RangeError);
});

Deno.test("fp8Scale() rounds to the grid where s * 256 is an f16 and refuses scales outside it", () => {
  const r = mulberry32(11);
  const isF16 = (v: number) => f16ToF32(f32ToF16(v)) === v;
  for (let i = 0; i < 2000; i++) {
    const s = 2 ** (-22 + r() * 29.99); // log-uniform over [2^-22, 2^7.99) ⊂ [MIN, MAX]
    const g = fp8Scale(s);
    assert.ok(isF16(g * 256), `${s} → ${g}`);
    assert.ok(Math.abs(g - s) <= s * 2 ** -11, `${s} → ${g}: more than half an f16 ulp`);
    assert.equal(fp8Scale(g), g);
    // Nearest: no grid point (the f16 neighbours of g * 256) is closer.
    const h = f32ToF16(g * 256);
    for (const nb of [h - 1, h + 1]) assert.ok(Math.abs(f16ToF32(nb) / 256 - s) >= Math.abs(g - s));
  }
  assert.equal(fp8Scale(0), 0);
  assert.equal(fp8Scale(FP8_SCALE_MIN), 2 ** -22);
  assert.equal(fp8Scale(FP8_SCALE_MAX), 65504 / 256);
  assert.equal(fp8Scale(1 / 3) * 256, f16ToF32(f32ToF16(256 / 3)));
  for (const bad of [FP8_SCALE_MIN / 2, FP8_SCALE_MAX * 1.001, -1, -FP8_SCALE_MIN, NaN, Infinity]) {
    assert.throws(() => fp8Scale(bad, "test scale"), (e: unknown) => {
      assert.ok(e instanceof RangeError);
      assert.match(e.message, /^test scale .* is outside \[2\^-22, 65504\/256\]/);
      return true;
    });
  }
});

Deno.test("quantizeFp8() per block: one scale fp8Scale(max / 448) per block, every value within one half step", () => {
  const r = mulberry32(5);
  const [N, K] = [37, 80];
  const w = Float32Array.from({ length: N * K }, () => (r() - 0.5) * 2 ** Math.floor(r() * 12 - 8));
  w.fill(0, 16 * K, 32 * K); // a block row of zeros: scale at its minimum, codes 0
  for (const [bn, bk] of [[16, 32], [1, 16], [128, 128]] as const) {
    const ql = quantizeFp8(w, N, K, bk, bn);
    assert.ok(ql.fp8 && ql.bits === 8 && ql.groupSize === bk && ql.zeros.every((z) => z === 0));
    const nG = Math.ceil(K / bk), dq = dequantize(ql);
    for (let n = 0; n < N; n++) {
      for (let g = 0; g < nG; g++) {
        const r0 = Math.floor(n / bn) * bn;
        let mx = 0;
        for (let i = r0; i < Math.min(N, r0 + bn); i++) {
          for (let k = g * bk; k < Math.min(K, (g + 1) * bk); k++) mx = Math.max(mx, Math.abs(w[i * K + k]!));
        }
        assert.equal(ql.scales[n * nG + g], fp8Scale(Math.max(mx / E4M3_MAX, FP8_SCALE_MIN)), `${bn}x${bk} ${n},${g}`);
      }
      for (let k = 0; k < K; k++) {
        const x = w[n * K + k]!, s = ql.scales[n * nG + Math.floor(k / bk)]!;
        assert.ok(!e4m3IsNaN(ql.q[n * K + k]!));
        // e4m3 keeps 3 mantissa bits: half a step is |x| / 16 for normals, s * 2^-10 among the subnormals.
        assert.ok(Math.abs(dq[n * K + k]! - x) <= Math.max(Math.abs(x) / 16, s * 2 ** -10), `${bn}x${bk} ${n},${k}`);
        if (n >= 16 && n < 32 && bn === 16) assert.equal(ql.q[n * K + k], 0);
      }
    }
  }
  assert.throws(() => quantizeFp8(Float32Array.of(1, NaN), 1, 2, 16), /non-finite weight at row 0, column 1/);
  assert.throws(() => quantizeFp8(new Float32Array(4), 2, 2, 0), /bad group size/);
});

Deno.test("fp8 checkpoints (block / per-tensor / per-channel scales) load bit-exactly to e4m3(q) * fp8Scale(s)", async () => {
  for (const kind of ["block", "tensor", "channel"] as const) {
    const { dir, linears } = await writeFp8Fixture(kind);
    const ckpt = await openCheckpoint(dir);
    const q = ckpt.spec.quantization!;
    assert.equal(q.method, "fp8");
    assert.deepEqual(q.block ?? null, kind === "block" ? FP8_BLOCK : null);
    const w = await loadReferenceWeights(ckpt.spec, ckpt.weights, "fp8");
    for (let l = 0; l < 2; l++) {
      const n = layerNames(l);
      for (const key of LINEAR_KEYS) {
        const lin = linears.get(n[key])!, [N, K] = FP8_SHAPES[key]!;
        const expected = fp8Expected(lin);
        assert.deepEqual(w.layers[l]![key], expected, `${kind}: ${n[key]}`);
        const ql = await readQuantizedLinear(ckpt.weights, q, n[key], N, K);
        assert.ok(ql.fp8 && ql.groupSize === (kind === "block" ? FP8_BLOCK[1] : K));
        assert.deepEqual(ql.q, lin.codes);
        assert.deepEqual(dequantize(ql), expected);
      }
    }
    ckpt.weights.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fp8 scales below the kernel grid (2^-22) re-encode their block at 2^-22 instead of failing the load", async () => {
  // Exporters clamp max |w| at 1e-4 (scale 2.2e-7, just below 2^-22 = 2.4e-7) or 1e-12 for near-zero blocks.
  const { dir, tensors, linears } = await writeFp8Fixture("block", 3);
  const W = "model.layers.0.self_attn.o_proj.weight", S = "model.layers.0.self_attn.o_proj.weight_scale_inv";
  const lin = linears.get(W)!, [bn, bk] = FP8_BLOCK;
  lin.scales.set([1e-4 / 448, 1e-12 / 448], 0);
  const data = new Uint8Array(lin.scales.buffer.slice(0));
  await writeSafetensors(`${dir}/model.safetensors`, tensors.map((t) => (t.name === S ? { ...t, data } : t)));
  const ckpt = await openCheckpoint(dir);
  const ql = await readQuantizedLinear(ckpt.weights, ckpt.spec.quantization!, W, lin.N, lin.K);
  ckpt.weights.close();
  const got = dequantize(ql),
    want = fp8Expected({ ...lin, scaleAt: (n, k) => (n < bn && k < 2 * bk ? 0 : lin.scaleAt(n, k)) });
  const nG = Math.ceil(lin.K / bk);
  for (let n = 0; n < lin.N; n++) {
    for (let k = 0; k < lin.K; k++) {
      const i = n * lin.K + k, g = Math.floor(k / bk);
      if (n >= bn || g >= 2) {
        assert.equal(got[i], want[i], `outside the tiny blocks: exact at ${n},${k}`);
        continue;
      }
      assert.equal(ql.scales[n * nG + g], FP8_SCALE_MIN);
      const x = e4m3Value(lin.codes[i]!) * lin.scales[g]!;
      assert.ok(Math.abs(got[i]! - x) <= Math.max(Math.abs(x) / 16, 2 ** -32), `${n},${k}: ${got[i]} vs ${x}`);
      if (g === 1) assert.ok(got[i] === 0, `${n},${k}: ${got[i]}`); // +-0
    }
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("ReferenceBackend.forward() on an fp8 block checkpoint equals the f32 model of its dequantized weights", async () => {
  const { dir, linears, tensors } = await writeFp8Fixture("block", 7);
  const dense = [...linears].map(([name, l]) => [name, [l.N, l.K], fp8Expected(l)] as const);
  await assertForwardEqualsDense(dir, "fp8", tensors, dense);
});

Deno.test("corrupt fp8 checkpoints give a CheckpointError naming the file and tensor", async () => {
  const W = "model.layers.1.mlp.up_proj.weight", S = "model.layers.1.mlp.up_proj.weight_scale_inv";
  const [N, K] = FP8_SHAPES.up!;
  const f32Data = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);
  const cases: [kind: "block" | "channel", what: string, tensor: string, mut: (t: OutTensor) => OutTensor, RegExp][] = [
    [
      "block",
      "NaN code",
      W,
      (t) => ({ ...t, data: t.data.map((c, i) => (i === 3 * K + 5 ? 0x7f : c)) }),
      /NaN code at row 3, column 5/,
    ],
    [
      "block",
      "-NaN code",
      W,
      (t) => ({ ...t, data: t.data.map((c, i) => (i === K * N - 1 ? 0xff : c)) }),
      /NaN code at row 87, column 39/,
    ],
    [
      "block",
      "F16 weight",
      W,
      (t) => ({ ...t, dtype: "F16", data: new Uint8Array(2 * N * K) }),
      /dtype F16, expected F8_E4M3/,
    ],
    ["block", "U8 weight", W, (t) => ({ ...t, dtype: "U8" }), /dtype U8, expected F8_E4M3/],
    ["block", "transposed weight", W, (t) => ({ ...t, shape: [K, N] }), /shape \[40,88\], expected \[88,40\]/],
    [
      "block",
      "scale shape",
      S,
      (t) => ({ ...t, shape: [2, 6], data: new Uint8Array(48) }),
      /shape \[2,6\], expected \[6,2\]/,
    ],
    [
      "block",
      "negative scale",
      S,
      (t) => ({ ...t, data: f32Data(1e-3, 1e-3, -1, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3) }),
      /scale -1 at element 2/,
    ],
    [
      "block",
      "NaN scale",
      S,
      (t) => ({ ...t, data: new Uint8Array(t.data.length).fill(0xff) }),
      /scale NaN at element 0/,
    ],
    [
      "block",
      "huge scale",
      S,
      (t) => ({ ...t, data: f32Data(...Array(12).fill(1e6)) }),
      /element 0: .*outside \[2\^-22/,
    ],
    ["block", "I32 scale", S, (t) => ({ ...t, dtype: "I32" }), /dtype I32, expected F32, BF16 or F16/],
    [
      "channel",
      "per-channel shape",
      "model.layers.1.mlp.up_proj.weight_scale",
      (t) => ({ ...t, shape: [N, 2], data: new Uint8Array(8 * N) }),
      /expected \[\], \[1\], \[88\] or \[88,1\]/,
    ],
  ];
  for (const [kind, what, name, mut, msg] of cases) {
    const { dir, tensors } = await writeFp8Fixture(kind);
    await writeSafetensors(`${dir}/model.safetensors`, tensors.map((t) => (t.name === name ? mut(t) : t)));
    const ckpt = await openCheckpoint(dir);
    await assert.rejects(() => loadReferenceWeights(ckpt.spec, ckpt.weights, "fp8"), (e: unknown) => {
      assert.ok(e instanceof CheckpointError, `${what}: ${e}`);
      assert.match(e.message, msg, what);
      assert.match(e.message, /model\.safetensors: tensor "/, what);
      assert.equal(e.tensor, name, what);
      return true;
    });
    ckpt.weights.close();
    await Deno.remove(dir, { recursive: true });
  }
  // A missing scale tensor is named before any read.
  const { dir, tensors } = await writeFp8Fixture("block");
  await writeSafetensors(`${dir}/model.safetensors`, tensors.filter((t) => t.name !== S));
  const ckpt = await openCheckpoint(dir);
  await assert.rejects(() => loadReferenceWeights(ckpt.spec, ckpt.weights, "fp8"), (e: unknown) => {
    assert.ok(e instanceof CheckpointError && e.tensor === S && /missing tensor/.test(e.message), `${e}`);
    return true;
  });
  ckpt.weights.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("fp8 quantization_config: e5m2 and malformed weight_block_size are CheckpointErrors naming config.json", async () => {
  const { dir } = await writeFp8Fixture("block");
  const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  for (
    const [q, msg] of [[{ fmt: "e5m2" }, /fp8 format "e5m2"/], [
      { weight_block_size: [0, 32] },
      /bad fp8 weight_block_size/,
    ], [
      { weight_block_size: [128] },
      /bad fp8 weight_block_size/,
    ]] as const
  ) {
    const quantization_config = { ...cfg.quantization_config, ...q };
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...cfg, quantization_config }));
    await assert.rejects(() => openCheckpoint(dir), (e: unknown) => {
      assert.ok(e instanceof CheckpointError && /config\.json/.test(e.message) && msg.test(e.message), `${e}`);
      return true;
    });
  }
  await Deno.remove(dir, { recursive: true });
});

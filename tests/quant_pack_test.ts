import assert from "node:assert/strict";
import { randomCode } from "./helpers/fp8_fixtures.ts";
import { dequantizeFused, packFor, packMma, packRows, unpack, unpackMma, unpackRows } from "../src/quant/pack.ts";
import { dequantize } from "../src/quant/reference.ts";
import { numGroups, type QuantBits, type QuantizedLinear, toF16 } from "../src/quant/types.ts";
import { mulberry32 } from "../src/core/prng.ts";
import { FP8_SCALE_MAX, FP8_SCALE_MIN, fp8Scale } from "../src/quant/fp8.ts";

const rng = mulberry32;

function randomLinear(N: number, K: number, bits: QuantBits, G: number, seed: number): QuantizedLinear {
  const r = rng(seed), qm = (1 << bits) - 1;
  const nG = Math.ceil(K / G);
  return {
    outDim: N,
    inDim: K,
    bits,
    groupSize: G,
    q: Uint8Array.from({ length: N * K }, () => Math.floor(r() * (qm + 1))),
    scales: Float32Array.from({ length: N * nG }, () => toF16(0.001 + r() * 0.05)),
    zeros: Uint16Array.from({ length: N * nG }, () => Math.floor(r() * (qm + 1))),
    gIdx: null,
  };
}

const SHAPES: [number, number, QuantBits, number][] = [
  [37, 48, 4, 16], // N not a multiple of 8 or 64, K not of 64
  [72, 96, 4, 32],
  [130, 40, 4, 16], // K padded to 48 in the mma layout, partial last group
  [33, 64, 8, 16],
  [8, 16, 8, 16],
  [70, 80, 8, 32],
];

function assertSame(a: Pick<QuantizedLinear, "q" | "scales" | "zeros">, ql: QuantizedLinear, what: string) {
  assert.deepEqual(a.q, ql.q, `${what}: q`);
  assert.deepEqual(a.scales, ql.scales, `${what}: scales`);
  assert.deepEqual(a.zeros, ql.zeros, `${what}: zeros`);
}

Deno.test("packMma() then unpackMma() is the identity for awkward int4 / int8 shapes", () => {
  for (const [N, K, bits, G] of SHAPES) {
    const ql = randomLinear(N, K, bits, G, N * K + bits);
    const p = packMma(ql);
    assert.equal(p.qweight.length, (p.paddedOut / (bits === 4 ? 64 : 32)) * (p.paddedIn / 16) * 128);
    assertSame(unpackMma(p), ql, `mma ${N}x${K} int${bits} g${G}`);
  }
});

Deno.test("packRows() then unpackRows() is the identity with f32 and f16 scale pairs", () => {
  for (const [N, K, bits, G] of SHAPES) {
    const ql = randomLinear(N, K, bits, G, 7 * N + K);
    for (const dt of ["f32", "f16"] as const) assertSame(unpackRows(packRows(ql, dt)), ql, `rows ${N}x${K} ${dt}`);
  }
});

Deno.test("packMma() puts the m16n8k16 B fragment pairs where the lop3 int4→f16 trick reads them", () => {
  // q[n, k] = (n + 3k) mod 16 over one 16 x 64 tile; lane l, word j: lo = w & 0x000f000f → (b0, b1) of subtile 2j.
  const N = 64, K = 16;
  const ql: QuantizedLinear = {
    outDim: N,
    inDim: K,
    bits: 4,
    groupSize: 16,
    q: Uint8Array.from({ length: N * K }, (_, i) => (Math.floor(i / K) + 3 * (i % K)) % 16),
    scales: new Float32Array(N).fill(1),
    zeros: new Uint16Array(N),
    gIdx: null,
  };
  const p = packMma(ql);
  const Q = (n: number, k: number) => ql.q[n * K + k]!;
  for (let l = 0; l < 32; l++) {
    const k0 = (l & 3) * 2, c = l >> 2;
    for (let j = 0; j < 4; j++) {
      const w = p.qweight[4 * l + j]!;
      const na = 16 * j + c, nb = na + 8;
      const lo = w & 0x000f000f,
        hi = (w & 0x00f000f0) >>> 4,
        lo2 = (w >>> 8) & 0x000f000f,
        hi2 = (w >>> 12) & 0x000f000f;
      assert.deepEqual([lo & 0xf, lo >>> 16], [Q(na, k0), Q(na, k0 + 1)], `lane ${l} word ${j} b0 b1`);
      assert.deepEqual([hi & 0xf, hi >>> 16], [Q(na, k0 + 8), Q(na, k0 + 9)], `lane ${l} word ${j} b2 b3`);
      assert.deepEqual([lo2 & 0xf, lo2 >>> 16], [Q(nb, k0), Q(nb, k0 + 1)], `lane ${l} word ${j} next b0 b1`);
      assert.deepEqual([hi2 & 0xf, hi2 >>> 16], [Q(nb, k0 + 8), Q(nb, k0 + 9)], `lane ${l} word ${j} next b2 b3`);
    }
  }
});

Deno.test("packFor() picks the layout from the capability and sorts act-order channels", () => {
  const ql = randomLinear(64, 64, 4, 16, 99);
  assert.equal(packFor({ kind: "cuda", sm: 90 }, ql).layout, "mma-m16n8k16");
  assert.equal(packFor({ kind: "cuda", sm: 75 }, ql).layout, "rows-k");
  const wg = packFor({ kind: "webgpu" }, ql);
  assert.ok(wg.layout === "rows-k" && wg.scaleDType === "f32");
  const wg16 = packFor({ kind: "webgpu", shaderF16: true }, ql);
  assert.ok(wg16.layout === "rows-k" && wg16.scaleDType === "f16");
  // Act order: g_idx of a shuffled channel order; packed channel k' must hold original channel perm[k'].
  const r = rng(5);
  const order = Array.from({ length: 64 }, (_, k) => k).sort(() => r() - 0.5);
  const gIdx = new Int32Array(64);
  order.forEach((k, i) => (gIdx[k] = Math.floor(i / 16)));
  const act = { ...ql, gIdx };
  const p = packFor({ kind: "cuda", sm: 80 }, act);
  assert.ok(p.perm);
  const u = unpack(p);
  const ref = dequantize(act), got = dequantizeFused(packRows({ ...act, ...u, gIdx: null }));
  for (let n = 0; n < 64; n++) {
    for (let k = 0; k < 64; k++) assert.equal(got[n * 64 + k], ref[n * 64 + p.perm[k]!], `row ${n}, packed ${k}`);
  }
});

Deno.test("dequantizeFused() is exact with f32 pairs and within half an f16 ulp of z*s with f16 pairs", () => {
  for (const [N, K, bits, G] of SHAPES) {
    const ql = randomLinear(N, K, bits, G, N + K);
    const exact = dequantize(ql);
    assert.deepEqual(dequantizeFused(packRows(ql, "f32")), exact);
    const nG = numGroups(ql);
    for (const p of [packRows(ql, "f16"), packMma(ql)]) {
      const fused = dequantizeFused(p);
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < K; k++) {
          const i = n * nG + Math.floor(k / G);
          const zs = ql.zeros[i]! * ql.scales[i]!;
          const tol = 2 ** (Math.floor(Math.log2(Math.max(zs, 2 ** -14))) - 11) + 1e-7;
          assert.ok(Math.abs(fused[n * K + k]! - exact[n * K + k]!) <= tol, `${p.layout} ${N}x${K} at ${n},${k}`);
        }
      }
    }
  }
});

/** A random fp8 linear: any finite e4m3 code, scales log-uniform over the whole grid (its ends and 0 included). */
function randomFp8(N: number, K: number, G: number, seed: number): QuantizedLinear {
  const r = rng(seed), nG = Math.ceil(K / G);
  const scales = Float32Array.from({ length: N * nG }, () => fp8Scale(2 ** (-22 + r() * 29.99)));
  scales.set([FP8_SCALE_MIN, FP8_SCALE_MAX, 0], 0);
  return {
    outDim: N,
    inDim: K,
    bits: 8,
    fp8: true,
    groupSize: G,
    q: Uint8Array.from({ length: N * K }, () => randomCode(r)),
    scales,
    zeros: new Uint16Array(N * nG),
    gIdx: null,
  };
}

const FP8_SHAPES: [number, number, number][] = [
  [33, 64, 16],
  [8, 16, 16],
  [70, 80, 32], // partial last group
  [37, 40, 128], // one group wider than K
];

Deno.test("fp8 linears: pack then unpack is the identity in the mma and row layouts (f32 and f16 pairs)", () => {
  for (const [N, K, G] of FP8_SHAPES) {
    const ql = randomFp8(N, K, G, N * K);
    const packs = [packMma(ql), packRows(ql, "f32"), packRows(ql, "f16")];
    for (const p of packs) {
      assert.ok(p.fp8, p.layout);
      assertSame(unpack(p), ql, `fp8 ${p.layout} ${N}x${K} g${G}`);
    }
    // The codes sit where int8 values do; only the (scale, bias) pairs differ: 256 s and 0.
    const asInt = { ...ql, fp8: false, scales: ql.scales.map((s) => s * 256), zeros: new Uint16Array(ql.zeros.length) };
    assert.deepEqual(packs[0]!.qweight, packMma(asInt).qweight);
    assert.deepEqual(packs[2]!.qweight, packRows(asInt, "f16").qweight);
    const low = (x: Uint32Array | Float32Array) => Array.from(x, (w) => w & 0xffff);
    assert.deepEqual(low(packs[0]!.scaleBias), low(packMma(asInt).scaleBias));
    assert.deepEqual(low(packs[2]!.scaleBias), low(packRows(asInt, "f16").scaleBias));
    assert.ok([packs[0]!, packs[2]!].every((p) => p.scaleBias.every((w) => w >>> 16 === 0)), "f16 biases +0");
    assert.deepEqual(packs[1]!.scaleBias.filter((_, i) => i % 2 === 0), asInt.scales);
    assert.ok(packs[1]!.scaleBias.every((b, i) => i % 2 === 0 || Object.is(b, 0)), "f32 biases +0");
  }
  for (const cap of [{ kind: "cuda", sm: 90 }, { kind: "cuda", sm: 75 }, { kind: "webgpu" }] as const) {
    assert.ok(packFor(cap, randomFp8(32, 32, 16, 1)).fp8, cap.kind);
  }
});

Deno.test("fp8 linears: dequantizeFused() of every layout equals dequantize() = e4m3(q) * s exactly", () => {
  for (const [N, K, G] of FP8_SHAPES) {
    const ql = randomFp8(N, K, G, N + K);
    const exact = dequantize(ql);
    for (const p of [packMma(ql), packRows(ql, "f32"), packRows(ql, "f16")]) {
      assert.deepEqual(dequantizeFused(p), exact, `${p.layout} ${N}x${K} g${G}`);
    }
  }
});

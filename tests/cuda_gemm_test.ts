// The skinny split-K GEMM (kernels/gemm_skinny.cu skinny<BM>_*, gemm_skinny.ts) against src/backends/reference/ops.ts on fresh
// random inputs at awkward sizes, plus its plan. Without an NVIDIA driver the GPU tests are registered as ignored,
// with the reason in their names; the plan tests run everywhere.
import assert from "node:assert/strict";
import * as ops from "../src/backends/reference/ops.ts";
import { roundTo } from "../src/model/dtype.ts";
import { type ActDType, CudaOps, type Half, matmulKind } from "../src/backends/cuda/ops.ts";
import { SKINNY_BK, SKINNY_TILES, skinnyPlan, type SkinnyTile } from "../src/backends/cuda/gemm_skinny.ts";
import { cudaKernelTest, download, poisoned, randomArray, relErr, upload } from "../src/backends/cuda/testing.ts";

let seed = Math.floor(Math.random() * 1e9);
const rnd = (n: number, scale = 1) => randomArray(n, ++seed, scale);

Deno.test("skinnyPlan() fills at most one wave, splits K evenly and respects the scratch", () => {
  for (
    const [M, N, K] of [[16, 4096, 4096], [64, 6144, 4096], [100, 28672, 4096], [255, 4096, 14336], [9, 172, 1003]]
  ) {
    for (const [act, tile] of [2, 4].flatMap((a) => [undefined, ...SKINNY_TILES].map((t) => [a, t] as const))) {
      const p = skinnyPlan(M!, N!, K!, act, 132, Infinity, tile);
      const KT = Math.ceil(K! / SKINNY_BK);
      assert.ok(p.S >= 1 && (p.S - 1) * p.tps < KT && p.S * p.tps >= KT, `splits ${p.S} x ${p.tps} of ${KT}`);
      assert.ok(p.S === 1 || p.mTiles * p.nTiles * p.S <= 4 * 132, `grid ${p.mTiles}x${p.nTiles}x${p.S}`);
      assert.ok(p.S === 1 || p.S * M! * N! <= 4 * 132 * 2048, "partials fit the scratch");
      assert.ok(p.mTiles * p.bm >= M! && p.nTiles * p.bn >= N!);
    }
  }
  // A small scratch forces fewer, longer splits.
  const p = skinnyPlan(16, 4096, 4096, 2, 132, 16 * 4096 * 3);
  assert.ok(p.S <= 3 && p.S > 1, `S ${p.S}`);
});

Deno.test("matmulKind() routes decode batches to the skinny GEMM unless gemm128 fills the GPU", () => {
  assert.equal(matmulKind(1, 4096, "f32", 132), "gemv");
  assert.equal(matmulKind(1, 128256, "bf16", 132), "gemv");
  assert.equal(matmulKind(2, 4096, "f32", 132), "skinny");
  assert.equal(matmulKind(8, 4096, "f16", 132), "skinny");
  assert.equal(matmulKind(9, 4096, "f32", 132), "skinny");
  assert.equal(matmulKind(64, 28672, "f32", 132), "skinny");
  assert.equal(matmulKind(64, 28672, "bf16", 132), "skinny");
  assert.equal(matmulKind(128, 28672, "bf16", 132), "gemm128"); // 224 blocks of 128x128
  assert.equal(matmulKind(256, 6144, "bf16", 132), "skinny"); // 96 blocks
  assert.equal(matmulKind(256, 4096, "f32", 132), "skinny");
  assert.equal(matmulKind(257, 4096, "f32", 132), "gemm");
  assert.equal(matmulKind(512, 4096, "f32", 132), "gemm128");
  assert.equal(matmulKind(257, 4096, "f16", 132), "gemm128");
  assert.equal(matmulKind(257, 4096, "f16", 132, true), "wgmma"); // sm_90: the wgmma GEMM takes gemm128's place
  assert.equal(matmulKind(512, 4096, "f32", 132, true), "gemm128"); // f32 activations never take it
});

const COMBOS = [["bf16", "bf16"], ["f16", "f16"], ["bf16", "f32"], ["f16", "f32"]] as const;
for (const [wt, act] of COMBOS) {
  const name = `linearWith("skinny") matches the reference, bitwise repeatable (weights ${wt}, activations ${act})`;
  cudaKernelTest(name, async (k, dev) => {
    const o = new CudaOps(k, wt as Half, wt as Half, act as ActDType);
    // [M, N, K, bias]: K = 1000 (16 k-tiles, the last ragged: split-K with 2-tile splits), 1003 (not a multiple of
    // 8: guarded scalar loads), 4104, 72 (2 k-tiles: no split, direct store); N not a multiple of the 64 / 32
    // column tiles.
    const shapes: [number, number, number, boolean][] = [
      [9, 172, 1000, true],
      [16, 200, 1003, false],
      [33, 172, 4104, true],
      [64, 200, 72, true],
      [100, 172, 1000, false],
      [255, 200, 1003, true],
      [17, 4099, 200, true],
    ];
    for (const [M, N, K, hasBias] of shapes) {
      const x = act === "f32" ? rnd(M * K) : roundTo(rnd(M * K), act), w = roundTo(rnd(N * K), wt), bias = rnd(N);
      using xb = upload(dev, x, act), wb = upload(dev, w, wt), bb = upload(dev, bias, "f32");
      // Products of 16-bit values are exact in f32; f32 activations are split into hi + lo halves (~16
      // significant bits, residual < 2^-16 relative), and the sums are f32: the error relative to max |y| (~3
      // sqrt(K) |x w|) is ~1e-6 for these K; 1e-4 leaves room for the worst output.
      const want = ops.linear(x, w, M, K, N, hasBias ? bias : null);
      for (const tile of [undefined, ...SKINNY_TILES] as (SkinnyTile | undefined)[]) {
        using y1 = poisoned(dev, M * N, 4), y2 = poisoned(dev, M * N, 4);
        const bp = hasBias ? bb.ptr : 0n;
        o.linearWith("skinny", xb.ptr, wb.ptr, bp, y1.ptr, M, N, K, tile);
        // A second launch checks that the split-K counters were reset and that the reduction order is fixed.
        o.linearWith("skinny", xb.ptr, wb.ptr, bp, y2.ptr, M, N, K, tile);
        const got = await download(dev, y1, M * N, "f32"), again = await download(dev, y2, M * N, "f32");
        const e = relErr(got, want), tag = `M=${M} N=${N} K=${K} tile=${tile ?? "auto"}`;
        assert.ok(e < 1e-4, `${tag}: error ${e}`);
        assert.deepEqual(again, got, `${tag}: second launch differs`);
      }
    }
  });
}

// Every CUDA kernel against src/backends/reference/ops.ts on fresh random inputs at awkward sizes. Without an
// NVIDIA driver the GPU tests are registered as ignored, with the reason in their names; the lib/ freshness test
// runs everywhere.
import assert from "node:assert/strict";
import * as ops from "../src/backends/reference/ops.ts";
import { roundTo } from "../src/model/dtype.ts";
import { staleness } from "../kernels/build.ts";
import { CudaDevice } from "../src/backends/cuda/device.ts";
import { packArgs } from "../src/backends/cuda/kernel_table.ts";
import { type ActDType, CudaOps, type Half } from "../src/backends/cuda/ops.ts";
import { pairedRow, pairedRows } from "../src/backends/cuda/gate_up.ts";
import {
  cudaKernelTest,
  download,
  downloadI32,
  poisoned,
  randomArray,
  relErr,
  upload,
} from "../src/backends/cuda/testing.ts";

const gpuTest = (
  name: string,
  fn: (o: CudaOps, dev: CudaDevice) => Promise<void>,
  wt: Half = "bf16",
  act: ActDType = wt,
) => cudaKernelTest(name, (k, dev) => fn(new CudaOps(k, wt, wt, act), dev));
let seed = Math.floor(Math.random() * 1e9);
const rnd = (n: number, scale = 1) => randomArray(n, ++seed, scale);
/** Output rounding bound of a 16-bit result (a few ulps relative to the largest value). */
const OUT_BOUND: Record<ActDType, number> = { bf16: 1.6e-2, f16: 2e-3, f32: 1e-5 };

Deno.test("lib/ kernels are built and fresh (kernels/build.ts --check)", async () => {
  const problems = await staleness();
  assert.deepEqual(problems, [], problems.join("; "));
});

Deno.test("kernel arguments are validated before launch", () => {
  const spec = {
    module: "gemm" as const,
    params: [{ name: "x", type: "ptr" as const }, { name: "n", type: "i32" as const }],
  };
  assert.throws(() => packArgs("k", spec, { x: 0n, n: 1 }), /null/);
  assert.throws(() => packArgs("k", spec, { x: 16n, n: 2 ** 31 }), /not a i32/);
  assert.throws(() => packArgs("k", spec, { x: 16n }), /missing/);
  assert.equal(packArgs("k", spec, { x: 16n, n: -3 }).byteLength, 16);
});

const COMBOS = [["bf16", "bf16"], ["f16", "f16"], ["bf16", "f32"], ["f16", "f32"]] as const;
for (const [wt, act] of COMBOS) {
  gpuTest(
    `embed + rmsnorm + fused residual add match the reference (weights ${wt}, activations ${act}, h=172)`,
    async (o, dev) => {
      const vocab = 37, h = 172, n = 11, eps = 1e-5;
      const table = roundTo(rnd(vocab * h), wt), w = rnd(h), res = rnd(n * h);
      const ids = Int32Array.from({ length: n }, (_, i) => (i * 7 + 3) % vocab);
      using tb = upload(dev, table, wt), ib = upload(dev, ids, "i32"), wb = upload(dev, w, "f32");
      using rb = upload(dev, res, "f32"), xb = poisoned(dev, n * h, 4), yb = poisoned(dev, n * h, 4);
      o.embed(tb.ptr, ib.ptr, xb.ptr, n, h, vocab);
      const x = ops.embed(table, ids, h, vocab);
      assert.equal(relErr(await download(dev, xb, n * h, "f32"), x), 0);
      o.rmsnorm(xb.ptr, 0n, 0n, wb.ptr, yb.ptr, n, h, eps);
      const e1 = relErr(await download(dev, yb, n * h, act), ops.rmsNorm(x, w, n, h, eps));
      assert.ok(e1 < OUT_BOUND[act], `rmsnorm error ${e1}`);
      const rows = Int32Array.of(10, 0, 4);
      using rowb = upload(dev, rows, "i32");
      o.rmsnorm(xb.ptr, rb.ptr, rowb.ptr, wb.ptr, yb.ptr, rows.length, h, eps);
      ops.addRmsNorm(x, res, w, n, h, eps);
      const want = new Float32Array(rows.length * h);
      rows.forEach((r, i) => want.set(ops.rmsNorm(x.subarray(r * h, (r + 1) * h), w, 1, h, eps), i * h));
      const e2 = relErr(await download(dev, yb, rows.length * h, act), want);
      assert.ok(e2 < OUT_BOUND[act], `add+rmsnorm error ${e2}`);
    },
    wt,
    act,
  );

  gpuTest(
    `silu_mul matches the reference (activations ${act}, f=172)`,
    async (o, dev) => {
      const rows = 5, f = 172, gu = rnd(rows * 2 * f, 4);
      using gb = upload(dev, gu, "f32"), yb = poisoned(dev, rows * f, 4);
      o.siluMul(gb.ptr, yb.ptr, rows, f);
      const g = new Float32Array(rows * f), u = new Float32Array(rows * f);
      for (let r = 0; r < rows; r++) {
        g.set(gu.subarray(r * 2 * f, r * 2 * f + f), r * f);
        u.set(gu.subarray(r * 2 * f + f, (r + 1) * 2 * f), r * f);
      }
      const e = relErr(await download(dev, yb, rows * f, act), ops.siluMul(g, u));
      assert.ok(e < OUT_BOUND[act], `silu_mul error ${e}`);
    },
    wt,
    act,
  );

  gpuTest(
    `silu_mul reads gate_up paired per n-tile (activations ${act}, f=172, half 32 and 16)`,
    async (o, dev) => {
      const rows = 3, f = 172;
      for (const half of [32, 16]) {
        // gu [rows, N'] f32 in the paired row order of gate_up.ts: gate j at pairedRow(j), up half further.
        const N = pairedRows(f, half), gu = rnd(rows * N, 4);
        using gb = upload(dev, gu, "f32"), yb = poisoned(dev, rows * f, 4);
        o.siluMul(gb.ptr, yb.ptr, rows, f, half);
        const g = new Float32Array(rows * f), u = new Float32Array(rows * f);
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < f; j++) {
            g[r * f + j] = gu[r * N + pairedRow(j, half)]!;
            u[r * f + j] = gu[r * N + pairedRow(j, half) + half]!;
          }
        }
        const e = relErr(await download(dev, yb, rows * f, act), ops.siluMul(g, u));
        assert.ok(e < OUT_BOUND[act], `silu_mul half ${half} error ${e}`);
      }
    },
    wt,
    act,
  );

  gpuTest(
    `linear (GEMV and tensor-core GEMM) matches the reference at awkward shapes (weights ${wt}, activations ${act})`,
    async (o, dev) => {
      // [M, N, K]: GEMV sizes, K = 172 (unaligned: scalar loads), tiles with ragged edges on both tile sizes.
      const shapes: [number, number, number][] = [
        [1, 172, 64],
        [3, 64, 172],
        [8, 512, 64],
        [9, 172, 64],
        [37, 64, 172],
        [130, 200, 172],
        [70, 520, 1024],
        [256, 256, 4096],
        [300, 333, 264],
        [257, 130, 1000],
      ];
      for (const [M, N, K] of shapes) {
        const x = act === "f32" ? rnd(M * K) : roundTo(rnd(M * K), act), w = roundTo(rnd(N * K), wt), bias = rnd(N);
        using xb = upload(dev, x, act), wb = upload(dev, w, wt), bb = upload(dev, bias, "f32");
        const want = ops.linear(x, w, M, K, N, bias);
        // "wgmma" (sm_90a) where the device has it; elsewhere, and for f32 activations or K % 8 != 0, it takes gemm128.
        for (const kind of ["gemv", "skinny", "gemm", "gemm128", "wgmma"] as const) {
          using yb = poisoned(dev, M * N, 4);
          o.linearWith(kind, xb.ptr, wb.ptr, bb.ptr, yb.ptr, M, N, K);
          const e = relErr(await download(dev, yb, M * N, "f32"), want);
          assert.ok(e < 1e-4, `${kind} M=${M} N=${N} K=${K}: error ${e}`);
        }
      }
    },
    wt,
    act,
  );
}

gpuTest(
  "argmax picks the largest logit, lowest index on ties (vocab 128256 vectorized, 997 scalar)",
  async (o, dev) => {
    for (const vocab of [128256, 997]) {
      const rows = 3, l = rnd(rows * vocab);
      l[1 * vocab + 17] = 5;
      l[1 * vocab + 900] = 5;
      l[2 * vocab + vocab - 1] = 7;
      using lb = upload(dev, l, "f32"), ib = poisoned(dev, rows, 4);
      o.argmax(lb.ptr, ib.ptr, rows, vocab);
      const got = await downloadI32(dev, ib, rows);
      const want = Array.from({ length: rows }, (_, r) => {
        let best = 0;
        for (let i = 1; i < vocab; i++) if (l[r * vocab + i]! > l[r * vocab + best]!) best = i;
        return best;
      });
      assert.deepEqual(Array.from(got), want);
      assert.equal(got[1], 17);
      assert.equal(got[2], vocab - 1);
    }
  },
);

// CUDA backend timings on a synthetic Llama-3-8B-shape bf16 model: HBM copy bandwidth and this repo's GEMM rate
// (the two ceilings, measured in the same run), batch-1 decode tok/s with graphs on and off vs the HBM roofline,
// and a 2048-token prefill vs the GEMM rate. Decode runs with the fused decode kernels (kernels/decode.cu) and
// without, reporting kernels per step and the GPU time of one graph replay.
// Usage: deno run -A bench/cuda_decode.ts [--layers N] [--steps N] [--only-decode] [--fused | --unfused]
// (--only-decode: decode only, for profilers)
import type { StepInputs } from "../src/core/types.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { CudaBackend } from "../src/backends/cuda/backend.ts";
import { CudaTimer } from "../src/backends/cuda/device.ts";
import { CudaOps, PF_ROWS } from "../src/backends/cuda/ops.ts";
import { upload } from "../src/backends/cuda/testing.ts";
import { DecodeOps, decParts, type DecVariant } from "../src/backends/cuda/decode_ops.ts";
import { cuda } from "../src/backends/cuda/ffi.ts";
import { fusedDecode } from "../src/backends/cuda/forward_decode.ts";
import { buildSyntheticModel, SyntheticTensorSource } from "../src/model/synthetic.ts";
import { copyBandwidth, exitUnlessCuda, numArg } from "./cuda_common.ts";

const arg = numArg;
exitUnlessCuda("cuda_decode");
// Llama-3-8B shape (optionally fewer layers); the weights are generated on the GPU by the backend.
const spec = { ...buildSyntheticModel("synthetic:llama3-8b:bf16").spec, numLayers: arg("--layers", 32) };
const STEPS = arg("--steps", 64), PROMPT = 128, PREFILL = 2048, BS = 16;
const rows: [string, string][] = [];
const onlyDecode = Deno.args.includes("--only-decode");
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

await using b = await CudaBackend.create();
const dev = b.dev;
rows.push(["device", b.device]);

// Ceiling 1: device-to-device copy, bytes read + written.
let hbm = 3e12;
if (!onlyDecode) {
  using t = new CudaTimer(dev);
  hbm = await copyBandwidth(dev, t);
  rows.push(["HBM copy (cuMemcpyDtoD 1 GiB, read+write)", `${(hbm / 1e9).toFixed(0)} GB/s`]);
}

// Ceiling 2: this repo's tensor-core GEMM at a large shape (there is no cuBLAS here to compare with).
for (const act of onlyDecode ? [] : ["bf16", "f32"] as const) {
  const M = 4096, N = 4096, K = 4096;
  const ops = new CudaOps(b.kernels, "bf16", "bf16", act);
  using x = dev.alloc(M * K * 4, "bench.x"), w = dev.alloc(N * K * 2, "bench.w"), y = dev.alloc(M * N * 4, "bench.y");
  dev.memset(x.ptr, 0x3c, M * K * 4);
  dev.memset(w.ptr, 0x3c, N * K * 2);
  using t = new CudaTimer(dev);
  ops.linear(x.ptr, w.ptr, 0n, y.ptr, M, N, K);
  const ms: number[] = [];
  for (let i = 0; i < 5; i++) {
    t.start();
    ops.linear(x.ptr, w.ptr, 0n, y.ptr, M, N, K);
    ms.push(await t.stop());
  }
  const tf = (2 * M * N * K) / (median(ms) / 1e3) / 1e12;
  rows.push([
    `GEMM 4096^3 (${ops.matmulKind(M, N)}), activations ${act}`,
    `${tf.toFixed(0)} TFLOP/s (${median(ms).toFixed(2)} ms)`,
  ]);
  if (act === "bf16") {
    // The mma.sync GEMM on the same shape, for comparison.
    ops.linearWith("gemm128", x.ptr, w.ptr, 0n, y.ptr, M, N, K);
    const ms2: number[] = [];
    for (let i = 0; i < 5; i++) {
      t.start();
      ops.linearWith("gemm128", x.ptr, w.ptr, 0n, y.ptr, M, N, K);
      ms2.push(await t.stop());
    }
    const tf2 = (2 * M * N * K) / (median(ms2) / 1e3) / 1e12;
    rows.push([`GEMM 4096^3 (gemm128, mma.sync), activations ${act}`, `${tf2.toFixed(0)} TFLOP/s`]);
    if (dev.cc[0] === 9 && dev.cc[1] === 0) {
      // gemm_wg without the 128-byte swizzle (core-matrix layout), for comparison.
      const ns = () =>
        b.kernels.launch("gemm_wg", "ns_bf16", [N / 128, M / 128], [256], {
          A: x.ptr,
          W: w.ptr,
          bias: 0n,
          C: y.ptr,
          M,
          N,
          K,
        }, 3 * 2 * 128 * 64 * 2);
      ns();
      const ms3: number[] = [];
      for (let i = 0; i < 5; i++) {
        t.start();
        ns();
        ms3.push(await t.stop());
      }
      const tf3 = (2 * M * N * K) / (median(ms3) / 1e3) / 1e12;
      rows.push([`GEMM 4096^3 (wgmma, no swizzle), activations ${act}`, `${tf3.toFixed(0)} TFLOP/s`]);
    }
  }
}

// Prefill attention alone, one layer of the 8B shape at T = PREFILL (32 / 8 heads, d 128, causal, one sequence,
// bf16 cache, bf16 output): the tensor-core kernel (what 16-bit-activation prefill runs) vs the CUDA-core one.
if (!onlyDecode) {
  const T = PREFILL, nh = 32, nkv = 8, d = 128, G = nh / nkv, per = Math.floor(PF_ROWS / G), tl: number[] = [];
  for (let t = 0; t < T; t += per) tl.push(0, t, Math.min(per, T - t));
  const ops = new CudaOps(b.kernels, "bf16", "bf16", "bf16");
  using q = dev.alloc(T * nh * d * 4, "bench.q"), out = dev.alloc(T * nh * d * 2, "bench.out");
  using kc = dev.alloc(T * nkv * d * 2, "bench.k"), vc = dev.alloc(T * nkv * d * 2, "bench.v");
  dev.memset(q.ptr, 0x3c, T * nh * d * 4);
  dev.memset(kc.ptr, 0x3c, T * nkv * d * 2);
  dev.memset(vc.ptr, 0x3c, T * nkv * d * 2);
  using tables = upload(dev, Int32Array.from({ length: T / BS }, (_, i) => i), "i32");
  using pos = upload(dev, Int32Array.from({ length: T }, (_, i) => i), "i32");
  using tiles = upload(dev, Int32Array.from(tl), "i32");
  const a = {
    q: q.ptr,
    kCache: kc.ptr,
    vCache: vc.ptr,
    blockTables: tables.ptr,
    positions: pos.ptr,
    tileList: tiles.ptr,
    tiles: tl.length / 3,
    out: out.ptr,
    nh,
    nkv,
    d,
    blockSize: BS,
    maxBlocks: T / BS,
    window: 0,
    scale: 1 / Math.sqrt(d),
  };
  using t = new CudaTimer(dev);
  const flops = 4 * nh * d * (T * (T + 1) / 2);
  for (const kernel of ["tc", "cores"] as const) {
    ops.attentionPrefill({ ...a, kernel });
    const ms: number[] = [];
    for (let i = 0; i < 5; i++) {
      t.start();
      ops.attentionPrefill({ ...a, kernel });
      ms.push(await t.stop());
    }
    rows.push([
      `prefill attention kernel alone, T=${T} causal 32/8 heads d=128 bf16 (${kernel})`,
      `${median(ms).toFixed(3)} ms/layer, ${(flops / (median(ms) / 1e3) / 1e12).toFixed(0)} TFLOP/s`,
    ]);
  }
}

// Decode-shaped GEMV (M = 1) per projection of the 8B shape: bytes of weights over time (20 launches queued
// between the events, so host launch time stays out).
for (const act of onlyDecode ? [] : ["f32", "bf16"] as const) {
  const ops = new CudaOps(b.kernels, "bf16", "bf16", act);
  for (
    const [N, K, what] of [[6144, 4096, "qkv"], [28672, 4096, "gate_up"], [4096, 14336, "down"], [
      128256,
      4096,
      "lm_head",
    ]] as const
  ) {
    using x = dev.alloc(K * 4, "bench.x"), w = dev.alloc(N * K * 2, "bench.w"), y = dev.alloc(N * 4, "bench.y");
    dev.memset(x.ptr, 0x3c, K * 4);
    dev.memset(w.ptr, 0x3c, N * K * 2);
    using t = new CudaTimer(dev);
    ops.linear(x.ptr, w.ptr, 0n, y.ptr, 1, N, K);
    const ms: number[] = [];
    for (let i = 0; i < 3; i++) {
      t.start();
      for (let r = 0; r < 20; r++) ops.linear(x.ptr, w.ptr, 0n, y.ptr, 1, N, K); // back to back: no host gaps
      ms.push((await t.stop()) / 20);
    }
    const m = median(ms);
    rows.push([
      `GEMV M=1 ${what} ${N}x${K}, activations ${act}`,
      `${(m * 1e3).toFixed(0)} us, ${(N * K * 2 / (m / 1e3) / 1e9).toFixed(0)} GB/s`,
    ]);
  }
}

// The fused decode GEMVs (f32 activations, bf16 weights) at the same shapes next to gemv1 (the unfused path), with
// and without programmatic dependent launch (PDL lets launch i+1 start streaming weights while launch i drains, as
// in the decode graph). Each of the 20 back-to-back launches reads its weights at a new offset of a 1 GiB buffer,
// so no launch finds its weights in the 50 MB L2 (as in a real step, where 32 layers' weights stream past).
const variants = [[true, 8], [true, 4]] as const;
for (const [pdl, warps] of onlyDecode ? [] : variants) {
  const d = new DecodeOps(b.kernels, "bf16", "f32", pdl, warps);
  const ops = new CudaOps(b.kernels, "bf16", "bf16", "f32");
  const K1 = 14336, parts = decParts(4096), WB = 1 << 30;
  using w = dev.alloc(WB, "bench.w"), xg = dev.alloc(K1 * 4, "bench.xg");
  using ss = dev.alloc(parts * 4, "bench.ss"), y = dev.alloc(128256 * 4, "bench.y"), x = dev.alloc(4096 * 4, "bench.x");
  dev.memset(w.ptr, 0x3c, WB);
  dev.memset(xg.ptr, 0x3c, K1 * 4);
  dev.memset(ss.ptr, 0x3c, parts * 4);
  let r = 0;
  const W = (elems: number) => w.ptr + BigInt(((r++ * elems * 2) % (WB - elems * 2)) & ~255);
  const inp = { bias: 0n, xg: xg.ptr, ss: ss.ptr, parts, eps: 1e-5, M: 1 };
  const norm = { ...inp, rowIdx: 0n, y: y.ptr };
  const res = { bias: 0n, xin: xg.ptr, x: x.ptr, gNext: xg.ptr, xg: y.ptr, ss: ss.ptr, M: 1 };
  const gemv1 = (N: number, K: number) => ops.linear(xg.ptr, W(N * K), 0n, y.ptr, 1, N, K);
  const cases: [string, number, () => void][] = [
    ["qkv gemv1 (unfused)", 6144 * 4096, () => gemv1(6144, 4096)],
    ["qkv norm 6144x4096", 6144 * 4096, () => d.gemvNorm({ ...norm, W: W(6144 * 4096), N: 6144, K: 4096 })],
    ["qkv norm r2", 6144 * 4096, () => d.gemvNorm({ ...norm, W: W(6144 * 4096), N: 6144, K: 4096 }, "r2")],
    ["qkv norm u8", 6144 * 4096, () => d.gemvNorm({ ...norm, W: W(6144 * 4096), N: 6144, K: 4096 }, "u8")],
    ["o gemv1 (unfused)", 4096 * 4096, () => gemv1(4096, 4096)],
    ["o +res 4096x4096", 4096 * 4096, () => d.gemvRes({ ...res, W: W(4096 * 4096), N: 4096, K: 4096 })],
    ["o +res u8", 4096 * 4096, () => d.gemvRes({ ...res, W: W(4096 * 4096), N: 4096, K: 4096 }, "u8")],
    ["gate_up gemv1 (unfused)", 28672 * 4096, () => gemv1(28672, 4096)],
    [
      "gate_up norm+silu 28672x4096",
      28672 * 4096,
      () => d.gemvSilu({ ...inp, W: W(28672 * 4096), act: y.ptr, F: 14336, K: 4096 }),
    ],
    ["down gemv1 (unfused)", 4096 * K1, () => gemv1(4096, K1)],
    ["down +res 4096x14336", 4096 * K1, () => d.gemvRes({ ...res, W: W(4096 * K1), N: 4096, K: K1 })],
    ["down +res u8", 4096 * K1, () => d.gemvRes({ ...res, W: W(4096 * K1), N: 4096, K: K1 }, "u8")],
    ["lm_head norm 128256x4096", 128256 * 4096, () => d.gemvNorm({ ...norm, W: W(128256 * 4096), N: 128256, K: 4096 })],
    ["lm_head norm r2", 128256 * 4096, () => d.gemvNorm({ ...norm, W: W(128256 * 4096), N: 128256, K: 4096 }, "r2")],
  ];
  for (const [what, elems, go] of cases) {
    if (what.includes("gemv1") && (warps !== 8 || !pdl)) continue;
    using t = new CudaTimer(dev);
    go();
    const ms: number[] = [];
    for (let i = 0; i < 3; i++) {
      t.start();
      for (let r = 0; r < 20; r++) go();
      ms.push((await t.stop()) / 20);
    }
    const m = median(ms);
    rows.push([
      what.includes("gemv1")
        ? `GEMV M=1 ${what}, 4 warps/block`
        : `fused GEMV M=1 ${what}, ${warps} warps/block, PDL ${pdl ? "on" : "off"}`,
      `${(m * 1e3).toFixed(1)} us, ${(elems * 2 / (m / 1e3) / 1e9).toFixed(0)} GB/s`,
    ]);
  }
}

const t0 = performance.now();
await b.load(spec, new SyntheticTensorSource(spec, "BF16"), { weight: "bf16", kv: "bf16", compute: "f32" });
const weightBytes = 2 * (spec.numLayers * (4096 * (32 + 16) * 128 + 4096 * 4096 + 3 * 4096 * 14336) + 128256 * 4096);
rows.push([`load synthetic 8B-shape (${spec.numLayers} layers)`, `${((performance.now() - t0) / 1e3).toFixed(1)} s`]);
const MULTI_K = 8, MULTI_RUNS = 6; // multi-step decode: runs of MULTI_K steps after the single steps
const nBlocks = Math.ceil((PREFILL + STEPS + 8 + MULTI_K * MULTI_RUNS) / BS);
b.allocateKv(nBlocks, BS);
const table = Int32Array.from({ length: nBlocks }, (_, i) => i);
const greedy = { ...defaultSamplingParams(), temperature: 0 };
const stepOf = (ids: number[], start: number): StepInputs => ({
  tokens: Int32Array.from(ids),
  positions: Int32Array.from(ids, (_, i) => start + i),
  queryStarts: Int32Array.of(0, ids.length),
  contextLens: Int32Array.of(start + ids.length),
  blockTables: table,
  maxBlocksPerSeq: nBlocks,
  blockSize: BS,
  slots: Int32Array.from(ids, (_, i) => start + i),
  sample: [true],
  sampling: [{ params: greedy, promptIds: ids, outputIds: [], fallbackSeed: 0 }],
});
const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i * 7919) % spec.vocabSize);

for (const act of onlyDecode ? [] : ["f32", "half"] as const) {
  b.setActivations(act);
  const ids = prompt(PREFILL);
  await b.forward(stepOf(ids, 0)); // warm-up: workspace growth
  const t = performance.now();
  await b.forward(stepOf(ids, 0));
  const ms = performance.now() - t;
  const flops = 2 * PREFILL * (weightBytes / 2 - 128256 * 4096) +
    2 * 2 * spec.numLayers * 32 * 128 * PREFILL * PREFILL / 2;
  rows.push([
    `prefill ${PREFILL} tokens, activations ${act}`,
    `${ms.toFixed(0)} ms, ${(PREFILL / ms * 1e3).toFixed(0)} tok/s, ${(flops / (ms / 1e3) / 1e12).toFixed(0)} TFLOP/s`,
  ]);
}
b.setActivations("f32");

// --fused / --unfused: only that decode path (for profilers); default both. Fused: [warps per GEMV block, GEMV
// variant of qkv, of o / down, of the LM head]; every variant at context 128, the first at 2048.
const paths = Deno.args.includes("--unfused") ? [false] : Deno.args.includes("--fused") ? [true] : [true, false];
type V = DecVariant;
// The first is the default (forward_decode.ts fusedDecode).
const fusedVariants: [4 | 8, V, V, V][] = [[8, "r2", "u8", "r2"], [8, "r2", "u8", "r1"], [4, "r2", "u8", "r2"]];
const configs = [PROMPT, PREFILL].flatMap((c) =>
  paths.flatMap((f) =>
    (f ? (c === PROMPT ? fusedVariants : fusedVariants.slice(0, 1)) : [[8, "r1", "r1", "r1"] as const]).map((v) =>
      [c, f, ...v] as const
    )
  )
);
for (const [context, fused, warps, qkv, res, lm] of configs) {
  fusedDecode.enabled = fused;
  fusedDecode.warps = warps;
  fusedDecode.qkv = qkv;
  fusedDecode.res = res;
  fusedDecode.lm = lm;
  b.graphs.clear();
  const tag = `context ${context}, ${
    fused ? `fused (${warps} warps/block; qkv ${qkv}, o+down ${res}, lm ${lm})` : "unfused"
  }`;
  for (const graphs of [true, false]) {
    b.graphsEnabled = graphs;
    const r = await b.forward(stepOf(prompt(context), 0));
    let id = r.tokens[0]!;
    const ms: number[] = [];
    for (let s = 0; s < STEPS; s++) {
      const t = performance.now();
      id = (await b.forward(stepOf([id], context + s))).tokens[0]!;
      ms.push(performance.now() - t);
    }
    const m = median(ms.slice(2));
    // Multi-step decode (Backend.decodeSteps, what the engine runs when every sequence samples on the GPU): MULTI_K
    // steps per call, one host sync per run.
    let multi = NaN;
    if (graphs) {
      const per: number[] = [];
      for (let r = 0; r < MULTI_RUNS; r++) {
        const t = performance.now();
        const ids = await b.decodeSteps(stepOf([id], context + STEPS + r * MULTI_K), MULTI_K);
        per.push((performance.now() - t) / MULTI_K);
        id = ids[MULTI_K - 1]!;
      }
      multi = median(per.slice(1));
    }
    const k0 = b.kernels.launches;
    b.graphsEnabled = false;
    await b.forward(stepOf([id], context + STEPS + MULTI_K * MULTI_RUNS)); // kernel by kernel: launches per step
    const kernels = b.kernels.launches - k0;
    b.graphsEnabled = graphs;
    const kvBytes = context * spec.numLayers * 2 * 8 * 128 * 2;
    const roof = (weightBytes + kvBytes) / hbm * 1e3;
    rows.push([
      `decode batch 1, ${tag}, graphs ${graphs ? "on" : "off"} (${kernels} kernels/step)`,
      `${(1e3 / m).toFixed(1)} tok/s (${m.toFixed(2)} ms/step; HBM roofline ${roof.toFixed(2)} ms = ${
        (1e3 / roof).toFixed(0)
      } tok/s; ${(100 * roof / m).toFixed(0)}%)`,
    ]);
    if (graphs) {
      rows.push([
        `decode batch 1, ${tag}, multi-step k = ${MULTI_K} (graphs)`,
        `${(1e3 / multi).toFixed(1)} tok/s (${multi.toFixed(2)} ms/step; ${(100 * roof / multi).toFixed(0)}%)`,
      ]);
      // GPU time of one step: replays of the captured step (same inputs), back to back between events.
      using t = new CudaTimer(dev);
      t.start();
      for (let r = 0; r < 20; r++) b.graphs.launch(1);
      const gpu = (await t.stop()) / 20;
      const pct = (100 * roof / gpu).toFixed(0);
      rows.push([`decode batch 1, ${tag}: GPU time of one graph replay`, `${gpu.toFixed(2)} ms (${pct}% of roofline)`]);
      if (context === PROMPT) {
        // Host overhead: one replay with the host waiting (await dev.sync(): a worker-thread cuStreamSynchronize),
        // with a 4-byte pageable download first (it returns when the stream is done) then the same await, or then
        // a cuStreamQuery only. forward() adds checks, input packing and 8 uploads to the last.
        const ids = new Int32Array(1);
        using idsBuf = dev.alloc(4, "bench.ids");
        const ways: [string, () => Promise<void>][] = [
          ["replay + await sync", async () => (b.graphs.launch(1), await dev.sync())],
          ["replay + download + await sync", async () => {
            b.graphs.launch(1);
            dev.download(ids, idsBuf.ptr);
            await dev.sync();
          }],
          ["replay + download + cuStreamQuery", () => {
            b.graphs.launch(1);
            dev.download(ids, idsBuf.ptr);
            if (cuda().cuStreamQuery(dev.stream) !== 0) throw new Error("stream busy after a pageable download");
            return Promise.resolve();
          }],
        ];
        for (const [what, go] of ways) {
          const w: number[] = [];
          for (let r = 0; r < 12; r++) {
            const t0 = performance.now();
            await go();
            w.push(performance.now() - t0);
          }
          rows.push([`decode batch 1, ${tag}: ${what}`, `${median(w.slice(2)).toFixed(3)} ms wall`]);
        }
      }
    }
  }
}

console.log("\n| measurement | result |\n| --- | --- |");
for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);

// Micro-benchmarks of the WebGPU backend on whatever adapter is present (not part of the backend):
//   deno run -A src/backends/webgpu/bench.ts [gemv] [ops] [step] [--small]
// gemv: decode-sized GEMVs over f16 weight matrices, reported as weight bytes streamed per second.
// ops: the other kernels at decode sizes, in microseconds per call.
// step: whole decode steps (one command buffer each, read back included) of a synthetic Llama-shaped model with
//       constant weights, for batch sizes 1 and 8, reported as ms per step and weight GB/s.
import type { ModelSpec, TensorInfo, TensorSource } from "../../core/types.ts";
import { parseModelConfig } from "../../model/config.ts";
import { defaultSamplingParams } from "../../sampling/params.ts";
import { createWebGpuBackend } from "./backend.ts";
import { LinearOp, RmsNormOp, SampleOp, SiluMulOp } from "./kernels.ts";
import { AttentionOp, kvLayerBytes, planAttention, RopeKvOp } from "./attention.ts";
import { openTestContext } from "./testing.ts";
import { expectedTensors } from "../../model/weights.ts";

const small = Deno.args.includes("--small");

async function benchGemv(): Promise<void> {
  const ctx = await openTestContext();
  const wt = ctx.hasF16 ? "f16" : "f32";
  const f0 = performance.now();
  for (let i = 0; i < 5; i++) {
    ctx.device.queue.submit([ctx.device.createCommandEncoder().finish()]);
    await ctx.device.queue.onSubmittedWorkDone();
  }
  const floorMs = (performance.now() - f0) / 5;
  console.log(`empty submit round trip: ${floorMs.toFixed(2)} ms`);
  const shapes = small ? [[1024, 1024]] : [[4096, 4096], [28672, 4096], [4096, 14336], [128256, 4096]];
  for (const [N, K] of shapes as [number, number][]) {
    for (const M of [1, 4, 8]) {
      const w = ctx.pool.create("w", N * K * (wt === "f16" ? 2 : 4)); // [N, K] WT (zero-filled: timing only)
      const x = ctx.pool.create("x", M * K * 4), y = ctx.pool.create("y", M * N * 4);
      const op = await LinearOp.create(ctx, `bench.${N}.${K}.${M}`, wt);
      op.prepare({ M, N, K, bias: false });
      const reps = small ? 5 : 400;
      const run = async () => {
        const enc = ctx.device.createCommandEncoder();
        const pass = enc.beginComputePass();
        for (let i = 0; i < reps; i++) op.encode(pass, { x, w, y });
        pass.end();
        ctx.device.queue.submit([enc.finish()]);
        await ctx.device.queue.onSubmittedWorkDone();
      };
      await run(); // warm-up (pipeline compile)
      const t0 = performance.now();
      await run();
      // Minus one empty round trip: Deno's WebGPU waits in 10 ms poll steps (see worker.ts).
      const s = Math.max(1e-9, (performance.now() - t0 - floorMs) / 1000 / reps);
      console.log(`gemv ${wt} M=${M} N=${N} K=${K}: ${(s * 1e6).toFixed(1)} us, ${(w.size / s / 1e9).toFixed(1)} GB/s`);
      for (const b of [w, x, y]) ctx.pool.destroy(b);
    }
  }
  ctx.destroy();
  ctx.device.destroy();
}

/** Decode-shaped calls of the other kernels (Llama-3.2-1B-like sizes), floor-corrected like benchGemv. */
async function benchOps(): Promise<void> {
  const ctx = await openTestContext();
  const kt = ctx.hasF16 ? "f16" : "f32";
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) {
    ctx.device.queue.submit([ctx.device.createCommandEncoder().finish()]);
    await ctx.device.queue.onSubmittedWorkDone();
  }
  const floorMs = (performance.now() - t0) / 5;
  const time = async (label: string, encode: (pass: GPUComputePassEncoder) => void) => {
    const reps = small ? 5 : 400;
    const run = async () => {
      const enc = ctx.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      for (let i = 0; i < reps; i++) encode(pass);
      pass.end();
      ctx.device.queue.submit([enc.finish()]);
      await ctx.device.queue.onSubmittedWorkDone();
    };
    await run();
    const t1 = performance.now();
    await run();
    console.log(`${label}: ${(Math.max(0, performance.now() - t1 - floorMs) * 1000 / reps).toFixed(1)} us`);
  };
  const buf = (n: number) => ctx.pool.create("b", Math.max(256, n));
  const h = 2048, F = 8192, nh = 32, nkv = 8, d = 64, bs = 16, V = 32000;
  const norm = await RmsNormOp.create(ctx, "b.norm");
  norm.prepare({ n: 1, h, eps: 1e-5, residual: true, gather: false, rows: 1 });
  const x = buf(h * 4), r = buf(h * 4), w = buf(h * 4), y = buf(h * 4);
  await time("rmsnorm+residual T=1 h=2048", (p) => norm.encode(p, { x, r, w, y }));
  const silu = await SiluMulOp.create(ctx, "b.silu");
  silu.prepare({ T: 1, F });
  const gu = buf(2 * F * 4), act = buf(F * 4);
  await time("silu_mul T=1 F=8192", (p) => silu.encode(p, { gu, act }));
  for (const ctxLen of [512, 4096]) {
    const numBlocks = ctxLen / bs, dims = { numHeads: nh, kvHeads: nkv, headDim: d, blockSize: bs, numBlocks };
    const kc = buf(kvLayerBytes(dims, kt)), vc = buf(kvLayerBytes(dims, kt));
    const qkv = buf((nh + 2 * nkv) * d * 4), pos = ctx.pool.upload("pos", Int32Array.of(ctxLen - 1));
    const slots = ctx.pool.upload("slots", Int32Array.of(ctxLen - 1));
    const rope = buf(ctxLen * d * 4);
    const ropeOp = await RopeKvOp.create(ctx, `b.rope.${ctxLen}`, kt);
    ropeOp.prepare({ ...dims, T: 1, qkNorm: false, eps: 1e-5, ropeRows: ctxLen });
    await time(`rope_kv T=1 heads 32/8 d=64`, (p) => ropeOp.encode(p, { qkv, pos, slots, rope, kc, vc }));
    const plan = planAttention(Int32Array.of(0, 1), Int32Array.of(ctxLen - 1), nh, null);
    const attn = await AttentionOp.create(ctx, `b.attn.${ctxLen}`, kt, d);
    attn.prepare({ ...dims, maxBlocks: numBlocks, qStride: (nh + 2 * nkv) * d, window: null, scale: 0.125 }, plan);
    const bufs = {
      qkv,
      kc,
      vc,
      bt: ctx.pool.upload("bt", Int32Array.from({ length: numBlocks }, (_, i) => i)),
      items: ctx.pool.upload("items", plan.items),
      tiles: buf(32),
      pos,
      out: buf(nh * d * 4),
      part: buf(AttentionOp.partialBytes(plan, nh, d)),
    };
    await time(`attention decode B=1 ctx=${ctxLen} (${plan.maxSplits} splits)`, (p) => attn.encode(p, bufs));
  }
  const sample = await SampleOp.create(ctx, "b.sample");
  sample.prepare({ rows: 1, vocab: V, row0: 0 });
  const logits = buf(V * 4), ids = buf(4);
  for (const [label, t, k, tp] of [["greedy", 0, 0, 1], ["top-k 50 top-p 0.9", 0.8, 50, 0.9]] as const) {
    const cfg = new DataView(new ArrayBuffer(16));
    cfg.setFloat32(0, t, true), cfg.setUint32(4, k, true), cfg.setFloat32(8, tp, true), cfg.setFloat32(12, 0.5, true);
    const cb = ctx.pool.upload("cfg", new Uint8Array(cfg.buffer));
    await time(`sample ${label} vocab=${V}`, (p) => sample.encode(p, { logits, cfg: cb, ids }));
  }
  ctx.destroy();
  ctx.device.destroy();
}

/** Constant tensors of the right shapes, produced on demand. */
class ConstantSource implements TensorSource {
  readonly #shapes: Map<string, readonly number[]>;
  constructor(spec: ModelSpec) {
    this.#shapes = new Map(expectedTensors(spec).map((e) => [e.name, e.shape]));
  }
  names() {
    return [...this.#shapes.keys()];
  }
  has(n: string) {
    return this.#shapes.has(n);
  }
  info(name: string): TensorInfo {
    const shape = this.#shapes.get(name)!;
    return { name, dtype: "F32", shape, file: "constant", byteLength: 4 * shape.reduce((a, b) => a * b, 1) };
  }
  bytes(name: string): Promise<Uint8Array> {
    return this.f32(name).then((f) => new Uint8Array(f.buffer));
  }
  f32(name: string): Promise<Float32Array> {
    return Promise.resolve(new Float32Array(this.info(name).byteLength / 4).fill(name.includes("norm") ? 1 : 0.01));
  }
  close() {}
}

async function benchStep(): Promise<void> {
  const spec = parseModelConfig({
    architectures: ["LlamaForCausalLM"],
    hidden_size: small ? 256 : 2048,
    intermediate_size: small ? 688 : 8192,
    num_hidden_layers: small ? 2 : 16,
    num_attention_heads: small ? 4 : 32,
    num_key_value_heads: small ? 2 : 8,
    vocab_size: small ? 1000 : 32000,
    max_position_embeddings: 4096,
    tie_word_embeddings: true,
  });
  await using b = await createWebGpuBackend({ memoryBytes: 16 * 2 ** 30, profile: true });
  const t0 = performance.now();
  await b.load(spec, new ConstantSource(spec), {
    weight: "f16",
    kv: b.supports.kv.includes("f16") ? "f16" : "f32",
    compute: "f32",
  });
  const weightBytes = b.context.pool.bytes;
  console.log(`step: ${b.device}; loaded ${(weightBytes / 1e9).toFixed(2)} GB in ${(performance.now() - t0) | 0} ms`);
  const bs = 16, ctxLen = 512, blocksPer = ctxLen / bs + 8;
  for (const B of [1, 8]) {
    b.allocateKv(B * blocksPer, bs);
    const sampling = {
      params: { ...defaultSamplingParams(), temperature: 0 },
      promptIds: [],
      outputIds: [],
      fallbackSeed: 0,
    };
    const step = (pos: number) => {
      const positions = new Int32Array(B).fill(pos);
      const bt = Int32Array.from({ length: B * blocksPer }, (_, i) => i);
      return b.forward({
        tokens: new Int32Array(B).fill(3),
        positions,
        queryStarts: Int32Array.from({ length: B + 1 }, (_, i) => i),
        contextLens: new Int32Array(B).fill(pos + 1),
        blockTables: bt,
        maxBlocksPerSeq: blocksPer,
        blockSize: bs,
        slots: Int32Array.from({ length: B }, (_, s) => (s * blocksPer + Math.floor(pos / bs)) * bs + (pos % bs)),
        sample: new Array(B).fill(true),
        sampling: new Array(B).fill(sampling),
      });
    };
    for (let p = 0; p < 3; p++) await step(ctxLen - 10 + p); // warm-up
    const n = small ? 5 : 30;
    const t1 = performance.now();
    for (let i = 0; i < n; i++) await step(ctxLen - 7 + (i % 4));
    const ms = (performance.now() - t1) / n;
    const last = b.context.lastStep;
    console.log(
      `  last step: ${last.dispatches} dispatches, encode ${last.encodeMs.toFixed(2)} ms, ` +
        `wait ${last.waitMs.toFixed(2)} ms, GPU (timestamps) ${last.gpuMs.toFixed(2)} ms`,
    );
    console.log(
      `decode B=${B} ctx=${ctxLen}: ${ms.toFixed(2)} ms/step, ${
        (weightBytes / (ms / 1000) / 1e9).toFixed(1)
      } GB/s of weights`,
    );
  }
}

if (import.meta.main) {
  const all = !Deno.args.some((a) => a === "gemv" || a === "ops" || a === "step");
  if (all || Deno.args.includes("gemv")) await benchGemv();
  if (all || Deno.args.includes("ops")) await benchOps();
  if (all || Deno.args.includes("step")) await benchStep();
}

// Decode attention (attn_split + attn_combine) at the Llama-3-8B shape (32 query heads, 8 KV heads, d 128, blocks of
// 16, scattered block tables) for f16 / int8 / int4 KV, contexts 1k / 4k / 8k, batch 1 and 16: GPU time per call,
// KV bytes read (rows + scales), and that over the copy bandwidth (cuMemcpyDtoD, read + write) measured in the same
// run. Each timing replays a CUDA graph of launches over distinct cache copies (>= 256 MiB in all, so L2 holds
// none of it), like one per layer in a model.
// Also times bench-only variants of attn_split (ops.ts DECODE_VARIANTS: cp.async stages, blocks per SM) at context 8k.
// Usage: deno run -A bench/cuda_attention.ts [--quick] [--bs 16] [--only kv:batch:ctx:splitLen[:variant][,...]]
// (--only: those configurations, e.g. under ncu: `ncu -k regex:attn_split ... deno run ... --only int4:16:8192:1024`)
import { CudaDevice, CudaTimer } from "../src/backends/cuda/device.ts";
import { GraphCache } from "../src/backends/cuda/graphs.ts";
import { Kernels } from "../src/backends/cuda/kernels.ts";
import { type CudaKv, kvRowBytes, kvScaleBytes } from "../src/backends/cuda/kv.ts";
import { attentionPlan, CudaOps, DECODE_VARIANTS, type DecodeVariant } from "../src/backends/cuda/ops.ts";
import { randomArray, upload } from "../src/backends/cuda/testing.ts";
import { copyBandwidth, exitUnlessCuda } from "./cuda_common.ts";

exitUnlessCuda("bench/cuda_attention.ts");
const quick = Deno.args.includes("--quick");
const onlyArg = Deno.args.indexOf("--only");
const only = onlyArg >= 0 ? (Deno.args[onlyArg + 1] ?? "").split(",").map((o) => o.split(":")) : null;
const bsArg = Deno.args.indexOf("--bs"); // block size (default 16)
const NH = 32, NKV = 8, D = 128, BS = bsArg >= 0 ? Number(Deno.args[bsArg + 1]) : 16;
await using dev = CudaDevice.open(0);
using k = await Kernels.load(dev);
using timer = new CudaTimer(dev);
using graphs = new GraphCache(dev);

async function timeMs(fn: () => void, reps: number): Promise<number> {
  fn();
  await dev.sync();
  timer.start();
  for (let r = 0; r < reps; r++) fn();
  return (await timer.stop()) / reps;
}

// Copy roofline: 1 GiB device to device, read + write bytes over time.
const copyBw = await copyBandwidth(dev, timer);
console.log(`${dev.description}: copy bandwidth ${(copyBw / 1e9).toFixed(0)} GB/s (cuMemcpyDtoD 1 GiB, read + write)`);

interface Row {
  kv: CudaKv;
  variant: string;
  ctx: number;
  batch: number;
  splitLen: number;
  splits: number;
  us: number;
  mb: number;
  pct: number;
}
const rows: Row[] = [];
const contexts = quick ? [4096] : [1024, 4096, 8192];
// (kv, batch, ctx) groups: every one (runs: the split lengths and variants below) or those of --only.
const groups: [CudaKv, number, number, string[][] | null][] = only
  ? only.map((o) => [o[0] as CudaKv, Number(o[1]), Number(o[2]), [o]])
  : (["f16", "int8", "int4"] as const).flatMap((kv) =>
    [1, 16].flatMap((batch) => contexts.map((ctx): [CudaKv, number, number, null] => [kv, batch, ctx, null]))
  );
for (const [kv, batch, ctx, picked] of groups) {
  const o = new CudaOps(k, "f16", kv, "f16");
  const perSeq = ctx / BS, blocks = batch * perSeq;
  const rowB = kvRowBytes(kv, D), scB = kvScaleBytes(kv);
  const readBytes = 2 * batch * ctx * NKV * (rowB + scB); // K and V rows + scales
  const copyRows = blocks * NKV * BS * rowB, copyScales = blocks * NKV * BS * scB;
  const copies = Math.max(1, Math.min(256, Math.ceil((256 << 20) / readBytes)));
  using kc = dev.alloc(copies * copyRows, "bench.k"), vc = dev.alloc(copies * copyRows, "bench.v");
  dev.memset(kc.ptr, 0x35, copies * copyRows);
  dev.memset(vc.ptr, 0x2b, copies * copyRows);
  // Scales: f16 (scale 0.01, zero -0.5) for every row.
  const sz = new Uint16Array(Math.max(2, 2 * copies * blocks * NKV * BS));
  for (let i = 0; i < sz.length; i += 2) sz[i] = 0x211f, sz[i + 1] = 0xb800;
  using ks = dev.alloc(sz.byteLength, "bench.ks"), vs = dev.alloc(sz.byteLength, "bench.vs");
  dev.upload(ks.ptr, sz);
  dev.upload(vs.ptr, sz);
  // Scattered tables: sequence b takes blocks perm[b * perSeq ..].
  const perm = Array.from({ length: blocks }, (_, i) => (i * 7919) % blocks);
  const tables = Int32Array.from(perm);
  using tb = upload(dev, tables, "i32");
  using pos = upload(dev, new Int32Array(batch).fill(ctx - 1), "i32");
  using seq = upload(dev, Int32Array.from({ length: batch }, (_, b) => b), "i32");
  using q = upload(dev, randomArray(batch * NH * D, 7), "f32");
  const base = attentionPlan(batch, ctx, kv);
  const lens = quick ? [base.splitLen] : batch === 1 ? [64, 128, 256, 512] : [256, 512, 1024, 1376, 1648, 2048];
  // Kernel variants (bench only, ops.ts DECODE_VARIANTS) at context 8k: batch 1 with splits of 512, batch 16 with
  // 1024 / 1648 / 2048.
  const variants = (Object.keys(DECODE_VARIANTS) as DecodeVariant[]).filter((v) =>
    (DECODE_VARIANTS[v].kvs as readonly string[]).includes(kv)
  );
  const runs: [number, DecodeVariant | undefined][] = picked
    ? picked.map((p) => [Number(p[3]), p[4] as DecodeVariant | undefined])
    : lens.map((l) => [l, undefined]);
  if (!quick && !only && ctx === 8192) {
    for (const l of batch === 1 ? [512] : [1024, 1648, 2048]) for (const v of variants) runs.push([l, v]);
  }
  for (const [splitLen, variant] of runs) {
    const splits = Math.ceil(ctx / splitLen);
    using po = dev.alloc(4 * batch * NH * splits * D, "bench.po"),
      pml = dev.alloc(4 * batch * NH * splits * 2, "bench.pml");
    using out = dev.alloc(2 * batch * NH * D, "bench.out");
    const call = (c: number) =>
      o.attention({
        q: q.ptr,
        kCache: kc.ptr + BigInt(c * copyRows),
        vCache: vc.ptr + BigInt(c * copyRows),
        ...(scB ? { kScale: ks.ptr + BigInt(c * copyScales), vScale: vs.ptr + BigInt(c * copyScales) } : {}),
        blockTables: tb.ptr,
        tokenSeq: seq.ptr,
        positions: pos.ptr,
        tokenList: 0n,
        rows: batch,
        partO: po.ptr,
        partML: pml.ptr,
        out: out.ptr,
        n: batch,
        nh: NH,
        nkv: NKV,
        d: D,
        blockSize: BS,
        maxBlocks: perSeq,
        splits,
        splitLen,
        window: 0,
        scale: 1 / Math.sqrt(D),
        ...(variant ? { variant } : {}),
      });
    const calls = Math.max(copies, 8);
    graphs.capture(0, () => {
      for (let c = 0; c < calls; c++) call(c % copies);
    });
    const ms = await timeMs(() => graphs.launch(0), 10) / calls;
    const bw = readBytes / (ms / 1e3);
    rows.push({
      kv,
      variant: variant ?? "-",
      ctx,
      batch,
      splitLen,
      splits,
      us: ms * 1e3,
      mb: readBytes / 1e6,
      pct: (100 * bw) / copyBw,
    });
  }
}
console.log("\nkv   var    ctx   batch splitLen splits    us/call   MB read   GB/s  % copy roofline (* default plan)");
for (const r of rows) {
  const def = attentionPlan(r.batch, r.ctx, r.kv).splitLen === r.splitLen ? "*" : " ";
  console.log(
    `${r.kv.padEnd(4)} ${r.variant.padEnd(4)} ${String(r.ctx).padStart(5)} ${String(r.batch).padStart(6)} ${
      String(r.splitLen).padStart(8)
    }` +
      ` ${String(r.splits).padStart(6)} ${r.us.toFixed(2).padStart(10)} ${r.mb.toFixed(2).padStart(9)}` +
      ` ${((r.mb * 1e3) / r.us).toFixed(0).padStart(6)} ${r.pct.toFixed(1).padStart(6)}${def}`,
  );
}

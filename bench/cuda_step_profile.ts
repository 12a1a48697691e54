// One decode step of the synthetic Llama-3-8B shape on CUDA, for a per-kernel breakdown under ncu: loads the model
// (--weight bf16 | f16 | int8 | int4, --group G, --layers N, --max-positions P, --kv f16 | int8 | int4), prefills --prompt tokens per sequence for --batch
// sequences, then runs --steps decode steps kernel by kernel (graphs off, so every launch is its own profiler range).
// Usage (on the GPU machine):
//   TURBODENO_CUDA_GRAPHS=0 ncu --metrics gpu__time_duration.sum --csv --launch-skip-before-match 0 \
//     deno run -A bench/cuda_step_profile.ts --weight int4 --layers 4 > prof.csv
//   deno run -A bench/cuda_step_profile.ts --summarize prof.csv   (µs per kernel name and per step, last step only)
//   deno run -A bench/cuda_step_profile.ts --ablate   (GPU time of the captured decode step with groups of kernels left
//     out: what each costs inside the real PDL / graph pipeline; the results of those steps are wrong, timing only)
import type { KvDType, StepInputs, WeightDType } from "../src/core/types.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { CudaBackend } from "../src/backends/cuda/backend.ts";
import { CudaTimer } from "../src/backends/cuda/device.ts";
import { decodeBucket } from "../src/backends/cuda/graphs.ts";
import { attentionLaunch, CudaOps, matmulRouting } from "../src/backends/cuda/ops.ts";
import { decodeSplit } from "../src/backends/cuda/attention_args.ts";
import { qgemvDefaults } from "../src/backends/cuda/qlinear.ts";
import { fusedDecode } from "../src/backends/cuda/forward_decode.ts";
import { quantDecodeAblation } from "../src/backends/cuda/forward_decode_quant.ts";
import { buildSyntheticModel, SyntheticTensorSource } from "../src/model/synthetic.ts";
import { exitUnlessCuda, numArg } from "./cuda_common.ts";

const strArg = (name: string, def: string) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] ?? def : def;
};

const MARK = "profile: decode step";
if (Deno.args.includes("--summarize")) {
  summarize(await Deno.readTextFile(strArg("--summarize", "")));
  Deno.exit(0);
}

exitUnlessCuda("cuda_step_profile");
const weight = strArg("--weight", "int4") as WeightDType;
const base = buildSyntheticModel("synthetic:llama3-8b:f16").spec;
const spec = {
  ...base,
  numLayers: numArg("--layers", 4),
  maxPositions: numArg("--max-positions", base.maxPositions), // decode graphs plan attention splits for this
};
const B = numArg("--batch", 1), PROMPT = numArg("--prompt", 128), STEPS = numArg("--steps", 2), BS = 16;
const perSeq = Math.ceil((PROMPT + STEPS + 4) / BS);
const greedy = { ...defaultSamplingParams(), temperature: 0 };
const step = (ids: number[][], start: number[], seqs: number[]): StepInputs => {
  const qs = [0];
  for (const t of ids) qs.push(qs[qs.length - 1]! + t.length);
  const positions = ids.flatMap((t, s) => t.map((_, i) => start[s]! + i));
  const owner = ids.flatMap((t, s) => t.map(() => seqs[s]!));
  return {
    tokens: Int32Array.from(ids.flat()),
    positions: Int32Array.from(positions),
    queryStarts: Int32Array.from(qs),
    contextLens: Int32Array.from(ids, (t, s) => start[s]! + t.length),
    blockTables: Int32Array.from(
      seqs.flatMap((q) => Array.from({ length: perSeq }, (_, i) => q * perSeq + i)),
    ),
    maxBlocksPerSeq: perSeq,
    blockSize: BS,
    slots: Int32Array.from(positions, (p, i) => owner[i]! * perSeq * BS + p),
    sample: ids.map(() => true),
    sampling: ids.map((t) => ({ params: greedy, promptIds: t, outputIds: [], fallbackSeed: 0 })),
  };
};

await using b = await CudaBackend.create();
await b.load(spec, new SyntheticTensorSource(spec, "F16"), {
  weight,
  group: numArg("--group", 128),
  kv: strArg("--kv", "f16") as KvDType,
  compute: "f16",
});
b.allocateKv(B * perSeq, BS);
let last: number[] = [];
for (let s = 0; s < B; s++) {
  const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 7919 + s * 104729) % spec.vocabSize);
  last.push((await b.forward(step([prompt], [0], [s]))).tokens[0]!);
}
const seqs = last.map((_, s) => s);
let pos = PROMPT;
const decode = async () => {
  const r = await b.forward(step(last.map((id) => [id]), last.map(() => pos), seqs));
  pos++;
  last = Array.from(r.tokens);
};
if (!Deno.args.includes("--ablate")) {
  for (let i = 0; i < STEPS; i++) {
    console.error(`${MARK} ${i}`);
    await decode();
  }
} else {
  // Each variant: set the launch knobs and patch CudaOps, drop the captured graphs, run 3 steps from the same state
  // (capture + replays; the ids must match the first variant's unless kernels are left out), time 20 replays.
  const proto = CudaOps.prototype as unknown as Record<string, unknown>;
  const launch = b.kernels.launch;
  const saved = { ...Object.fromEntries(["siluMul", "ropeKv", "attention"].map((n) => [n, proto[n]])) };
  const fused0 = { ...fusedDecode }, routing0 = { ...matmulRouting };
  const knobs = (w: number, early: boolean, attnPdl: boolean, split = decodeSplit.len) => () => {
    Object.assign(fusedDecode, fused0);
    Object.assign(matmulRouting, routing0);
    Object.assign(qgemvDefaults, { warpsPerSm: w, early });
    attentionLaunch.pdl = attnPdl;
    quantDecodeAblation.plainInput = false;
    decodeSplit.len = split;
  };
  const base = knobs(qgemvDefaults.warpsPerSm, qgemvDefaults.early, attentionLaunch.pdl, decodeSplit.len);
  const variants: [string, string[], () => void][] = [
    ["defaults", [], base],
    ["LM head by dec_gemv_norm at every batch", [], () => (base(), fusedDecode.lmGemmRows = 99)],
    ["fused decode off", [], () => (base(), fusedDecode.enabled = false)],
    ["dense: fused at 1 row, skinny GEMM above", [], () => {
      base();
      fusedDecode.denseMaxRows = 1;
      matmulRouting.gemvMaxM = 1;
    }],
    ["qgemv late trigger", [], knobs(16, false, false)],
    ["decode splits of 512 keys", [], knobs(16, true, false, 512)],
    ["attn_split PDL", [], knobs(16, true, true)],
    [
      "qkv / gate_up read f16 x (no RMSNorm prologue; wrong)",
      [],
      () => (base(), quantDecodeAblation.plainInput = true),
    ],
    ["defaults, no silu_mul", ["siluMul"], base],
    ["defaults, no rope_kv", ["ropeKv"], base],
    ["defaults, no attention (split + combine)", ["attention"], base],
    ["defaults, no attn_combine", ["kernel:attn_combine"], base],
  ];
  using t = new CudaTimer(b.dev);
  const out: string[] = [];
  const start = { last: [...last], pos };
  let ref = "";
  for (const [name, off, setup] of variants) {
    setup();
    for (const n of Object.keys(saved)) proto[n] = off.includes(n) ? () => {} : saved[n];
    // "kernel:<base>" in `off`: launches of that kernel are dropped.
    const dropped = off.filter((o) => o.startsWith("kernel:")).map((o) => o.slice(7));
    b.kernels.launch = dropped.length === 0 ? launch : (base, ...rest) => {
      if (!dropped.includes(base)) launch.call(b.kernels, base, ...rest);
    };
    b.graphs.clear();
    last = [...start.last];
    pos = start.pos;
    const ids: number[] = [];
    for (let i = 0; i < 3; i++) {
      await decode();
      ids.push(...last);
    }
    ref ||= ids.join(",");
    const ms: number[] = [];
    for (let r = 0; r < 5; r++) {
      t.start();
      for (let i = 0; i < 20; i++) b.graphs.launch(decodeBucket(B));
      ms.push(await t.stop() / 20);
    }
    const same = off.length > 0 ? "-" : ids.join(",") === ref ? "yes" : `NO (${ids.join(",")})`;
    out.push(`| ${name} | ${Math.min(...ms).toFixed(3)} | ${same} |`);
  }
  base();
  b.kernels.launch = launch;
  console.log(
    `| ${weight}, ${spec.numLayers} layers, batch ${B} | GPU ms per step | ids as the first |\n| --- | ---: | --- |\n${
      out.join("\n")
    }`,
  );
}

/** µs per kernel name over the last decode step of an ncu CSV (the launches after the last prefill). */
function summarize(csv: string): void {
  const rows = csv.split("\n").filter((l) => l.startsWith('"')).map((l) => l.slice(1, -1).split('","'));
  const head = rows.shift() ?? [];
  const col = (n: string) => head.indexOf(n);
  const [iName, iMetric, iValue] = [col("Kernel Name"), col("Metric Name"), col("Metric Value")];
  const times = rows.filter((r) => r[iMetric] === "gpu__time_duration.sum").map((r) => ({
    name: (r[iName] ?? "").replace(/\(.*$/, ""),
    ns: Number((r[iValue] ?? "0").replace(/,/g, "")),
  }));
  // Every step starts with the embedding lookup: the last step is the tail from the last embed launch.
  let from = 0;
  times.forEach((t, i) => {
    if (t.name.includes("embed")) from = i;
  });
  const tail = times.slice(from);
  const by = new Map<string, { n: number; ns: number }>();
  for (const t of tail) {
    const e = by.get(t.name) ?? { n: 0, ns: 0 };
    e.n++;
    e.ns += t.ns;
    by.set(t.name, e);
  }
  const total = tail.reduce((a, t) => a + t.ns, 0);
  console.log(`| kernel | launches | µs total | µs each | % |\n| --- | ---: | ---: | ---: | ---: |`);
  for (const [name, e] of [...by].sort((a, b) => b[1].ns - a[1].ns)) {
    console.log(
      `| ${name} | ${e.n} | ${(e.ns / 1e3).toFixed(1)} | ${(e.ns / e.n / 1e3).toFixed(2)} | ${
        (100 * e.ns / total).toFixed(1)
      } |`,
    );
  }
  console.log(`| all (${tail.length} launches) | | ${(total / 1e3).toFixed(1)} | | 100 |`);
}

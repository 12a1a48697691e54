// `deno task bench --suite generation|serving|kernels [options]`: results go to OUT/SUITE.{json,md,svg}.
import { parseArgs } from "node:util";
import { loadModel, MODEL_FLAG_OPTIONS } from "../src/cli/common.ts";
import { generationBenchmark } from "./generation.ts";
import { servingBenchmark } from "./serving.ts";
import { kernelsBenchmark } from "./kernels.ts";
import { UserError } from "../src/core/errors.ts";
import { writeReport } from "./report.ts";

const HELP = `Usage: deno task bench --suite generation|serving|kernels [options]

  --model M            model folder, Hub id, synthetic:NAME (default: the demo model)
  --backend B          auto, cuda, webgpu, reference
  --out DIR            where SUITE.json, SUITE.md and SUITE.svg go (default bench/out)
generation:
  --batches LIST       batch sizes (default 1,16,64,256)
  --lengths LIST       INxOUT pairs (default 128x128,2048x128,128x2048)
serving:
  --url URL            benchmark a running server instead of starting one
  --requests N         requests to send (default 1000)
  --concurrency N      requests in flight (default 256)
  --rate R             requests per second, Poisson arrivals (default: as fast as concurrency allows)
  --length-scale F     scale the ShareGPT-like mean lengths (input ~220, output ~200) (default 1)
kernels (--backend webgpu or cuda; the reference backend has no kernels to time):
  --model synthetic:N  shapes to time (default synthetic:llama3-8b; synthetic:tiny on a software adapter)
  --prefill T          prefill rows for GEMM, rope, silu_mul, prefill attention (default 2048; 512 on software)
  --reps N             most calls per timed batch (default 2000; CUDA graphs hold at most 100)`;

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    ...MODEL_FLAG_OPTIONS,
    suite: { type: "string", default: "generation" },
    batches: { type: "string", default: "1,16,64,256" },
    lengths: { type: "string", default: "128x128,2048x128,128x2048" },
    out: { type: "string", default: "bench/out" },
    url: { type: "string" },
    requests: { type: "string", default: "1000" },
    concurrency: { type: "string", default: "256" },
    rate: { type: "string" },
    "length-scale": { type: "string", default: "1" },
    prefill: { type: "string" },
    reps: { type: "string", default: "2000" },
  },
});
if (f.help) {
  console.log(HELP);
  Deno.exit(0);
}

function positive(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`--${name} must be a positive number, got "${v}"`);
    Deno.exit(2);
  }
  return n;
}

let report;
if (f.suite === "generation") {
  const m = await loadModel(f);
  await using _backend = m.backend;
  const lengths = f.lengths.split(",").map((p) => p.split("x").map((x) => positive(x, "lengths")) as [number, number]);
  report = await generationBenchmark(m, f.batches.split(",").map((b) => positive(b, "batches")), lengths);
} else if (f.suite === "serving") {
  report = await servingBenchmark({
    url: f.url,
    model: f.model,
    backend: f.backend,
    dtype: f.dtype,
    requests: positive(f.requests, "requests"),
    concurrency: positive(f.concurrency, "concurrency"),
    rate: f.rate === undefined ? Infinity : positive(f.rate, "rate"),
    lengthScale: positive(f["length-scale"], "length-scale"),
    quiet: f.quiet,
  });
} else if (f.suite === "kernels") {
  try {
    report = await kernelsBenchmark(f.backend, {
      model: f.model,
      maxReps: Math.ceil(positive(f.reps, "reps")),
      prefill: f.prefill === undefined ? undefined : Math.ceil(positive(f.prefill, "prefill")),
      quiet: f.quiet,
    });
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    console.error(e.message);
    Deno.exit(2);
  }
} else {
  console.error(`unknown suite "${f.suite}" (generation, serving, kernels)`);
  Deno.exit(2);
}
console.log(await writeReport(f.out, report));

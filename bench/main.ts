// `deno task bench [--suite generation] [--model DIR] [--backend NAME]`: static-batch generation throughput, as
// LMDeploy's profile_generation reports it (prefill included). Writes bench/out/generation.{json,md}.
import { parseArgs } from "node:util";
import { loadModel, MODEL_FLAG_OPTIONS } from "../src/cli/common.ts";
import { Engine } from "../src/engine/engine.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    ...MODEL_FLAG_OPTIONS,
    suite: { type: "string", default: "generation" },
    batches: { type: "string", default: "1,4,16" },
    lengths: { type: "string", default: "32x32,128x16" },
    out: { type: "string", default: "bench/out" },
  },
});
if (f.help) {
  console.log(`Usage: deno task bench [--suite generation] [--model DIR] [--backend NAME] [--batches 1,4,16]
  [--lengths INxOUT,...] [--out DIR]`);
  Deno.exit(0);
}
if (f.suite !== "generation") {
  console.error(`unknown suite "${f.suite}" (available: generation)`);
  Deno.exit(2);
}

const m = await loadModel(f);
await using _backend = m.backend;
const rows: { batch: number; input: number; output: number; seconds: number; tokPerS: number; outTokPerS: number }[] =
  [];
for (const len of f.lengths.split(",")) {
  const [input, output] = len.split("x").map(Number) as [number, number];
  for (const batch of f.batches.split(",").map(Number)) {
    await using engine = new Engine(m.backend, m.spec, m.precision, m.tokenizer, {
      blockSize: 16,
      maxBatchedTokens: 2048,
      maxBatchSize: batch,
      cacheFraction: 0.8,
      enablePrefixCache: false,
    });
    let seed = 1234;
    const prompt = () =>
      Array.from({ length: input }, () => (seed = (seed * 1103515245 + 12345) >>> 0) % m.spec.vocabSize);
    const t0 = performance.now();
    const handles = Array.from({ length: batch }, () =>
      engine.submit({
        promptIds: prompt(),
        sampling: { ...defaultSamplingParams(), temperature: 0 },
        maxTokens: output,
        ignoreEos: true,
      }));
    const results = await Promise.all(handles.map((h) => h.result));
    const seconds = (performance.now() - t0) / 1000;
    const generated = results.reduce((a, r) => a + r.completionTokens, 0);
    rows.push({
      batch,
      input,
      output,
      seconds,
      tokPerS: (generated + batch * input) / seconds,
      outTokPerS: generated / seconds,
    });
    console.error(`batch ${batch} in ${input} out ${output}: ${(generated / seconds).toFixed(1)} output tok/s`);
  }
}
await Deno.mkdir(f.out, { recursive: true });
const meta = { date: new Date().toISOString(), model: m.id, backend: m.backend.name, device: m.backend.device };
await Deno.writeTextFile(`${f.out}/generation.json`, JSON.stringify({ ...meta, rows }, null, 2));
const md = [
  `Generation (${meta.model}, ${meta.backend}: ${meta.device}, ${meta.date})`,
  "",
  "| batch | input | output | seconds | total tok/s | output tok/s |",
  "| ---: | ---: | ---: | ---: | ---: | ---: |",
  ...rows.map((r) =>
    `| ${r.batch} | ${r.input} | ${r.output} | ${r.seconds.toFixed(2)} | ${r.tokPerS.toFixed(1)} | ${
      r.outTokPerS.toFixed(1)
    } |`
  ),
].join("\n");
await Deno.writeTextFile(`${f.out}/generation.md`, md + "\n");
console.log(md);

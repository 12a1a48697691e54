// Generation benchmark: static batches through the engine, tok/s with prefill included, as LMDeploy's
// profile_generation reports it.
import type { LoadedModel } from "../src/cli/common.ts";
import { Engine } from "../src/engine/engine.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import type { Report } from "./report.ts";

export async function generationBenchmark(
  m: LoadedModel,
  batches: readonly number[],
  lengths: readonly (readonly [number, number])[],
): Promise<Report> {
  const rows: Record<string, number>[] = [];
  for (const [input, output] of lengths) {
    for (const batch of batches) {
      await using engine = new Engine(m.backend, m.spec, m.precision, m.tokenizer, {
        blockSize: 16,
        maxBatchedTokens: 4096,
        maxBatchSize: batch,
        cacheFraction: 0.8,
        enablePrefixCache: false,
      });
      let seed = 1234;
      const prompt = () =>
        Array.from({ length: input }, () => 3 + ((seed = (seed * 1103515245 + 12345) >>> 0) % (m.spec.vocabSize - 3)));
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
        "total tok/s": (generated + batch * input) / seconds,
        "output tok/s": generated / seconds,
      });
      console.error(`batch ${batch} in ${input} out ${output}: ${(generated / seconds).toFixed(1)} output tok/s`);
    }
  }
  return {
    suite: "generation",
    meta: { date: new Date().toISOString(), model: m.id, backend: m.backend.name, device: m.backend.device },
    columns: ["batch", "input", "output", "seconds", "total tok/s", "output tok/s"],
    rows,
    chart: {
      value: "output tok/s",
      title: `Generation: output tok/s (${m.id}, ${m.backend.name})`,
      label: (r) => `b${r.batch} ${r.input}→${r.output}`,
    },
  };
}

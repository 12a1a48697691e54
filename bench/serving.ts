// Serving benchmark: a load generator against the live HTTP server (started here, or --url). Requests come from a
// fixed-seed ShareGPT-like length distribution and stream over SSE; we time every token's arrival.
import { ProgressBar } from "../src/core/progress.ts";
import { startServer } from "../src/server/server.ts";
import { percentile, type Report } from "./report.ts";
import { shareGptLike, type WorkItem } from "./workload.ts";

export interface ServingOptions {
  readonly url?: string;
  readonly model?: string;
  readonly backend: string;
  readonly dtype: string;
  readonly requests: number;
  readonly concurrency: number;
  /** Requests per second (Poisson arrivals); Infinity sends as fast as concurrency allows. */
  readonly rate: number;
  /** Multiplies the distribution's mean lengths (small models: < 1). */
  readonly lengthScale: number;
  readonly quiet: boolean;
}

interface Timing {
  readonly ttft: number;
  readonly itl: number[];
  readonly e2e: number;
  readonly outputTokens: number;
  readonly inputTokens: number;
}

async function runOne(url: string, model: string, w: WorkItem): Promise<Timing> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model,
      prompt: w.promptIds,
      max_tokens: w.outputLen,
      temperature: 0,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
      return_token_ids: true,
    }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const arrivals: number[] = [];
  let outputTokens = 0, buf = "";
  const dec = new TextDecoder();
  for await (const chunk of res.body) {
    const now = performance.now();
    buf += dec.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, nl).replace(/^data: /, "");
      buf = buf.slice(nl + 2);
      if (ev === "[DONE]" || ev.trim() === "") continue;
      const j = JSON.parse(ev) as { choices?: { token_ids?: number[] }[]; usage?: { completion_tokens: number } };
      const n = j.choices?.[0]?.token_ids?.length ?? 0;
      for (let i = 0; i < n; i++) arrivals.push(now);
      if (j.usage) outputTokens = j.usage.completion_tokens;
    }
  }
  const end = performance.now();
  const itl = arrivals.slice(1).map((t, i) => t - arrivals[i]!);
  return { ttft: (arrivals[0] ?? end) - t0, itl, e2e: end - t0, outputTokens, inputTokens: w.promptIds.length };
}

export async function servingBenchmark(o: ServingOptions): Promise<Report> {
  const server = o.url ? null : await startServer({
    model: o.model,
    backend: o.backend,
    dtype: o.dtype,
    quiet: o.quiet,
    port: 0,
    maxWaiting: 1 << 20,
  });
  try {
    const url = o.url ?? server!.url;
    const models = await (await fetch(`${url}/v1/models`)).json() as { data: { id: string; max_model_len?: number }[] };
    const model = models.data[0]!.id;
    const maxLen = Math.min(models.data[0]!.max_model_len ?? 2048, 4096);
    const vocab = server?.model.spec.vocabSize ?? 32000;
    const work = shareGptLike(o.requests, { vocab, maxLen, scale: o.lengthScale });
    const bar = new ProgressBar(`serving ${o.requests} requests`, o.requests, "items", o.quiet);
    const timings: Timing[] = [];
    let next = 0, failed = 0;
    const start = performance.now();
    let arrival = start;
    const worker = async () => {
      while (next < work.length) {
        const w = work[next++]!;
        if (Number.isFinite(o.rate)) {
          arrival += (-Math.log(1 - Math.random()) / o.rate) * 1000;
          const wait = arrival - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
        try {
          timings.push(await runOne(url, model, w));
        } catch (e) {
          failed++;
          console.error(`request failed: ${(e as Error).message}`);
        }
        bar.update(timings.length + failed);
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.concurrency, work.length) }, worker));
    bar.done();
    const seconds = (performance.now() - start) / 1000;
    const out = timings.reduce((a, t) => a + t.outputTokens, 0);
    const tpot = timings.filter((t) => t.outputTokens > 1).map((t) => (t.e2e - t.ttft) / (t.outputTokens - 1));
    const itl = timings.flatMap((t) => t.itl);
    const ttft = timings.map((t) => t.ttft);
    const row: Record<string, number> = {
      requests: timings.length,
      failed,
      seconds,
      "req/s": timings.length / seconds,
      "output tok/s": out / seconds,
      "input tok/s": timings.reduce((a, t) => a + t.inputTokens, 0) / seconds,
    };
    for (const [name, values] of [["TTFT", ttft], ["TPOT", tpot], ["ITL", itl]] as const) {
      for (const p of [50, 90, 99]) row[`${name} p${p} ms`] = percentile(values, p);
    }
    return {
      suite: "serving",
      meta: {
        date: new Date().toISOString(),
        model,
        backend: server?.model.backend.name ?? "remote",
        device: server?.model.backend.device ?? url,
        concurrency: o.concurrency,
        rate: Number.isFinite(o.rate) ? o.rate : "max",
      },
      columns: Object.keys(row),
      rows: [row],
      chart: {
        value: "output tok/s",
        title: `Serving: output tok/s (${model}, concurrency ${o.concurrency})`,
        label: () => model,
      },
    };
  } finally {
    await server?.shutdown();
  }
}

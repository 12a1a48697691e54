// Serving benchmark: a load generator against the live HTTP server (started here, or --url). Requests come from a
// fixed-seed ShareGPT-like length distribution and stream over SSE; we time every token's arrival.
import { ProgressBar } from "../src/core/progress.ts";
import { startServer } from "../src/server/server.ts";
import { percentile, type Report } from "./report.ts";
import { shareGptLike } from "./workload.ts";
import type { ClientJob, ClientMessage, Timing } from "./serving_client.ts";

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

/** Runs the load generator in a Worker (its own event loop) and resolves with its timings. */
function runInWorker(job: ClientJob, onDone: (n: number) => void): Promise<{ timings: Timing[]; failed: number }> {
  const w = new Worker(new URL("./serving_client.ts", import.meta.url), { type: "module" });
  return new Promise((resolve, reject) => {
    w.onerror = (e) => {
      e.preventDefault();
      w.terminate();
      reject(new Error(`load generator: ${e.message}`));
    };
    w.onmessage = (e: MessageEvent<ClientMessage>) => {
      const m = e.data;
      if ("done" in m) return onDone(m.done);
      for (const err of m.errors) console.error(`request failed: ${err}`);
      w.terminate();
      resolve(m);
    };
    w.postMessage(job);
  });
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
    const start = performance.now();
    const { timings, failed } = await runInWorker(
      { url, model, work, concurrency: o.concurrency, rate: Number.isFinite(o.rate) ? o.rate : null },
      (done) => bar.update(done),
    );
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

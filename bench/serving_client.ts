// The serving benchmark's load generator, run in a Worker so that parsing thousands of SSE events a second does not
// compete with the server for its event loop (LMDeploy's and vLLM's clients are separate processes too).
// Message in: ClientJob. Messages out: {done: n} after each request, then {timings, failed}.
import type { WorkItem } from "./workload.ts";

export interface Timing {
  readonly ttft: number;
  readonly itl: number[];
  readonly e2e: number;
  readonly outputTokens: number;
  readonly inputTokens: number;
}

export interface ClientJob {
  readonly url: string;
  readonly model: string;
  readonly work: WorkItem[];
  readonly concurrency: number;
  /** requests per second (Poisson arrivals); null: as fast as concurrency allows */
  readonly rate: number | null;
}

export type ClientMessage = { done: number } | { timings: Timing[]; failed: number; errors: string[] };

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

/** Runs the job's requests with `concurrency` in flight; `onDone` after each. */
export async function runClient(job: ClientJob, onDone: (n: number) => void) {
  const timings: Timing[] = [], errors: string[] = [];
  let next = 0, failed = 0, arrival = performance.now();
  const worker = async () => {
    while (next < job.work.length) {
      const w = job.work[next++]!;
      if (job.rate !== null) {
        arrival += (-Math.log(1 - Math.random()) / job.rate) * 1000;
        const wait = arrival - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      try {
        timings.push(await runOne(job.url, job.model, w));
      } catch (e) {
        failed++;
        if (errors.length < 10) errors.push((e as Error).message);
      }
      onDone(timings.length + failed);
    }
  };
  await Promise.all(Array.from({ length: Math.min(job.concurrency, job.work.length) }, worker));
  return { timings, failed, errors };
}

// deno-lint-ignore no-explicit-any
const scope = globalThis as any;
if (typeof scope.WorkerGlobalScope !== "undefined" && scope instanceof scope.WorkerGlobalScope) {
  scope.onmessage = async (e: MessageEvent<ClientJob>) => {
    const result = await runClient(e.data, (done) => scope.postMessage({ done } satisfies ClientMessage));
    scope.postMessage(result satisfies ClientMessage);
  };
}

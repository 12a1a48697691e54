// GET /metrics: engine, scheduler and KV statistics in the Prometheus text format (version 0.0.4).
import type { Histogram } from "../engine/metrics.ts";
import type { ServerContext } from "./context.ts";

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
const PREFIX = "turbodeno_";

function escapeLabel(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

class Writer {
  readonly lines: string[] = [];
  constructor(readonly labels: string) {}

  #head(name: string, type: string, help: string): void {
    this.lines.push(`# HELP ${PREFIX}${name} ${help}`, `# TYPE ${PREFIX}${name} ${type}`);
  }

  #labels(extra = ""): string {
    const all = [this.labels, extra].filter((s) => s !== "").join(",");
    return all === "" ? "" : `{${all}}`;
  }

  gauge(name: string, help: string, v: number): void {
    this.#head(name, "gauge", help);
    this.lines.push(`${PREFIX}${name}${this.#labels()} ${num(v)}`);
  }

  counter(name: string, help: string, v: number): void {
    this.#head(`${name}_total`, "counter", help);
    this.lines.push(`${PREFIX}${name}_total${this.#labels()} ${num(v)}`);
  }

  labeledCounter(name: string, help: string, label: string, values: Record<string, number>): void {
    this.#head(`${name}_total`, "counter", help);
    for (const [k, v] of Object.entries(values)) {
      this.lines.push(`${PREFIX}${name}_total${this.#labels(`${label}="${escapeLabel(k)}"`)} ${num(v)}`);
    }
  }

  histogram(name: string, help: string, h: Histogram): void {
    this.#head(name, "histogram", help);
    h.bounds.forEach((b, i) => {
      this.lines.push(`${PREFIX}${name}_bucket${this.#labels(`le="${num(b)}"`)} ${h.counts[i]}`);
    });
    this.lines.push(`${PREFIX}${name}_bucket${this.#labels('le="+Inf"')} ${h.count}`);
    this.lines.push(`${PREFIX}${name}_sum${this.#labels()} ${num(h.sum)}`);
    this.lines.push(`${PREFIX}${name}_count${this.#labels()} ${h.count}`);
  }
}

export function renderMetrics(ctx: ServerContext): string {
  const e = ctx.engine;
  const m = e.metrics;
  const s = e.scheduler.counters;
  const w = new Writer(`model_name="${escapeLabel(ctx.modelName)}"`);
  w.gauge("num_requests_waiting", "Requests waiting for admission (the queue).", s.waiting);
  w.gauge("num_requests_running", "Requests running in the batch.", s.running);
  w.gauge("kv_cache_usage_ratio", "Fraction of KV cache blocks held by requests (0 to 1).", s.kvUsage);
  w.gauge("kv_cache_free_blocks", "KV blocks that can be handed out (free or evictable).", s.freeBlocks);
  w.gauge("kv_cache_total_blocks", "KV blocks in the pool.", e.kv.numBlocks);
  w.counter("prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", s.prefixQueryTokens);
  w.counter("prefix_cache_hits", "Prompt tokens found in the prefix cache.", s.prefixHitTokens);
  const rate = s.prefixQueryTokens > 0 ? s.prefixHitTokens / s.prefixQueryTokens : 0;
  w.gauge("prefix_cache_hit_rate", "prefix_cache_hits_total / prefix_cache_queries_total (0 before any query).", rate);
  w.counter("num_preemptions", "Requests preempted (KV blocks taken back, recomputed later).", s.preemptionsTotal);
  w.counter("prompt_tokens", "Prompt tokens of admitted requests.", m.promptTokens);
  w.counter("generation_tokens", "Tokens generated.", m.generationTokens);
  w.counter("engine_steps", "Engine steps (batches) run.", m.steps);
  w.counter("requests_rejected", "Requests refused because the queue was full (HTTP 429).", m.requestsRejected);
  w.labeledCounter("request_success", "Finished requests by finish reason.", "finished_reason", m.finished);
  w.histogram("time_to_first_token_seconds", "Time from arrival to the first generated token.", m.ttft);
  w.histogram("inter_token_latency_seconds", "Time between consecutive tokens of a request.", m.interToken);
  w.histogram("e2e_request_latency_seconds", "Time from arrival to the end of a completed request.", m.e2e);
  w.gauge("server_closing", "1 while the server shuts down.", ctx.closing ? 1 : 0);
  return w.lines.join("\n") + "\n";
}

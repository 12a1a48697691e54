// Engine statistics: counters and latency histograms, rendered as Prometheus text by the server.

export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  /** Upper bounds in seconds (Prometheus "le"), ascending; +Inf is implicit. */
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array(bounds.length).fill(0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) if (v <= this.bounds[i]!) this.counts[i]!++;
  }
}

const LATENCY_BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48];

export class EngineMetrics {
  readonly ttft = new Histogram(LATENCY_BOUNDS);
  readonly interToken = new Histogram(LATENCY_BOUNDS);
  readonly e2e = new Histogram([...LATENCY_BOUNDS, 40.96, 81.92]);
  promptTokens = 0;
  generationTokens = 0;
  steps = 0;
  readonly finished: Record<"stop" | "length" | "abort", number> = { stop: 0, length: 0, abort: 0 };
  requestsRejected = 0;
}

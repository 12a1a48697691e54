// startServer(): load the model (or take a loaded one), start the engine, serve the hono app with Deno.serve, and
// shut down gracefully: refuse new work (503), let in-flight requests finish within a grace period (then abort
// them), close the listener, dispose the backend.
import { type LoadedModel, loadModel } from "../cli/common.ts";
import { DEFAULT_ENGINE_CONFIG, Engine, type EngineConfig } from "../engine/engine.ts";
import { DEMO_MODEL_DESCRIPTION } from "../model/demo.ts";
import { isSynthetic, SYNTHETIC_PREFIX } from "../model/synthetic.ts";
import { createApp } from "./app.ts";
import { DEFAULT_MAX_BODY_BYTES } from "./body.ts";
import { ActiveRequests, type ServerContext } from "./context.ts";

export interface StartServerOptions {
  /** Model folder or Hub id; omitted: the built-in demo model. Ignored when `loaded` is given. */
  readonly model?: string;
  /** auto (default), cuda, webgpu or reference. */
  readonly backend?: string;
  readonly dtype?: string;
  readonly kvDtype?: string;
  /** Matmul input precision on CUDA: "half" (default) or "f32" (checked where the precision is chosen). */
  readonly activations?: string;
  readonly quiet?: boolean;
  /** A model already loaded; the server takes it over and disposes its backend at shutdown. */
  readonly loaded?: LoadedModel;
  /** Default 127.0.0.1 here (the `serve` command defaults to 0.0.0.0). */
  readonly host?: string;
  /** 0 picks a free port. Default 8000. */
  readonly port?: number;
  readonly apiKey?: string | null;
  /** Allowed CORS origins ("*" for any); empty or omitted: no CORS. */
  readonly cors?: readonly string[];
  readonly servedModelName?: string;
  /** Engine settings (block size, batch limits, cache fraction, prefix cache, numBlocks, maxModelLen). */
  readonly engine?: Partial<EngineConfig>;
  /** Most requests waiting for admission before new ones get 429 (default 1024). */
  readonly maxWaiting?: number;
  /** Largest request body in bytes (default 8 MiB). */
  readonly maxBodyBytes?: number;
  /** Default grace period of shutdown() in ms (default 10 s). */
  readonly graceMs?: number;
}

export interface RunningServer {
  /** Base URL to connect to (a wildcard host is replaced by loopback). */
  readonly url: string;
  readonly hostname: string;
  readonly port: number;
  readonly engine: Engine;
  readonly ctx: ServerContext;
  readonly model: LoadedModel;
  /** Idempotent graceful shutdown; resolves once the port is closed and the backend disposed. */
  shutdown(graceMs?: number): Promise<void>;
}

/** How long streams may take to drain after the engine stopped before they are cut. */
const STREAM_DRAIN_MS = 2000;

/** What /v1/models says about models whose weights are random (the demo and synthetic:NAME benchmark shapes). */
function describeModel(m: LoadedModel): string | null {
  if (m.isDemo) return DEMO_MODEL_DESCRIPTION;
  if (isSynthetic(m.id)) {
    return `Synthetic ${m.id.slice(SYNTHETIC_PREFIX.length)} shape with RANDOM weights and no tokenizer, for ` +
      "benchmarks; its output is noise.";
  }
  return null;
}

function connectHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}

export async function startServer(opts: StartServerOptions = {}): Promise<RunningServer> {
  const model = opts.loaded ?? await loadModel({
    model: opts.model,
    backend: opts.backend ?? "auto",
    dtype: opts.dtype ?? "auto",
    "kv-dtype": opts.kvDtype ?? "auto",
    activations: opts.activations ?? "half",
    quiet: opts.quiet ?? true,
  });
  let engine: Engine;
  try {
    engine = new Engine(model.backend, model.spec, model.precision, model.tokenizer, {
      ...DEFAULT_ENGINE_CONFIG,
      ...opts.engine,
    });
  } catch (e) {
    await model.backend[Symbol.asyncDispose]();
    throw e;
  }
  const ctx: ServerContext = {
    engine,
    modelName: opts.servedModelName ?? model.id,
    modelRoot: model.id,
    description: describeModel(model),
    tokenizer: model.tokenizer,
    apiKey: opts.apiKey ?? null,
    maxWaiting: opts.maxWaiting ?? 1024,
    maxBodyBytes: opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    corsOrigins: opts.cors ?? [],
    created: Math.floor(Date.now() / 1000),
    active: new ActiveRequests(),
    closing: false,
  };
  const app = createApp(ctx);
  const hostname = opts.host ?? "127.0.0.1";
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname, port: opts.port ?? 8000, onListen: () => {} }, app.fetch);
  } catch (e) {
    await engine.shutdown(0);
    await model.backend[Symbol.asyncDispose]();
    throw e;
  }
  const port = server.addr.port;
  let stopping: Promise<void> | null = null;

  const stop = async (graceMs: number) => {
    ctx.closing = true;
    await engine.shutdown(graceMs);
    const drain = setTimeout(() => ctx.active.closeStreams(), STREAM_DRAIN_MS);
    try {
      await server.shutdown();
    } finally {
      clearTimeout(drain);
      await model.backend[Symbol.asyncDispose]();
    }
  };

  return {
    url: `http://${connectHost(hostname)}:${port}`,
    hostname,
    port,
    engine,
    ctx,
    model,
    shutdown: (graceMs?: number) => (stopping ??= stop(graceMs ?? opts.graceMs ?? 10_000)),
  };
}

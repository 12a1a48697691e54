// `serve`: the OpenAI-compatible HTTP server. SIGINT/SIGTERM shut it down gracefully; a second signal exits at once.
import { parseArgs } from "node:util";
import { UserError } from "../core/errors.ts";
import { ENV } from "../core/env.ts";
import { DEFAULT_ENGINE_CONFIG, type EngineConfig } from "../engine/engine.ts";
import { startServer } from "../server/server.ts";
import { MODEL_FLAG_OPTIONS, MODEL_FLAGS_HELP } from "./common.ts";

export const SERVE_HELP = `Usage: main.ts serve [--model DIR] [options]

Starts the OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions, /v1/models, /tokenize,
/detokenize, /abort, /health and /metrics (Prometheus).
${MODEL_FLAGS_HELP}
  --host HOST            address to listen on (default 0.0.0.0: every interface, as vLLM does;
                         use 127.0.0.1 to accept local clients only)
  --port N               port (default 8000; 0 picks a free one)
  --api-key KEY          require "Authorization: Bearer KEY" (default: $TURBODENO_API_KEY, else no auth);
                         /health and /metrics stay open
  --cors ORIGINS         enable CORS for these comma-separated origins ("*" for any)
  --served-model-name N  the model name clients send (default: the --model value, or the demo id)
  --block-size N         tokens per KV block (default ${DEFAULT_ENGINE_CONFIG.blockSize})
  --max-batched-tokens N most tokens in one engine step (default ${DEFAULT_ENGINE_CONFIG.maxBatchedTokens})
  --max-batch-size N     most running requests (default ${DEFAULT_ENGINE_CONFIG.maxBatchSize})
  --cache-fraction F     share of free device memory for the KV cache (default ${DEFAULT_ENGINE_CONFIG.cacheFraction})
  --num-blocks N         KV pool size in blocks (overrides --cache-fraction)
  --no-prefix-cache      disable prefix caching
  --max-model-len N      most tokens (prompt + output) per request (default: the model's context)
  --multi-step K         decode steps per backend call when every running request samples on the device and none
                         waits (backends with multi-step decode: WebGPU; default 8; 1 turns it off)
  --max-waiting N        requests allowed to wait for admission before new ones get 429 (default 1024)
  --shutdown-grace S     seconds in-flight requests get to finish at shutdown before they are aborted (default 30)`;

function intFlag(v: string | undefined, name: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new UserError(`--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

function fractionFlag(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 1) throw new UserError(`--${name} must be a number in (0, 1], got "${v}"`);
  return n;
}

function parseServeFlags(args: string[]) {
  return parseArgs({
    args,
    options: {
      ...MODEL_FLAG_OPTIONS,
      host: { type: "string", default: "0.0.0.0" },
      port: { type: "string", default: "8000" },
      "api-key": { type: "string" },
      cors: { type: "string" },
      "served-model-name": { type: "string" },
      "block-size": { type: "string" },
      "max-batched-tokens": { type: "string" },
      "max-batch-size": { type: "string" },
      "cache-fraction": { type: "string" },
      "num-blocks": { type: "string" },
      "no-prefix-cache": { type: "boolean", default: false },
      "max-model-len": { type: "string" },
      "multi-step": { type: "string" },
      "max-waiting": { type: "string" },
      "shutdown-grace": { type: "string" },
    },
  }).values;
}

export async function serveCommand(args: string[]): Promise<void> {
  const f = parseServeFlags(args);
  if (f.help) return console.log(SERVE_HELP);
  const engine: Partial<EngineConfig> = Object.fromEntries(
    Object.entries({
      blockSize: intFlag(f["block-size"], "block-size", 1),
      maxBatchedTokens: intFlag(f["max-batched-tokens"], "max-batched-tokens", 1),
      maxBatchSize: intFlag(f["max-batch-size"], "max-batch-size", 1),
      cacheFraction: fractionFlag(f["cache-fraction"], "cache-fraction"),
      numBlocks: intFlag(f["num-blocks"], "num-blocks", 1),
      maxModelLen: intFlag(f["max-model-len"], "max-model-len", 2),
      multiStep: intFlag(f["multi-step"], "multi-step", 1),
      enablePrefixCache: !f["no-prefix-cache"],
    }).filter(([, v]) => v !== undefined),
  );
  const graceS = Number(f["shutdown-grace"] ?? 30);
  if (!Number.isFinite(graceS) || graceS < 0) throw new UserError(`--shutdown-grace must be a number of seconds >= 0`);
  const apiKey = f["api-key"] ?? ENV.apiKey;
  const cors = f.cors?.split(",").map((s) => s.trim()).filter((s) => s !== "") ?? [];

  const server = await startServer({
    model: f.model,
    backend: f.backend,
    dtype: f.dtype,
    kvDtype: f["kv-dtype"],
    activations: f.activations,
    quiet: f.quiet,
    host: f.host,
    port: intFlag(f.port, "port", 0),
    apiKey: apiKey ?? null,
    cors,
    servedModelName: f["served-model-name"],
    engine,
    maxWaiting: intFlag(f["max-waiting"], "max-waiting", 0),
    graceMs: graceS * 1000,
  });
  const shownHost = f.host.includes(":") ? `[${f.host}]` : f.host;
  const e = server.engine;
  console.log(
    `serving ${server.ctx.modelName} on http://${shownHost}:${server.port} ` +
      `(backend ${server.model.backend.name}, ${e.kv.numBlocks} KV blocks of ${e.kv.blockSize} tokens, ` +
      `context ${e.maxModelLen}${apiKey ? ", API key required" : ""})`,
  );

  const done = Promise.withResolvers<void>();
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) {
      console.error("second signal: exiting now");
      Deno.exit(130);
    }
    console.error(`shutting down: finishing ${e.numRequests} in-flight requests (up to ${graceS} s)...`);
    server.shutdown().then(done.resolve, done.reject);
  };
  const sigs: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of sigs) Deno.addSignalListener(s, onSignal);
  try {
    await done.promise;
  } finally {
    for (const s of sigs) Deno.removeSignalListener(s, onSignal);
  }
  console.error("server stopped");
}

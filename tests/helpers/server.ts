// Test helpers for the HTTP server: start one on 127.0.0.1 with a free port on the reference backend, an openai
// client for it, raw requests, SSE parsing and /metrics reading.
import OpenAI from "openai";
import { type RunningServer, startServer, type StartServerOptions } from "../../src/server/server.ts";
import { STORIES_DIR } from "./models.ts";
import { mulberry32 } from "../../src/core/prng.ts";

export type { RunningServer };

/** A server on the reference backend: the demo model, or stories260K with `stories: true`. */
export function startTestServer(opts: StartServerOptions & { stories?: boolean } = {}): Promise<RunningServer> {
  const { stories, ...rest } = opts;
  return startServer({
    backend: "reference",
    host: "127.0.0.1",
    port: 0,
    quiet: true,
    model: stories ? STORIES_DIR : undefined,
    ...rest,
    engine: { numBlocks: 256, ...rest.engine },
  });
}

/** The official client, without retries (a 429 or 503 must surface as is). */
export function openaiClient(srv: RunningServer, apiKey = "unused"): OpenAI {
  return new OpenAI({ baseURL: `${srv.url}/v1`, apiKey, maxRetries: 0, timeout: 120_000 });
}

/** POST a JSON body (or raw text) and return status and parsed JSON (null when the body is not JSON). */
export async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: unknown; headers: Headers }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: res.status, json, headers: res.headers };
}

/** Parses an SSE body into its data payloads (the final "[DONE]" included as a string). */
export function parseSse(text: string): unknown[] {
  return text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => {
    const data = e.slice(6);
    return data === "[DONE]" ? data : JSON.parse(data);
  });
}

/** Value of one sample of /metrics (labels ignored unless `labelMatch` is given). */
export async function metric(srv: RunningServer, name: string, labelMatch = ""): Promise<number> {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-z_:]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name && (m[2] ?? "").includes(labelMatch)) return Number(m[3]);
  }
  throw new Error(`metric ${name}${labelMatch} not found in /metrics`);
}

/** Polls until `cond` holds or `ms` pass (then throws with `what`). */
export async function waitUntil(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Seeded generator of floats in [0, 1) (mulberry32). */
export const rng = mulberry32;

/** After the load is gone: no request left in the engine, every KV block free again, integrity holds. */
export async function assertEngineIdle(srv: RunningServer): Promise<void> {
  const e = srv.engine;
  await waitUntil(() => e.numRequests === 0 && !e.scheduler.hasUnfinished(), "the engine to drain");
  await waitUntil(() => e.kv.numFreeBlocks() === e.kv.numBlocks, "every KV block to be free");
  e.kv.checkIntegrity();
  if (srv.ctx.active.size !== 0) throw new Error(`${srv.ctx.active.size} API requests still registered`);
}

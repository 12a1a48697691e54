// Request lifecycle on stories260K: client disconnects and /abort free the engine request at once, a full queue
// answers 429, and shutdown() ends in-flight streams cleanly, answers 503 meanwhile and closes the port.
import assert from "node:assert/strict";
import {
  assertEngineIdle,
  metric,
  openaiClient,
  parseSse,
  post,
  startTestServer,
  waitUntil,
} from "./helpers/server.ts";

const LONG = { prompt: [1], max_tokens: 500, temperature: 0, ignore_eos: true, return_token_ids: true };

/** Starts a raw SSE completion and returns its reader once the first chunk (with the request id) arrived. */
async function openStream(url: string, signal?: AbortSignal) {
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...LONG, stream: true }),
    signal,
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("\n\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  const first = parseSse(text)[0] as { id: string };
  const rest = async () => {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return parseSse(text);
      text += decoder.decode(value, { stream: true });
    }
  };
  return { id: first.id, reader, rest };
}

Deno.test("sseResponse() aborts the engine request at once when the client disconnects", async () => {
  const srv = await startTestServer({ stories: true });
  try {
    const e = srv.engine;
    const s = await openStream(srv.url);
    assert.equal(e.numRequests, 1);
    const t0 = performance.now();
    await s.reader.cancel();
    await waitUntil(() => e.numRequests === 0, "the stream's engine request to end", 1000);
    assert.ok(performance.now() - t0 < 500);
    assert.equal(e.metrics.finished.abort, 1);
    await assertEngineIdle(srv);

    // A non-streaming request whose client goes away is aborted too.
    const ac = new AbortController();
    const pending = fetch(`${srv.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify(LONG),
      signal: ac.signal,
    }).catch((err) => err);
    await waitUntil(() => e.numRequests === 1 && e.metrics.generationTokens > 70, "the second request to run");
    ac.abort();
    assert.equal((await pending).name, "AbortError");
    await waitUntil(() => e.numRequests === 0, "the non-streaming request to end", 1000);
    assert.equal(e.metrics.finished.abort, 2);
    await assertEngineIdle(srv);
  } finally {
    await srv.shutdown();
  }
});

Deno.test("POST /abort ends a running request by its OpenAI id", async () => {
  const srv = await startTestServer({ stories: true });
  try {
    const s = await openStream(srv.url);
    assert.match(s.id, /^cmpl-/);
    const r = await post(`${srv.url}/abort`, { request_id: s.id });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { id: s.id, aborted: true });
    const events = await s.rest();
    assert.equal(events.at(-1), "[DONE]");
    const last = events.at(-2) as { choices: { finish_reason: string }[] };
    assert.equal(last.choices[0]!.finish_reason, "abort");
    const ids = events.slice(0, -1).flatMap((e) => (e as { choices: { token_ids?: number[] }[] }).choices)
      .flatMap((c) => c.token_ids ?? []);
    assert.ok(ids.length < 500, "the request ran to the end instead of being aborted");
    assert.equal((await post(`${srv.url}/abort`, { request_id: s.id })).status, 404);
    await assertEngineIdle(srv);
  } finally {
    await srv.shutdown();
  }
});

Deno.test("submitChoices() answers 429 when more requests wait than allowed", async () => {
  const srv = await startTestServer({ stories: true, maxWaiting: 1, engine: { maxBatchSize: 1 } });
  try {
    const a = await openStream(srv.url); // running
    const b = await fetch(`${srv.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ ...LONG, stream: true }),
    }); // waits behind a
    assert.equal(srv.engine.scheduler.numWaiting, 1);
    const c = await post(`${srv.url}/v1/completions`, { ...LONG, max_tokens: 5 });
    assert.equal(c.status, 429);
    assert.deepEqual((c.json as { error: { type: string; code: string } }).error.type, "rate_limit_error");
    assert.equal((c.json as { error: { code: string } }).error.code, "queue_full");
    assert.equal(c.headers.get("retry-after"), "1");
    assert.equal(await metric(srv, "turbodeno_requests_rejected_total"), 1);
    assert.equal(await metric(srv, "turbodeno_num_requests_waiting"), 1);
    await a.reader.cancel();
    await b.body!.cancel();
    await assertEngineIdle(srv);
    assert.equal((await post(`${srv.url}/v1/completions`, { ...LONG, max_tokens: 5 })).status, 200);
  } finally {
    await srv.shutdown();
  }
});

Deno.test("RunningServer.shutdown() ends an in-flight stream cleanly, answers 503 meanwhile, closes the port", async () => {
  const srv = await startTestServer({ stories: true });
  const client = openaiClient(srv);
  const body = { model: srv.ctx.modelName, ...LONG, stream: true };
  const stream = await client.completions.create(body as typeof body & { stream: true });
  const it = stream[Symbol.asyncIterator]();
  assert.equal((await it.next()).done, false);
  const stopping = srv.shutdown(300);
  assert.equal(srv.ctx.closing, true);
  const health = await fetch(`${srv.url}/health`);
  assert.equal(health.status, 503);
  assert.equal(((await health.json()) as { error: { code: string } }).error.code, "shutting_down");
  const refused = await post(`${srv.url}/v1/completions`, { ...LONG, max_tokens: 2 });
  assert.equal(refused.status, 503);
  assert.equal((refused.json as { error: { type: string } }).error.type, "server_error");
  let finish: string | null = null;
  for (let r = await it.next(); !r.done; r = await it.next()) finish ??= r.value.choices[0]?.finish_reason ?? null;
  assert.ok(finish === "length" || finish === "abort", `finish_reason ${finish}`);
  await stopping;
  assert.equal(srv.engine.numRequests, 0);
  await assert.rejects(fetch(`${srv.url}/health`), TypeError);
});

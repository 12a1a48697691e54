// The auxiliary routes: /v1/models, /tokenize, /detokenize, /metrics, /health, and CORS.
import assert from "node:assert/strict";
import { DEMO_MODEL_DESCRIPTION, DEMO_MODEL_ID } from "../src/model/demo.ts";
import { openaiClient, post, startTestServer } from "./helpers/server.ts";

Deno.test("GET /v1/models describes the demo model plainly and honours --served-model-name", async () => {
  const srv = await startTestServer({ servedModelName: "my-model" });
  try {
    const res = await fetch(`${srv.url}/v1/models`);
    const list = (await res.json()) as { object: string; data: Record<string, unknown>[] };
    assert.equal(list.object, "list");
    assert.equal(list.data.length, 1);
    const card = list.data[0]!;
    assert.equal(card.id, "my-model");
    assert.equal(card.object, "model");
    assert.equal(card.root, DEMO_MODEL_ID);
    assert.equal(card.description, DEMO_MODEL_DESCRIPTION);
    assert.match(String(card.description), /RANDOM weights/);
    assert.equal(card.max_model_len, 2048);
    assert.equal((await fetch(`${srv.url}/v1/models/my-model`).then((r) => r.json()) as { id: string }).id, "my-model");
    const missing = await fetch(`${srv.url}/v1/models/${DEMO_MODEL_ID}`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, "model_not_found");

    const client = openaiClient(srv);
    const ok = await client.chat.completions.create({
      model: "my-model",
      messages: [{ role: "user", content: "a" }],
      max_tokens: 2,
    });
    assert.equal(ok.model, "my-model");
    await assert.rejects(
      client.chat.completions.create({
        model: DEMO_MODEL_ID,
        messages: [{ role: "user", content: "a" }],
        max_tokens: 2,
      }),
      (e: { status?: number; code?: string }) => e.status === 404 && e.code === "model_not_found",
    );
  } finally {
    await srv.shutdown();
  }
});

Deno.test("POST /tokenize and /detokenize round-trip text and chat messages", async () => {
  const srv = await startTestServer();
  try {
    const t = await post(`${srv.url}/tokenize`, { prompt: "héllo" });
    assert.equal(t.status, 200);
    const tok = t.json as { tokens: number[]; count: number; max_model_len: number };
    assert.equal(tok.count, 6); // one token per UTF-8 byte
    assert.equal(tok.tokens.length, 6);
    assert.equal(tok.max_model_len, 2048);
    const d = await post(`${srv.url}/detokenize`, { tokens: tok.tokens });
    assert.deepEqual(d.json, { prompt: "héllo" });

    const messages = [{ role: "user", content: "hi" }];
    const m = (await post(`${srv.url}/tokenize`, { messages })).json as { tokens: number[]; count: number };
    const text = ((await post(`${srv.url}/detokenize`, { tokens: m.tokens })).json as { prompt: string }).prompt;
    assert.equal(text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    const chat = await post(`${srv.url}/v1/chat/completions`, { messages, max_tokens: 1 });
    assert.equal((chat.json as { usage: { prompt_tokens: number } }).usage.prompt_tokens, m.count);
  } finally {
    await srv.shutdown();
  }
});

Deno.test("GET /metrics renders engine statistics in the Prometheus text format", async () => {
  const srv = await startTestServer({ stories: true });
  try {
    const r = await post(`${srv.url}/v1/completions`, {
      prompt: [1, 5, 9],
      max_tokens: 7,
      temperature: 0,
      ignore_eos: true,
    });
    assert.equal(r.status, 200);
    const res = await fetch(`${srv.url}/metrics`);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const sample = (name: string) => {
      const m = new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, "m").exec(text);
      assert.ok(m, `${name} missing from /metrics`);
      return Number(m[2]);
    };
    for (
      const name of [
        "turbodeno_num_requests_waiting",
        "turbodeno_num_requests_running",
        "turbodeno_kv_cache_usage_ratio",
        "turbodeno_prefix_cache_hit_rate",
        "turbodeno_prefix_cache_hits_total",
        "turbodeno_num_preemptions_total",
      ]
    ) assert.ok(Number.isFinite(sample(name)), name);
    assert.equal(sample("turbodeno_prompt_tokens_total"), 3);
    assert.equal(sample("turbodeno_generation_tokens_total"), 7);
    assert.equal(sample("turbodeno_prefix_cache_queries_total"), 3);
    assert.match(text, /^turbodeno_request_success_total\{model_name="[^"]+",finished_reason="length"\} 1$/m);
    assert.match(text, /^# TYPE turbodeno_time_to_first_token_seconds histogram$/m);
    for (const h of ["time_to_first_token_seconds", "inter_token_latency_seconds", "e2e_request_latency_seconds"]) {
      const buckets = [...text.matchAll(new RegExp(`^turbodeno_${h}_bucket\\{.*le="([^"]+)"\\} (\\d+)$`, "gm"))];
      assert.ok(buckets.length > 5, h);
      const counts = buckets.map((b) => Number(b[2]));
      for (let i = 1; i < counts.length; i++) assert.ok(counts[i]! >= counts[i - 1]!, `${h} buckets not cumulative`);
      assert.equal(buckets.at(-1)![1], "+Inf");
      assert.equal(counts.at(-1), sample(`turbodeno_${h}_count`));
    }
    assert.equal(sample("turbodeno_time_to_first_token_seconds_count"), 1);
    assert.equal(sample("turbodeno_inter_token_latency_seconds_count"), 6);
    assert.equal(sample("turbodeno_e2e_request_latency_seconds_count"), 1);
  } finally {
    await srv.shutdown();
  }
});

Deno.test("createApp() sends CORS headers only for the allowed origins", async () => {
  const srv = await startTestServer({ cors: ["http://app.example"], apiKey: "k" });
  try {
    const pre = await fetch(`${srv.url}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: {
        origin: "http://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
      },
    });
    await pre.body?.cancel();
    assert.ok(pre.status === 204 || pre.status === 200, `preflight status ${pre.status}`);
    assert.equal(pre.headers.get("access-control-allow-origin"), "http://app.example");
    const other = await fetch(`${srv.url}/health`, { headers: { origin: "http://evil.example" } });
    await other.body?.cancel();
    assert.equal(other.headers.get("access-control-allow-origin"), null);
    const err = await fetch(`${srv.url}/v1/models`, { headers: { origin: "http://app.example" } });
    await err.body?.cancel();
    assert.equal(err.status, 401);
    assert.equal(err.headers.get("access-control-allow-origin"), "http://app.example");
  } finally {
    await srv.shutdown();
  }
});

// Bad requests get the right status and an OpenAI error object, and the server keeps serving after each one.
import assert from "node:assert/strict";
import { DEMO_MODEL_ID } from "../src/model/demo.ts";
import { openaiClient, post, startTestServer } from "./helpers/server.ts";

const KEY = "sk-test-key";
const AUTH = { authorization: `Bearer ${KEY}` };
const user = [{ role: "user", content: "hi" }];
const chat = (extra: Record<string, unknown>) => ({ model: DEMO_MODEL_ID, messages: user, max_tokens: 2, ...extra });
const cmpl = (extra: Record<string, unknown>) => ({ model: DEMO_MODEL_ID, prompt: "hi", max_tokens: 2, ...extra });

interface Case {
  readonly name: string;
  readonly path?: string;
  readonly method?: string;
  /** A string is sent as is. */
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
  readonly status: number;
  readonly param?: string | null;
  readonly code?: string | null;
  readonly type?: string;
}

const C = "/v1/chat/completions";
const P = "/v1/completions";

const CASES: Case[] = [
  { name: "malformed JSON", body: '{"messages": [', status: 400 },
  { name: "a JSON array body", body: "[1, 2]", status: 400 },
  { name: "an empty body", body: "", status: 400 },
  { name: "missing messages", body: { model: DEMO_MODEL_ID }, status: 400, param: "messages" },
  { name: "messages not a list", body: chat({ messages: "hi" }), status: 400, param: "messages" },
  { name: "empty messages", body: chat({ messages: [] }), status: 400, param: "messages" },
  {
    name: "unknown role",
    body: chat({ messages: [{ role: "wizard", content: "x" }] }),
    status: 400,
    param: "messages[0].role",
  },
  {
    name: "numeric content",
    body: chat({ messages: [{ role: "user", content: 5 }] }),
    status: 400,
    param: "messages[0].content",
  },
  {
    name: "image content part",
    body: chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }),
    status: 400,
    param: "messages[0].content[0]",
  },
  { name: "unknown model", body: chat({ model: "gpt-4o" }), status: 404, param: "model", code: "model_not_found" },
  { name: "model of wrong type", body: chat({ model: 3 }), status: 400, param: "model" },
  { name: "temperature as string", body: chat({ temperature: "hot" }), status: 400, param: "temperature" },
  { name: "negative temperature", body: chat({ temperature: -1 }), status: 400, param: "temperature" },
  { name: "top_p of 0", body: chat({ top_p: 0 }), status: 400, param: "top_p" },
  { name: "fractional top_k", body: chat({ top_k: 1.5 }), status: 400, param: "top_k" },
  { name: "min_p above 1", body: chat({ min_p: 2 }), status: 400, param: "min_p" },
  { name: "presence_penalty above 2", body: chat({ presence_penalty: 3 }), status: 400, param: "presence_penalty" },
  {
    name: "frequency_penalty below -2",
    body: chat({ frequency_penalty: -2.5 }),
    status: 400,
    param: "frequency_penalty",
  },
  { name: "repetition_penalty of 0", body: chat({ repetition_penalty: 0 }), status: 400, param: "repetition_penalty" },
  { name: "max_tokens of 0", body: chat({ max_tokens: 0 }), status: 400, param: "max_tokens" },
  { name: "max_tokens as string", body: chat({ max_tokens: "10" }), status: 400, param: "max_tokens" },
  {
    name: "fractional max_completion_tokens",
    body: chat({ max_completion_tokens: 2.5 }),
    status: 400,
    param: "max_completion_tokens",
  },
  { name: "n of 0", body: chat({ n: 0 }), status: 400, param: "n" },
  { name: "n of 1000", body: chat({ n: 1000 }), status: 400, param: "n" },
  { name: "fractional seed", body: chat({ seed: 1.5 }), status: 400, param: "seed" },
  { name: "stop of numbers", body: chat({ stop: [1, 2] }), status: 400, param: "stop" },
  { name: "empty stop string", body: chat({ stop: [""] }), status: 400, param: "stop" },
  { name: "stream as string", body: chat({ stream: "yes" }), status: 400, param: "stream" },
  {
    name: "stream_options without stream",
    body: chat({ stream_options: { include_usage: true } }),
    status: 400,
    param: "stream_options",
  },
  { name: "logprobs as string", body: chat({ logprobs: "true" }), status: 400, param: "logprobs" },
  { name: "top_logprobs without logprobs", body: chat({ top_logprobs: 3 }), status: 400, param: "top_logprobs" },
  { name: "top_logprobs of 50", body: chat({ logprobs: true, top_logprobs: 50 }), status: 400, param: "top_logprobs" },
  { name: "stop_token_ids outside vocab", body: chat({ stop_token_ids: [999] }), status: 400, param: "stop_token_ids" },
  { name: "ignore_eos as number", body: chat({ ignore_eos: 1 }), status: 400, param: "ignore_eos" },
  {
    name: "response_format json",
    body: chat({ response_format: { type: "json_object" } }),
    status: 400,
    param: "response_format",
  },
  { name: "user as number", body: chat({ user: 5 }), status: 400, param: "user" },
  { name: "metadata as list", body: chat({ metadata: [] }), status: 400, param: "metadata" },
  { name: "tool_choice required", body: chat({ tool_choice: "required" }), status: 400, param: "tool_choice" },
  {
    name: "max_tokens past the context",
    body: chat({ max_tokens: 5000 }),
    status: 400,
    param: "max_tokens",
    code: "context_length_exceeded",
  },
  { name: "missing prompt", path: P, body: { model: DEMO_MODEL_ID }, status: 400, param: "prompt" },
  { name: "empty prompt", path: P, body: cmpl({ prompt: "" }), status: 400, param: "prompt" },
  { name: "empty id list", path: P, body: cmpl({ prompt: [] }), status: 400, param: "prompt" },
  { name: "empty inner id list", path: P, body: cmpl({ prompt: [[]] }), status: 400, param: "prompt" },
  { name: "mixed prompt list", path: P, body: cmpl({ prompt: [1, "a"] }), status: 400, param: "prompt" },
  { name: "prompt id outside vocab", path: P, body: cmpl({ prompt: [5, 99999] }), status: 400, param: "prompt" },
  { name: "negative prompt id", path: P, body: cmpl({ prompt: [-1] }), status: 400, param: "prompt" },
  { name: "prompt as object", path: P, body: cmpl({ prompt: { text: "x" } }), status: 400, param: "prompt" },
  {
    name: "prompt past the context",
    path: P,
    body: cmpl({ prompt: new Array(2100).fill(5) }),
    status: 400,
    param: "prompt",
    code: "context_length_exceeded",
  },
  { name: "completions logprobs as boolean", path: P, body: cmpl({ logprobs: true }), status: 400, param: "logprobs" },
  { name: "completions logprobs of 21", path: P, body: cmpl({ logprobs: 21 }), status: 400, param: "logprobs" },
  { name: "echo", path: P, body: cmpl({ echo: true }), status: 400, param: "echo" },
  { name: "suffix", path: P, body: cmpl({ suffix: "end" }), status: 400, param: "suffix" },
  { name: "logit_bias", path: P, body: cmpl({ logit_bias: { "5": 10 } }), status: 400, param: "logit_bias" },
  { name: "tokenize with prompt and messages", path: "/tokenize", body: { prompt: "a", messages: user }, status: 400 },
  { name: "detokenize of text", path: "/detokenize", body: { tokens: "abc" }, status: 400, param: "tokens" },
  { name: "abort without request_id", path: "/abort", body: {}, status: 400, param: "request_id" },
  {
    name: "abort of an unknown id",
    path: "/abort",
    body: { request_id: "cmpl-nope" },
    status: 404,
    code: "request_not_found",
  },
  { name: "unknown route", path: "/v1/embeddings", body: {}, status: 404, code: "not_found" },
  { name: "GET on a POST route", path: C, method: "GET", status: 405, code: "method_not_allowed" },
  { name: "POST on a GET route", path: "/v1/models", body: {}, status: 405, code: "method_not_allowed" },
  { name: "no API key", body: chat({}), headers: { authorization: "" }, status: 401, code: "invalid_api_key" },
  {
    name: "wrong API key",
    body: chat({}),
    headers: { authorization: "Bearer sk-wrong" },
    status: 401,
    code: "invalid_api_key",
  },
  {
    name: "wrong API key on /v1/models",
    path: "/v1/models",
    method: "GET",
    headers: { authorization: "Bearer x" },
    status: 401,
  },
  {
    name: "a 9 MiB body",
    path: P,
    body: JSON.stringify(cmpl({ prompt: "x".repeat(9 * 1024 * 1024) })),
    status: 413,
    code: "request_too_large",
  },
];

async function send(url: string, c: Case): Promise<{ status: number; json: unknown; headers: Headers }> {
  const headers: Record<string, string> = { "content-type": "application/json", ...AUTH, ...c.headers };
  if (headers.authorization === "") delete headers.authorization;
  const method = c.method ?? "POST";
  const res = await fetch(`${url}${c.path ?? C}`, {
    method,
    headers,
    body: method === "GET" ? undefined : typeof c.body === "string" ? c.body : JSON.stringify(c.body ?? {}),
  });
  const text = await res.text();
  return { status: res.status, json: JSON.parse(text), headers: res.headers };
}

Deno.test("createApp() answers bad requests with OpenAI errors and keeps serving", async () => {
  assert.ok(CASES.length >= 30);
  const srv = await startTestServer({ apiKey: KEY });
  try {
    for (const c of CASES) {
      const r = await send(srv.url, c);
      assert.equal(r.status, c.status, `${c.name}: status ${r.status}, body ${JSON.stringify(r.json)}`);
      const err = (r.json as { error: { message: unknown; type: unknown; param: unknown; code: unknown } }).error;
      assert.ok(err, `${c.name}: no error object`);
      assert.equal(typeof err.message, "string", c.name);
      assert.ok((err.message as string).length > 0, c.name);
      assert.equal(err.type, c.type ?? "invalid_request_error", c.name);
      if (c.param !== undefined) assert.equal(err.param, c.param, `${c.name}: ${err.message}`);
      if (c.code !== undefined) assert.equal(err.code, c.code, `${c.name}: ${err.message}`);
      assert.ok("param" in err && "code" in err, c.name);
      if (c.status === 405) assert.ok(r.headers.get("allow"), c.name);
      if (c.status === 401) assert.equal(r.headers.get("www-authenticate"), "Bearer");
    }
    // A body over the limit without Content-Length (chunked) is cut off too.
    const big = new Uint8Array(9 * 1024 * 1024).fill(0x20);
    const chunked = await fetch(`${srv.url}${P}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...AUTH },
      body: new ReadableStream({
        start(c) {
          for (let i = 0; i < big.length; i += 1 << 20) c.enqueue(big.subarray(i, i + (1 << 20)));
          c.close();
        },
      }),
    });
    assert.equal(chunked.status, 413);
    assert.equal(((await chunked.json()) as { error: { code: string } }).error.code, "request_too_large");

    // Still serving, and /health and /metrics need no key.
    const ok = await post(`${srv.url}${C}`, chat({ max_tokens: 3 }), AUTH);
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.equal((await fetch(`${srv.url}/health`).then(async (r) => [r.status, await r.text()]))[0], 200);
    assert.equal((await fetch(`${srv.url}/metrics`).then(async (r) => [r.status, await r.text()]))[0], 200);
    const client = openaiClient(srv, KEY);
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), [DEMO_MODEL_ID]);
    await assert.rejects(openaiClient(srv, "sk-bad").models.list(), (e: { status?: number }) => e.status === 401);
    assert.equal(srv.engine.numRequests, 0);
  } finally {
    await srv.shutdown();
  }
});

Deno.test("POST /v1/completions refuses text prompts and stop strings on a model without a tokenizer", async () => {
  const srv = await startTestServer({ stories: true });
  try {
    const model = srv.ctx.modelName;
    for (
      const [body, param] of [
        [{ model, prompt: "hello" }, "prompt"],
        [{ model, prompt: [1], stop: "x" }, "stop"],
        [{ model, messages: user }, "messages"],
      ] as const
    ) {
      const path = "messages" in body ? C : P;
      const r = await post(`${srv.url}${path}`, body);
      assert.equal(r.status, 400);
      assert.equal((r.json as { error: { param: string } }).error.param, param);
    }
    const r = await post(`${srv.url}${P}`, { model, prompt: [1, 2000] });
    assert.equal(r.status, 400, "id 2000 is outside stories260K's 512-token vocabulary");
    assert.equal((await post(`${srv.url}${P}`, { model, prompt: [1], max_tokens: 1 })).status, 200);
  } finally {
    await srv.shutdown();
  }
});

// The server through the official openai client: chat and text completions, streaming and not, usage, logprobs,
// n and seeds on the demo model; token-id prompts on stories260K reproduce the reference greedy continuation.
import assert from "node:assert/strict";
import { readReferenceLogits } from "./helpers/models.ts";
import { assertEngineIdle, openaiClient, post, startTestServer } from "./helpers/server.ts";
import { DEMO_MODEL_ID } from "../src/model/demo.ts";

const messages = [
  { role: "system" as const, content: "You are terse." },
  { role: "user" as const, content: [{ type: "text" as const, text: "Say hi." }] },
];

Deno.test("POST /v1/chat/completions serves the openai client, streaming and not, with usage and logprobs", async () => {
  const srv = await startTestServer();
  try {
    const client = openaiClient(srv);
    const req = { model: DEMO_MODEL_ID, messages, max_tokens: 12, seed: 7, n: 2, logprobs: true, top_logprobs: 3 };
    const a = await client.chat.completions.create(req);
    assert.match(a.id, /^chatcmpl-[0-9a-f]{24}$/);
    assert.equal(a.object, "chat.completion");
    assert.equal(a.model, DEMO_MODEL_ID);
    assert.equal(a.choices.length, 2);
    const tok = await post(`${srv.url}/tokenize`, { messages });
    const promptTokens = (tok.json as { count: number }).count;
    assert.equal(a.usage?.prompt_tokens, promptTokens);
    let completion = 0;
    for (const [i, c] of a.choices.entries()) {
      assert.equal(c.index, i);
      assert.equal(c.message.role, "assistant");
      assert.ok(c.finish_reason === "stop" || c.finish_reason === "length");
      const content = c.logprobs?.content ?? [];
      assert.ok(content.length >= 1 && content.length <= 12);
      for (const lp of content) {
        assert.ok(lp.logprob <= 0 && Number.isFinite(lp.logprob));
        assert.equal(lp.top_logprobs.length, 3);
        assert.ok(Array.isArray(lp.bytes) && lp.bytes.length >= 1);
        assert.ok(lp.top_logprobs[0]!.logprob >= lp.top_logprobs[2]!.logprob);
      }
      if (c.finish_reason === "length") assert.equal(content.length, 12);
      completion += content.length;
    }
    assert.equal(a.usage?.completion_tokens, completion);
    assert.equal(a.usage?.total_tokens, promptTokens + completion);
    assert.equal(a.usage?.prompt_tokens_details?.cached_tokens, 0);

    // The same seed gives the same answers; streamed, the pieces add up to them.
    const b = await client.chat.completions.create(req);
    assert.deepEqual(b.choices.map((c) => c.message.content), a.choices.map((c) => c.message.content));
    const stream = await client.chat.completions.create({
      ...req,
      stream: true,
      stream_options: { include_usage: true },
    });
    const text = ["", ""];
    const lpCount = [0, 0];
    const finish: (string | null)[] = [null, null];
    let usage = null;
    let roles = 0;
    for await (const chunk of stream) {
      assert.equal(chunk.object, "chat.completion.chunk");
      assert.equal(chunk.id.startsWith("chatcmpl-"), true);
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        if (c.delta.role) roles++;
        text[c.index] += c.delta.content ?? "";
        lpCount[c.index]! += c.logprobs?.content?.length ?? 0;
        if (c.finish_reason) finish[c.index] = c.finish_reason;
      }
    }
    assert.equal(roles, 2);
    assert.deepEqual(text, a.choices.map((c) => c.message.content));
    assert.deepEqual(finish, a.choices.map((c) => c.finish_reason));
    assert.deepEqual(lpCount, a.choices.map((c) => c.logprobs?.content?.length));
    assert.equal(usage?.completion_tokens, completion);
    assert.equal(usage?.prompt_tokens, promptTokens);
    await assertEngineIdle(srv);
  } finally {
    await srv.shutdown();
  }
});

Deno.test("POST /v1/completions serves the openai client with text prompts, logprobs and stop strings", async () => {
  const srv = await startTestServer();
  try {
    const client = openaiClient(srv);
    const req = { model: DEMO_MODEL_ID, prompt: ["Once upon", "a time"], max_tokens: 6, logprobs: 2, seed: 3 };
    const a = await client.completions.create({ ...req, ignore_eos: true } as typeof req);
    assert.match(a.id, /^cmpl-/);
    assert.equal(a.object, "text_completion");
    assert.equal(a.choices.length, 2);
    assert.equal(a.usage?.prompt_tokens, "Once upon".length + "a time".length); // one byte per token
    assert.equal(a.usage?.completion_tokens, 12);
    for (const c of a.choices) {
      assert.equal(c.finish_reason, "length");
      const lp = c.logprobs!;
      assert.equal(lp.tokens!.length, 6);
      assert.equal(lp.token_logprobs!.length, 6);
      assert.equal(lp.text_offset![0], 0);
      for (let i = 1; i < 6; i++) assert.ok(lp.text_offset![i]! >= lp.text_offset![i - 1]!);
      for (const [i, top] of lp.top_logprobs!.entries()) {
        const n = Object.keys(top).length;
        assert.ok(n >= 1 && n <= 3, `top_logprobs[${i}] has ${n} entries`);
        assert.equal(top[lp.tokens![i]!], lp.token_logprobs![i]);
      }
    }
    const stream = await client.completions.create(
      { ...req, ignore_eos: true, stream: true } as typeof req & {
        stream: true;
      },
    );
    const text = ["", ""];
    const tokens = [0, 0];
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text[c.index] += c.text;
        tokens[c.index]! += c.logprobs?.tokens?.length ?? 0;
      }
    }
    assert.deepEqual(text, a.choices.map((c) => c.text));
    assert.deepEqual(tokens, [6, 6]);

    // A stop string cuts the text before it and reports finish_reason "stop" with the matched string.
    const long = (await client.completions.create({ model: DEMO_MODEL_ID, prompt: "x", max_tokens: 40, seed: 1 }))
      .choices[0]!.text;
    const chars = [...long];
    const at = chars.findIndex((ch, i) => i >= 2 && /^[\x21-\x7e]$/.test(ch) && chars.indexOf(ch) === i);
    assert.ok(at > 0, `no usable stop character in ${JSON.stringify(long)}`);
    const stop = chars[at]!;
    const cut = await client.completions.create({ model: DEMO_MODEL_ID, prompt: "x", max_tokens: 40, seed: 1, stop });
    const c = cut.choices[0]! as typeof cut.choices[0] & { stop_reason: string };
    assert.equal(c.finish_reason, "stop");
    assert.equal(c.stop_reason, stop);
    assert.equal(c.text, long.slice(0, long.indexOf(stop)));
    await assertEngineIdle(srv);
  } finally {
    await srv.shutdown();
  }
});

Deno.test("POST /v1/completions with token ids reproduces the stories260K greedy continuation", async () => {
  const ref = await readReferenceLogits();
  const expected = ref.greedy_from_bos.slice(1);
  assert.equal(expected.length, 64);
  assert.ok(!expected.includes(2), "the reference continuation hits EOS (2); the test would need ignore_eos");
  const srv = await startTestServer({ stories: true });
  try {
    const client = openaiClient(srv);
    const model = srv.ctx.modelName;
    const body = { model, prompt: [1], max_tokens: 64, temperature: 0, logprobs: 0, return_token_ids: true };
    const a = await client.completions.create(body as typeof body & { stream?: false });
    const c = a.choices[0]! as typeof a.choices[0] & { token_ids: number[] };
    assert.deepEqual(c.token_ids, expected);
    assert.deepEqual(c.logprobs?.tokens, expected.map((id) => `token_id:${id}`));
    assert.equal(c.finish_reason, "length");
    assert.equal(c.text, ""); // stories260K ships no tokenizer
    assert.deepEqual(a.usage, {
      prompt_tokens: 1,
      completion_tokens: 64,
      total_tokens: 65,
      prompt_tokens_details: { cached_tokens: 0 },
    });

    const stream = await client.completions.create({ ...body, stream: true } as typeof body & { stream: true });
    const ids: number[] = [];
    let finish = null;
    for await (const chunk of stream) {
      for (const ch of chunk.choices as (typeof chunk.choices[0] & { token_ids?: number[] })[]) {
        ids.push(...(ch.token_ids ?? []));
        finish ??= ch.finish_reason;
      }
    }
    assert.deepEqual(ids, expected);
    assert.equal(finish, "length");

    // A list of token-id prompts gives one choice per prompt, in order.
    const two = await post(`${srv.url}/v1/completions`, { ...body, prompt: [[1], [1, ...expected.slice(0, 10)]] });
    const choices = (two.json as { choices: { index: number; token_ids: number[] }[] }).choices;
    assert.deepEqual(choices.map((x) => x.index), [0, 1]);
    assert.deepEqual(choices[0]!.token_ids, expected);
    assert.deepEqual(choices[1]!.token_ids.slice(0, 54), expected.slice(10));
    await assertEngineIdle(srv);
  } finally {
    await srv.shutdown();
  }
});

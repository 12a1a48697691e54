// The server under load on stories260K: 200 concurrent streams with cancellations, preemption in a small KV pool,
// and prefix-cache hits; outputs stay exact and every KV block comes back.
import assert from "node:assert/strict";
import {
  assertEngineIdle,
  metric,
  openaiClient,
  post,
  rng,
  type RunningServer,
  startTestServer,
} from "./helpers/server.ts";

interface IdsChoice {
  token_ids: number[];
  finish_reason: string;
}
interface IdsCompletion {
  choices: IdsChoice[];
  usage: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details: { cached_tokens: number } };
}

async function greedy(srv: RunningServer, prompt: number[], maxTokens: number): Promise<IdsCompletion> {
  const r = await post(`${srv.url}/v1/completions`, {
    prompt,
    max_tokens: maxTokens,
    temperature: 0,
    ignore_eos: true,
    return_token_ids: true,
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json as IdsCompletion;
}

function randomPrompt(rand: () => number, len: number): number[] {
  return Array.from({ length: len }, () => 3 + Math.floor(rand() * 509));
}

Deno.test("startServer() streams 200 concurrent requests, some cancelled midway, and frees every block", async () => {
  const srv = await startTestServer({ stories: true, engine: { blockSize: 16, numBlocks: 600 } });
  try {
    const client = openaiClient(srv);
    const rand = rng(2024);
    const plans = Array.from({ length: 200 }, (_, i) => ({
      i,
      prompt: randomPrompt(rand, 1 + Math.floor(rand() * 48)),
      maxTokens: 1 + Math.floor(rand() * 40),
      // about one in five is cancelled after a few chunks, half by break, half by aborting the controller
      cancelAfter: rand() < 0.2 ? 1 + Math.floor(rand() * 3) : 0,
      byBreak: rand() < 0.5,
    }));
    const run = async (p: typeof plans[number]) => {
      const body = {
        model: srv.ctx.modelName,
        prompt: p.prompt,
        max_tokens: p.maxTokens,
        temperature: 0.8,
        seed: p.i,
        ignore_eos: true,
        return_token_ids: true,
        stream: true,
        stream_options: { include_usage: true },
      };
      const stream = await client.completions.create(body as typeof body & { stream: true });
      let ids = 0;
      let chunks = 0;
      let finish: string | null = null;
      let usage: { prompt_tokens: number; completion_tokens: number } | null = null;
      try {
        for await (const chunk of stream) {
          chunks++;
          if (chunk.usage) usage = chunk.usage;
          for (const c of chunk.choices as (typeof chunk.choices[0] & { token_ids?: number[] })[]) {
            ids += c.token_ids?.length ?? 0;
            finish ??= c.finish_reason;
          }
          if (p.cancelAfter > 0 && chunks === p.cancelAfter && finish === null) {
            if (p.byBreak) break;
            stream.controller.abort();
          }
        }
      } catch (e) {
        if (!(p.cancelAfter > 0 && !p.byBreak)) throw e; // aborting the controller may surface as an AbortError
      }
      return { p, ids, finish, usage, cancelled: p.cancelAfter > 0 && chunks === p.cancelAfter && finish === null };
    };
    const results = await Promise.all(plans.map(run));
    const cancelled = results.filter((r) => r.cancelled).length;
    assert.ok(cancelled >= 10, `only ${cancelled} streams were cancelled midway`);
    for (const r of results) {
      if (r.cancelled) continue;
      assert.equal(r.finish, "length", `request ${r.p.i}`);
      assert.equal(r.ids, r.p.maxTokens, `request ${r.p.i}: ${r.ids} token ids streamed`);
      assert.equal(r.usage?.completion_tokens, r.p.maxTokens, `request ${r.p.i}`);
      assert.equal(r.usage?.prompt_tokens, r.p.prompt.length, `request ${r.p.i}`);
    }
    await assertEngineIdle(srv);
    assert.ok(srv.engine.metrics.finished.abort > 0, "no engine request was aborted");
    assert.equal(await metric(srv, "turbodeno_num_requests_running"), 0);
    assert.equal(await metric(srv, "turbodeno_kv_cache_usage_ratio"), 0);
  } finally {
    await srv.shutdown();
  }
});

Deno.test("startServer() preempts in a small KV pool and every request keeps its greedy output", async () => {
  const srv = await startTestServer({ stories: true, engine: { blockSize: 16, numBlocks: 12 } });
  try {
    const rand = rng(7);
    const prompts = Array.from({ length: 8 }, () => randomPrompt(rand, 10 + Math.floor(rand() * 20)));
    const together = await Promise.all(prompts.map((p) => greedy(srv, p, 40)));
    const preemptions = srv.engine.scheduler.counters.preemptionsTotal;
    assert.ok(preemptions > 0, "the pool of 12 blocks should have forced preemptions");
    assert.equal(await metric(srv, "turbodeno_num_preemptions_total"), preemptions);
    for (const [i, p] of prompts.entries()) {
      const alone = await greedy(srv, p, 40);
      assert.equal(together[i]!.choices[0]!.token_ids.length, 40);
      assert.deepEqual(together[i]!.choices[0]!.token_ids, alone.choices[0]!.token_ids, `prompt ${i}`);
    }
    await assertEngineIdle(srv);
  } finally {
    await srv.shutdown();
  }
});

Deno.test("startServer() serves a shared prefix from the prefix cache without changing the output", async () => {
  const srv = await startTestServer({ stories: true, engine: { blockSize: 16 } });
  const cold = await startTestServer({ stories: true, engine: { blockSize: 16, enablePrefixCache: false } });
  try {
    const rand = rng(99);
    const prefix = randomPrompt(rand, 100);
    const first = await greedy(srv, prefix, 24);
    assert.equal(first.usage.prompt_tokens_details.cached_tokens, 0);
    const hits0 = await metric(srv, "turbodeno_prefix_cache_hits_total");
    const again = await greedy(srv, prefix, 24);
    assert.equal(again.usage.prompt_tokens_details.cached_tokens, 96); // six full blocks; the last token is computed
    assert.deepEqual(again.choices[0]!.token_ids, first.choices[0]!.token_ids);
    const hits1 = await metric(srv, "turbodeno_prefix_cache_hits_total");
    assert.equal(hits1 - hits0, 96);

    const other = [...prefix.slice(0, 80), ...randomPrompt(rand, 20)];
    const warm = await greedy(srv, other, 24);
    assert.equal(warm.usage.prompt_tokens_details.cached_tokens, 80);
    assert.ok(await metric(srv, "turbodeno_prefix_cache_hits_total") > hits1);
    assert.ok(await metric(srv, "turbodeno_prefix_cache_hit_rate") > 0);
    const reference = await greedy(cold, other, 24);
    assert.equal(reference.usage.prompt_tokens_details.cached_tokens, 0);
    assert.deepEqual(warm.choices[0]!.token_ids, reference.choices[0]!.token_ids);
    await assertEngineIdle(srv);
  } finally {
    await srv.shutdown();
    await cold.shutdown();
  }
});

Deno.test("submitChoices() caps a missing max_tokens to what the KV pool can hold", async () => {
  const srv = await startTestServer({ engine: { blockSize: 16, numBlocks: 4 } }); // 64 KV slots, context 2048
  try {
    const r = await post(`${srv.url}/v1/chat/completions`, {
      messages: [{ role: "user", content: "hi" }],
      ignore_eos: true,
    });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const usage = (r.json as { usage: { total_tokens: number } }).usage;
    assert.equal(usage.total_tokens, 65); // the last sampled token needs no KV slot
    const over = await post(`${srv.url}/v1/chat/completions`, {
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 100,
    });
    assert.equal(over.status, 400);
    await assertEngineIdle(srv);
  } finally {
    await srv.shutdown();
  }
});

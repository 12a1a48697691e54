// The `serve` and `chat` commands as processes: serve prints its URL, answers, and exits 0 on SIGTERM; chat reads
// piped turns, keeps the conversation and forgets it on /reset.
import assert from "node:assert/strict";
import { servedUrl } from "./helpers/process.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

Deno.test("serveCommand() prints its URL, serves, and exits 0 on SIGTERM after a graceful shutdown", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "serve",
      "--backend",
      "reference",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--num-blocks",
      "32",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const srv = await servedUrl(child);
  const url = srv.url;
  const health = await fetch(`${url}/health`);
  assert.deepEqual(await health.json(), { status: "ok" });
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST",
    body: JSON.stringify({ prompt: "ab", max_tokens: 3, ignore_eos: true }),
  });
  assert.equal(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, 3);
  const { code, stderr } = await srv.stop();
  assert.equal(code, 0, stderr);
  assert.match(stderr, /server stopped/);
});

Deno.test("chatCommand() answers piped turns and forgets the conversation on /reset", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "chat", "--backend", "reference", "--max-tokens", "6", "--temperature", "0"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode("hello there\n/reset\nhello there\nhello there\n/exit\nnever read\n"));
  await w.close();
  const { code, stdout, stderr } = await child.output();
  const out = new TextDecoder().decode(stdout);
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  assert.match(new TextDecoder().decode(stderr), /conversation reset/);
  // Greedy answers to the same fresh conversation are identical, so the output starts with A\nA\n (A may itself
  // hold newlines: the demo model's bytes are noise).
  const repeats = (len: number) => out[len - 1] === "\n" && out.slice(0, len) === out.slice(len, 2 * len);
  const first = Array.from({ length: Math.floor(out.length / 2) }, (_, i) => i + 1).find(repeats);
  assert.ok(first !== undefined, `the answer after /reset differs from the first: ${JSON.stringify(out)}`);
  assert.ok(out.length > 2 * first, "no third answer");
});

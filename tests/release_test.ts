// `deno task compile` (release/compile.ts): the executable, copied alone into an empty folder and run with no Deno on
// PATH and a fresh HOME, answers `info` and `generate`, and `serve` answers /v1/models and a chat completion from the
// official openai client over HTTP, then exits 0 on SIGTERM; `chat` answers a piped turn.
import assert from "node:assert/strict";
import OpenAI from "openai";
import { servedUrl } from "./helpers/process.ts";

const COMPILE = new URL("../release/compile.ts", import.meta.url).pathname;

async function build(dir: string): Promise<string> {
  const out = `${dir}/build/turbodeno`;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", COMPILE, "--out", out],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const log = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  assert.ok(r.success, `release/compile.ts failed:\n${log}`);
  // Alone in an empty folder: nothing of the project beside it.
  const alone = `${dir}/empty/turbodeno`;
  await Deno.mkdir(`${dir}/empty`);
  await Deno.copyFile(out, alone);
  await Deno.chmod(alone, 0o755);
  return alone;
}

/** No Deno on PATH, a HOME of its own (so the unpack cache starts empty), run from the executable's folder. */
function command(exe: string, home: string, args: string[], stdin: "null" | "piped" = "null"): Deno.Command {
  return new Deno.Command(exe, {
    args,
    cwd: exe.slice(0, exe.lastIndexOf("/")),
    clearEnv: true,
    env: { PATH: "/usr/bin:/bin", HOME: home },
    stdin,
    stdout: "piped",
    stderr: "piped",
  });
}

Deno.test("release/compile.ts executable serves /v1/models and a chat completion from an empty folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "turbodeno_release_" });
  try {
    const exe = await build(dir);
    const home = `${dir}/home`;
    await Deno.mkdir(home);

    const info = await command(exe, home, ["info"]).output();
    const infoText = new TextDecoder().decode(info.stdout);
    assert.ok(info.success, new TextDecoder().decode(info.stderr));
    assert.match(infoText, /reference/);

    const gen = await command(exe, home, [
      "generate",
      "--backend",
      "reference",
      "--ids",
      "1,2,3",
      "--max-tokens",
      "4",
      "--ignore-eos",
      "--json",
    ]).output();
    assert.ok(gen.success, new TextDecoder().decode(gen.stderr));
    const genJson = JSON.parse(new TextDecoder().decode(gen.stdout)) as { ids: number[] };
    assert.equal(genJson.ids.length, 4);

    const chatArgs = ["chat", "--backend", "reference", "--max-tokens", "4", "--temperature", "0"];
    const chatCli = command(exe, home, chatArgs, "piped").spawn();
    const w = chatCli.stdin.getWriter();
    await w.write(new TextEncoder().encode("hello\n/exit\n"));
    await w.close();
    const chatOut = await chatCli.output();
    assert.ok(chatOut.success, new TextDecoder().decode(chatOut.stderr));
    assert.ok(new TextDecoder().decode(chatOut.stdout).trim().length > 0, "chat printed no reply");

    const args = ["serve", "--backend", "reference", "--host", "127.0.0.1", "--port", "0", "--num-blocks", "32"];
    const child = command(exe, home, args).spawn();
    const srv = await servedUrl(child);
    const url = srv.url;
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.ok(models.data.length >= 1 && models.data[0]!.id.length > 0, JSON.stringify(models));
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
    const chat = await client.chat.completions.create({
      model: models.data[0]!.id,
      messages: [{ role: "user", content: "hello" }],
      max_tokens: 5,
      temperature: 0,
    });
    assert.equal(chat.object, "chat.completion");
    assert.equal(typeof chat.choices[0]!.message.content, "string");
    assert.ok(chat.usage!.completion_tokens >= 1 && chat.usage!.completion_tokens <= 5);
    const { code, stderr } = await srv.stop();
    assert.equal(code, 0, stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

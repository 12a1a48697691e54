// The CLI contract other checks rely on: generate --json, logits, info, --help, clear errors.
import assert from "node:assert/strict";
import { maxRelError, readReferenceLogits, STORIES_DIR } from "./helpers/models.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const p = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  });
  const r = await p.output();
  return { code: r.code, out: new TextDecoder().decode(r.stdout), err: new TextDecoder().decode(r.stderr) };
}

Deno.test("main.ts generate --json reproduces the stories260K greedy continuation", async () => {
  const ref = await readReferenceLogits();
  const expected = ref.greedy_from_bos.slice(1);
  const r = await cli([
    "generate",
    "--model",
    STORIES_DIR,
    "--ids",
    "1",
    "--max-tokens",
    String(expected.length),
    "--temperature",
    "0",
    "--backend",
    "reference",
    "--json",
  ]);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trim().split("\n");
  assert.equal(lines.length, 1, "exactly one JSON object on stdout");
  const j = JSON.parse(lines[0]!);
  assert.deepEqual(j.ids, expected);
  assert.equal(j.text, "", "stories260K has no tokenizer");
});

Deno.test("main.ts logits prints one row per input position matching transformers", async () => {
  const ref = await readReferenceLogits();
  const c = ref.cases[0]!;
  const r = await cli(["logits", "--model", STORIES_DIR, "--ids", c.tokens.join(","), "--backend", "reference"]);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.logits.length, c.tokens.length);
  assert.ok(maxRelError(j.logits.flat(), c.logits.flat()) < 1e-4);
});

Deno.test("main.ts info lists every backend with a reason", async () => {
  const r = await cli(["info", "--json"]);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as { backends: { name: string; available: boolean; detail: string }[] };
  assert.deepEqual(j.backends.map((b) => b.name).sort(), ["cuda", "reference", "webgpu"]);
  assert.ok(j.backends.find((b) => b.name === "reference")!.available);
  for (const b of j.backends) assert.ok(b.detail.length > 0, `${b.name} has a reason`);
});

Deno.test("main.ts <command> --help describes each command", async () => {
  for (const cmd of ["generate", "logits", "info", "serve", "chat"]) {
    const r = await cli([cmd, "--help"]);
    assert.equal(r.code, 0, `${cmd} --help: ${r.err}`);
    assert.match(r.out, new RegExp(`Usage: main.ts ${cmd}`));
  }
});

Deno.test("main.ts generate reports bad input clearly", async () => {
  const cases: [string[], RegExp][] = [
    [["generate", "--model", STORIES_DIR, "--ids", "1,x"], /--ids must be comma-separated non-negative integers/],
    [["generate", "--model", STORIES_DIR, "--ids", "1,99999", "--backend", "reference"], /outside the vocabulary/],
    [["generate", "--model", "/nonexistent/dir/x", "--ids", "1"], /neither a local folder nor a Hub id/],
    [["generate", "--model", STORIES_DIR, "--ids", "1", "--backend", "tpu"], /unknown backend "tpu"/],
    [["generate", "--model", STORIES_DIR, "--ids", "1", "--temperature=-1"], /temperature must be/],
  ];
  for (const [args, re] of cases) {
    const r = await cli(args);
    assert.notEqual(r.code, 0, args.join(" "));
    assert.match(r.err, re);
    assert.doesNotMatch(r.err, /^\s+at /m, "no stack trace for user errors");
  }
});

Deno.test("main.ts resolves a Hub id from the local cache and names what is missing offline", async () => {
  const home = await Deno.makeTempDir();
  const snap = `${home}/hub/models--tiny--stories/snapshots/abc123`;
  await Deno.mkdir(snap, { recursive: true });
  for (const f of ["config.json", "model.safetensors"]) await Deno.copyFile(`${STORIES_DIR}/${f}`, `${snap}/${f}`);
  await Deno.mkdir(`${home}/hub/models--tiny--stories/refs`);
  await Deno.writeTextFile(`${home}/hub/models--tiny--stories/refs/main`, "abc123");
  const env = { HF_HOME: home, HF_HUB_OFFLINE: "1" };
  const ok = await cli(
    ["generate", "--model", "tiny/stories", "--ids", "1", "--max-tokens", "4", "--backend", "reference", "--json"],
    env,
  );
  assert.equal(ok.code, 0, ok.err);
  assert.equal(JSON.parse(ok.out).ids.length, 4);
  const missing = await cli(["generate", "--model", "nobody/absent-model", "--ids", "1"], env);
  assert.notEqual(missing.code, 0);
  assert.match(missing.err, /nobody\/absent-model.*not in the Hugging Face cache/);
  assert.ok(missing.err.includes(`${home}/hub`), "names where it looked");
});

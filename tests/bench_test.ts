// The benchmark entry point writes its three outputs (JSON, markdown, SVG) for each suite.
import assert from "node:assert/strict";
import { probeWebGpu } from "../src/backends/webgpu/device.ts";
import { gpuTestRegistrar } from "../src/backends/webgpu/testing.ts";

const MAIN = new URL("../bench/main.ts", import.meta.url).pathname;

async function bench(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args, "--quiet"],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: r.code, out: new TextDecoder().decode(r.stdout), err: new TextDecoder().decode(r.stderr) };
}

async function assertOutputs(dir: string, suite: string, column: string): Promise<Record<string, unknown>[]> {
  const json = JSON.parse(await Deno.readTextFile(`${dir}/${suite}.json`));
  const md = await Deno.readTextFile(`${dir}/${suite}.md`);
  const svg = await Deno.readTextFile(`${dir}/${suite}.svg`);
  assert.ok(md.includes(`| ${column} |`) || md.includes(` ${column} `), `${suite}.md has the ${column} column`);
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /<rect x=/);
  return json.rows;
}

Deno.test("bench/main.ts --suite generation reports static batches", async () => {
  const out = await Deno.makeTempDir();
  const r = await bench([
    "--suite=generation",
    "--model=synthetic:tiny",
    "--backend=reference",
    "--batches=1,4",
    "--lengths=8x4",
    `--out=${out}`,
  ]);
  assert.equal(r.code, 0, r.err);
  const rows = await assertOutputs(out, "generation", "output tok/s") as Record<string, number>[];
  assert.deepEqual(rows.map((x) => x.batch), [1, 4]);
  assert.ok(rows.every((x) => x["output tok/s"]! > 0 && x.output === 4));
});

Deno.test("bench/main.ts --suite kernels refuses the reference backend (it has no kernels to time)", async () => {
  const r = await bench(["--suite=kernels", "--backend=reference", `--out=${await Deno.makeTempDir()}`]);
  assert.equal(r.code, 2);
  assert.match(r.err, /reference backend has no GPU kernels/);
});

async function servingSuite(backend: string): Promise<void> {
  const out = await Deno.makeTempDir();
  const r = await bench([
    "--suite=serving",
    "--model=synthetic:tiny",
    `--backend=${backend}`,
    "--requests=24",
    "--concurrency=8",
    "--length-scale=0.1",
    `--out=${out}`,
  ]);
  assert.equal(r.code, 0, r.err);
  const [row] = await assertOutputs(out, "serving", "output tok/s") as Record<string, number>[];
  assert.equal(row!.requests, 24);
  assert.equal(row!.failed, 0);
  assert.ok(row!["output tok/s"]! > 0);
  assert.ok(row!["TTFT p50 ms"]! > 0 && row!["TTFT p99 ms"]! >= row!["TTFT p50 ms"]!);
}

Deno.test("bench/main.ts --suite serving drives the live server on the reference backend", () =>
  servingSuite("reference"));

const gpuTest = gpuTestRegistrar(await probeWebGpu());

gpuTest(
  "bench/main.ts --suite serving --model synthetic:tiny --backend webgpu writes JSON, markdown and SVG",
  () => servingSuite("webgpu"),
);

gpuTest("bench/main.ts --suite kernels times every kernel on WebGPU against the same-run roofline", async () => {
  const out = await Deno.makeTempDir();
  const r = await bench([
    "--suite=kernels",
    "--backend=webgpu",
    "--model=synthetic:tiny",
    "--prefill=64",
    "--reps=4",
    `--out=${out}`,
  ]);
  assert.equal(r.code, 0, r.err);
  const rows = await assertOutputs(out, "kernels", "% roofline") as Record<string, number | string>[];
  const kernels = new Set(rows.map((x) => x.kernel));
  for (const k of ["embedding", "rmsnorm+residual", "qkv GEMV", "lm_head GEMV", "gate_up GEMM", "rope+KV write"]) {
    assert.ok(kernels.has(k), `row for ${k}`);
  }
  for (const k of ["decode attention", "prefill attention", "silu_mul", "sampling (argmax)"]) {
    assert.ok(kernels.has(k), `row for ${k}`);
  }
  for (const row of rows) {
    const us = row["us/call"] as number, pct = row["% roofline"] as number;
    assert.ok(us > 0 && Number.isFinite(us), `${row.kernel} ${row.shape}: time ${us}`);
    assert.ok(Number.isFinite(pct) && pct > 0, `${row.kernel} ${row.shape}: % roofline ${pct}`);
    assert.ok(row.bound === "memory" || row.bound === "compute");
  }
});

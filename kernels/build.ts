// Builds kernels/*.cu into lib/<name>.fatbin (SASS for sm_80/86/89/90 + compute_90 PTX) and lib/manifest.json.
//   deno run -A kernels/build.ts           build what is stale (--force: everything)
//   deno run -A kernels/build.ts --check   exit 1 when lib/ is missing or stale vs kernels/ (needs no nvcc)
// A source's hash covers the .cu file, every kernels/*.cuh header and the nvcc flags.

const KERNELS = new URL(".", import.meta.url);
const LIB = new URL("../lib/", import.meta.url);
const FLAGS = [
  "-fatbin",
  "-O3",
  "-std=c++17",
  "-Xfatbin=-compress-all",
  "-gencode=arch=compute_80,code=sm_80",
  "-gencode=arch=compute_86,code=sm_86",
  "-gencode=arch=compute_89,code=sm_89",
  "-gencode=arch=compute_90,code=[sm_90,compute_90]",
];
/**
 * Modules whose sm_90 code needs the arch-specific target (wgmma): their cc 9.0 SASS is sm_90a (it runs on H100 /
 * H200, not forward), the compute_90 PTX stays for newer GPUs (where the host does not launch these kernels).
 */
const ARCH_SPECIFIC = new Set(["gemm_wg"]);
function flagsFor(cu: string): string[] {
  if (!ARCH_SPECIFIC.has(cu.replace(/\.cu$/, ""))) return FLAGS;
  return [
    ...FLAGS.filter((f) => !f.startsWith("-gencode=arch=compute_90,")),
    "-gencode=arch=compute_90a,code=sm_90a",
    "-gencode=arch=compute_90,code=compute_90",
  ];
}

export interface ManifestEntry {
  readonly source: string;
  readonly sourceSha256: string;
  readonly fatbin: string;
  readonly fatbinSha256: string;
  readonly bytes: number;
}
export interface Manifest {
  readonly nvcc: string;
  readonly flags: readonly string[];
  readonly kernels: Record<string, ManifestEntry>;
}

async function sha256(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const h = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(h), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function listDir(ext: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(KERNELS)) if (e.isFile && e.name.endsWith(ext)) out.push(e.name);
  return out.sort();
}

/** Hash of one kernel source with every header and the flags. */
export async function sourceHash(cu: string): Promise<string> {
  const parts = [flagsFor(cu).join(" "), cu, await Deno.readTextFile(new URL(cu, KERNELS))];
  for (const h of await listDir(".cuh")) parts.push(h, await Deno.readTextFile(new URL(h, KERNELS)));
  return await sha256(parts.join("\0"));
}

async function nvccVersion(): Promise<string> {
  const out = await new Deno.Command("nvcc", { args: ["--version"], stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error("nvcc --version failed");
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return lines.find((l) => l.startsWith("Cuda compilation tools")) ?? lines[lines.length - 1] ?? "?";
}

async function readManifest(): Promise<Manifest | null> {
  try {
    return JSON.parse(await Deno.readTextFile(new URL("manifest.json", LIB))) as Manifest;
  } catch {
    return null;
  }
}

/** Problems that make lib/ stale (empty when fresh). */
export async function staleness(): Promise<string[]> {
  const m = await readManifest();
  if (!m) return ["lib/manifest.json is missing or unreadable"];
  const problems: string[] = [];
  const sources = await listDir(".cu");
  for (const cu of sources) {
    const name = cu.slice(0, -3);
    const e = m.kernels[name];
    if (!e) {
      problems.push(`${cu}: not built`);
      continue;
    }
    if (e.sourceSha256 !== await sourceHash(cu)) problems.push(`${cu}: changed since lib/${e.fatbin} was built`);
    try {
      const bin = await Deno.readFile(new URL(e.fatbin, LIB));
      if (await sha256(bin) !== e.fatbinSha256) problems.push(`lib/${e.fatbin}: contents differ from the manifest`);
    } catch {
      problems.push(`lib/${e.fatbin}: missing`);
    }
  }
  for (const name of Object.keys(m.kernels)) {
    if (!sources.includes(`${name}.cu`)) problems.push(`lib/${name}.fatbin: its source kernels/${name}.cu is gone`);
  }
  return problems;
}

async function build(force: boolean): Promise<void> {
  await Deno.mkdir(LIB, { recursive: true });
  const old = await readManifest();
  const nvcc = await nvccVersion();
  const kernels: Record<string, ManifestEntry> = {};
  for (const cu of await listDir(".cu")) {
    const name = cu.slice(0, -3);
    const fatbin = `${name}.fatbin`;
    const src = await sourceHash(cu);
    const prev = old?.kernels[name];
    let fresh = false;
    if (!force && prev && prev.sourceSha256 === src) {
      try {
        fresh = await sha256(await Deno.readFile(new URL(fatbin, LIB))) === prev.fatbinSha256;
      } catch { /* rebuild */ }
    }
    if (!fresh) {
      const t0 = performance.now();
      const out = await new Deno.Command("nvcc", {
        args: [...flagsFor(cu), "-o", new URL(fatbin, LIB).pathname, new URL(cu, KERNELS).pathname],
        stdout: "inherit",
        stderr: "inherit",
      }).output();
      if (!out.success) throw new Error(`nvcc failed on kernels/${cu}`);
      console.log(`built lib/${fatbin} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    const bin = await Deno.readFile(new URL(fatbin, LIB));
    kernels[name] = { source: cu, sourceSha256: src, fatbin, fatbinSha256: await sha256(bin), bytes: bin.length };
  }
  const manifest: Manifest = { nvcc, flags: FLAGS, kernels };
  await Deno.writeTextFile(new URL("manifest.json", LIB), JSON.stringify(manifest, null, 2) + "\n");
  console.log(`lib/manifest.json: ${Object.keys(kernels).length} kernels (${nvcc})`);
}

if (import.meta.main) {
  if (Deno.args.includes("--check")) {
    const problems = await staleness();
    if (problems.length) {
      console.error(`lib/ is stale; run \`deno task build:cuda\`:\n  ${problems.join("\n  ")}`);
      Deno.exit(1);
    }
    console.log("lib/ is fresh");
  } else {
    await build(Deno.args.includes("--force"));
  }
}

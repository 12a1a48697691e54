// --model resolution: a local folder, or a Hub id found in the local Hugging Face cache, or downloaded when
// the network allows. Without a network it says exactly what is missing.
import { ENV } from "../core/env.ts";
import { UserError } from "../core/errors.ts";
import { ProgressBar } from "../core/progress.ts";

async function isDir(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isDirectory;
  } catch {
    return false;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** The snapshot folder of `id` in the hub cache, or null. Uses refs/<revision>, else the newest snapshot. */
export async function findInHubCache(id: string, revision = "main", cache = ENV.hfHubCache): Promise<string | null> {
  const repo = `${cache}/models--${id.replace("/", "--")}`;
  if (!await isDir(`${repo}/snapshots`)) return null;
  try {
    const ref = (await Deno.readTextFile(`${repo}/refs/${revision}`)).trim();
    if (await exists(`${repo}/snapshots/${ref}/config.json`)) return `${repo}/snapshots/${ref}`;
  } catch { /* no ref file: fall through */ }
  let best: { path: string; mtime: number } | null = null;
  for await (const e of Deno.readDir(`${repo}/snapshots`)) {
    const p = `${repo}/snapshots/${e.name}`;
    if (!await exists(`${p}/config.json`)) continue;
    const mtime = (await Deno.stat(p)).mtime?.getTime() ?? 0;
    if (!best || mtime > best.mtime) best = { path: p, mtime };
  }
  return best?.path ?? null;
}

const WANTED =
  /^(config\.json|generation_config\.json|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|model\.safetensors\.index\.json|.*\.safetensors)$/;

/** Downloads the files a model needs into the hub cache layout, with a progress bar. */
export async function downloadFromHub(id: string, cache = ENV.hfHubCache): Promise<string> {
  const headers: Record<string, string> = ENV.hfToken ? { Authorization: `Bearer ${ENV.hfToken}` } : {};
  const meta = await fetch(`${ENV.hfEndpoint}/api/models/${id}`, { headers });
  if (!meta.ok) throw new UserError(`model "${id}": the Hub answered ${meta.status} ${meta.statusText}`);
  const info = await meta.json() as { sha?: string; siblings?: { rfilename: string }[] };
  const sha = info.sha ?? "main";
  const files = (info.siblings ?? []).map((s) => s.rfilename).filter((f) => WANTED.test(f));
  if (!files.includes("config.json")) throw new UserError(`model "${id}" has no config.json on the Hub`);
  const repo = `${cache}/models--${id.replace("/", "--")}`;
  const dir = `${repo}/snapshots/${sha}`;
  await Deno.mkdir(dir, { recursive: true });
  for (const name of files) {
    const res = await fetch(`${ENV.hfEndpoint}/${id}/resolve/${sha}/${name}`, { headers });
    if (!res.ok || !res.body) throw new UserError(`downloading ${id}/${name}: ${res.status} ${res.statusText}`);
    const total = Number(res.headers.get("content-length") ?? 0);
    const bar = new ProgressBar(`download ${name}`, total);
    const tmp = `${dir}/${name}.incomplete`;
    {
      using f = await Deno.open(tmp, { write: true, create: true, truncate: true });
      let done = 0;
      for await (const chunk of res.body) {
        let off = 0;
        while (off < chunk.length) off += await f.write(chunk.subarray(off));
        done += chunk.length;
        bar.update(done);
      }
    }
    await Deno.rename(tmp, `${dir}/${name}`);
    bar.done();
  }
  await Deno.mkdir(`${repo}/refs`, { recursive: true });
  await Deno.writeTextFile(`${repo}/refs/main`, sha);
  return dir;
}

/** Resolves --model to a local folder holding config.json. */
export async function resolveModelPath(model: string): Promise<string> {
  if (await isDir(model)) {
    if (!await exists(`${model}/config.json`)) throw new UserError(`model folder ${model} has no config.json`);
    return model;
  }
  if (!HUB_ID.test(model)) {
    throw new UserError(`model "${model}" is neither a local folder nor a Hub id of the form org/name`);
  }
  const cached = await findInHubCache(model);
  if (cached) return cached;
  if (ENV.hfOffline) {
    throw new UserError(
      `model "${model}" is not in the Hugging Face cache (${ENV.hfHubCache}) and HF_HUB_OFFLINE is set`,
    );
  }
  try {
    return await downloadFromHub(model);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(
      `model "${model}" is not in the local Hugging Face cache (looked in ${ENV.hfHubCache}/models--${
        model.replace("/", "--")
      }) and could not be downloaded from ${ENV.hfEndpoint}: ${(e as Error).message}. ` +
        `Copy the model folder to this machine and pass its path, or set HF_HOME to a cache that holds it.`,
    );
  }
}

// Backend choice. GPU backends are imported lazily, so a host without NVIDIA never calls Deno.dlopen and a host
// without WebGPU never touches navigator.gpu beyond a probe.
import type { Backend, BackendName } from "../core/types.ts";
import { BackendUnavailableError, UserError } from "../core/errors.ts";
import { ensureRuntimeDir } from "../core/env.ts";

export interface BackendProbe {
  readonly name: BackendName;
  readonly available: boolean;
  readonly detail: string;
  /** A software rasterizer (lavapipe): usable when asked for by name, skipped by "auto". */
  readonly software?: boolean;
}

export interface BackendOptions {
  /** Host memory budget for the reference backend's KV cache. */
  readonly referenceMemoryBytes?: number;
  /** Memory the WebGPU backend may use (default: derived from the adapter's limits). */
  readonly webgpuMemoryBytes?: number;
}

/** True when this host looks like it has an NVIDIA driver (checked before any dlopen). */
async function nvidiaDriverPresent(): Promise<string | null> {
  for (const p of ["/proc/driver/nvidia/version", "/dev/nvidiactl"]) {
    try {
      await Deno.stat(p);
      return p;
    } catch { /* not here */ }
  }
  return null;
}

interface Factory {
  probe(): Promise<BackendProbe>;
  create(opts: BackendOptions): Promise<Backend>;
}

const FACTORIES: Record<BackendName, Factory> = {
  reference: {
    probe: () =>
      Promise.resolve({ name: "reference", available: true, detail: "CPU, plain TypeScript f32 (always available)" }),
    create: async (opts) => {
      const { ReferenceBackend } = await import("./reference/backend.ts");
      return new ReferenceBackend({ memoryBytes: opts.referenceMemoryBytes });
    },
  },
  webgpu: {
    probe: async () => {
      ensureRuntimeDir();
      try {
        const mod = await import("./webgpu/probe.ts");
        const r = await mod.probeWebGpu();
        return { name: "webgpu", available: r.ok, detail: r.detail, software: r.software };
      } catch (e) {
        return { name: "webgpu", available: false, detail: `backend not available: ${(e as Error).message}` };
      }
    },
    // On a worker thread: Deno 2.9's WebGPU waits for the GPU by blocking the calling thread, which would freeze the
    // server's event loop for every step.
    create: async (opts) => {
      ensureRuntimeDir();
      const mod = await import("./webgpu/probe.ts");
      return await mod.createWebGpuWorkerBackend({ memoryBytes: opts.webgpuMemoryBytes });
    },
  },
  cuda: {
    probe: async () => {
      const driver = await nvidiaDriverPresent();
      if (!driver) return { name: "cuda", available: false, detail: "no NVIDIA driver on this host (/dev/nvidiactl)" };
      try {
        const mod = await import("./cuda/probe.ts");
        const r = await mod.probeCuda();
        return { name: "cuda", available: r.ok, detail: r.detail };
      } catch (e) {
        return { name: "cuda", available: false, detail: `backend not available: ${(e as Error).message}` };
      }
    },
    create: async () => {
      const mod = await import("./cuda/probe.ts");
      return await mod.createCudaBackend();
    },
  },
};

export const BACKEND_NAMES: readonly BackendName[] = ["cuda", "webgpu", "reference"];

export function probeBackend(name: BackendName): Promise<BackendProbe> {
  return FACTORIES[name].probe();
}

export async function probeAll(): Promise<BackendProbe[]> {
  const out: BackendProbe[] = [];
  for (const n of BACKEND_NAMES) out.push(await probeBackend(n));
  return out;
}

/** Creates the named backend, or with "auto" the first that starts of cuda, webgpu, reference. */
/**
 * Creates the named backend, or with "auto" the first that starts of cuda, webgpu (hardware adapters only),
 * reference. WebGPU is not probed on this thread first: its backend runs in a worker, and a second WebGPU instance
 * on the main thread made process exit crash in Deno 2.9; starting the worker is the probe.
 */
export async function createBackend(choice: string, opts: BackendOptions = {}): Promise<Backend> {
  if (choice !== "auto" && !(choice in FACTORIES)) {
    throw new UserError(`unknown backend "${choice}" (choose auto, ${BACKEND_NAMES.join(", ")})`);
  }
  const names = choice === "auto" ? BACKEND_NAMES : [choice as BackendName];
  const reasons: string[] = [];
  for (const n of names) {
    if (n !== "webgpu") {
      const p = await probeBackend(n);
      if (!p.available) {
        reasons.push(`${n}: ${p.detail}`);
        continue;
      }
    }
    let backend: Backend;
    try {
      backend = await FACTORIES[n].create(opts);
    } catch (e) {
      reasons.push(`${n}: ${(e as Error).message}`);
      continue;
    }
    if (choice === "auto" && (backend as { software?: boolean }).software) {
      reasons.push(`${n}: software adapter (${backend.device}); ask for it with --backend webgpu`);
      await backend[Symbol.asyncDispose]();
      continue;
    }
    return backend;
  }
  if (choice !== "auto") {
    throw new BackendUnavailableError(`backend ${choice} cannot start: ${reasons.join("; ").slice(choice.length + 2)}`);
  }
  throw new BackendUnavailableError(`no backend could start:\n  ${reasons.join("\n  ")}`);
}

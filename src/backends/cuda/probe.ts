// Entry points select.ts imports lazily: a probe that opens the driver without loading a model, and the factory.
import type { Backend } from "../../core/types.ts";
import { CudaBackend } from "./backend.ts";
import { CudaDevice } from "./device.ts";

export async function probeCuda(): Promise<{ ok: boolean; detail: string }> {
  try {
    const dev = CudaDevice.open(0);
    const detail = `${dev.description}, ${(dev.totalBytes / 2 ** 30).toFixed(1)} GiB`;
    await dev[Symbol.asyncDispose]();
    try {
      await Deno.stat(new URL("../../../lib/manifest.json", import.meta.url));
    } catch {
      return { ok: false, detail: `${detail}; lib/ kernels are not built (deno task build:cuda)` };
    }
    return { ok: true, detail };
  } catch (e) {
    return { ok: false, detail: (e as Error).message };
  }
}

export async function createCudaBackend(): Promise<Backend> {
  return await CudaBackend.create();
}

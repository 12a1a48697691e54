// Kernel modules (lib/*.fatbin, loaded from bytes so `deno compile --include lib` embeds them), validation before
// launch (kernel_table.ts: parameter lists, argument packing), and the launch itself (cuLaunchKernel / Ex with PDL).
import { check, cuda, outPtr } from "./ffi.ts";
import type { CudaDevice } from "./device.ts";
import {
  checkLaunchDims,
  type Dim3,
  type KernelArgs,
  type KernelName,
  KERNELS,
  type KernelSpec,
  type ModuleName,
  packArgs,
} from "./kernel_table.ts";

async function readLib(name: string): Promise<Uint8Array> {
  const url = new URL(`../../../lib/${name}.fatbin`, import.meta.url);
  try {
    return await Deno.readFile(url);
  } catch (e) {
    throw new Error(`cannot read ${url.pathname} (run \`deno task build:cuda\`): ${(e as Error).message}`);
  }
}

// CUlaunchAttribute (id u32, pad to 8, 64-byte value union) with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
// (6) = 1, and a CUlaunchConfig (6 u32 dims, u32 smem, pad, stream, attrs, u32 numAttrs, pad): 56 bytes.
const PDL_ATTR = new Uint8Array(72);
new DataView(PDL_ATTR.buffer).setUint32(0, 6, true);
new DataView(PDL_ATTR.buffer).setInt32(8, 1, true);
const PDL_CONFIG = new ArrayBuffer(56);

function launchPdl(
  func: Deno.PointerValue,
  g: number[],
  b: number[],
  smem: number,
  stream: Deno.PointerValue,
  ptrs: BigUint64Array,
): number {
  const v = new DataView(PDL_CONFIG);
  [...g, ...b].forEach((d, k) => v.setUint32(4 * k, d, true));
  v.setUint32(24, smem, true);
  v.setBigUint64(32, BigInt(Deno.UnsafePointer.value(stream)), true);
  v.setBigUint64(40, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(PDL_ATTR))), true);
  v.setUint32(48, 1, true);
  return cuda().cuLaunchKernelEx(new Uint8Array(PDL_CONFIG), func, ptrs, null);
}

/** Every kernel module loaded into the device's context. */
export class Kernels implements Disposable {
  readonly #modules = new Map<ModuleName, Deno.PointerValue>();
  readonly #funcs = new Map<string, Deno.PointerValue>();
  /** Dynamic shared memory each function was opened up to (beyond the default 48 KiB). */
  readonly #smemLimit = new Map<string, number>();
  /** Launches issued so far (for tests and the graph/no-graph comparison). */
  launches = 0;

  private constructor(readonly dev: CudaDevice) {}

  static async load(dev: CudaDevice): Promise<Kernels> {
    const k = new Kernels(dev);
    for (
      const m of [
        "elementwise",
        "attn_decode",
        "attn_prefill",
        "gemm",
        "gemm_skinny",
        "qgemm",
        "qgemv",
        "decode",
        "sample",
        "gemm_wg",
      ] as const
    ) {
      const bytes = await readLib(m);
      const slot = new BigUint64Array(1);
      check(`cuModuleLoadData(${m})`, cuda().cuModuleLoadData(slot, bytes));
      k.#modules.set(m, outPtr(slot));
    }
    return k;
  }

  #func(fn: string, module: ModuleName): Deno.PointerValue {
    let h = this.#funcs.get(fn);
    if (h === undefined) {
      const slot = new BigUint64Array(1);
      const cname = new TextEncoder().encode(fn + "\0");
      check(`cuModuleGetFunction(${fn})`, cuda().cuModuleGetFunction(slot, this.#modules.get(module)!, cname));
      h = outPtr(slot);
      this.#funcs.set(fn, h);
    }
    return h;
  }

  /**
   * Launches `${base}_${suffix}` on the device's stream after validating every argument and dimension. `pdl`:
   * programmatic dependent launch (sm_90+; the kernel must execute griddepcontrol.wait in every block before it
   * touches what earlier kernels wrote), so it may start while the previous kernel drains.
   */
  launch(base: KernelName, suffix: string, grid: Dim3, block: Dim3, args: KernelArgs, smem = 0, pdl = false): void {
    const spec: KernelSpec = KERNELS[base];
    const fn = `${base}_${suffix}`;
    const values = packArgs(fn, spec, args);
    const [g, b] = checkLaunchDims(fn, grid, block, smem);
    const base64 = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(values)));
    const ptrs = new BigUint64Array(spec.params.length);
    for (let k = 0; k < ptrs.length; k++) ptrs[k] = base64 + BigInt(8 * k);
    const func = this.#func(fn, spec.module);
    if (smem > 48 * 1024 && (this.#smemLimit.get(fn) ?? 0) < smem) {
      // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
      check(`cuFuncSetAttribute(${fn}, smem ${smem})`, cuda().cuFuncSetAttribute(func, 8, smem));
      this.#smemLimit.set(fn, smem);
    }
    const code = pdl && this.dev.cc[0] >= 9
      ? launchPdl(func, g, b, smem, this.dev.stream, ptrs)
      : cuda().cuLaunchKernel(
        func,
        g[0]!,
        g[1]!,
        g[2]!,
        b[0]!,
        b[1]!,
        b[2]!,
        smem,
        this.dev.stream,
        ptrs,
        null,
      );
    check(`cuLaunchKernel(${fn})`, code);
    this.launches++;
  }

  [Symbol.dispose](): void {
    for (const [m, h] of this.#modules) check(`cuModuleUnload(${m})`, cuda().cuModuleUnload(h));
    this.#modules.clear();
    this.#funcs.clear();
  }
}

// The one Deno.dlopen symbol table for the CUDA driver API (libcuda.so.1), and checked calls.
// Handles (CUcontext, CUstream, ...) are opaque pointers; device addresses (CUdeviceptr) are u64 held as bigint.
// Waiting calls (stream/event synchronize) are nonblocking: they return Promises and leave the event loop free.

const SYMBOLS = {
  cuInit: { parameters: ["u32"], result: "i32" },
  cuDeviceGet: { parameters: ["buffer", "i32"], result: "i32" },
  cuDeviceGetAttribute: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceGetName: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceTotalMem_v2: { parameters: ["buffer", "i32"], result: "i32" },
  cuDevicePrimaryCtxRetain: { parameters: ["buffer", "i32"], result: "i32" },
  cuDevicePrimaryCtxRelease_v2: { parameters: ["i32"], result: "i32" },
  cuCtxSetCurrent: { parameters: ["pointer"], result: "i32" },
  cuMemGetInfo_v2: { parameters: ["buffer", "buffer"], result: "i32" },
  cuMemAlloc_v2: { parameters: ["buffer", "usize"], result: "i32" },
  cuMemFree_v2: { parameters: ["u64"], result: "i32" },
  cuMemcpyHtoDAsync_v2: { parameters: ["u64", "buffer", "usize", "pointer"], result: "i32" },
  cuMemcpyDtoHAsync_v2: { parameters: ["buffer", "u64", "usize", "pointer"], result: "i32" },
  cuMemcpyDtoDAsync_v2: { parameters: ["u64", "u64", "usize", "pointer"], result: "i32" },
  cuMemsetD8Async: { parameters: ["u64", "u8", "usize", "pointer"], result: "i32" },
  cuStreamCreate: { parameters: ["buffer", "u32"], result: "i32" },
  cuStreamDestroy_v2: { parameters: ["pointer"], result: "i32" },
  cuStreamQuery: { parameters: ["pointer"], result: "i32" },
  cuStreamSynchronize: { parameters: ["pointer"], result: "i32", nonblocking: true },
  cuEventCreate: { parameters: ["buffer", "u32"], result: "i32" },
  cuEventDestroy_v2: { parameters: ["pointer"], result: "i32" },
  cuEventRecord: { parameters: ["pointer", "pointer"], result: "i32" },
  cuEventQuery: { parameters: ["pointer"], result: "i32" },
  cuEventSynchronize: { parameters: ["pointer"], result: "i32", nonblocking: true },
  cuEventElapsedTime: { parameters: ["buffer", "pointer", "pointer"], result: "i32" },
  cuModuleLoadData: { parameters: ["buffer", "buffer"], result: "i32" },
  cuModuleUnload: { parameters: ["pointer"], result: "i32" },
  cuModuleGetFunction: { parameters: ["buffer", "pointer", "buffer"], result: "i32" },
  cuFuncSetAttribute: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  cuLaunchKernel: {
    parameters: ["pointer", "u32", "u32", "u32", "u32", "u32", "u32", "u32", "pointer", "buffer", "pointer"],
    result: "i32",
  },
  /** (const CUlaunchConfig*, CUfunction, void** params, void** extra): programmatic dependent launch */
  cuLaunchKernelEx: { parameters: ["buffer", "pointer", "buffer", "pointer"], result: "i32" },
  cuStreamBeginCapture_v2: { parameters: ["pointer", "i32"], result: "i32" },
  cuStreamEndCapture: { parameters: ["pointer", "buffer"], result: "i32" },
  cuGraphInstantiateWithFlags: { parameters: ["buffer", "pointer", "u64"], result: "i32" },
  cuGraphLaunch: { parameters: ["pointer", "pointer"], result: "i32" },
  cuGraphDestroy: { parameters: ["pointer"], result: "i32" },
  cuGraphExecDestroy: { parameters: ["pointer"], result: "i32" },
  cuGetErrorName: { parameters: ["i32", "buffer"], result: "i32" },
  cuGetErrorString: { parameters: ["i32", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

export type CudaSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

export const CUDA_SUCCESS = 0;
export const CUDA_ERROR_NOT_READY = 600;
export const CUDA_ERROR_INVALID_CONTEXT = 201;

export class CudaError extends Error {
  constructor(readonly fn: string, readonly code: number, readonly errName: string, readonly errText: string) {
    super(`${fn} failed: ${errName} (${code}): ${errText}`);
    this.name = "CudaError";
  }
}

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | null = null;

/** Opens libcuda.so.1 once. Throws a plain Error naming the library when it is missing. */
export function cuda(): CudaSymbols {
  if (!lib) {
    try {
      lib = Deno.dlopen("libcuda.so.1", SYMBOLS);
    } catch (e) {
      throw new Error(`libcuda.so.1 not found or not loadable: ${(e as Error).message}`);
    }
  }
  return lib.symbols;
}

function cString(slot: BigUint64Array): string {
  const p = Deno.UnsafePointer.create(slot[0]!);
  return p ? Deno.UnsafePointerView.getCString(p) : "?";
}

/** Throws CudaError unless `code` is CUDA_SUCCESS. */
export function check(fn: string, code: number): void {
  if (code === CUDA_SUCCESS) return;
  const s = cuda();
  const name = new BigUint64Array(1), text = new BigUint64Array(1);
  s.cuGetErrorName(code, name);
  s.cuGetErrorString(code, text);
  throw new CudaError(fn, code, cString(name), cString(text));
}

/** Reads the pointer an out-parameter slot received. */
export function outPtr(slot: BigUint64Array): Deno.PointerValue {
  return Deno.UnsafePointer.create(slot[0]!);
}

/** Device address as a bigint (CUdeviceptr). */
export type DevPtr = bigint;

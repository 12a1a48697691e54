// Kernel modules (lib/*.fatbin, loaded from bytes so `deno compile --include lib` embeds them), typed parameter
// lists per kernel, validation before launch, and argument packing for cuLaunchKernel.
import { check, cuda, type DevPtr, outPtr } from "./ffi.ts";
import type { CudaDevice } from "./device.ts";

export type ParamType = "ptr" | "optptr" | "i32" | "u32" | "f32";
export interface ParamSpec {
  readonly name: string;
  readonly type: ParamType;
}
export type ModuleName =
  | "elementwise"
  | "attn_decode"
  | "attn_prefill"
  | "gemm"
  | "gemm_skinny"
  | "qgemm"
  | "qgemv"
  | "decode"
  | "sample"
  | "gemm_wg";
export interface KernelSpec {
  readonly module: ModuleName;
  readonly params: readonly ParamSpec[];
}
/** Pointer params take a DevPtr (0n only where "optptr"); numeric params a number. */
export type KernelArgs = Readonly<Record<string, DevPtr | number>>;
export type Dim3 = readonly [number, number?, number?];

const p = (name: string): ParamSpec => ({ name, type: "ptr" });
const o = (name: string): ParamSpec => ({ name, type: "optptr" });
const i = (name: string): ParamSpec => ({ name, type: "i32" });
const f = (name: string): ParamSpec => ({ name, type: "f32" });
const u = (name: string): ParamSpec => ({ name, type: "u32" });

const SKINNY_INTS = [i("M"), i("N"), i("K"), i("tps")];
const SKINNY: KernelSpec = {
  module: "gemm_skinny",
  params: [p("A"), p("W"), o("bias"), p("C"), o("part"), o("counters"), ...SKINNY_INTS],
};

/** Parameter lists, keyed by the kernel's base name (the function is `${base}_${suffix}`, suffix bf16/f16/f32). */
export const KERNELS = {
  embed: { module: "elementwise", params: [p("table"), p("ids"), p("x"), i("n"), i("h"), i("vocab")] },
  rmsnorm: {
    module: "elementwise",
    params: [p("x"), o("res"), o("rowIdx"), p("w"), p("out"), i("h"), f("eps")],
  },
  silu_mul: { module: "elementwise", params: [p("gu"), p("out"), i("rows"), i("f"), i("half")] },
  synth_fill: { module: "elementwise", params: [p("dst"), i("n"), u("seed"), u("stream"), f("amp"), f("base")] },
  argmax: { module: "elementwise", params: [p("logits"), p("ids"), i("vocab")] },
  // sample.cu (suffix f32: one block per row, c8_f32 / c8t512_f32: a cluster of 8 per row): see cuda/sampling.ts.
  sample: { module: "sample", params: [p("logits"), p("cfg"), p("ids"), i("vocab"), i("cached")] },
  rope_kv: {
    module: "elementwise",
    params: [
      p("qkv"),
      p("cos"),
      p("sin"),
      o("qNorm"),
      o("kNorm"),
      p("positions"),
      p("slots"),
      p("q"),
      p("kCache"),
      p("vCache"),
      o("kScale"),
      o("vScale"),
      i("nh"),
      i("nkv"),
      i("d"),
      i("blockSize"),
      f("eps"),
    ],
  },
  // suffix <kv>_d<D>_g<GP> (ops.ts attention); kScale / vScale: int8 / int4 caches only.
  attn_split: {
    module: "attn_decode",
    params: [
      p("q"),
      p("kCache"),
      p("vCache"),
      o("kScale"),
      o("vScale"),
      p("blockTables"),
      p("tokenSeq"),
      p("positions"),
      o("tokenList"),
      p("partO"),
      p("partML"),
      i("nh"),
      i("nkv"),
      i("blockSize"),
      i("maxBlocks"),
      i("splitLen"),
      i("window"),
      f("scale"),
    ],
  },
  attn_combine: {
    module: "attn_decode",
    params: [
      p("partO"),
      p("partML"),
      p("out"),
      p("positions"),
      o("tokenList"),
      i("nh"),
      i("d"),
      i("splits"),
      i("splitLen"),
      i("window"),
    ],
  },
  attn_prefill: {
    module: "attn_prefill",
    params: [
      p("q"),
      p("kCache"),
      p("vCache"),
      o("kScale"),
      o("vScale"),
      p("blockTables"),
      p("positions"),
      p("tiles"),
      p("out"),
      i("nh"),
      i("nkv"),
      i("d"),
      i("blockSize"),
      i("maxBlocks"),
      i("window"),
      f("scale"),
    ],
  },
  // Tensor-core prefill (suffix <kv>_d<D>_<act>, kv bf16 / f16, D in ops.ts PFT_DIMS): same tiles as attn_prefill.
  attn_prefill_tc: {
    module: "attn_prefill",
    params: [
      p("q"),
      p("kCache"),
      p("vCache"),
      p("blockTables"),
      p("positions"),
      p("tiles"),
      p("out"),
      i("nh"),
      i("nkv"),
      i("blockSize"),
      i("maxBlocks"),
      i("window"),
      f("scale"),
    ],
  },
  gemv: { module: "gemm", params: [p("x"), p("W"), o("bias"), p("y"), i("M"), i("N"), i("K")] },
  gemv1: { module: "gemm", params: [p("x"), p("W"), o("bias"), p("y"), i("M"), i("N"), i("K")] },
  gemm: { module: "gemm", params: [p("A"), p("W"), o("bias"), p("C"), i("M"), i("N"), i("K")] },
  gemm128: { module: "gemm", params: [p("A"), p("W"), o("bias"), p("C"), i("M"), i("N"), i("K")] },
  // gemm_wg.cu (sm_90a wgmma, 16-bit activations = weight dtype; suffix bf16 / f16): see ops.ts linearWith.
  gemm_wg: { module: "gemm_wg", params: [p("A"), p("W"), o("bias"), p("C"), i("M"), i("N"), i("K")] },
  // Skinny-M split-K GEMM (gemm_skinny.cu skinny<BM>[w8]; suffix act_weight): see src/backends/cuda/gemm_skinny.ts.
  skinny16: SKINNY,
  skinny32: SKINNY,
  skinny64: SKINNY,
  skinny16w8: SKINNY,
  skinny32w8: SKINNY,
  skinny64w8: SKINNY,
  // qgemv.cu / qgemm.cu (W4A16 / W8A16; suffix w4_m8, w4_m16, w8_m8, w8_m16 / w4, w8): see src/backends/cuda/qlinear.ts.
  qgemv: {
    module: "qgemv",
    params: [
      o("x"),
      o("perm"),
      p("qweight"),
      p("scaleBias"),
      o("bias"),
      o("y"),
      o("part"),
      o("counters"),
      i("M"),
      i("N"),
      i("K"),
      i("Np"),
      i("KT"),
      i("G"),
      i("tps"),
      i("ksb"),
      i("il"),
      i("S"),
      o("xg"),
      o("ss"),
      i("parts"),
      f("eps"),
      o("rx"),
      o("gNext"),
      o("xgOut"),
      o("ssOut"),
      i("early"),
      o("act"),
      i("F"),
    ],
  },
  qgemm: {
    module: "qgemm",
    params: [
      p("x"),
      o("perm"),
      p("qweight"),
      p("scaleBias"),
      o("bias"),
      p("y"),
      i("M"),
      i("N"),
      i("K"),
      i("Np"),
      i("KT"),
      i("G"),
    ],
  },
  // qgemm.cu skinny-M split-K GEMM (suffix w{4,8}_m{BM}c{CW}k{KS}s{STAGES}): see src/backends/cuda/qgemm_plan.ts.
  qgemms: {
    module: "qgemm",
    params: [
      p("x"),
      o("perm"),
      p("qweight"),
      p("scaleBias"),
      o("bias"),
      p("y"),
      o("part"),
      o("counters"),
      i("M"),
      i("N"),
      i("K"),
      i("Np"),
      i("KT"),
      i("gt"),
      i("tps"),
    ],
  },
  qfill: {
    module: "qgemm",
    params: [p("qweight"), p("scaleBias"), i("words"), i("nG"), i("N"), i("Np"), u("seed"), f("amp")],
  },
  // decode.cu (fused decode step, src/backends/cuda/decode_ops.ts); suffix m1|m8|m1r2 _ <act> _ <weight>, embed <weight>.
  dec_embed: { module: "decode", params: [p("table"), p("ids"), p("g"), p("x"), p("xg"), p("ss"), i("h"), i("vocab")] },
  dec_gemv_norm: {
    module: "decode",
    params: [p("W"), o("bias"), p("xg"), p("ss"), o("rowIdx"), p("y"), i("M"), i("N"), i("K"), i("parts"), f("eps")],
  },
  dec_gemv_silu: {
    module: "decode",
    params: [p("W"), o("bias"), p("xg"), p("ss"), p("act"), i("M"), i("N"), i("K"), i("parts"), f("eps")],
  },
  dec_gemv_res: {
    module: "decode",
    params: [p("W"), o("bias"), p("xin"), p("x"), p("gNext"), p("xg"), p("ss"), i("M"), i("N"), i("K")],
  },
} as const satisfies Record<string, KernelSpec>;
export type KernelName = keyof typeof KERNELS;

/** Checks args against the spec; returns the packed 8-byte slots. Throws RangeError naming the kernel and param. */
export function packArgs(kernel: string, spec: KernelSpec, args: KernelArgs): ArrayBuffer {
  const buf = new ArrayBuffer(8 * spec.params.length);
  const view = new DataView(buf);
  for (const [k] of Object.entries(args)) {
    if (!spec.params.some((q) => q.name === k)) throw new RangeError(`${kernel}: unknown argument ${k}`);
  }
  spec.params.forEach((q, idx) => {
    const v = args[q.name];
    const where = `${kernel}(${q.name})`;
    if (v === undefined) throw new RangeError(`${where}: missing`);
    if (q.type === "ptr" || q.type === "optptr") {
      if (typeof v !== "bigint") throw new RangeError(`${where}: expected a device pointer (bigint)`);
      if (v < 0n || (q.type === "ptr" && v === 0n)) throw new RangeError(`${where}: null or negative pointer`);
      view.setBigUint64(8 * idx, v, true);
    } else if (typeof v !== "number") {
      throw new RangeError(`${where}: expected a number`);
    } else if (q.type === "f32") {
      if (!Number.isFinite(v)) throw new RangeError(`${where}: not finite (${v})`);
      view.setFloat32(8 * idx, v, true);
    } else {
      const [lo, hi] = q.type === "i32" ? [-(2 ** 31), 2 ** 31 - 1] : [0, 2 ** 32 - 1];
      if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`${where}: ${v} is not a ${q.type}`);
      if (q.type === "i32") view.setInt32(8 * idx, v, true);
      else view.setUint32(8 * idx, v, true);
    }
  });
  return buf;
}

export function checkLaunchDims(kernel: string, grid: Dim3, block: Dim3, smem: number): [number[], number[]] {
  const g = [grid[0], grid[1] ?? 1, grid[2] ?? 1], b = [block[0], block[1] ?? 1, block[2] ?? 1];
  const gmax = [2 ** 31 - 1, 65535, 65535];
  g.forEach((v, k) => {
    if (!Number.isInteger(v) || v <= 0 || v > gmax[k]!) throw new RangeError(`${kernel}: bad grid ${g.join("x")}`);
  });
  if (b.some((v) => !Number.isInteger(v) || v <= 0) || b[0]! * b[1]! * b[2]! > 1024) {
    throw new RangeError(`${kernel}: bad block ${b.join("x")}`);
  }
  if (!Number.isInteger(smem) || smem < 0 || smem > 227 * 1024) throw new RangeError(`${kernel}: bad smem ${smem}`);
  return [g, b];
}

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

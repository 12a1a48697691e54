// WGSL loading and reflection. Kernels live in /wgsl/*.wgsl as text, loaded relative to this module (so
// `deno compile --include wgsl` embeds them). A line `// #include "common.wgsl"` pulls in a shared snippet (once).
// The loader prepends the storage type aliases (WT for weights, KT for the KV cache) and compile-time constants.
// wgsl_reflect reads each entry point's bindings and its `p` uniform struct, so the bind group layout and the
// parameter packing come from the WGSL alone: no binding number or field offset is written in TypeScript.
// @ts-types="npm:wgsl_reflect@1.6.0/types/index.d.ts"
import { WgslReflect } from "wgsl_reflect";
import { COMPUTE_STAGE } from "./buffers.ts";

const WGSL_DIR = new URL("../../../wgsl/", import.meta.url);
const INCLUDE = /^\s*\/\/\s*#include\s+"([\w.\-]+)"\s*$/;
const textCache = new Map<string, Promise<string>>();

export type StorageType = "f32" | "f16";

/** Compile-time choices for one shader variant. */
export interface ShaderDefs {
  /** Weight storage type (alias WT). */
  readonly wt?: StorageType;
  /** KV cache storage type (alias KT). */
  readonly kt?: StorageType;
  /** `const NAME: u32 = value;` lines. */
  readonly consts?: Readonly<Record<string, number>>;
  /** Include substitutions: `// #include "a.wgsl"` pulls in files["a.wgsl"] instead (e.g. the quantized KV loads). */
  readonly files?: Readonly<Record<string, string>>;
  /** Generated code: `// #include "name"` pulls in texts[name] itself (e.g. an unrolled loop, fused.ts). */
  readonly texts?: Readonly<Record<string, string>>;
}

function readWgsl(name: string): Promise<string> {
  let t = textCache.get(name);
  if (!t) {
    t = Deno.readTextFile(new URL(name, WGSL_DIR));
    textCache.set(name, t);
  }
  return t;
}

async function expand(name: string, seen: Set<string>, out: string[], defs: ShaderDefs): Promise<void> {
  if (seen.has(name)) return;
  seen.add(name);
  const text = defs.texts?.[name];
  for (const line of (text ?? await readWgsl(name)).split("\n")) {
    const m = INCLUDE.exec(line);
    if (m) await expand(defs.files?.[m[1]!] ?? m[1]!, seen, out, defs);
    else out.push(line);
  }
}

/** The full text of one shader file with its includes and the variant header. */
export async function composeWgsl(name: string, defs: ShaderDefs = {}): Promise<string> {
  const wt = defs.wt ?? "f32", kt = defs.kt ?? "f32";
  const head: string[] = [];
  if (wt === "f16" || kt === "f16") head.push("enable f16;");
  head.push(`alias WT = ${wt};`, `alias KT = ${kt};`);
  for (const [k, v] of Object.entries(defs.consts ?? {})) {
    if (!/^[A-Z_][A-Z0-9_]*$/.test(k) || !Number.isInteger(v) || v < 0) throw new Error(`bad shader const ${k}=${v}`);
    head.push(`const ${k}: u32 = ${v}u;`);
  }
  const body: string[] = [];
  await expand(name, new Set(), body, defs);
  return [...head, ...body].join("\n");
}

export type BindingKind = "uniform" | "storage" | "read-only-storage";
export type FieldType = "u32" | "i32" | "f32";

export interface ParamLayout {
  /** Bytes of the uniform struct (rounded to 16). */
  readonly size: number;
  readonly fields: ReadonlyMap<string, { readonly offset: number; readonly type: FieldType }>;
}

/** One compiled entry point with what reflection told us about it. */
export interface Kernel {
  readonly key: string;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  /** Binding of each resource variable, by its WGSL name. */
  readonly bindings: ReadonlyMap<string, { readonly binding: number; readonly kind: BindingKind }>;
  /** The layout of the uniform named `p`, when the entry point uses one. */
  readonly params: ParamLayout | null;
}

function reflectEntry(code: string, entry: string, file: string) {
  const r = new WgslReflect(code);
  const fn = r.entry.compute.find((f) => f.name === entry);
  if (!fn) throw new Error(`${file}: no @compute entry point "${entry}"`);
  const bindings = new Map<string, { binding: number; kind: BindingKind }>();
  let params: ParamLayout | null = null;
  for (const v of fn.resources) {
    if (v.group !== 0) throw new Error(`${file}:${entry}: ${v.name} is in group ${v.group}; use group 0`);
    // ResourceType: 0 uniform, 1 storage (see wgsl_reflect's info.d.ts)
    if (v.resourceType === 0) {
      bindings.set(v.name, { binding: v.binding, kind: "uniform" });
      if (v.name !== "p") throw new Error(`${file}:${entry}: the uniform must be named p (got ${v.name})`);
      const fields = new Map<string, { offset: number; type: FieldType }>();
      for (const m of v.members ?? []) {
        const t = m.type.name;
        if (t !== "u32" && t !== "i32" && t !== "f32") throw new Error(`${file}: param ${m.name} has type ${t}`);
        fields.set(m.name, { offset: m.offset, type: t });
      }
      params = { size: Math.ceil(v.size / 16) * 16, fields };
    } else if (v.resourceType === 1) {
      bindings.set(v.name, { binding: v.binding, kind: v.access === "read" ? "read-only-storage" : "storage" });
    } else {
      throw new Error(`${file}:${entry}: resource ${v.name} is not a buffer`);
    }
  }
  return { bindings, params };
}

/** Compiles each (file, entry, defs) once; layouts come from reflection. */
export class PipelineCache {
  readonly #device: GPUDevice;
  readonly #kernels = new Map<string, Promise<Kernel>>();

  constructor(device: GPUDevice) {
    this.#device = device;
  }

  get(file: string, entry: string, defs: ShaderDefs = {}): Promise<Kernel> {
    const key = `${file}:${entry}:${defs.wt ?? "f32"}:${defs.kt ?? "f32"}:${JSON.stringify(defs.consts ?? {})}` +
      (defs.files ? `:${JSON.stringify(defs.files)}` : "") + (defs.texts ? `:${JSON.stringify(defs.texts)}` : "");
    let k = this.#kernels.get(key);
    if (!k) {
      k = this.#compile(key, file, entry, defs);
      this.#kernels.set(key, k);
      k.catch(() => this.#kernels.delete(key));
    }
    return k;
  }

  async #compile(key: string, file: string, entry: string, defs: ShaderDefs): Promise<Kernel> {
    const code = await composeWgsl(file, defs);
    const { bindings, params } = reflectEntry(code, entry, file);
    const dev = this.#device;
    dev.pushErrorScope("validation");
    const module = dev.createShaderModule({ label: file, code });
    const layout = dev.createBindGroupLayout({
      label: key,
      entries: [...bindings.values()].map((b) => ({
        binding: b.binding,
        visibility: COMPUTE_STAGE,
        buffer: { type: b.kind },
      })),
    });
    const pipeline = dev.createComputePipeline({
      label: key,
      layout: dev.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: entry },
    });
    const err = await dev.popErrorScope();
    if (err) {
      const info = await module.getCompilationInfo();
      const msgs = info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("\n");
      throw new Error(`WGSL ${file}:${entry} failed to compile: ${err.message.trim() || msgs}`);
    }
    return { key, pipeline, layout, bindings, params };
  }
}

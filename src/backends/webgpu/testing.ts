// Test support for the WebGPU tests (tests/webgpu_*_test.ts): adapter gating, seeded random data, uploads and
// read-backs. Not used by the backend itself.
import { openGpuDevice, probeWebGpu } from "./device.ts";
import { GpuContext } from "./context.ts";
import { readBuffer } from "./buffers.ts";
import type { StorageType } from "./shaders.ts";
import { toF16Bits } from "./weights.ts";
import { roundTo } from "../../model/dtype.ts";
import { mulberry32 } from "../../core/prng.ts";

export interface Probe {
  readonly ok: boolean;
  readonly detail: string;
}

/**
 * Returns a test registrar. Without an adapter a test is registered as ignored with the reason in its name, except
 * under CI=true, where it fails: CI installs lavapipe and must run these for real.
 */
export function gpuTestRegistrar(probe: Probe): (name: string, fn: () => Promise<void>) => void {
  let ci = false;
  try {
    ci = Deno.env.get("CI") === "true";
  } catch { /* no env permission: not CI */ }
  return (name, fn) => {
    if (probe.ok) Deno.test(name, fn);
    else if (ci) {
      Deno.test(name, () => {
        throw new Error(`CI=true requires a WebGPU adapter, but there is none: ${probe.detail}`);
      });
    } else Deno.test({ name: `${name} (skipped: no WebGPU adapter: ${probe.detail})`, ignore: true, fn() {} });
  };
}

/** A GpuContext on a fresh device (allowF16 false forces the f32 storage fallback). */
export async function openTestContext(allowF16 = true): Promise<GpuContext> {
  const g = await openGpuDevice({ allowF16 });
  return new GpuContext(g.device, g.hasF16);
}

/** Seed of this run: $WEBGPU_TEST_SEED or fresh, printed in every failure message through `seedNote`. */
export function testSeed(): number {
  let env: string | undefined;
  try {
    env = Deno.env.get("WEBGPU_TEST_SEED");
  } catch { /* no env permission */ }
  return env ? Number(env) >>> 0 : crypto.getRandomValues(new Uint32Array(1))[0]!;
}

/** What a WebGPU kernel test file starts with: the adapter probe, the test registrar, a context, and a fresh seed. */
export async function gpuTestSetup(): Promise<{
  probe: Probe;
  gpuTest: (name: string, fn: () => Promise<void>) => void;
  ctx: GpuContext | null;
  SEED: number;
  seedNote: string;
}> {
  const probe = await probeWebGpu();
  const SEED = testSeed();
  return {
    probe,
    gpuTest: gpuTestRegistrar(probe),
    ctx: probe.ok ? await openTestContext() : null,
    SEED,
    seedNote: `(WEBGPU_TEST_SEED=${SEED})`,
  };
}

/** Seeded generator of floats in [0, 1) (mulberry32). */
export const rng = mulberry32;

/** n values uniform in ±scale, never exactly zero. */
export function randn(rand: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1 || 0.5) * scale;
  return out;
}

/** max |a - ref| / max |ref| (the measure the model tests use). */
export function relError(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (a.length !== ref.length) throw new Error(`length ${a.length} != ${ref.length}`);
  let diff = 0, scale = 0;
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - ref[i]!));
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  return diff / scale;
}

export async function readF32(ctx: GpuContext, b: GPUBuffer, n: number): Promise<Float32Array> {
  return new Float32Array(await readBuffer(ctx.device, b, n * 4));
}

export async function readI32(ctx: GpuContext, b: GPUBuffer, n: number): Promise<Int32Array> {
  return new Int32Array(await readBuffer(ctx.device, b, n * 4));
}

/** Records `body` into one compute pass, submits, and waits for the queue. */
export async function runPass(ctx: GpuContext, body: (pass: GPUComputePassEncoder) => void): Promise<void> {
  ctx.device.pushErrorScope("validation");
  const enc = ctx.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  body(pass);
  pass.end();
  ctx.device.queue.submit([enc.finish()]);
  const err = await ctx.device.popErrorScope();
  if (err) throw new Error(`validation error: ${err.message}`);
  await ctx.device.queue.onSubmittedWorkDone();
}

/** Uploads `data` stored as `t`; `values` is what the GPU holds, as f32 (the f16-rounded data for f16). */
export function uploadAs(
  ctx: GpuContext,
  label: string,
  data: Float32Array,
  t: StorageType,
): { buf: GPUBuffer; values: Float32Array } {
  if (t === "f32") return { buf: ctx.pool.upload(label, data), values: data };
  return { buf: ctx.pool.upload(label, toF16Bits(data, label)), values: roundTo(data, "f16") };
}

/** Reference KV layout [numBlocks, blockSize, kvHeads, d] (ops.ts) → this backend's [numBlocks, kvHeads, blockSize, d]. */
export function toPagedLayout(ref: Float32Array, numBlocks: number, bs: number, kvHeads: number, d: number) {
  const out = new Float32Array(ref.length);
  for (let b = 0; b < numBlocks; b++) {
    for (let o = 0; o < bs; o++) {
      for (let h = 0; h < kvHeads; h++) {
        const src = ((b * bs + o) * kvHeads + h) * d;
        out.set(ref.subarray(src, src + d), ((b * kvHeads + h) * bs + o) * d);
      }
    }
  }
  return out;
}

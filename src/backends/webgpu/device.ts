// Adapter and device acquisition for the WebGPU backend, and the cheap probe the `info` command runs.
// The device is requested with the adapter's own limits for the few limits this backend leans on (big storage
// bindings for weights and KV, workgroup memory for attention tiles) and with shader-f16 when the adapter offers it.

export interface GpuDevice {
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  /** Adapter description for logs and `info`, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  readonly description: string;
  /** shader-f16 was granted: weights and KV can be stored as f16. */
  readonly hasF16: boolean;
  /** timestamp-query was asked for and granted. */
  readonly hasTimestamps: boolean;
  readonly limits: GPUSupportedLimits;
  /** Set when the device is lost; every later use throws with this reason. */
  lostReason: string | null;
}

export interface GpuDeviceOptions {
  /** Ask for shader-f16 when offered (default true). False forces f32 storage everywhere (used by tests). */
  readonly allowF16?: boolean;
  /** Ask for timestamp-query (when offered) so each step reports its GPU time (context.lastStep.gpuMs). */
  readonly profile?: boolean;
  readonly powerPreference?: GPUPowerPreference;
}

/** Limits raised to what the adapter offers, so big weights, KV pools and attention tiles fit one binding. */
const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeInvocationsPerWorkgroup",
] as const;

function gpu(): GPU | null {
  return typeof navigator !== "undefined" && "gpu" in navigator && navigator.gpu ? navigator.gpu : null;
}

export function describeAdapter(adapter: GPUAdapter): string {
  const i = adapter.info;
  const parts = [i.description || i.device || "unknown adapter"];
  if (i.vendor && !/^\d*$/.test(i.vendor)) parts.push(`vendor ${i.vendor}`);
  if (i.architecture) parts.push(i.architecture);
  if (i.isFallbackAdapter) parts.push("software fallback");
  return parts.join(", ");
}

async function requestAdapter(pref?: GPUPowerPreference): Promise<GPUAdapter> {
  const g = gpu();
  if (!g) throw new Error("navigator.gpu is missing (this Deno build has no WebGPU)");
  let adapter: GPUAdapter | null;
  try {
    adapter = await g.requestAdapter({ powerPreference: pref ?? "high-performance" });
  } catch (e) {
    throw new Error(`requestAdapter() failed: ${(e as Error).message}`);
  }
  if (!adapter) {
    throw new Error(
      "requestAdapter() found none (no Vulkan/Metal/D3D12 driver; on Linux install mesa-vulkan-drivers for lavapipe)",
    );
  }
  return adapter;
}

/** Requests the adapter and a device; throws a clear error when none exists. */
export async function openGpuDevice(opts: GpuDeviceOptions = {}): Promise<GpuDevice> {
  const adapter = await requestAdapter(opts.powerPreference);
  const hasF16 = (opts.allowF16 ?? true) && adapter.features.has("shader-f16");
  const hasTimestamps = !!opts.profile && adapter.features.has("timestamp-query");
  const requiredLimits: Record<string, number> = {};
  for (const k of RAISED_LIMITS) requiredLimits[k] = adapter.limits[k];
  const device = await adapter.requestDevice({
    requiredFeatures: [
      ...(hasF16 ? ["shader-f16" as const] : []),
      ...(hasTimestamps ? ["timestamp-query" as const] : []),
    ],
    requiredLimits,
  });
  const out: GpuDevice = {
    adapter,
    device,
    description: describeAdapter(adapter),
    hasF16,
    hasTimestamps,
    limits: device.limits,
    lostReason: null,
  };
  device.lost.then((info) => {
    out.lostReason = `${info.reason}: ${info.message}`;
  });
  return out;
}

/** Whether a WebGPU adapter exists here, with a one-line reason either way. Never throws. */
export async function probeWebGpu(): Promise<{ ok: boolean; detail: string; software: boolean }> {
  try {
    const adapter = await requestAdapter();
    const f16 = adapter.features.has("shader-f16") ? "shader-f16" : "no shader-f16 (f32 storage)";
    const mib = Math.floor(adapter.limits.maxStorageBufferBindingSize / 2 ** 20);
    const software = adapter.info.isFallbackAdapter;
    return { ok: true, detail: `${describeAdapter(adapter)}; ${f16}; max storage binding ${mib} MiB`, software };
  } catch (e) {
    return { ok: false, detail: (e as Error).message, software: false };
  }
}

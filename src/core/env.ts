// The one place that reads environment variables. Everything else receives these values.

function get(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env
  }
}

const home = get("HOME") ?? get("USERPROFILE") ?? ".";
const hfHome = get("HF_HOME") ?? `${get("XDG_CACHE_HOME") ?? `${home}/.cache`}/huggingface`;

export const ENV = Object.freeze({
  /** Hugging Face hub cache folder (models--org--name/snapshots/...). */
  hfHubCache: get("HF_HUB_CACHE") ?? get("HUGGINGFACE_HUB_CACHE") ?? `${hfHome}/hub`,
  hfEndpoint: (get("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/$/, ""),
  hfToken: get("HF_TOKEN") ?? get("HUGGING_FACE_HUB_TOKEN"),
  hfOffline: get("HF_HUB_OFFLINE") === "1" || get("TRANSFORMERS_OFFLINE") === "1",
  /** Force a backend, as --backend does. */
  backend: get("TURBODENO_BACKEND"),
  /** Default API key of `serve` (--api-key wins). */
  apiKey: get("TURBODENO_API_KEY"),
  /** TURBODENO_CUDA_GRAPHS=0: CUDA decode steps launch kernel by kernel instead of replaying graphs. */
  cudaGraphs: get("TURBODENO_CUDA_GRAPHS") !== "0",
  /** TURBODENO_CUDA_FUSED_DECODE=0: CUDA decode takes the unfused path (10 kernels per layer). */
  cudaFusedDecode: get("TURBODENO_CUDA_FUSED_DECODE") !== "0",
  /** TURBODENO_CUDA_PREFILL_TC=0: CUDA prefill attention stays on the CUDA-core kernel (attn_prefill). */
  cudaPrefillTc: get("TURBODENO_CUDA_PREFILL_TC") !== "0",
  /** Set by CI; tests use it to refuse silent skips of what CI must run. */
  ci: get("CI") === "true" || get("CI") === "1",
  noColor: get("NO_COLOR") !== undefined,
});

/**
 * Mesa's Vulkan drivers complain on stderr when XDG_RUNTIME_DIR is unset (common in containers and CI). Point it at
 * the temp folder before WebGPU starts, leaving a user's own setting alone.
 */
export function ensureRuntimeDir(): void {
  try {
    if (Deno.build.os === "linux" && !Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", "/tmp");
  } catch { /* no env permission: the warning stays */ }
}

// Entry point of the WebGPU backend for src/backends/select.ts: the cheap adapter probe (`info`) and the factories
// (in-thread, and on a worker thread so the event loop stays free while the GPU works).
export { probeWebGpu } from "./device.ts";
export { createWebGpuBackend, WebGpuBackend, type WebGpuOptions } from "./backend.ts";
export { createWebGpuWorkerBackend, WorkerBackend } from "./worker_backend.ts";

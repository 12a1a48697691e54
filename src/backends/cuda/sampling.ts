// Token selection for the CUDA backend. The rule for which rows stay on the GPU is shared with WebGPU
// (src/sampling/device_rule.ts): greedy and temperature + top-k + top-p rows are sampled by kernels/sample.cu and
// only their ids come back; rows with logprobs, penalties, min-p or a user seed download their logits and go through
// the host sampler. Each step uploads one config row per logits row into the workspace's fixed `sampleCfg` buffer,
// so a captured decode graph reads that step's settings and draws.
import type { SequenceSamplingState } from "../../core/types.ts";
import { needsHostSampling, packSampleConfig, SAMPLE_CFG_BYTES } from "../../sampling/device_rule.ts";
import type { DevPtr } from "./ffi.ts";
import type { Kernels } from "./kernels.ts";

export { needsHostSampling, SAMPLE_CFG_BYTES };

/** Blocks per row of sample_c8*_f32: one thread-block cluster (sm_90). */
export const SAMPLE_CLUSTER = 8;
/** Largest vocabulary: fixed-point weights (2^40 for the max) summed over the row must fit a u64. */
export const SAMPLE_MAX_VOCAB = 2 ** 23;
/** Static shared memory of sample_* (SampleSmem and the argmax scratch, ptxas: 41536 bytes), rounded up. */
const SAMPLE_STATIC_SMEM = 41 * 1024;
const MAX_GRID_Y = 65535;

/**
 * "cluster": 8 blocks of 1024 threads per row sharing histograms through distributed shared memory (sm_90, one block
 * per SM); "cluster512": the same with 512 threads (two blocks per SM); "block": one block of 1024 per row (any arch).
 */
export type SampleKernel = "cluster" | "cluster512" | "block";
/** Kernel function suffix (sample_<suffix>), blocks per row and threads per block of each kernel. */
export const SAMPLE_KERNELS: Readonly<Record<SampleKernel, { suffix: string; cl: number; threads: number }>> = {
  cluster: { suffix: "c8_f32", cl: SAMPLE_CLUSTER, threads: 1024 },
  cluster512: { suffix: "c8t512_f32", cl: SAMPLE_CLUSTER, threads: 512 },
  block: { suffix: "f32", cl: 1, threads: 1024 },
};

export interface SampleArgs {
  /** [rows, vocab] f32 (16-byte aligned) */ readonly logits: DevPtr;
  /** [rows] x (temperature f32, topK u32, topP f32, u f32), SAMPLE_CFG_BYTES each */ readonly cfg: DevPtr;
  /** out [rows] i32 chosen token ids */ readonly ids: DevPtr;
  readonly rows: number;
  readonly vocab: number;
  /** Tests and benches: force one kernel; omitted: defaultSampleKernel. */
  readonly kernel?: SampleKernel;
}

/**
 * Largest batch the cluster kernel takes by default; larger batches fill the GPU with one block per row. H100,
 * vocab 128256 (bench/cuda_sample.ts, us per call): top-k 50 at batch 1 32.9 (block 74.2), at batch 64 176 (block
 * 118); only 16 clusters of 8 run at once, so from a few dozen rows one block per row wins.
 */
export const SAMPLE_CLUSTER_MAX_ROWS = 32;

/** The kernel launchSample takes for `rows` rows when none is forced. */
export function defaultSampleKernel(cc: readonly [number, number], rows: number): SampleKernel {
  return cc[0] >= 9 && rows <= SAMPLE_CLUSTER_MAX_ROWS ? "cluster" : "block";
}

/** Shared memory one block may use on this compute capability (the slice cache must fit beside the static part). */
function blockSmemLimit(cc: readonly [number, number]): number {
  if (cc[0] >= 9) return 227 * 1024;
  if (cc[0] === 8 && (cc[1] === 0 || cc[1] === 7)) return 163 * 1024;
  return 99 * 1024;
}

/** Launches sample_{c8_,}f32 over `rows` rows (in chunks of 65535, the grid's y limit) after validating the shape. */
export function launchSample(k: Kernels, a: SampleArgs): void {
  if (!Number.isInteger(a.rows) || a.rows < 0) throw new RangeError(`sample: bad rows ${a.rows}`);
  if (!Number.isInteger(a.vocab) || a.vocab < 1 || a.vocab > SAMPLE_MAX_VOCAB) {
    throw new RangeError(`sample: vocab ${a.vocab} outside [1, ${SAMPLE_MAX_VOCAB}]`);
  }
  if ((a.logits & 15n) !== 0n) throw new RangeError("sample: logits must be 16-byte aligned");
  const kernel = a.kernel ?? defaultSampleKernel(k.dev.cc, a.rows);
  const { suffix, cl, threads } = SAMPLE_KERNELS[kernel];
  if (cl > 1 && k.dev.cc[0] < 9) throw new RangeError(`sample: clusters need sm_90 (sm_${k.dev.cc[0]})`);
  if (a.rows === 0) return;
  const sliceBytes = 4 * ((Math.ceil(a.vocab / cl) + 3) & ~3);
  const cached = sliceBytes + SAMPLE_STATIC_SMEM <= blockSmemLimit(k.dev.cc);
  for (let r0 = 0; r0 < a.rows; r0 += MAX_GRID_Y) {
    const rows = Math.min(MAX_GRID_Y, a.rows - r0);
    const args = {
      logits: a.logits + BigInt(r0 * a.vocab * 4),
      cfg: a.cfg + BigInt(r0 * SAMPLE_CFG_BYTES),
      ids: a.ids + BigInt(r0 * 4),
      vocab: a.vocab,
      cached: cached ? 1 : 0,
    };
    k.launch("sample", suffix, [cl, rows], [threads], args, cached ? sliceBytes : 0);
  }
}

/**
 * Config rows for `n` logits rows: rowStates[r] is the sampling state of a row the GPU samples, null (greedy; the
 * id is not used or the row is padding) otherwise. Rows past rowStates.length are greedy padding. drawOffset: the
 * step within a multi-step decode run (its draws are those of output token outputIds.length + drawOffset).
 */
export function packRowConfigs(
  rowStates: readonly (SequenceSamplingState | null)[],
  n: number,
  drawOffset = 0,
): Uint8Array {
  if (rowStates.length > n) throw new RangeError(`packRowConfigs: ${rowStates.length} states for ${n} rows`);
  return new Uint8Array(packSampleConfig(rowStates, drawOffset, n));
}

/**
 * Per logits row: the sampling state of the sequence the GPU samples there, or null where the row is not sampled
 * on the GPU (host-sampled rows, rows of allLogits steps that no sequence samples).
 */
export function gpuRowStates(
  states: readonly SequenceSamplingState[],
  info: { readonly rows: readonly number[]; readonly sampleRow: Int32Array; readonly hostSample: readonly boolean[] },
): (SequenceSamplingState | null)[] {
  const out: (SequenceSamplingState | null)[] = info.rows.map(() => null);
  info.sampleRow.forEach((r, b) => {
    if (r >= 0 && !info.hostSample[r]) out[r] = states[b]!;
  });
  return out;
}

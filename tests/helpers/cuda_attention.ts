// Shared by the CUDA attention tests (tests/cuda_attention_test.ts, tests/cuda_kv_quant_test.ts): the RoPE settings,
// the mixed batch both run (decode row, fresh prefill, chunks) over scattered block tables, the cache layout change to
// the reference's, and the split-K launch over a reversed token list.
import type { RopeSpec } from "../../src/core/types.ts";
import * as ops from "../../src/backends/reference/ops.ts";
import type { CudaDevice, DeviceBuffer } from "../../src/backends/cuda/device.ts";
import type { ActDType, AttentionArgs, CudaOps } from "../../src/backends/cuda/ops.ts";
import { download, poisoned, upload } from "../../src/backends/cuda/testing.ts";

export const ROPE: RopeSpec = {
  type: "default",
  theta: 10000,
  factor: 1,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPositions: 8192,
  betaFast: 32,
  betaSlow: 1,
  attentionFactor: 1,
};

/** kv.ts layout [nb, nkv, bs, d] (f32 values) -> the reference's [nb, bs, nkv, d]. */
export function toRefLayout(c: Float32Array, nb: number, nkv: number, bs: number, d: number): Float32Array {
  const out = new Float32Array(c.length);
  for (let b = 0; b < nb; b++) {
    for (let h = 0; h < nkv; h++) {
      for (let s = 0; s < bs; s++) {
        const src = ((b * nkv + h) * bs + s) * d, dst = ((b * bs + s) * nkv + h) * d;
        out.set(c.subarray(src, src + d), dst);
      }
    }
  }
  return out;
}

/**
 * A decode row at position 599, a fresh 7-token prefill, a 5-token chunk ending at position 299 and a 45-token chunk
 * from position 100 (several prefill tiles), over 600-position block tables of blocks of `bs` scattered through a pool
 * of nb blocks. Token t belongs to sequence tokenSeq[t] at positions[t]; queryStarts [B + 1].
 */
export function mixedBatch(bs: number) {
  const seqs = [{ start: 599, n: 1 }, { start: 0, n: 7 }, { start: 295, n: 5 }, { start: 100, n: 45 }];
  const maxBlocks = Math.ceil(600 / bs), B = seqs.length, nb = B * maxBlocks + 3;
  const perm = Array.from({ length: nb }, (_, i) => i).sort((a, b) => ((a * 7919) % nb) - ((b * 7919) % nb));
  const tables = new Int32Array(B * maxBlocks).fill(-1); // [B, maxBlocks]
  seqs.forEach((s, b) => {
    for (let i = 0; i < Math.ceil((s.start + s.n) / bs); i++) tables[b * maxBlocks + i] = perm[b * maxBlocks + i]!;
  });
  const T = seqs.reduce((a, s) => a + s.n, 0);
  const positions = new Int32Array(T), tokenSeq = new Int32Array(T), queryStarts = new Int32Array(B + 1);
  let t = 0;
  seqs.forEach((s, b) => {
    for (let i = 0; i < s.n; i++, t++) positions[t] = s.start + i, tokenSeq[t] = b;
    queryStarts[b + 1] = t;
  });
  return { bs, seqs, maxBlocks, nb, tables, T, positions, tokenSeq, queryStarts };
}

/**
 * The reference's attention over a mixedBatch: q [T, nh, d] f32, caches in kv.ts layout [nb, nkv, bs, d] as f32
 * values (what the kernels read), sliding window 0 = none. Returns [T, nh, d].
 */
export function mixedBatchReference(
  b: ReturnType<typeof mixedBatch>,
  a: {
    q: Float32Array;
    kCache: Float32Array;
    vCache: Float32Array;
    nh: number;
    nkv: number;
    d: number;
    window: number;
  },
): Float32Array {
  const { nb, bs } = b;
  return ops.pagedAttention({
    q: a.q,
    kCache: toRefLayout(a.kCache, nb, a.nkv, bs, a.d),
    vCache: toRefLayout(a.vCache, nb, a.nkv, bs, a.d),
    positions: b.positions,
    queryStarts: b.queryStarts,
    blockTables: b.tables,
    maxBlocksPerSeq: b.maxBlocks,
    blockSize: bs,
    numHeads: a.nh,
    kvHeads: a.nkv,
    headDim: a.d,
    scale: 1 / Math.sqrt(a.d),
    slidingWindow: a.window || null,
  });
}

/**
 * o.attention() (split-K + combine) over all T tokens, listed in reverse order (rows of the partials follow the
 * list), with fresh poisoned partials [T, nh, splits, d] / [T, nh, splits, 2] f32; returns the output [T, nh, d]
 * downloaded as `out`'s dtype.
 */
export async function splitKReversed(
  o: CudaOps,
  dev: CudaDevice,
  args: Omit<AttentionArgs, "tokenList" | "rows" | "partO" | "partML" | "out" | "n" | "splits" | "splitLen">,
  T: number,
  plan: { splits: number; splitLen: number },
  out: { buf: DeviceBuffer; dtype: ActDType },
): Promise<Float32Array> {
  const { nh, d } = args;
  using po = poisoned(dev, T * nh * plan.splits * d, 4), pml = poisoned(dev, T * nh * plan.splits * 2, 4);
  using list = upload(dev, Int32Array.from({ length: T }, (_, i) => T - 1 - i), "i32");
  o.attention({
    ...args,
    tokenList: list.ptr,
    rows: T,
    partO: po.ptr,
    partML: pml.ptr,
    out: out.buf.ptr,
    n: T,
    splits: plan.splits,
    splitLen: plan.splitLen,
  });
  return await download(dev, out.buf, T * nh * d, out.dtype);
}

// Vocabulary-sized scans without a full sort: argmax, k-th largest value, top-n indices, log-softmax.
// NaN entries never win a comparison and are left out of sums (they count as -Infinity).

import type { TokenLogprob } from "../core/types.ts";

export type Row = Float32Array | Float64Array;

/** Index of the largest value; ties go to the lowest index. 0 when every value is -Infinity or NaN. */
export function argmax(row: Row): number {
  let best = -Infinity;
  let idx = 0;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (v > best) {
      best = v;
      idx = i;
    }
  }
  return idx;
}

let heap = new Float64Array(0);

/** The k-th largest value of row[0..n) (1 <= k <= n), via a size-k min-heap: O(n log k), mostly O(n) rejections. */
export function kthLargest(row: Row, n: number, k: number): number {
  if (heap.length < k) heap = new Float64Array(k);
  const h = heap;
  for (let i = 0; i < k; i++) h[i] = row[i]!;
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDown(h, k, i);
  for (let i = k; i < n; i++) {
    const v = row[i]!;
    if (v > h[0]!) {
      h[0] = v;
      siftDown(h, k, 0);
    }
  }
  return h[0]!;
}

function siftDown(h: Float64Array, size: number, start: number): void {
  let i = start;
  const v = h[i]!;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= size) break;
    const r = l + 1;
    const c = r < size && h[r]! < h[l]! ? r : l;
    if (!(h[c]! < v)) break;
    h[i] = h[c]!;
    i = c;
  }
  h[i] = v;
}

/** Indices of the n largest values, largest first, ties by lowest index (insertion into a small sorted list). */
export function topIndices(row: Row, n: number): number[] {
  const idx: number[] = [];
  const val: number[] = [];
  if (n <= 0) return idx;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (v !== v) continue;
    const cnt = val.length;
    if (cnt === n && !(v > val[cnt - 1]!)) continue;
    let j = cnt === n ? cnt - 1 : cnt;
    idx[j] = i;
    val[j] = v;
    while (j > 0 && val[j - 1]! < v) {
      idx[j] = idx[j - 1]!;
      val[j] = val[j - 1]!;
      idx[j - 1] = i;
      val[j - 1] = v;
      j--;
    }
  }
  return idx;
}

/** log(sum(exp(row))) in float64, stable (max subtracted). -Infinity when every entry is -Infinity or NaN. */
export function logSumExp(row: Row): number {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (v > m) m = v;
  }
  if (m === -Infinity || m === Infinity) return m;
  let s = 0;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (v > -Infinity) s += Math.exp(v - m);
  }
  return m + Math.log(s);
}

/** Log-softmax of one row, computed in float64 and returned as f32. */
export function logSoftmax(row: Float32Array): Float32Array {
  const lse = logSumExp(row);
  const out = new Float32Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = row[i]! - lse;
  return out;
}

/** Logprob of `id` and the `n` most likely tokens (largest first) under softmax(row). */
export function tokenLogprobs(
  row: Float32Array,
  id: number,
  n: number,
): { chosen: TokenLogprob; top: TokenLogprob[] } {
  const lse = logSumExp(row);
  const chosen = { id, logprob: (row[id] ?? -Infinity) - lse };
  const top = topIndices(row, n).map((i) => ({ id: i, logprob: row[i]! - lse }));
  return { chosen, top };
}

// Plain TypeScript math of every kernel. The reference backend runs on these, and every GPU kernel is tested
// against them. Inputs are f32; accumulation is in JS doubles, results are stored as f32.

/** y[n, h] = x * w / rms(x) (+ residual handling is the caller's). x: [n, h] f32, w: [h] f32 */
export function rmsNorm(x: Float32Array, w: Float32Array, n: number, h: number, eps: number, out?: Float32Array) {
  const y = out ?? new Float32Array(n * h);
  for (let r = 0; r < n; r++) {
    const o = r * h;
    let ss = 0;
    for (let i = 0; i < h; i++) ss += x[o + i]! * x[o + i]!;
    const inv = 1 / Math.sqrt(ss / h + eps);
    for (let i = 0; i < h; i++) y[o + i] = Math.fround(x[o + i]! * inv) * w[i]!;
  }
  return y;
}

/** x += r, then y = rmsNorm(x): the fused residual-add + norm. x: [n, h] f32 (updated in place). */
export function addRmsNorm(
  x: Float32Array,
  r: Float32Array,
  w: Float32Array,
  n: number,
  h: number,
  eps: number,
  out?: Float32Array,
): Float32Array {
  for (let i = 0; i < n * h; i++) x[i] = x[i]! + r[i]!;
  return rmsNorm(x, w, n, h, eps, out);
}

/**
 * y[n, outDim] = x[n, inDim] · W[outDim, inDim]^T + bias[outDim]. W is row-major as Hugging Face stores it.
 */
export function linear(
  x: Float32Array,
  w: Float32Array,
  n: number,
  inDim: number,
  outDim: number,
  bias?: Float32Array | null,
  out?: Float32Array,
): Float32Array {
  const y = out ?? new Float32Array(n * outDim);
  for (let r = 0; r < n; r++) {
    const xo = r * inDim;
    for (let o = 0; o < outDim; o++) {
      const wo = o * inDim;
      let acc = 0;
      for (let i = 0; i < inDim; i++) acc += x[xo + i]! * w[wo + i]!;
      y[r * outDim + o] = bias ? acc + bias[o]! : acc;
    }
  }
  return y;
}

/** out[t, h] = table[ids[t], h]. table: [vocab, h] f32 */
export function embed(table: Float32Array, ids: Int32Array, h: number, vocab: number): Float32Array {
  const y = new Float32Array(ids.length * h);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    if (id < 0 || id >= vocab) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${vocab})`);
    y.set(table.subarray(id * h, (id + 1) * h), t * h);
  }
  return y;
}

/**
 * Rotates x in place with half-split RoPE. x: [n, heads, d] f32, positions: [n] i32,
 * cos/sin: [maxPos, rotDim/2] f32 (rotDim = d).
 */
export function rope(
  x: Float32Array,
  positions: Int32Array,
  heads: number,
  d: number,
  cos: Float32Array,
  sin: Float32Array,
): void {
  const half = d / 2;
  for (let t = 0; t < positions.length; t++) {
    const p = positions[t]!;
    for (let hd = 0; hd < heads; hd++) {
      const o = (t * heads + hd) * d;
      for (let i = 0; i < half; i++) {
        const c = cos[p * half + i]!, s = sin[p * half + i]!;
        const a = x[o + i]!, b = x[o + half + i]!;
        x[o + i] = a * c - b * s;
        x[o + half + i] = b * c + a * s;
      }
    }
  }
}

/** out[n, f] = silu(gate) * up. gate, up: [n, f] f32 */
export function siluMul(gate: Float32Array, up: Float32Array, out?: Float32Array): Float32Array {
  const y = out ?? new Float32Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i]!;
    y[i] = (g / (1 + Math.exp(-g))) * up[i]!;
  }
  return y;
}

export interface PagedAttentionArgs {
  /** [T, numHeads, d] f32 queries (RoPE applied) */
  readonly q: Float32Array;
  /** [numBlocks, blockSize, kvHeads, d] f32 key cache (new tokens already written) */
  readonly kCache: Float32Array;
  /** [numBlocks, blockSize, kvHeads, d] f32 value cache */
  readonly vCache: Float32Array;
  /** [T] absolute positions */
  readonly positions: Int32Array;
  /** [B+1] token offsets per sequence */
  readonly queryStarts: Int32Array;
  /** [B, maxBlocksPerSeq] block ids */
  readonly blockTables: Int32Array;
  readonly maxBlocksPerSeq: number;
  readonly blockSize: number;
  readonly numHeads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly scale: number;
  /** attend only to the last `slidingWindow` positions (null: all) */
  readonly slidingWindow: number | null;
}

/**
 * Causal paged attention: token t of sequence b at position p attends to positions [max(0, p-window+1), p] of
 * that sequence, reading K/V through its block table. Query head h uses KV head floor(h / (numHeads/kvHeads)).
 * Returns [T, numHeads, d] f32.
 */
export function pagedAttention(a: PagedAttentionArgs): Float32Array {
  const { numHeads, kvHeads, headDim: d, blockSize: bs } = a;
  const group = numHeads / kvHeads;
  const T = a.positions.length;
  const out = new Float32Array(T * numHeads * d);
  let sc = new Float64Array(64); // scratch scores of one (token, head)
  for (let b = 0; b + 1 < a.queryStarts.length; b++) {
    for (let t = a.queryStarts[b]!; t < a.queryStarts[b + 1]!; t++) {
      const p = a.positions[t]!;
      const first = a.slidingWindow ? Math.max(0, p - a.slidingWindow + 1) : 0;
      const n = p - first + 1;
      if (sc.length < n) sc = new Float64Array(n);
      for (let h = 0; h < numHeads; h++) {
        const kvh = Math.floor(h / group);
        const qo = (t * numHeads + h) * d;
        let max = -Infinity;
        for (let j = first; j <= p; j++) {
          const blk = a.blockTables[b * a.maxBlocksPerSeq + Math.floor(j / bs)]!;
          if (blk < 0) throw new RangeError(`sequence ${b}: no block for position ${j}`);
          const ko = ((blk * bs + (j % bs)) * kvHeads + kvh) * d;
          let s = 0;
          for (let i = 0; i < d; i++) s += a.q[qo + i]! * a.kCache[ko + i]!;
          s *= a.scale;
          sc[j - first] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j < n; j++) {
          const e = Math.exp(sc[j]! - max);
          sc[j] = e;
          sum += e;
        }
        for (let i = 0; i < d; i++) {
          let acc = 0;
          for (let j = first; j <= p; j++) {
            const blk = a.blockTables[b * a.maxBlocksPerSeq + Math.floor(j / bs)]!;
            acc += sc[j - first]! * a.vCache[((blk * bs + (j % bs)) * kvHeads + kvh) * d + i]!;
          }
          out[qo + i] = acc / sum;
        }
      }
    }
  }
  return out;
}

/** Writes k, v rows [T, kvHeads, d] into the caches at slots [T] (slot = block * blockSize + offset). */
export function writeKv(
  kCache: Float32Array,
  vCache: Float32Array,
  k: Float32Array,
  v: Float32Array,
  slots: Int32Array,
  rowSize: number,
  round?: (x: Float32Array) => Float32Array,
): void {
  for (let t = 0; t < slots.length; t++) {
    const s = slots[t]!;
    if (s < 0) continue;
    let kr = k.subarray(t * rowSize, (t + 1) * rowSize);
    let vr = v.subarray(t * rowSize, (t + 1) * rowSize);
    if (round) {
      kr = round(kr);
      vr = round(vr);
    }
    kCache.set(kr, s * rowSize);
    vCache.set(vr, s * rowSize);
  }
}

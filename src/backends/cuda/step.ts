// Host side of one step: validation, which rows get logits and where they are sampled, input packing.
import type { ModelSpec, StepInputs } from "../../core/types.ts";
import type { CudaDevice } from "./device.ts";
import { needsHostSampling } from "./sampling.ts";
import { PF_ROWS, prefillKernelFits } from "./ops.ts";
import type { Workspace } from "./workspace.ts";

export interface StepInfo {
  readonly T: number;
  readonly B: number;
  /** token index of each logits row */
  readonly rows: number[];
  /** [B] logits row sampled for sequence b, -1 when sample[b] is false */
  readonly sampleRow: Int32Array;
  /** per row: sampled on the host (needsHostSampling) */
  readonly hostSample: boolean[];
  /** every sequence has exactly one new token, all sample, no allLogits */
  readonly decode: boolean;
  /** longest attended span of any token */
  readonly maxSpan: number;
  /** tokens that take the split-K attention kernel (decode-like sequences) */
  readonly tokenList: Int32Array;
  /** [tiles, 3] sequence, first token, count: prefill chunks for the tiled attention kernel */
  readonly tiles: Int32Array;
}

/** Sequences with at least this many new tokens take the tiled prefill attention kernel (when it fits). */
export const PREFILL_TILE_MIN_TOKENS = 8;

function attentionWork(step: StepInputs, s: ModelSpec): { tokenList: Int32Array; tiles: Int32Array } {
  const B = step.queryStarts.length - 1, G = s.numHeads / s.numKvHeads;
  const list: number[] = [], tiles: number[] = [];
  const perTile = Math.max(1, Math.floor(PF_ROWS / G));
  const fits = prefillKernelFits(G, s.headDim);
  for (let b = 0; b < B; b++) {
    const q0 = step.queryStarts[b]!, q1 = step.queryStarts[b + 1]!;
    if (!fits || q1 - q0 < PREFILL_TILE_MIN_TOKENS) {
      for (let t = q0; t < q1; t++) list.push(t);
      continue;
    }
    for (let t = q0; t < q1; t += perTile) tiles.push(b, t, Math.min(perTile, q1 - t));
  }
  return { tokenList: Int32Array.from(list), tiles: Int32Array.from(tiles) };
}

function isSeqStart(step: StepInputs, t: number): boolean {
  for (let b = 0; b < step.queryStarts.length; b++) if (step.queryStarts[b] === t) return true;
  return false;
}

export function checkStep(step: StepInputs, s: ModelSpec, numBlocks: number, blockSize: number): StepInfo {
  if (step.blockSize !== blockSize) {
    throw new Error(`cuda backend: step block size ${step.blockSize} != allocated ${blockSize}`);
  }
  const T = step.tokens.length, B = step.queryStarts.length - 1;
  if (T === 0 || B <= 0 || step.queryStarts[B] !== T) throw new RangeError(`cuda backend: bad step (T=${T}, B=${B})`);
  let maxSpan = 1;
  for (let t = 0; t < T; t++) {
    const slot = step.slots[t]!, pos = step.positions[t]!, id = step.tokens[t]!;
    if (slot >= numBlocks * blockSize) throw new RangeError(`slot ${slot} outside the KV pool`);
    if (pos < 0 || pos >= s.maxPositions) throw new RangeError(`position ${pos} outside [0, ${s.maxPositions})`);
    if (id < 0 || id >= s.vocabSize) {
      throw new RangeError(`token id ${id} is outside the vocabulary [0, ${s.vocabSize})`);
    }
    const span = s.slidingWindow ? Math.min(pos + 1, s.slidingWindow) : pos + 1;
    if (t > 0 && step.positions[t - 1]! + 1 !== pos && !isSeqStart(step, t)) {
      throw new RangeError(`token ${t}: positions of one sequence's new tokens must be consecutive`);
    }
    if (span > maxSpan) maxSpan = span;
  }
  for (let i = 0; i < B * step.maxBlocksPerSeq; i++) {
    const blk = step.blockTables[i]!;
    if (blk >= numBlocks) throw new RangeError(`block id ${blk} outside the KV pool of ${numBlocks}`);
  }
  const rows: number[] = [];
  const sampleRow = new Int32Array(B).fill(-1);
  let decode = !step.allLogits;
  if (step.allLogits) { for (let t = 0; t < T; t++) rows.push(t); }
  for (let b = 0; b < B; b++) {
    const q0 = step.queryStarts[b]!, q1 = step.queryStarts[b + 1]!;
    if (q1 <= q0) throw new RangeError(`sequence ${b} has no new tokens`);
    if (q1 - q0 !== 1 || !step.sample[b]) decode = false;
    if (!step.sample[b]) continue;
    if (step.allLogits) sampleRow[b] = q1 - 1;
    else {
      sampleRow[b] = rows.length;
      rows.push(q1 - 1);
    }
  }
  const hostSample = rows.map(() => false);
  for (let b = 0; b < B; b++) {
    const r = sampleRow[b]!;
    if (r >= 0) hostSample[r] = needsHostSampling(step.sampling[b]!.params);
  }
  return { T, B, rows, sampleRow, hostSample, decode, maxSpan, ...attentionWork(step, s) };
}

/**
 * Uploads the step's inputs for `n` token rows (n >= T; rows past T are inert padding: slot -1, position 0,
 * sequence 0) into the workspace's input sections; logits rows past rows.length point at themselves.
 */
export function packInputs(
  dev: CudaDevice,
  ws: Workspace,
  step: StepInputs,
  info: Pick<StepInfo, "rows" | "tokenList" | "tiles">,
  n: number,
): void {
  const rows = info.rows;
  const B = step.queryStarts.length - 1, stride = ws.capacity.stride;
  const tokens = new Int32Array(n), positions = new Int32Array(n), slots = new Int32Array(n).fill(-1);
  const tokenSeq = new Int32Array(n), rowIdx = new Int32Array(n);
  tokens.set(step.tokens);
  positions.set(step.positions);
  slots.set(step.slots);
  for (let b = 0; b < B; b++) tokenSeq.fill(b, step.queryStarts[b]!, step.queryStarts[b + 1]!);
  for (let r = 0; r < n; r++) rowIdx[r] = r < rows.length ? rows[r]! : Math.min(r, n - 1);
  const tables = new Int32Array(B * stride).fill(-1);
  for (let b = 0; b < B; b++) {
    tables.set(step.blockTables.subarray(b * step.maxBlocksPerSeq, (b + 1) * step.maxBlocksPerSeq), b * stride);
  }
  dev.upload(ws.input("tokens"), tokens);
  dev.upload(ws.input("positions"), positions);
  dev.upload(ws.input("slots"), slots);
  dev.upload(ws.input("tokenSeq"), tokenSeq);
  dev.upload(ws.input("rowIdx"), rowIdx);
  dev.upload(ws.input("tables"), tables);
  dev.upload(ws.input("tokenList"), info.tokenList);
  dev.upload(ws.input("tiles"), info.tiles);
}

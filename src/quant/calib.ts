// Calibration: reads the user's calibration file and collects the input activations of every linear by running the
// reference forward (ops.ts) in f32 over it. Nothing is ever downloaded.
import type { ModelSpec } from "../core/types.ts";
import { UserError } from "../core/errors.ts";
import { ropeTables } from "../model/rope.ts";
import type { ReferenceWeights } from "../backends/reference/weights.ts";
import * as ops from "../backends/reference/ops.ts";
import type { TextTokenizer } from "../tokenizer/mod.ts";

/** Token ids of a text: one per line or comma / whitespace separated. Null when the text is not such a list. */
export function parseIdList(text: string): number[] | null {
  if (!/^[\s\d,]*$/.test(text)) return null;
  const ids = text.split(/[\s,]+/).filter((s) => s.length > 0).map(Number);
  return ids.length > 0 ? ids : null;
}

/** Reads a calibration / evaluation file: token ids, or text when a tokenizer is given. */
export async function readTokenFile(file: string, tokenizer: TextTokenizer | null, vocab: number): Promise<number[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new UserError(`cannot read ${file}: ${(e as Error).message}`);
  }
  let ids = parseIdList(text);
  if (!ids) {
    if (!tokenizer) throw new UserError(`${file} is not a list of token ids, and the model has no tokenizer`);
    ids = tokenizer.encode(text, { addSpecialTokens: true });
  }
  const bad = ids.find((id) => id >= vocab);
  if (bad !== undefined) throw new UserError(`${file}: token id ${bad} is outside the vocabulary (size ${vocab})`);
  if (ids.length < 2) throw new UserError(`${file}: needs at least 2 tokens`);
  return ids;
}

/** Inputs of the linears of one layer, each [T, width] f32 row-major, over all calibration tokens. */
export interface LayerActivations {
  /** [T, hidden]: normed input of q/k/v */ readonly attnIn: Float32Array;
  /** [T, heads*headDim]: input of o_proj */ readonly oIn: Float32Array;
  /** [T, hidden]: normed input of gate/up */ readonly mlpIn: Float32Array;
  /** [T, ffn]: silu(gate) * up, input of down_proj */ readonly downIn: Float32Array;
}

/**
 * Runs the f32 forward over `ids` in windows of at most `window` tokens (each window starts at position 0) and
 * returns every layer's linear inputs, concatenated over windows: T = ids.length rows.
 */
export function collectActivations(
  spec: ModelSpec,
  w: ReferenceWeights,
  ids: readonly number[],
  window = Math.min(spec.maxPositions, 512),
): { tokens: number; layers: LayerActivations[] } {
  const { hiddenSize: h, headDim: d, numHeads: nh, numKvHeads: nkv, intermediateSize: f } = spec;
  const T = ids.length;
  const acts = Array.from({ length: spec.numLayers }, () => ({
    attnIn: new Float32Array(T * h),
    oIn: new Float32Array(T * nh * d),
    mlpIn: new Float32Array(T * h),
    downIn: new Float32Array(T * f),
  }));
  const { cos, sin } = ropeTables(spec.rope, d, Math.min(spec.maxPositions, window));
  for (let start = 0; start < T; start += window) {
    const n = Math.min(window, T - start);
    const tokens = Int32Array.from(ids.slice(start, start + n));
    const positions = Int32Array.from({ length: n }, (_, i) => i);
    const x = ops.embed(w.embed, tokens, h, spec.vocabSize);
    const xn = new Float32Array(n * h);
    for (let l = 0; l < spec.numLayers; l++) {
      const L = w.layers[l]!, A = acts[l]!;
      ops.rmsNorm(x, L.inputNorm, n, h, spec.rmsEps, xn);
      A.attnIn.set(xn, start * h);
      const q = ops.linear(xn, L.q, n, h, nh * d, L.qBias);
      const k = ops.linear(xn, L.k, n, h, nkv * d, L.kBias);
      const v = ops.linear(xn, L.v, n, h, nkv * d, L.vBias);
      if (L.qNorm && L.kNorm) {
        ops.rmsNorm(q, L.qNorm, n * nh, d, spec.rmsEps, q);
        ops.rmsNorm(k, L.kNorm, n * nkv, d, spec.rmsEps, k);
      }
      ops.rope(q, positions, nh, d, cos, sin);
      ops.rope(k, positions, nkv, d, cos, sin);
      // One block holding the whole window: the K/V arrays are the cache.
      const attn = ops.pagedAttention({
        q,
        kCache: k,
        vCache: v,
        positions,
        queryStarts: Int32Array.of(0, n),
        blockTables: Int32Array.of(0),
        maxBlocksPerSeq: 1,
        blockSize: n,
        numHeads: nh,
        kvHeads: nkv,
        headDim: d,
        scale: 1 / Math.sqrt(d),
        slidingWindow: spec.slidingWindow,
      });
      A.oIn.set(attn, start * nh * d);
      const o = ops.linear(attn, L.o, n, nh * d, h, L.oBias);
      ops.addRmsNorm(x, o, L.postNorm, n, h, spec.rmsEps, xn);
      A.mlpIn.set(xn, start * h);
      const g = ops.linear(xn, L.gate, n, h, f, L.gateBias);
      const u = ops.linear(xn, L.up, n, h, f, L.upBias);
      const act = ops.siluMul(g, u, g);
      A.downIn.set(act, start * f);
      const down = ops.linear(act, L.down, n, f, h, L.downBias);
      for (let i = 0; i < n * h; i++) x[i] = x[i]! + down[i]!;
    }
  }
  return { tokens: T, layers: acts };
}

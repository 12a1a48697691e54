// Enqueues one forward pass on the stream: no host work per layer beyond launches, no syncs, so the same call
// is what a decode graph captures.
import type { ModelSpec } from "../../core/types.ts";
import type { DevPtr } from "./ffi.ts";
import type { CudaOps } from "./ops.ts";
import type { CudaWeights } from "./weights.ts";
import type { Workspace } from "./workspace.ts";
import { enqueueDecodeForward, fusedDecodeFits } from "./forward_decode.ts";
import { enqueueQuantDecodeForward, quantDecodeFits } from "./forward_decode_quant.ts";
import { gateUpShape } from "./gate_up.ts";

export interface ModelOnDevice {
  readonly spec: ModelSpec;
  readonly ops: CudaOps;
  readonly w: CudaWeights;
  /** [maxPos, d/2] f32 */ readonly cos: DevPtr;
  /** [maxPos, d/2] f32 */ readonly sin: DevPtr;
  /** per layer: rows [numBlocks, nkv, blockSize, kvRowBytes] (kv.ts layout) */ readonly kCache: readonly DevPtr[];
  /** per layer: rows [numBlocks, nkv, blockSize, kvRowBytes] */ readonly vCache: readonly DevPtr[];
  /** per layer: [numBlocks, nkv, blockSize, 2] f16 (scale, zero) for int8 / int4 KV, else 0n */
  readonly kScale: readonly DevPtr[];
  readonly vScale: readonly DevPtr[];
}

export interface ForwardShape {
  /** tokens */ readonly n: number;
  /** rows that get logits (indices in ws rowIdx); 0 skips the LM head */ readonly rows: number;
  readonly splits: number;
  readonly splitLen: number;
  /** tokens for the split-K attention kernel: all n in order (graphs), or the ws tokenList section's first `listed` */
  readonly listed: number;
  readonly useTokenList: boolean;
  /** prefill attention tiles in the ws tiles section */
  readonly tiles: number;
  readonly stride: number;
  readonly blockSize: number;
  /** sample the logits rows on the GPU (ws.sampleCfg per row: greedy, temperature, top-k, top-p) */
  readonly sample: boolean;
}

export function enqueueForward(m: ModelOnDevice, ws: Workspace, sh: ForwardShape): void {
  if (fusedDecodeFits(m, sh.n)) return enqueueDecodeForward(m, ws, sh); // decode-sized, dense: fused kernels
  if (quantDecodeFits(m, sh.n)) return enqueueQuantDecodeForward(m, ws, sh); // decode-sized, quantized linears
  const s = m.spec, ops = m.ops, n = sh.n;
  const h = s.hiddenSize, d = s.headDim, nh = s.numHeads, nkv = s.numKvHeads, f = s.intermediateSize;
  const qkvDim = (nh + 2 * nkv) * d;
  ops.embed(m.w.embed, ws.input("tokens"), ws.x, n, h, s.vocabSize);
  for (let l = 0; l < s.numLayers; l++) {
    const L = m.w.layers[l]!;
    ops.rmsnorm(ws.x, l === 0 ? 0n : ws.res, 0n, L.inputNorm, ws.xn, n, h, s.rmsEps);
    ops.linear(ws.xn, L.qkv, L.qkvBias, ws.qkv, n, qkvDim, h);
    enqueueAttention(m, ws, sh, l);
    ops.linear(ws.attn, L.o, L.oBias, ws.res, n, h, nh * d);
    ops.rmsnorm(ws.x, ws.res, 0n, L.postNorm, ws.xn, n, h, s.rmsEps);
    const gu = gateUpShape(L.gateUp, f);
    ops.linear(ws.xn, L.gateUp, L.gateUpBias, ws.gu, n, gu.N, h);
    ops.siluMul(ws.gu, ws.act, n, f, gu.half);
    ops.linear(ws.act, L.down, L.downBias, ws.res, n, h, f);
  }
  if (sh.rows === 0) return;
  // Final norm over the selected rows only (adding the last down_proj output into them), then the LM head.
  ops.rmsnorm(ws.x, ws.res, ws.input("rowIdx"), m.w.finalNorm, ws.xn, sh.rows, h, s.rmsEps);
  ops.linear(ws.xn, m.w.lmHead, 0n, ws.logits, sh.rows, s.vocabSize, h);
  if (sh.sample) ops.sample(ws.logits, ws.sampleCfg, ws.ids, sh.rows, s.vocabSize);
}

/** Layer l's q/k norm + RoPE + KV write (quantized on write for int8 / int4 KV), then decode and prefill attention. */
export function enqueueAttention(m: ModelOnDevice, ws: Workspace, sh: ForwardShape, l: number): void {
  const s = m.spec, ops = m.ops, L = m.w.layers[l]!, n = sh.n;
  const d = s.headDim, nh = s.numHeads, nkv = s.numKvHeads;
  const positions = ws.input("positions");
  const cache = {
    kCache: m.kCache[l]!,
    vCache: m.vCache[l]!,
    kScale: m.kScale[l] ?? 0n, // int8 / int4 KV only
    vScale: m.vScale[l] ?? 0n,
  };
  ops.ropeKv({
    qkv: ws.qkv,
    cos: m.cos,
    sin: m.sin,
    qNorm: L.qNorm,
    kNorm: L.kNorm,
    positions,
    slots: ws.input("slots"),
    q: ws.q,
    ...cache,
    n,
    nh,
    nkv,
    d,
    blockSize: sh.blockSize,
    eps: s.rmsEps,
  });
  const attn = {
    q: ws.q,
    ...cache,
    blockTables: ws.input("tables"),
    positions,
    out: ws.attn,
    nh,
    nkv,
    d,
    blockSize: sh.blockSize,
    maxBlocks: sh.stride,
    window: s.slidingWindow ?? 0,
    scale: 1 / Math.sqrt(d),
  };
  ops.attention({
    ...attn,
    tokenSeq: ws.input("tokenSeq"),
    tokenList: sh.useTokenList ? ws.input("tokenList") : 0n,
    rows: sh.listed,
    partO: ws.partO,
    partML: ws.partML,
    n,
    splits: sh.splits,
    splitLen: sh.splitLen,
  });
  ops.attentionPrefill({ ...attn, tileList: ws.input("tiles"), tiles: sh.tiles });
}

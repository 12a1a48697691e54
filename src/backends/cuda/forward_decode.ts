// The fused decode forward pass (n <= fusedDecode.denseMaxRows tokens, dense 16-bit weights): 7 launches per layer
// instead of 10.
// embed → per layer: qkv (norm in the prologue) · rope_kv · attn_split · attn_combine · o (+ residual) ·
// gate_up (norm in the prologue, SiLU-mul in the epilogue) · down (+ residual) → LM head (final norm in the
// prologue) → sample. Same contract as enqueueForward: launches only, no syncs, so a decode graph captures it.
//
// Buffers (all from the Workspace, sized for n tokens):
//   ws.x    [n, h] f32        residual stream, updated in place by the o / down epilogues
//   ws.xn   [n, h] f32        xg = x * gamma of the next norm (ws.xn holds 4 bytes per element)
//   ws.gu   [n, parts] f32    partial sums of squares of x's rows (ws.gu is unused here: SiLU-mul is fused)
//   ws.qkv  [n, (nh+2nkv)*d] f32, ws.q, ws.partO, ws.partML, ws.attn [n, nh*d] act: as in enqueueForward
//   ws.act  [n, f] act        silu(gate) * up
import { DEC_MAX_M, DecodeOps, decParts, type DecVariant, type DecWarps } from "./decode_ops.ts";
import { enqueueAttention, type ForwardShape, type ModelOnDevice } from "./forward.ts";
import type { Workspace } from "./workspace.ts";
import { ENV } from "../../core/env.ts";

const dense = (w: unknown): w is bigint => typeof w === "bigint";

/**
 * Process-wide settings (benches toggle these, then drop graphs). On by default for dense weights: on the H100
 * (2026-11-24, bench/cuda_decode.ts, synthetic Llama-3-8B bf16, context 128) a step replays in 5.79 ms vs 6.16 ms
 * unfused (5.93 vs 6.26 ms/step wall); TURBODENO_CUDA_FUSED_DECODE=0 turns it off. pdl: programmatic dependent launch; warps: warps per GEMV
 * block; qkv / res / lm: GEMV variant (decode_ops.ts DecVariant) of the qkv projection / o and down / the LM head;
 * lmGemmRows: LM heads of at least this many rows take the final RMSNorm, then the tensor-core matmul (ops.linear)
 * instead of dec_gemv_norm, whose CUDA-core dot products are compute-bound there (enqueueDecodeLmHead; 8B int4 g128
 * step at batch 8: 5.42 -> 3.94 ms). denseMaxRows: dense weights take this path up to this many tokens only, for the
 * same reason (8B f16 step at batch 2 / 8: fused 9.37 / 23.48 ms, unfused with the skinny GEMM 7.08 / 7.30).
 */
export const fusedDecode: {
  enabled: boolean;
  pdl: boolean;
  warps: DecWarps;
  qkv: DecVariant;
  res: DecVariant;
  lm: DecVariant;
  lmGemmRows: number;
  denseMaxRows: number;
} = {
  enabled: ENV.cudaFusedDecode,
  pdl: true,
  warps: 8,
  qkv: "r2",
  res: "u8",
  lm: "r2",
  lmGemmRows: 2,
  denseMaxRows: 1,
};

/** True when the fused decode path takes this step: few enough tokens and every matmul dense. */
export function fusedDecodeFits(m: ModelOnDevice, n: number): boolean {
  const s = m.spec;
  if (!fusedDecode.enabled || n < 1 || n > Math.min(DEC_MAX_M, fusedDecode.denseMaxRows)) return false;
  if (!dense(m.w.lmHead) || m.w.layers.length === 0) return false;
  // The partial sums [n, parts] f32 live in ws.gu ([n, 2f] f32); 4 warps r1 writes the most.
  if (decParts(s.hiddenSize, 4) > 2 * s.intermediateSize) return false;
  return m.w.layers.every((L) => dense(L.qkv) && dense(L.o) && dense(L.gateUp) && dense(L.down));
}

export function enqueueDecodeForward(m: ModelOnDevice, ws: Workspace, sh: ForwardShape): void {
  const s = m.spec, ops = m.ops, n = sh.n;
  const h = s.hiddenSize, d = s.headDim, nh = s.numHeads, nkv = s.numKvHeads, f = s.intermediateSize;
  const qkvDim = (nh + 2 * nkv) * d, eps = s.rmsEps;
  const dec = new DecodeOps(ops.k, ops.wt, ops.act, fusedDecode.pdl, fusedDecode.warps);
  const x = ws.x, xg = ws.xn, ss = ws.gu;
  const first = m.w.layers[0];
  if (!first) throw new Error("fused decode: model has no layers");
  dec.embed({ table: m.w.embed, ids: ws.input("tokens"), g: first.inputNorm, x, xg, ss, n, h, vocab: s.vocabSize });
  let parts = 1;
  for (let l = 0; l < s.numLayers; l++) {
    const L = m.w.layers[l]!;
    const next = l + 1 < s.numLayers ? m.w.layers[l + 1]!.inputNorm : m.w.finalNorm;
    if (!dense(L.qkv) || !dense(L.o) || !dense(L.gateUp) || !dense(L.down)) {
      throw new Error(`fused decode: layer ${l} has quantized weights (check fusedDecodeFits first)`);
    }
    const qkvArgs = { W: L.qkv, bias: L.qkvBias, xg, ss, parts, eps, rowIdx: 0n, y: ws.qkv, M: n, N: qkvDim, K: h };
    dec.gemvNorm(qkvArgs, fusedDecode.qkv);
    enqueueAttention(m, ws, sh, l);
    const rr = fusedDecode.res;
    dec.gemvRes({ W: L.o, bias: L.oBias, xin: ws.attn, x, gNext: L.postNorm, xg, ss, M: n, N: h, K: nh * d }, rr);
    parts = decParts(h, dec.warps, DecodeOps.variantFor(n, rr)); // what the o / down epilogues write per row
    dec.gemvSilu({ W: L.gateUp, bias: L.gateUpBias, xg, ss, parts, eps, act: ws.act, M: n, F: f, K: h });
    dec.gemvRes({ W: L.down, bias: L.downBias, xin: ws.act, x, gNext: next, xg, ss, M: n, N: h, K: f }, rr);
  }
  enqueueDecodeLmHead(m, ws, sh, dec, { xg, ss, parts, eps });
}

/**
 * The fused paths' end: the final RMSNorm finished in the LM head's prologue (xg / ss as the last residual epilogue
 * left them) over the rows in ws rowIdx, then the GPU sampler. Nothing when no row wants logits.
 */
export function enqueueDecodeLmHead(
  m: ModelOnDevice,
  ws: Workspace,
  sh: ForwardShape,
  dec: DecodeOps,
  norm: { xg: bigint; ss: bigint; parts: number; eps: number },
): void {
  if (sh.rows === 0) return;
  if (!dense(m.w.lmHead)) throw new Error("fused decode: quantized LM head");
  const s = m.spec, rowIdx = ws.input("rowIdx"), h = s.hiddenSize;
  if (sh.rows >= fusedDecode.lmGemmRows) {
    // xn [rows, h] act = rmsnorm(x[rowIdx]) * gFinal (xg is not read again), then logits on tensor cores.
    m.ops.rmsnorm(ws.x, 0n, rowIdx, m.w.finalNorm, ws.xn, sh.rows, h, norm.eps);
    m.ops.linear(ws.xn, m.w.lmHead, 0n, ws.logits, sh.rows, s.vocabSize, h);
  } else {
    dec.gemvNorm(
      { W: m.w.lmHead, bias: 0n, ...norm, rowIdx, y: ws.logits, M: sh.rows, N: s.vocabSize, K: h },
      fusedDecode.lm,
    );
  }
  if (sh.sample) m.ops.sample(ws.logits, ws.sampleCfg, ws.ids, sh.rows, s.vocabSize);
}

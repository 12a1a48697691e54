// The fused decode forward pass for quantized linears (n <= DEC_MAX_M tokens, W4A16 / W8A16 qgemv): RMSNorm
// finished in the qkv / gate_up prologue, the residual add (and the next norm's x * gamma and partial sums of
// squares) in the o / down epilogue, SiLU-mul in the gate_up epilogue (its rows paired per n-tile, gate_up.ts), as
// decode.cu does for dense weights. Per layer: qkv · rope_kv · attn_split · attn_combine · o · gate_up · down: 7
// launches instead of 10. The LM head (dense) is decode.cu's dec_gemv_norm. Same contract as enqueueForward: launches only, no syncs, so a decode graph captures it.
//
// Buffers (all from the Workspace, sized for n tokens):
//   ws.x    [n, h] f32        residual stream, updated in place by the o / down epilogues
//   ws.xn   [n, h] f32        xg = x * gamma of the next norm (ws.xn holds 4 bytes per element)
//   ws.res  [n, parts] f32    partial sums of squares of x's rows (parts <= h / 32: one per qgemv block column)
//   ws.qkv  [n, (nh+2nkv)*d] f32, ws.q, ws.partO, ws.partML, ws.attn [n, nh*d] f16: as in enqueueForward
//   ws.act  [n, f] f16        silu(gate) * up, written by the gate_up qgemv's epilogue
import { DEC_MAX_M, DecodeOps } from "./decode_ops.ts";
import { enqueueAttention, type ForwardShape, type ModelOnDevice } from "./forward.ts";
import { enqueueDecodeLmHead, fusedDecode } from "./forward_decode.ts";
import { type CudaLinear, isQuant, quantLinear } from "./qlinear.ts";
import type { Workspace } from "./workspace.ts";

const quantLayer = (L: { qkv: CudaLinear; o: CudaLinear; gateUp: CudaLinear; down: CudaLinear }) =>
  isQuant(L.qkv) && isQuant(L.o) && isQuant(L.gateUp) && isQuant(L.down);

/** True when the fused quantized decode path takes this step: few tokens, every layer quantized, dense LM head. */
export function quantDecodeFits(m: ModelOnDevice, n: number): boolean {
  if (!fusedDecode.enabled || n < 1 || n > DEC_MAX_M || m.ops.act !== "f16" || m.w.layers.length === 0) return false;
  return typeof m.w.lmHead === "bigint" && m.w.layers.every(quantLayer);
}

/**
 * Benchmarks only (bench/cuda_step_profile.ts --ablate): plainInput makes qkv and gate_up read f16 activations from
 * ws.attn instead of finishing the RMSNorm in their prologue, to time that prologue. The results are then wrong.
 */
export const quantDecodeAblation = { plainInput: false };

export function enqueueQuantDecodeForward(m: ModelOnDevice, ws: Workspace, sh: ForwardShape): void {
  const s = m.spec, ops = m.ops, k = ops.k, n = sh.n;
  const h = s.hiddenSize, eps = s.rmsEps;
  const dec = new DecodeOps(k, ops.wt, ops.act, fusedDecode.pdl, fusedDecode.warps);
  const x = ws.x, xg = ws.xn, ss = ws.res;
  const first = m.w.layers[0];
  if (!first) throw new Error("fused quantized decode: model has no layers");
  dec.embed({ table: m.w.embed, ids: ws.input("tokens"), g: first.inputNorm, x, xg, ss, n, h, vocab: s.vocabSize });
  let parts = 1; // what dec_embed wrote per row
  for (let l = 0; l < s.numLayers; l++) {
    const L = m.w.layers[l]!;
    if (!isQuant(L.qkv) || !isQuant(L.o) || !isQuant(L.gateUp) || !isQuant(L.down)) {
      throw new Error(`fused quantized decode: layer ${l} has dense linears (check quantDecodeFits first)`);
    }
    const next = l + 1 < s.numLayers ? m.w.layers[l + 1]!.inputNorm : m.w.finalNorm;
    const plain = quantDecodeAblation.plainInput;
    const norm = { xg, ss, parts, eps };
    quantLinear(k, plain ? ws.attn : 0n, L.qkv, L.qkvBias, ws.qkv, n, "gemv", {}, plain ? {} : { norm });
    enqueueAttention(m, ws, sh, l);
    parts = quantLinear(k, ws.attn, L.o, L.oBias, 0n, n, "gemv", {}, { resid: { x, gNext: L.postNorm, xg, ss } });
    quantLinear(k, plain ? ws.attn : 0n, L.gateUp, L.gateUpBias, 0n, n, "gemv", {}, {
      ...(plain ? {} : { norm: { xg, ss, parts, eps } }),
      silu: { act: ws.act },
    });
    parts = quantLinear(k, ws.act, L.down, L.downBias, 0n, n, "gemv", {}, { resid: { x, gNext: next, xg, ss } });
  }
  enqueueDecodeLmHead(m, ws, sh, dec, { xg, ss, parts, eps });
}

// Applies AWQ scales to an f32 model in place: for each layer, searches (awq_search.ts) and folds
//   q/k/v   (input x = input_layernorm output)          1/s into input_layernorm.weight
//   o       (input = attention output)                  1/s into v_proj rows, only when heads == kv heads (as AutoAWQ)
//   gate/up (input = post_attention_layernorm output)   1/s into post_attention_layernorm.weight
//   down    (input = silu(gate) * up)                   1/s into up_proj rows (and its bias)
// and multiplies the columns of the linears by s, so the model's function is unchanged before quantization.
import type { ModelSpec } from "../core/types.ts";
import type { ReferenceWeights } from "../backends/reference/weights.ts";
import type { LayerActivations } from "./calib.ts";
import { searchScales, type SearchTarget } from "./awq_search.ts";
import type { QuantBits } from "./types.ts";

export interface AwqLayerReport {
  readonly layer: number;
  /** chosen alpha per group (null: not scaled) and the output MSE at it vs plain RTN */
  readonly groups: { name: string; alpha: number | null; loss: number; rtnLoss: number }[];
}

function scaleColumns(w: Float32Array, N: number, K: number, s: Float32Array): void {
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) w[n * K + k] = w[n * K + k]! * s[k]!;
}

function divide(v: Float32Array, s: Float32Array, width = v.length / s.length): void {
  // v holds s.length rows of `width` values; row i is divided by s[i].
  for (let i = 0; i < s.length; i++) for (let j = 0; j < width; j++) v[i * width + j] = v[i * width + j]! / s[i]!;
}

export function applyAwqScales(
  spec: ModelSpec,
  w: ReferenceWeights,
  acts: readonly LayerActivations[],
  bits: QuantBits,
  group: number,
  T: number,
): AwqLayerReport[] {
  const { hiddenSize: h, numHeads: nh, numKvHeads: nkv, headDim: d, intermediateSize: f } = spec;
  const reports: AwqLayerReport[] = [];
  for (let l = 0; l < spec.numLayers; l++) {
    const L = w.layers[l]!, A = acts[l]!;
    const groups: AwqLayerReport["groups"] = [];
    const run = (
      name: string,
      x: Float32Array,
      K: number,
      targets: SearchTarget[],
      fold: (s: Float32Array) => void,
    ) => {
      const r = searchScales(x, T, K, targets, bits, group);
      groups.push({ name, alpha: r.alpha, loss: r.loss, rtnLoss: r.rtnLoss });
      if (r.alpha === 0) return;
      fold(r.scales);
      for (const t of targets) scaleColumns(t.w as Float32Array, t.outDim, K, r.scales);
    };
    run(
      "qkv",
      A.attnIn,
      h,
      [{ w: L.q, outDim: nh * d }, { w: L.k, outDim: nkv * d }, { w: L.v, outDim: nkv * d }],
      (s) => {
        divide(L.inputNorm, s);
      },
    );
    if (nh === nkv) {
      run("o", A.oIn, nh * d, [{ w: L.o, outDim: h }], (s) => {
        divide(L.v, s);
        if (L.vBias) divide(L.vBias, s);
      });
    } else groups.push({ name: "o", alpha: null, loss: NaN, rtnLoss: NaN });
    run("gate_up", A.mlpIn, h, [{ w: L.gate, outDim: f }, { w: L.up, outDim: f }], (s) => {
      divide(L.postNorm, s);
    });
    // The search of gate/up used up's original rows; AutoAWQ does the same (down is searched after).
    run("down", A.downIn, f, [{ w: L.down, outDim: h }], (s) => {
      divide(L.up, s);
      if (L.upBias) divide(L.upBias, s);
    });
    reports.push({ layer: l, groups });
  }
  return reports;
}

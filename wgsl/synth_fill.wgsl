// #include "common.wgsl"
// Fills part of an f16 matrix with the synthetic-model weights (src/model/synthetic.ts syntheticValue), two values
// per u32: element e of the tensor is base + amp * ((2 * (h(e) >> 8) + 1) / 2^24 - 1), with h the u32 hash of
// (seed, stream, e). The same integer hash as the host; the float math may differ from the host's by f32 rounding.

struct Params { pair0: u32, pairs: u32, seed: u32, stream: u32, amp: f32, base: f32, _a: u32, _b: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;   // [elements / 2] f16 pairs of the whole matrix

fn synth(e: u32) -> f32 {
  var x = (e * 0x9e3779b1u) ^ p.stream ^ (p.seed * 0x85ebca6bu);
  x = (x ^ (x >> 16u)) * 0x7feb352du;
  x = (x ^ (x >> 15u)) * 0x846ca68bu;
  x = x ^ (x >> 16u);
  return p.base + p.amp * (f32((x >> 8u) * 2u + 1u) / 16777216.0 - 1.0);
}

@compute @workgroup_size(256)
fn synth_fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wg_index(wid, nwg) * 256u + lid.x;
  if (i >= p.pairs) { return; }
  dst[p.pair0 + i] = pack2x16float(vec2<f32>(synth(2u * i), synth(2u * i + 1u)));
}

// #include "common.wgsl"
// Fills a quantized matrix of a synthetic model ("rows-k" layout, src/backends/webgpu/qlinear.ts QuantMatrix) on the
// GPU: random codes and per-group (scale, bias) pairs, the recipe of the CUDA backend's qfill (kernels/qgemm.cu):
//   words: u32 hash of (seed, word index); fp8 codes masked with 0xbf per byte (exponent field <= 7: |e4m3| < 2, no
//          NaN);
//   pairs: s = s0 * (0.75 + 0.5 u) rounded to 11 significant bits (an f16 value; u uniform in [0, 1) from a second
//          hash stream), bias = -z * s (exact in f32: z < 2^8); integers take s0 = 2 amp / qmax and z = 2^(bits-1) + 1,
//          so weights span about [-amp, amp]; fp8 stores (256 s, 0) with s0 = amp / 2.
// One entry point fills both buffers: invocation i writes word i (i < words) and pair i (i < pairs).

struct Params { words: u32, pairs: u32, seed: u32, mask: u32, s0: f32, z: f32, mul: f32, _a: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<u32>;         // [N, Kw] u32 codes
@group(0) @binding(2) var<storage, read_write> sb: array<vec2<f32>>;  // [N, nG] f32 (scale, bias)

fn qhash(seed: u32, i: u32) -> u32 {
  var x = (i * 0x9e3779b1u) ^ (seed * 0x85ebca6bu);
  x = (x ^ (x >> 16u)) * 0x7feb352du;
  x = (x ^ (x >> 15u)) * 0x846ca68bu;
  return x ^ (x >> 16u);
}

@compute @workgroup_size(256)
fn synth_qfill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wg_index(wid, nwg) * 256u + lid.x;
  if (i < p.words) { w[i] = qhash(p.seed, i) & p.mask; }
  if (i < p.pairs) {
    let u = f32(qhash(p.seed ^ 0x5bd1e995u, i) >> 8u) / 16777216.0;
    // 11 significant bits (round to nearest on the f32 bits; a pack / unpack through f16 may be folded away).
    let s = bitcast<f32>((bitcast<u32>(p.s0 * (0.75 + 0.5 * u)) + 0x1000u) & 0xffffe000u);
    sb[i] = vec2<f32>(s * p.mul, select(-p.z * s, 0.0, p.z == 0.0));  // mul: 256 for fp8, else 1
  }
}

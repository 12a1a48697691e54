// Shared definitions for every kernel. The loader (src/backends/webgpu/shaders.ts) prepends
//   [enable f16;]  alias WT = f16 | f32;  alias KT = f16 | f32;  const NAME: u32 = value; ...
// WT is the weight storage type and KT the KV cache storage type; all arithmetic accumulates in f32.
// Every kernel reads its scalars from a uniform named `p`; bindings are reflected from these declarations.

// A "minus infinity" that stays finite, so differences and exp() never produce NaN.
const NEG_BIG: f32 = -3.0e38;

// Small unsigned integers (< 2^23) as f32, exactly, without a conversion instruction (u32 -> f32 conversions run at a
// fraction of the FMA rate on NVIDIA GPUs): the f32 with bits 0x4b000000 | q is 2^23 + q; subtracting 2^23 is exact.
fn u2f(q: vec4<u32>) -> vec4<f32> {
  return bitcast<vec4<f32>>(q | vec4<u32>(0x4b000000u)) - vec4<f32>(8388608.0);
}

// Flattens a 2-D workgroup grid (x up to the per-dimension limit, y for the rest) into one index.
fn wg_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

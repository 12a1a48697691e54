// Shared definitions for every kernel. The loader (src/backends/webgpu/shaders.ts) prepends
//   [enable f16;]  alias WT = f16 | f32;  alias KT = f16 | f32;  const NAME: u32 = value; ...
// WT is the weight storage type and KT the KV cache storage type; all arithmetic accumulates in f32.
// Every kernel reads its scalars from a uniform named `p`; bindings are reflected from these declarations.

// A "minus infinity" that stays finite, so differences and exp() never produce NaN.
const NEG_BIG: f32 = -3.0e38;

// Flattens a 2-D workgroup grid (x up to the per-dimension limit, y for the rest) into one index.
fn wg_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

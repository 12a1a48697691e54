// Weight loads of gemv_fused.wgsl, f32 storage: one vec4<f32> (16 bytes) per chunk of CH = 4 values.
const CH: u32 = 4u;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;  // [N, K/4] f32

fn wload(i: u32) -> W8 {
  return W8(w[i], vec4<f32>(0.0));
}

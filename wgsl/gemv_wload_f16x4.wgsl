// Weight loads of gemv_fused.wgsl, f16 storage read as u32 words when K % 8 != 0: one vec2<u32> (8 bytes) per chunk
// of CH = 4 values. Element 2i of a word is its low half.
const CH: u32 = 4u;
@group(0) @binding(2) var<storage, read> w: array<vec2<u32>>;  // [N, K/4] f16 x 4

fn wload(i: u32) -> W8 {
  let q = w[i];
  return W8(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), vec4<f32>(0.0));
}

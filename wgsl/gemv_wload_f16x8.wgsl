// Weight loads of gemv_fused.wgsl, f16 storage read as u32 words (no shader-f16 needed): one vec4<u32> (16 bytes)
// per chunk of CH = 8 values (K % 8 == 0). Element 2i of a word is its low half.
const CH: u32 = 8u;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;  // [N, K/8] f16 x 8

fn wload(i: u32) -> W8 {
  let q = w[i];
  return W8(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)),
            vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}

// Weight loads of gemv_fused.wgsl, f16 storage read as u32 words (no shader-f16 needed): one vec4<u32> (16 bytes)
// per chunk of CH = 8 values (K % 8 == 0). Element 2i of a word is its low half; h = 0 decodes words x, y, h = 1 z, w.
const CH: u32 = 8u;
alias WR = vec4<u32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;  // [N, K/8] f16 x 8

fn wraw(row: u32, c: u32, KC: u32) -> WR { return w[row * KC + c]; }
fn wvec(r: WR, h: u32) -> vec4<f32> {
  if (h == 0u) { return vec4<f32>(unpack2x16float(r.x), unpack2x16float(r.y)); }
  return vec4<f32>(unpack2x16float(r.z), unpack2x16float(r.w));
}

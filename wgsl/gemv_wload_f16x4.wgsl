// Weight loads of gemv_fused.wgsl, f16 storage read as u32 words when K % 8 != 0: one vec2<u32> (8 bytes) per chunk
// of CH = 4 values. Element 2i of a word is its low half.
const CH: u32 = 4u;
alias WR = vec2<u32>;
@group(0) @binding(2) var<storage, read> w: array<vec2<u32>>;  // [N, K/4] f16 x 4

fn wraw(row: u32, c: u32, KC: u32) -> WR { return w[row * KC + c]; }
fn wvec(r: WR, h: u32) -> vec4<f32> { return vec4<f32>(unpack2x16float(r.x), unpack2x16float(r.y)); }

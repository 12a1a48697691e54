// Weight loads of gemv_fused.wgsl, f32 storage: one vec4<f32> (16 bytes) per chunk of CH = 4 values.
const CH: u32 = 4u;
alias WR = vec4<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;  // [N, K/4] f32

fn wraw(row: u32, c: u32, KC: u32) -> WR { return w[row * KC + c]; }
fn wvec(r: WR, h: u32) -> vec4<f32> { return r; }

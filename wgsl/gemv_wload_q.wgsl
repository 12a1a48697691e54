// #include "qweight.wgsl"
// Weight loads of gemv_fused.wgsl, quantized "rows-k" storage (qweight.wgsl, src/backends/webgpu/qlinear.ts): one
// vec4<u32> (16 bytes) per chunk of CH = 16 VPW / 4 values (int4 32, int8 / fp8 16) and the (scale, bias) pair of its
// group, which holds whole chunks (CPG = group / CH chunks per group, a host constant; K % CH == 0). wvec(r, h) is
// input vec4 h of the chunk: values 4h .. 4h + 3, word h / V4, dequantized as qweight.wgsl's dq4.
const CH: u32 = 4u * VPW;
struct WR { q: vec4<u32>, s: vec2<f32> }
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;   // [N, Kw/4] u32 x 4 codes
@group(0) @binding(9) var<storage, read> sb: array<vec2<f32>>;  // [N, nG] f32 (scale, bias); fp8 (256 s, 0)

fn wraw(row: u32, c: u32, KC: u32) -> WR { return WR(w[row * KC + c], sb[row * p.nG + c / CPG]); }
fn wvec(r: WR, h: u32) -> vec4<f32> {
  // word k = h / V4 by selects (h is a literal at every call: they fold; no dynamic vector index)
  let k = h / V4;
  let word = select(select(r.q.x, r.q.y, k == 1u), select(r.q.z, r.q.w, k == 3u), k >= 2u);
  return dq4(word, h % V4, r.s);
}

// #include "common.wgsl"
// #include "qweight.wgsl"
// Tiled GEMM for prefill with int8/int4 weights: y[M, N] = x[M, K] · W[N, K]^T (+ bias[N]), f32 accumulation.
// The tiling is gemm.wgsl's (a 16x16 workgroup computes a 64x64 tile of y, k advancing 16 at a time through
// workgroup memory); only the weight load differs: each thread reads the u32 word holding its 4 weights and the
// group's (scale, bias), and dequantizes them with one FMA each before storing to the tile.
// Requires K % 4 == 0 (checked on the host); gw = words per group (Kw when one group covers K).

struct Params { M: u32, N: u32, K: u32, hasBias: u32, Kw: u32, gw: u32, nG: u32, _pad: u32 }

const TILE: u32 = 64u;
const TK: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;   // [M, K/4] f32 activations
@group(0) @binding(2) var<storage, read> w: array<u32>;         // [N, Kw] u32 packed q, row-major
@group(0) @binding(3) var<storage, read> sb: array<vec2<f32>>;  // [N, nG] f32 (scale, bias)
@group(0) @binding(4) var<storage, read> bias: array<f32>;      // [N] f32 (dummy when hasBias == 0)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;   // [M, N] f32

var<workgroup> xs: array<f32, 1024>;  // [TK, TILE] x tile, k-major
var<workgroup> ws: array<f32, 1024>;  // [TK, TILE] dequantized w tile, k-major

@compute @workgroup_size(16, 16)
fn gemm_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
  let n0 = wid.x * TILE;
  let m0 = wid.y * TILE;
  let K4 = p.K / 4u;
  let lr = li / 4u;  // tile row this thread loads (0..63)
  let lk = li % 4u;  // which vec4 of the 16-wide k slice
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < K4; k0 += TK / 4u) {
    let k4 = k0 + lk;
    var xv = vec4<f32>(0.0);
    if (m0 + lr < p.M && k4 < K4) { xv = x[(m0 + lr) * K4 + k4]; }
    var wv = vec4<f32>(0.0);
    let n = n0 + lr;
    if (n < p.N && k4 < K4) {
      let kw = k4 / V4;
      wv = dq4(w[n * p.Kw + kw], k4 % V4, sb[n * p.nG + kw / p.gw]);
    }
    let kb = lk * 4u * TILE + lr;
    xs[kb] = xv.x;
    xs[kb + TILE] = xv.y;
    xs[kb + 2u * TILE] = xv.z;
    xs[kb + 3u * TILE] = xv.w;
    ws[kb] = wv.x;
    ws[kb + TILE] = wv.y;
    ws[kb + 2u * TILE] = wv.z;
    ws[kb + 3u * TILE] = wv.w;
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      let o = kk * TILE;
      let wr = vec4<f32>(ws[o + lid.x], ws[o + lid.x + 16u], ws[o + lid.x + 32u], ws[o + lid.x + 48u]);
      acc[0] += xs[o + lid.y] * wr;
      acc[1] += xs[o + lid.y + 16u] * wr;
      acc[2] += xs[o + lid.y + 32u] * wr;
      acc[3] += xs[o + lid.y + 48u] * wr;
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y + 16u * i;
    if (m >= p.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + lid.x + 16u * j;
      if (n >= p.N) { continue; }
      var v = acc[i][j];
      if (p.hasBias != 0u) { v += bias[n]; }
      y[m * p.N + n] = v;
    }
  }
}

// #include "common.wgsl"
// Tiled GEMM for prefill: y[M, N] = x[M, K] · w[N, K]^T (+ bias[N]), f32 accumulation.
// A 16x16 workgroup computes a 64x64 tile of y (each thread rows ty + 16i, columns tx + 16j, so stores coalesce);
// k advances 16 at a time through workgroup memory, each thread loading one vec4 of x and one of w per step.
// Requires K % 4 == 0 (checked on the host).

struct Params { M: u32, N: u32, K: u32, hasBias: u32 }

const TILE: u32 = 64u;
const TK: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;  // [M, K/4] activations
@group(0) @binding(2) var<storage, read> w: array<vec4<WT>>;   // [N, K/4] weights, row-major as HF stores them
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [N] (dummy when hasBias == 0)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // [M, N]

var<workgroup> xs: array<f32, 1024>;  // [TK, TILE] x tile, k-major
var<workgroup> ws: array<f32, 1024>;  // [TK, TILE] w tile, k-major

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
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
    if (n0 + lr < p.N && k4 < K4) { wv = vec4<f32>(w[(n0 + lr) * K4 + k4]); }
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

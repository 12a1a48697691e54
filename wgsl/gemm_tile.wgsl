// The 64x64 output tile shared by gemm.wgsl and gemm_q.wgsl: a 16x16 workgroup computes y[m0.., n0..] (each thread
// rows ty + 16i, columns tx + 16j, so stores coalesce); k advances 16 at a time through workgroup memory, each thread
// staging one vec4 of x and one (dequantized) vec4 of w per step. The including shader declares the uniform `p`
// (with M, N, K, hasBias), `x` ([M, K/4] vec4<f32>), `bias` ([N] f32), `y` ([M, N] f32) and
// `fn load_w(n: u32, k4: u32) -> vec4<f32>` (weights k4*4 .. k4*4+3 of row n, f32; called only for n < N, k4 < K/4):
// only how w is loaded differs between the two.

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> xs: array<f32, 1024>;  // [TK, TILE] x tile, k-major
var<workgroup> ws: array<f32, 1024>;  // [TK, TILE] w tile (f32, dequantized), k-major

// Stages this thread's x and w vec4s (tile row lr, vec4 lk of the 16-wide k slice) into the k-major tiles.
fn tile_stage(lr: u32, lk: u32, xv: vec4<f32>, wv: vec4<f32>) {
  let kb = lk * 4u * TILE + lr;
  xs[kb] = xv.x;
  xs[kb + TILE] = xv.y;
  xs[kb + 2u * TILE] = xv.z;
  xs[kb + 3u * TILE] = xv.w;
  ws[kb] = wv.x;
  ws[kb + TILE] = wv.y;
  ws[kb + 2u * TILE] = wv.z;
  ws[kb + 3u * TILE] = wv.w;
}

// acc += the staged tiles' product for this thread's 4x4 outputs.
fn tile_accumulate(lid: vec3<u32>, acc: ptr<function, array<vec4<f32>, 4>>) {
  for (var kk = 0u; kk < TK; kk++) {
    let o = kk * TILE;
    let wr = vec4<f32>(ws[o + lid.x], ws[o + lid.x + 16u], ws[o + lid.x + 32u], ws[o + lid.x + 48u]);
    (*acc)[0] += xs[o + lid.y] * wr;
    (*acc)[1] += xs[o + lid.y + 16u] * wr;
    (*acc)[2] += xs[o + lid.y + 32u] * wr;
    (*acc)[3] += xs[o + lid.y + 48u] * wr;
  }
}

// Writes this thread's 4x4 outputs (+ bias) inside [M, N].
fn tile_store(m0: u32, n0: u32, lid: vec3<u32>, acc: array<vec4<f32>, 4>) {
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

// The whole tile: y[m0.., n0..] for workgroup wid (x: N tiles, y: M tiles), K % 4 == 0.
fn tile_gemm(wid: vec3<u32>, lid: vec3<u32>, li: u32) {
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
    if (n0 + lr < p.N && k4 < K4) { wv = load_w(n0 + lr, k4); }
    tile_stage(lr, lk, xv, wv);
    workgroupBarrier();
    tile_accumulate(lid, &acc);
    workgroupBarrier();
  }
  tile_store(m0, n0, lid, acc);
}

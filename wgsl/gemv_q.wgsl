// #include "common.wgsl"
// #include "qweight.wgsl"
// #include "gemv_reduce.wgsl"
// Quantized GEMV for decode (M <= MMAX tokens): y[M, N] = x[M, K] · W[N, K]^T (+ bias[N]), W int8/int4 (or fp8 e4m3
// codes, FP8 1) packed along K ("rows-k", see qweight.wgsl), dequantized in registers (one FMA per integer weight, a
// bit decode and one multiply per fp8 weight), f32 accumulation.
// A workgroup of 256 threads handles ROWS = 8 rows, 32 lanes per row; each lane keeps 4 independent u32 word loads
// (32 int4 or 16 int8 / fp8 weights) and their (scale, bias) pairs in flight, dequantizes each word once and applies it
// to all M token rows. Lane partials meet in workgroup memory; one barrier.
// Requires K % 4 == 0 (vec4 loads of x); gw = group / VPW words per group (Kw when one group covers K). The tail
// of the last word of an int4 row with K % 8 == 4 is padding: its vec4 is skipped.

struct Params { M: u32, N: u32, K: u32, hasBias: u32, Kw: u32, gw: u32, nG: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;   // [M, K/4] f32 activations
@group(0) @binding(2) var<storage, read> w: array<u32>;         // [N, Kw] u32 packed q / e4m3 codes, row-major
@group(0) @binding(3) var<storage, read> sb: array<vec2<f32>>;  // [N, nG] f32 (scale, bias); fp8 (256 s, 0)
@group(0) @binding(4) var<storage, read> bias: array<f32>;      // [N] f32 (dummy when hasBias == 0)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;   // [M, N] f32

var<private> acc: array<f32, MMAX>;  // this lane's partial sums, one per token row

// Adds word kw of this row (already loaded as u, with its group's (scale, bias)) times x to every token row.
fn apply_word(u: u32, sbv: vec2<f32>, kw: u32) {
  let K4 = p.K / 4u;
  for (var j = 0u; j < V4; j++) {
    let k4 = kw * V4 + j;
    if (k4 >= K4) { break; }  // int4 padding in the last word
    let wv = dq4(u, j, sbv);
    for (var m = 0u; m < MMAX; m++) {
      if (m < p.M) { acc[m] += dot(wv, x[m * K4 + k4]); }
    }
  }
}

@compute @workgroup_size(256)
fn gemv_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = lid.x / LANES;
  let lane = lid.x % LANES;
  let n = wg_index(wid, nwg) * ROWS + r;
  for (var m = 0u; m < MMAX; m++) { acc[m] = 0.0; }
  if (n < p.N) {
    let wrow = n * p.Kw;
    let srow = n * p.nG;
    let gw = p.gw;  // words per group (one group: Kw)
    var kw = lane;
    while (kw + 3u * LANES < p.Kw) {
      let u0 = w[wrow + kw];
      let u1 = w[wrow + kw + LANES];
      let u2 = w[wrow + kw + 2u * LANES];
      let u3 = w[wrow + kw + 3u * LANES];
      let s0 = sb[srow + kw / gw];
      let s1 = sb[srow + (kw + LANES) / gw];
      let s2 = sb[srow + (kw + 2u * LANES) / gw];
      let s3 = sb[srow + (kw + 3u * LANES) / gw];
      apply_word(u0, s0, kw);
      apply_word(u1, s1, kw + LANES);
      apply_word(u2, s2, kw + 2u * LANES);
      apply_word(u3, s3, kw + 3u * LANES);
      kw += 4u * LANES;
    }
    while (kw < p.Kw) {
      apply_word(w[wrow + kw], sb[srow + kw / gw], kw);
      kw += LANES;
    }
  }
  gemv_reduce(acc, r, lane, n);
}

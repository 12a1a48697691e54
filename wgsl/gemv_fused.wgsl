// #include "common.wgsl"
// #include "gemv_wload.wgsl"
// Decode GEMV with fused prologue / epilogue (M <= 8 token rows), f32 accumulation:
//   y[m, n] (= or +=) sum_k w[n, k] * in(m, k) (* inv_rms(m)) (+ bias[n])
// PRO (host const) picks the input:
//   0: in = x[m, k]
//   1: RMSNorm prologue: in = x[m, k] * nw[k], and the sum is scaled by inv_rms(m) = 1 / sqrt(mean_k x[m, k]^2 + eps).
//      Each 32-lane row group sweeps all of x[m, :] for its dot product anyway, so the sum of squares rides along in
//      the same loads (row group 0's copy is used); no separate norm pass, no xn buffer.
//   2: SiLU-mul prologue over the fused gate|up rows: in = silu(x[m, k]) * x[m, K + k] (x is [M, 2K]).
// EPI (host const): 0 stores y; 1 adds into y (the residual stream: o_proj and down_proj add in place).
// Weights are read with 16-byte loads where the layout allows (gemv_wload*.wgsl: f16 x8 or f32 x4; f16 x4 when
// K % 8 != 0): a workgroup of 256 threads handles ROWS = 8 rows, 32 lanes per row, each lane with 4 loads in
// flight. Requires K % 4 == 0 (checked on the host).

struct Params { M: u32, N: u32, K: u32, hasBias: u32, eps: f32, _a: u32, _b: u32, _c: u32 }
struct W8 { lo: vec4<f32>, hi: vec4<f32> }

const LANES: u32 = 32u;
// MMAX (host const): token rows the accumulators hold, 1 (batch-1 decode: scalar accumulators) or 8.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;   // [M, K/4]; PRO 2: [M, 2K/4] gate | up
// @binding(2): w, [N, K] WT, declared by gemv_wload*.wgsl
@group(0) @binding(3) var<storage, read> nw: array<vec4<f32>>;  // [K/4] norm weight (PRO 1; dummy otherwise)
@group(0) @binding(4) var<storage, read> bias: array<f32>;      // [N] (dummy when hasBias == 0)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;   // [M, N]

var<workgroup> red: array<f32, ROWS * MMAX * LANES>;  // [ROWS, MMAX, LANES] lane partials of the dot products
var<workgroup> redss: array<f32, MMAX * LANES>;       // [MMAX, LANES] lane partials of the sums of squares

const_assert ROWS * LANES == 256u;  // the workgroup size below

fn input4(m: u32, k4: u32, K4: u32) -> vec4<f32> {
  if (PRO == 2u) {
    let g = x[m * 2u * K4 + k4];
    let u = x[m * 2u * K4 + K4 + k4];
    return g / (vec4<f32>(1.0) + exp(-g)) * u;
  }
  return x[m * K4 + k4];
}

// acc / ss: [MMAX] the lane's running dot products and sums of squares, per token row.
fn part(acc: ptr<function, array<f32, MMAX>>, ss: ptr<function, array<f32, MMAX>>, k4: u32, wv: vec4<f32>, K4: u32) {
  var scale = vec4<f32>(1.0);
  if (PRO == 1u) { scale = nw[k4]; }
  for (var m = 0u; m < MMAX; m++) {
    if (m < p.M) {
      let a = input4(m, k4, K4);
      (*acc)[m] += dot(wv, a * scale);
      if (PRO == 1u) { (*ss)[m] += dot(a, a); }
    }
  }
}

fn chunk(acc: ptr<function, array<f32, MMAX>>, ss: ptr<function, array<f32, MMAX>>, c: u32, wv: W8, K4: u32) {
  if (CH == 8u) {
    part(acc, ss, 2u * c, wv.lo, K4);
    part(acc, ss, 2u * c + 1u, wv.hi, K4);
  } else {
    part(acc, ss, c, wv.lo, K4);
  }
}

@compute @workgroup_size(256)
fn gemv_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = lid.x / LANES;
  let lane = lid.x % LANES;
  let n = wg_index(wid, nwg) * ROWS + r;
  let K4 = p.K / 4u;
  let KC = p.K / CH;
  var acc: array<f32, MMAX>;
  var ss: array<f32, MMAX>;
  if (n < p.N) {
    let base = n * KC;
    var c = lane;
    while (c + 3u * LANES < KC) {
      let w0 = wload(base + c);
      let w1 = wload(base + c + LANES);
      let w2 = wload(base + c + 2u * LANES);
      let w3 = wload(base + c + 3u * LANES);
      chunk(&acc, &ss, c, w0, K4);
      chunk(&acc, &ss, c + LANES, w1, K4);
      chunk(&acc, &ss, c + 2u * LANES, w2, K4);
      chunk(&acc, &ss, c + 3u * LANES, w3, K4);
      c += 4u * LANES;
    }
    while (c < KC) {
      chunk(&acc, &ss, c, wload(base + c), K4);
      c += LANES;
    }
  }
  for (var m = 0u; m < MMAX; m++) {
    red[(r * MMAX + m) * LANES + lane] = acc[m];
    if (PRO == 1u && r == 0u) { redss[m * LANES + lane] = ss[m]; }
  }
  workgroupBarrier();
  if (n < p.N && lane < p.M) {
    let o = (r * MMAX + lane) * LANES;
    var s = 0.0;
    for (var l = 0u; l < LANES; l++) { s += red[o + l]; }
    if (PRO == 1u) {
      var t = 0.0;
      for (var l = 0u; l < LANES; l++) { t += redss[lane * LANES + l]; }
      s *= 1.0 / sqrt(t / f32(p.K) + p.eps);
    }
    if (p.hasBias != 0u) { s += bias[n]; }
    let i = lane * p.N + n;
    if (EPI == 1u) { y[i] += s; } else { y[i] = s; }
  }
}

// #include "common.wgsl"
// #include "gemv_wload.wgsl"
// Decode GEMV with fused prologue / epilogue (M <= 8 token rows), f32 accumulation:
//   y[m, n] (= or +=) sum_k w[n, k] * in(m, k) (* inv_rms(m)) (+ bias[n])
// PRO (host const) picks the input:
//   0: in = x[m, k]
//   1: RMSNorm prologue: in = x[m, k] * nw[k], and the sum is scaled by inv_rms(m) = 1 / sqrt(mean_k x[m, k]^2 + eps).
//      Each row group sweeps all of x[m, :] for its dot product anyway, so the sum of squares rides along in the
//      same loads (row group 0's copy is used); no separate norm pass, no xn buffer.
//   2: SiLU-mul prologue over the fused gate|up rows: in = silu(x[m, k]) * x[m, K + k] (x is [M, 2K]).
//   3: RMSNorm of a pre-scaled input: x = r * nw was written by the producer (EPI 2), r (xr) is the raw residual.
//      The dot products read x alone (one input load per chunk instead of PRO 1's two); the sum of squares of r is
//      split over the whole workgroup (thread t takes chunks t, t + WGS, ...) and summed in the final reduction.
// EPI (host const): 0 stores y; 1 adds into y (the residual stream: o_proj and down_proj add in place); 2 adds into y
//   and also writes xg[m, n] = y[m, n] * eg[n] (the next norm's pre-scaled input, for a PRO 3 consumer);
//   3 SiLU-mul pairs over the fused gate|up rows (N = 2F, R = 2): the row group owns gate row j and up row F + j and
//   writes y[m, j] = silu(gate + bias[j]) * (up + bias[F + j]), y being [M, F].
// Weights are read with 16-byte loads where the layout allows (gemv_wload*.wgsl: f16 x8 or f32 x4; f16 x4 when
// K % 8 != 0; int4 x32 / int8 or fp8 x16 with the group's (scale, bias), dequantized in registers: gemv_wload_q.wgsl).
// Shape of the work (host consts, tuned per matrix shape in fused.ts): a workgroup of WGS threads is
// WGS / LANES row groups of LANES lanes; each row group owns R adjacent rows (ROWS = R * WGS / LANES rows per
// workgroup), each lane keeps R * U loads in flight and reads each input chunk once for its R rows (the loop is
// generated: src/backends/webgpu/gemv_gen.ts). Lane partials are summed by a tree in workgroup memory.
// Requires K % 4 == 0 (checked on the host).
// #include "gemv_fused_loop.wgsl"

// nG: groups per row of a quantized matrix (gemv_wload_q.wgsl; unused otherwise)
struct Params { M: u32, N: u32, K: u32, hasBias: u32, eps: f32, nG: u32, _b: u32, _c: u32 }

// MMAX (host const): token rows the accumulators hold, 1 (batch-1 decode: scalar accumulators) or 8.
// WGS, LANES, R, U (host consts): workgroup size, lanes per row group (power of two dividing WGS), rows per row
// group, loads per row in flight.
const GROUPS: u32 = WGS / LANES;
const ROWS: u32 = GROUPS * R;
const RM: u32 = R * MMAX;  // accumulators per lane: [R, MMAX]

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;   // [M, K/4]; PRO 2: [M, 2K/4] gate | up
// @binding(2): w, [N, K] WT (or packed codes), declared by gemv_wload*.wgsl; gemv_wload_q.wgsl also declares
// @binding(9) sb, the (scale, bias) pairs
@group(0) @binding(3) var<storage, read> nw: array<vec4<f32>>;  // [K/4] norm weight (PRO 1; dummy otherwise)
@group(0) @binding(4) var<storage, read> bias: array<f32>;      // [N] (dummy when hasBias == 0)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;   // [M, N]; EPI 3: [M, N/2]
@group(0) @binding(6) var<storage, read> xr: array<vec4<f32>>;  // [M, K/4] raw residual (PRO 3; dummy otherwise)
@group(0) @binding(7) var<storage, read> eg: array<f32>;        // [N] next norm weight (EPI 2; dummy otherwise)
@group(0) @binding(8) var<storage, read_write> xg: array<f32>;  // [M, N] y * eg (EPI 2; dummy otherwise)

var<workgroup> red: array<f32, WGS * R * MMAX>;  // [R * MMAX, GROUPS, LANES] lane partials of the dot products
var<workgroup> redss: array<f32, WGS * MMAX>;    // [MMAX, GROUPS, LANES] partial sums of squares (PRO 1: group 0's)

const_assert WGS % LANES == 0u && (LANES & (LANES - 1u)) == 0u;
const_assert U >= 1u && R >= 1u && R * U <= 8u;
const_assert EPI != 3u || R == 2u;

fn input4(m: u32, k4: u32, K4: u32) -> vec4<f32> {
  if (PRO == 2u) {
    let g = x[m * 2u * K4 + k4];
    let u = x[m * 2u * K4 + K4 + k4];
    return g / (vec4<f32>(1.0) + exp(-g)) * u;
  }
  return x[m * K4 + k4];
}

// Rows a group handles: n0 is its first row (EPI 3: its gate row); rows past the end are clamped to the last one
// (loads stay in bounds; their sums are never written).
fn row_count() -> u32 {
  if (EPI == 3u) { return p.N / 2u; }
  return p.N;
}
fn wrow(n0: u32, j: u32) -> u32 {
  if (EPI == 3u) { return min(n0, p.N / 2u - 1u) + j * (p.N / 2u); }
  return min(n0 + j, p.N - 1u);
}

// inv_rms(m) of the norm prologues (1 otherwise), from the reduced sums of squares (after the tree).
fn norm_scale(m: u32) -> f32 {
  var t = 0.0;
  if (PRO == 1u) { t = redss[m * WGS]; }
  if (PRO == 3u) {
    for (var h = 0u; h < GROUPS; h++) { t += redss[m * WGS + h * LANES]; }
  }
  if (PRO == 1u || PRO == 3u) { return 1.0 / sqrt(t / f32(p.K) + p.eps); }
  return 1.0;
}

@compute @workgroup_size(WGS)
fn gemv_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
  let g = lid.x / LANES;
  let lane = lid.x % LANES;
  // first of the group's R rows (EPI 3: its pair's gate row, one pair per group)
  let n0 = select(wg_index(wid, nwg) * ROWS + g * R, wg_index(wid, nwg) * GROUPS + g, EPI == 3u);
  let K4 = p.K / 4u;
  let KC = p.K / CH;
  var acc: array<f32, RM>;  // [R, MMAX] this lane's partial dot products
  var ss: array<f32, MMAX>;       // this lane's partial sums of squares (norm prologues)
  if (PRO == 3u) {
    for (var k4 = lid.x; k4 < K4; k4 += WGS) {
      for (var m = 0u; m < MMAX; m++) {
        if (m < p.M) {
          let a = xr[m * K4 + k4];
          ss[m] += dot(a, a);
        }
      }
    }
  }
  if (n0 < row_count()) { gemv_rounds(n0, lane, K4, KC, &acc, &ss); }
  for (var i = 0u; i < R * MMAX; i++) { red[i * WGS + lid.x] = acc[i]; }
  let withSs = PRO == 3u || (PRO == 1u && g == 0u);
  if (withSs) {
    for (var m = 0u; m < MMAX; m++) { redss[m * WGS + lid.x] = ss[m]; }
  }
  workgroupBarrier();
  // Tree over the lanes of each group (all groups, rows and token rows at once); lane 0 ends with the sums.
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var i = 0u; i < R * MMAX; i++) {
        if (i % MMAX < p.M) { red[i * WGS + lid.x] += red[i * WGS + lid.x + s]; }
      }
      if (withSs) {
        for (var m = 0u; m < MMAX; m++) {
          if (m < p.M) { redss[m * WGS + lid.x] += redss[m * WGS + lid.x + s]; }
        }
      }
    }
    workgroupBarrier();
  }
  if (EPI == 3u) {
    // Lane m of the group writes token row m of its pair.
    let m = lane;
    if (m < p.M && m < MMAX && n0 < p.N / 2u) {
      let sc = norm_scale(m);
      var gs = red[m * WGS + g * LANES] * sc;
      var us = red[(MMAX + m) * WGS + g * LANES] * sc;
      if (p.hasBias != 0u) {
        gs += bias[n0];
        us += bias[n0 + p.N / 2u];
      }
      y[m * (p.N / 2u) + n0] = gs / (1.0 + exp(-gs)) * us;
    }
    return;
  }
  // Lane l of the group writes (row j, token row m) for i = j * MMAX + m = l, l + LANES, ... with m < M.
  for (var i = lane; i < R * MMAX; i += LANES) {
    let j = i / MMAX;
    let m = i % MMAX;
    let n = n0 + j;
    if (m < p.M && n < p.N) {
      var s = red[i * WGS + g * LANES] * norm_scale(m);
      if (p.hasBias != 0u) { s += bias[n]; }
      let o = m * p.N + n;
      if (EPI == 0u) {
        y[o] = s;
      } else {
        let v = y[o] + s;
        y[o] = v;
        if (EPI == 2u) { xg[o] = v * eg[n]; }
      }
    }
  }
}

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
// EPI (host const): 0 stores y; 1 adds into y (the residual stream: o_proj and down_proj add in place).
// Weights are read with 16-byte loads where the layout allows (gemv_wload*.wgsl: f16 x8 or f32 x4; f16 x4 when
// K % 8 != 0). Shape of the work (host consts, tuned per matrix shape in fused.ts): a workgroup of WGS threads is
// WGS / LANES row groups of LANES lanes; each row group owns R adjacent rows (ROWS = R * WGS / LANES rows per
// workgroup), each lane keeps R * U loads in flight and reads each input chunk once for its R rows (the loop is
// generated: src/backends/webgpu/gemv_gen.ts). Lane partials are summed by a tree in workgroup memory.
// Requires K % 4 == 0 (checked on the host).
// #include "gemv_fused_loop.wgsl"

struct Params { M: u32, N: u32, K: u32, hasBias: u32, eps: f32, _a: u32, _b: u32, _c: u32 }
struct W8 { lo: vec4<f32>, hi: vec4<f32> }

// MMAX (host const): token rows the accumulators hold, 1 (batch-1 decode: scalar accumulators) or 8.
// WGS, LANES, R, U (host consts): workgroup size, lanes per row group (power of two dividing WGS), rows per row
// group, loads per row in flight.
const GROUPS: u32 = WGS / LANES;
const ROWS: u32 = GROUPS * R;
const RM: u32 = R * MMAX;  // accumulators per lane: [R, MMAX]

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;   // [M, K/4]; PRO 2: [M, 2K/4] gate | up
// @binding(2): w, [N, K] WT, declared by gemv_wload*.wgsl
@group(0) @binding(3) var<storage, read> nw: array<vec4<f32>>;  // [K/4] norm weight (PRO 1; dummy otherwise)
@group(0) @binding(4) var<storage, read> bias: array<f32>;      // [N] (dummy when hasBias == 0)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;   // [M, N]

var<workgroup> red: array<f32, WGS * R * MMAX>;  // [R * MMAX, GROUPS, LANES] lane partials of the dot products
var<workgroup> redss: array<f32, LANES * MMAX>;  // [MMAX, LANES] lane partials of the sums of squares (group 0's)

const_assert WGS % LANES == 0u && (LANES & (LANES - 1u)) == 0u;
const_assert U >= 1u && R >= 1u && R * U <= 8u;

fn input4(m: u32, k4: u32, K4: u32) -> vec4<f32> {
  if (PRO == 2u) {
    let g = x[m * 2u * K4 + k4];
    let u = x[m * 2u * K4 + K4 + k4];
    return g / (vec4<f32>(1.0) + exp(-g)) * u;
  }
  return x[m * K4 + k4];
}

@compute @workgroup_size(WGS)
fn gemv_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
  let g = lid.x / LANES;
  let lane = lid.x % LANES;
  let n0 = wg_index(wid, nwg) * ROWS + g * R;  // first of the group's R rows
  let K4 = p.K / 4u;
  let KC = p.K / CH;
  var acc: array<f32, RM>;  // [R, MMAX] this lane's partial dot products
  var ss: array<f32, MMAX>;       // this lane's partial sums of squares (norm prologue)
  if (n0 < p.N) { gemv_rounds(n0, lane, K4, KC, &acc, &ss); }
  for (var i = 0u; i < R * MMAX; i++) { red[i * WGS + lid.x] = acc[i]; }
  if (PRO == 1u && g == 0u) {
    for (var m = 0u; m < MMAX; m++) { redss[m * LANES + lane] = ss[m]; }
  }
  workgroupBarrier();
  // Tree over the lanes of each group (all groups, rows and token rows at once); lane 0 ends with the sums.
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var i = 0u; i < R * MMAX; i++) {
        if (i % MMAX < p.M) { red[i * WGS + lid.x] += red[i * WGS + lid.x + s]; }
      }
      if (PRO == 1u && g == 0u) {
        for (var m = 0u; m < MMAX; m++) {
          if (m < p.M) { redss[m * LANES + lane] += redss[m * LANES + lane + s]; }
        }
      }
    }
    workgroupBarrier();
  }
  // Lane l of the group writes (row j, token row m) for i = j * MMAX + m = l, l + LANES, ... with m < M.
  for (var i = lane; i < R * MMAX; i += LANES) {
    let j = i / MMAX;
    let m = i % MMAX;
    let n = n0 + j;
    if (m < p.M && n < p.N) {
      var s = red[i * WGS + g * LANES];
      if (PRO == 1u) { s *= 1.0 / sqrt(redss[m * LANES] / f32(p.K) + p.eps); }
      if (p.hasBias != 0u) { s += bias[n]; }
      let o = m * p.N + n;
      if (EPI == 1u) { y[o] += s; } else { y[o] = s; }
    }
  }
}

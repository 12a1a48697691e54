// #include "common.wgsl"
// #include "gemv_reduce.wgsl"
// GEMV for decode (M <= MMAX tokens): y[M, N] = x[M, K] · w[N, K]^T (+ bias[N]), f32 accumulation.
// Decode is memory-bound on w, so each weight row is streamed once with wide loads: a workgroup of 256 threads
// handles ROWS = 8 rows, 32 lanes per row; each lane keeps 4 independent vec4<WT> loads in flight (8 bytes each for f16,
// 16 for f32) and applies them to all M token rows. Lane partials meet in workgroup memory; one barrier.
// Requires K % 4 == 0 (checked on the host).

struct Params { M: u32, N: u32, K: u32, hasBias: u32 }

// ROWS (rows per workgroup) comes from the host (kernels.ts GEMV_ROWS), which sizes the grid with it; LANES, MMAX
// and the lane-partial buffer come from gemv_reduce.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;  // [M, K/4] activations
@group(0) @binding(2) var<storage, read> w: array<vec4<WT>>;   // [N, K/4] weights
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [N] (dummy when hasBias == 0)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // [M, N]

@compute @workgroup_size(256)
fn gemv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = lid.x / LANES;
  let lane = lid.x % LANES;
  let n = wg_index(wid, nwg) * ROWS + r;
  let K4 = p.K / 4u;
  var acc: array<f32, MMAX>;
  if (n < p.N) {
    let wrow = n * K4;
    var k4 = lane;
    while (k4 + 3u * LANES < K4) {
      let w0 = vec4<f32>(w[wrow + k4]);
      let w1 = vec4<f32>(w[wrow + k4 + LANES]);
      let w2 = vec4<f32>(w[wrow + k4 + 2u * LANES]);
      let w3 = vec4<f32>(w[wrow + k4 + 3u * LANES]);
      for (var m = 0u; m < MMAX; m++) {
        if (m < p.M) {
          let xb = m * K4 + k4;
          acc[m] += dot(w0, x[xb]) + dot(w1, x[xb + LANES]) + dot(w2, x[xb + 2u * LANES]) +
            dot(w3, x[xb + 3u * LANES]);
        }
      }
      k4 += 4u * LANES;
    }
    while (k4 < K4) {
      let w0 = vec4<f32>(w[wrow + k4]);
      for (var m = 0u; m < MMAX; m++) {
        if (m < p.M) { acc[m] += dot(w0, x[m * K4 + k4]); }
      }
      k4 += LANES;
    }
  }
  gemv_reduce(acc, r, lane, n);
}

// #include "common.wgsl"
// #include "gemm_tile.wgsl"
// Tiled GEMM for prefill: y[M, N] = x[M, K] · w[N, K]^T (+ bias[N]), f32 accumulation, on gemm_tile.wgsl's 64x64
// tiles; each thread loads one vec4 of x and one of w per k step. Requires K % 4 == 0 (checked on the host).

struct Params { M: u32, N: u32, K: u32, hasBias: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;  // [M, K/4] activations
@group(0) @binding(2) var<storage, read> w: array<vec4<WT>>;   // [N, K/4] weights, row-major as HF stores them
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [N] (dummy when hasBias == 0)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // [M, N]

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
    tile_stage(lr, lk, xv, wv);
    workgroupBarrier();
    tile_accumulate(lid, &acc);
    workgroupBarrier();
  }
  tile_store(m0, n0, lid, acc);
}

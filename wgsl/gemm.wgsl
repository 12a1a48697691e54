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

fn load_w(n: u32, k4: u32) -> vec4<f32> {
  return vec4<f32>(w[n * (p.K / 4u) + k4]);
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  tile_gemm(wid, lid, li);
}

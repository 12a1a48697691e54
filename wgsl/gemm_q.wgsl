// #include "common.wgsl"
// #include "qweight.wgsl"
// #include "gemm_tile.wgsl"
// Tiled GEMM for prefill with int8/int4 (or fp8 e4m3, FP8 1) weights: y[M, N] = x[M, K] · W[N, K]^T (+ bias[N]),
// f32 accumulation. The tiling is gemm_tile.wgsl's, shared with gemm.wgsl; only the weight load differs: each thread
// reads the u32 word holding its 4 weights and the group's (scale, bias), and dequantizes them (qweight.wgsl dq4)
// before staging.
// Requires K % 4 == 0 (checked on the host); gw = words per group (Kw when one group covers K).

struct Params { M: u32, N: u32, K: u32, hasBias: u32, Kw: u32, gw: u32, nG: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;   // [M, K/4] f32 activations
@group(0) @binding(2) var<storage, read> w: array<u32>;         // [N, Kw] u32 packed q / e4m3 codes, row-major
@group(0) @binding(3) var<storage, read> sb: array<vec2<f32>>;  // [N, nG] f32 (scale, bias); fp8 (256 s, 0)
@group(0) @binding(4) var<storage, read> bias: array<f32>;      // [N] f32 (dummy when hasBias == 0)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;   // [M, N] f32

fn load_w(n: u32, k4: u32) -> vec4<f32> {
  let kw = k4 / V4;
  return dq4(w[n * p.Kw + kw], k4 % V4, sb[n * p.nG + kw / p.gw]);
}

@compute @workgroup_size(16, 16)
fn gemm_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
  tile_gemm(wid, lid, li);
}

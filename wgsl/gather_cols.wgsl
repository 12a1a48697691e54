// #include "common.wgsl"
// Act-order input gather (GPTQ g_idx): y[m, k'] = x[m, perm[k']] for the channels of a QuantMatrix whose input
// channels were sorted by group at packing (quant/pack.ts sortActOrder), so that the quantized GEMV / GEMM that reads y
// sees its packed channel order.

struct Params { M: u32, K: u32, _a: u32, _b: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // [M, K] original channel order
@group(0) @binding(2) var<storage, read> perm: array<i32>;        // [K] original channel of packed channel k'
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // [M, K] packed channel order

@compute @workgroup_size(256)
fn gather_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wg_index(wid, nwg) * 256u + lid.x;
  if (i >= p.M * p.K) { return; }
  let m = i / p.K;
  y[i] = x[m * p.K + u32(perm[i % p.K])];
}

// #include "common.wgsl"
// SiLU-and-multiply over the fused gate/up projection: act[t, i] = silu(gu[t, i]) * gu[t, F + i].

struct Params { T: u32, F: u32, _a: u32, _b: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gu: array<f32>;          // [T, 2F]: gate columns, then up columns
@group(0) @binding(2) var<storage, read_write> act: array<f32>;   // [T, F]

@compute @workgroup_size(256)
fn silu_mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wg_index(wid, nwg) * 256u + lid.x;
  if (i >= p.T * p.F) { return; }
  let t = i / p.F;
  let c = i % p.F;
  let g = gu[t * 2u * p.F + c];
  let u = gu[t * 2u * p.F + p.F + c];
  act[i] = g / (1.0 + exp(-g)) * u;
}

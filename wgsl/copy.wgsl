// #include "common.wgsl"
// Copy-bandwidth probe: dst = src, 16 bytes per invocation. The benchmarks' roofline.

struct Params { n: u32, _a: u32, _b: u32, _c: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;        // [n] 16-byte words
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;  // [n]

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wg_index(wid, nwg) * 256u + lid.x;
  if (i >= p.n) { return; }
  dst[i] = src[i];
}

// #include "common.wgsl"
// RMSNorm with the residual add fused: for output row i, with s = (flags & GATHER) ? idx[i] : i,
//   if (flags & RESIDUAL) x[s] += r[s]            (the residual stream is updated in place)
//   y[i] = x[s] / sqrt(mean(x[s]^2) + eps) * w
// GATHER is used by the final norm, which runs only on the rows that need logits. One workgroup per row.

struct Params { n: u32, h: u32, eps: f32, flags: u32 }

const RESIDUAL: u32 = 1u;
const GATHER: u32 = 2u;
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;  // [rows, h] residual stream
@group(0) @binding(2) var<storage, read> r: array<f32>;        // [rows, h] residual to add (dummy without RESIDUAL)
@group(0) @binding(3) var<storage, read> w: array<f32>;        // [h] norm weight
@group(0) @binding(4) var<storage, read> idx: array<u32>;      // [n] source rows (dummy without GATHER)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;  // [n, h] normalised rows

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(256)
fn rmsnorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wid.x;
  var src = row;
  if ((p.flags & GATHER) != 0u) { src = idx[row]; }
  let base = src * p.h;
  var ss = 0.0;
  for (var i = lid.x; i < p.h; i += WG) {
    var v = x[base + i];
    if ((p.flags & RESIDUAL) != 0u) {
      v += r[base + i];
      x[base + i] = v;
    }
    ss += v * v;
  }
  red[lid.x] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid.x < s) { red[lid.x] += red[lid.x + s]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(red[0] / f32(p.h) + p.eps);
  for (var i = lid.x; i < p.h; i += WG) {
    y[row * p.h + i] = (x[base + i] * inv) * w[i];
  }
}

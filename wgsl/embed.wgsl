// #include "common.wgsl"
// Embedding gather: x[t, :] = table[ids[t], :]. One workgroup per token.

struct Params { n: u32, h: u32, vocab: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<i32>;       // [n] token ids (checked < vocab on the host)
@group(0) @binding(2) var<storage, read> table: array<WT>;      // [vocab, h] embedding rows
@group(0) @binding(3) var<storage, read_write> x: array<f32>;   // [n, h] residual stream

@compute @workgroup_size(64)
fn embed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = wid.x;
  if (t >= p.n) { return; }
  let id = min(u32(ids[t]), p.vocab - 1u);
  for (var i = lid.x; i < p.h; i += 64u) {
    x[t * p.h + i] = f32(table[id * p.h + i]);
  }
}

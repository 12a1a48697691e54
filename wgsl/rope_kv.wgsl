// #include "common.wgsl"
// Per-head q/k RMSNorm (Qwen3, optional), RoPE, and the paged KV write, fused: one workgroup per (head, token)
// over the fused qkv projection. Query heads are normed and rotated in place; key heads are normed, rotated, kept
// in place and written to the K cache at the token's slot; value heads are copied to the V cache.
// RoPE is half-split (rotate_half) with a host-built (cos, sin) table, so every scaling type is one code path.
// KV_WRITE (host const) is 0 for the int8/int4 cache: kv_write_q.wgsl then quantizes the K and V heads of qkv into
// the cache (kc / vc here are unused stand-ins).

struct Params { T: u32, numHeads: u32, kvHeads: u32, headDim: u32, blockSize: u32, qkNorm: u32, eps: f32, _pad: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> qkv: array<f32>;  // [T, (numHeads + 2 kvHeads) * headDim]: q | k | v
@group(0) @binding(2) var<storage, read> pos: array<i32>;        // [T] absolute positions (< table rows)
@group(0) @binding(3) var<storage, read> slots: array<i32>;      // [T] block * blockSize + offset; < 0: no write
@group(0) @binding(4) var<storage, read> rope: array<vec2<f32>>; // [maxPositions, headDim / 2] (cos, sin)
@group(0) @binding(5) var<storage, read> qNorm: array<f32>;      // [headDim] (dummy unless qkNorm)
@group(0) @binding(6) var<storage, read> kNorm: array<f32>;      // [headDim] (dummy unless qkNorm)
@group(0) @binding(7) var<storage, read_write> kc: array<KT>;    // [numBlocks, kvHeads, blockSize, headDim]
@group(0) @binding(8) var<storage, read_write> vc: array<KT>;    // [numBlocks, kvHeads, blockSize, headDim]

var<workgroup> red: array<f32, WG>;

fn cache_index(slot: i32, kvh: u32, i: u32) -> u32 {
  let s = u32(slot);
  return (((s / p.blockSize) * p.kvHeads + kvh) * p.blockSize + s % p.blockSize) * p.headDim + i;
}

@compute @workgroup_size(64)
fn rope_kv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let head = wid.x;
  let t = wid.y;
  let d = p.headDim;
  let half = d / 2u;
  let nq = p.numHeads;
  let nk = p.kvHeads;
  let base = (t * (nq + 2u * nk) + head) * d;
  let isV = head >= nq + nk;
  let slot = slots[t];
  var inv = 1.0;
  if (!isV && p.qkNorm != 0u) {
    var ss = 0.0;
    for (var i = lid.x; i < d; i += WG) {
      let v = qkv[base + i];
      ss += v * v;
    }
    red[lid.x] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (lid.x < s) { red[lid.x] += red[lid.x + s]; }
      workgroupBarrier();
    }
    inv = 1.0 / sqrt(red[0] / f32(d) + p.eps);
  }
  if (isV) {
    if (KV_WRITE != 0u && slot >= 0) {
      for (var i = lid.x; i < d; i += WG) { vc[cache_index(slot, head - nq - nk, i)] = KT(qkv[base + i]); }
    }
    return;
  }
  let row = u32(pos[t]) * half;
  for (var i = lid.x; i < half; i += WG) {
    var a = qkv[base + i];
    var b = qkv[base + half + i];
    if (p.qkNorm != 0u) {
      if (head < nq) {
        a = (a * inv) * qNorm[i];
        b = (b * inv) * qNorm[half + i];
      } else {
        a = (a * inv) * kNorm[i];
        b = (b * inv) * kNorm[half + i];
      }
    }
    let cs = rope[row + i];
    let ra = a * cs.x - b * cs.y;
    let rb = b * cs.x + a * cs.y;
    qkv[base + i] = ra;
    qkv[base + half + i] = rb;
    if (KV_WRITE != 0u && head >= nq && slot >= 0) {
      kc[cache_index(slot, head - nq, i)] = KT(ra);
      kc[cache_index(slot, head - nq, half + i)] = KT(rb);
    }
  }
}

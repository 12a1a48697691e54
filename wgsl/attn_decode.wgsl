// #include "common.wgsl"
// #include "kv_load.wgsl"
// Paged attention for decode: one query token per item (a sequence whose step adds one token), over that
// sequence's cached keys through its block table. Long contexts are split into partitions of p.partLen keys
// (split-K, grid z); each workgroup writes its partial (max, sum, acc) and attn_reduce combines them. When the
// host finds one partition is enough for every item (p.direct == 1) the result is written straight to `out`.
// Workgroup of 128 threads, keys in chunks of 128: each thread scores one key (HEAD_DIM / 4 vec4 loads of its K
// row, unrolled), one max-reduction per chunk, then thread (group g, column c) accumulates vec4 column c of the V
// rows of keys g, g + G, ... (G = 128 / (HEAD_DIM / 4) key groups), so V is read with vec4 loads and no thread
// walks the whole chunk. Group partials and the softmax sum are reduced once, at the end.
// GQA: head h reads kv head h / (numHeads / kvHeads). HEAD_DIM % 4 == 0, HEAD_DIM <= 256 (checked on the host).
// Cache loads go through k4 / v4 of kv_load.wgsl (dense KT) or kv_load_q.wgsl (int8/int4, dequantized on load).

struct Params {
  nItems: u32, numHeads: u32, kvHeads: u32, headDim: u32,
  blockSize: u32, maxBlocks: u32, qStride: u32, partLen: u32,
  maxSplits: u32, direct: u32, window: u32, scale: f32,
}

const WG: u32 = 128u;
const D4: u32 = HEAD_DIM / 4u;
const G: u32 = WG / D4;  // key groups of the V phase

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;         // [T, qStride]: query head h at h * headDim
@group(0) @binding(2) var<storage, read> kc: array<KV>;           // K cache, layout of the kv_load include
@group(0) @binding(3) var<storage, read> vc: array<KV>;           // V cache, same layout
@group(0) @binding(4) var<storage, read> bt: array<i32>;          // [B, maxBlocks] block tables
@group(0) @binding(5) var<storage, read> items: array<vec2<u32>>; // [nItems] (token, sequence)
@group(0) @binding(6) var<storage, read> pos: array<i32>;         // [T] positions
@group(0) @binding(7) var<storage, read_write> out: array<f32>;   // [T, numHeads * headDim]
@group(0) @binding(8) var<storage, read_write> part: array<f32>;  // [nItems, numHeads, maxSplits, headDim + 2]

var<workgroup> qs: array<vec4<f32>, D4>;    // the query, pre-scaled
var<workgroup> sc: array<f32, WG>;          // probabilities of the chunk's keys
var<workgroup> rows: array<u32, WG>;        // cache row ((block * kvHeads + kvh) * blockSize + offset) of each key
var<workgroup> red: array<f32, WG>;
var<workgroup> accs: array<vec4<f32>, WG>;  // [G, D4] V partials of the key groups, reduced at the end
var<workgroup> info: vec4<u32>;             // (token, sequence, first key, end key) of this split

fn first_key(p0: u32) -> u32 {
  if (p.window > 0u && p0 + 1u > p.window) { return p0 + 1u - p.window; }
  return 0u;
}

fn reduce(v: f32, lid: u32, isMax: bool) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      if (isMax) { red[lid] = max(red[lid], red[lid + s]); } else { red[lid] += red[lid + s]; }
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(128)
fn attn_decode(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let lid = lid3.x;
  let item = wid.x;
  let h = wid.y;
  let split = wid.z;
  if (lid == 0u) {
    let it = items[item];
    let p0 = u32(pos[it.x]);
    let start = first_key(p0) + split * p.partLen;
    info = vec4<u32>(it.x, it.y, start, min(start + p.partLen, p0 + 1u));
  }
  let inf = workgroupUniformLoad(&info);
  if (inf.z >= inf.w) { return; }  // no keys in this split
  let t = inf.x;
  let kvh = h / (p.numHeads / p.kvHeads);
  if (lid < D4) {
    let o = t * p.qStride + h * HEAD_DIM + 4u * lid;
    qs[lid] = vec4<f32>(qkv[o], qkv[o + 1u], qkv[o + 2u], qkv[o + 3u]) * p.scale;
  }
  workgroupBarrier();
  let g = lid / D4;  // V phase: key group and vec4 column of this thread
  let c = lid % D4;
  var m = NEG_BIG;
  var l = 0.0;  // this thread's share of the softmax sum
  var acc = vec4<f32>(0.0);
  for (var j0 = inf.z; j0 < inf.w; j0 += WG) {
    let j = j0 + lid;
    var s = NEG_BIG;
    if (j < inf.w) {
      let blk = u32(bt[inf.y * p.maxBlocks + j / p.blockSize]);
      let row = (blk * p.kvHeads + kvh) * p.blockSize + j % p.blockSize;
      rows[lid] = row;
      var dv = vec4<f32>(0.0);
      for (var i = 0u; i < D4; i++) { dv += qs[i] * k4(row, i); }
      s = dv.x + dv.y + dv.z + dv.w;
    }
    let mNew = max(m, reduce(s, lid, true));
    let alpha = exp(m - mNew);
    var pj = 0.0;
    if (j < inf.w) { pj = exp(s - mNew); }
    sc[lid] = pj;
    l = l * alpha + pj;
    m = mNew;
    acc *= alpha;
    workgroupBarrier();  // publish sc and rows
    let n = min(WG, inf.w - j0);
    if (g < G) {
      for (var jj = g; jj < n; jj += G) { acc += sc[jj] * v4(rows[jj], c); }
    }
    workgroupBarrier();  // sc and rows are rewritten by the next chunk
  }
  let lsum = reduce(l, lid, false);
  accs[lid] = acc;
  workgroupBarrier();
  let pb = ((item * p.numHeads + h) * p.maxSplits + split) * (HEAD_DIM + 2u);
  if (lid < D4) {
    var a = vec4<f32>(0.0);
    for (var gg = 0u; gg < G; gg++) { a += accs[gg * D4 + lid]; }
    if (p.direct != 0u) {
      let o = t * p.numHeads * HEAD_DIM + h * HEAD_DIM + 4u * lid;
      let v = a / lsum;
      out[o] = v.x;
      out[o + 1u] = v.y;
      out[o + 2u] = v.z;
      out[o + 3u] = v.w;
    } else {
      let o = pb + 2u + 4u * lid;
      part[o] = a.x;
      part[o + 1u] = a.y;
      part[o + 2u] = a.z;
      part[o + 3u] = a.w;
    }
  }
  if (lid == 0u && p.direct == 0u) {
    part[pb] = m;
    part[pb + 1u] = lsum;
  }
}

// Combines the split-K partials of attn_decode: one workgroup per (item, head), threads over dims.
@compute @workgroup_size(64)
fn attn_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let item = wid.x;
  let h = wid.y;
  let d = HEAD_DIM;
  let it = items[item];
  let p0 = u32(pos[it.x]);
  let n = (p0 + 1u - first_key(p0) + p.partLen - 1u) / p.partLen;
  let pb = (item * p.numHeads + h) * p.maxSplits * (d + 2u);
  var mx = NEG_BIG;
  for (var s = 0u; s < n; s++) { mx = max(mx, part[pb + s * (d + 2u)]); }
  var l = 0.0;
  for (var s = 0u; s < n; s++) { l += part[pb + s * (d + 2u) + 1u] * exp(part[pb + s * (d + 2u)] - mx); }
  for (var dim = lid3.x; dim < d; dim += 64u) {
    var a = 0.0;
    for (var s = 0u; s < n; s++) {
      let o = pb + s * (d + 2u);
      a += part[o + 2u + dim] * exp(part[o] - mx);
    }
    out[it.x * p.numHeads * d + h * d + dim] = a / l;
  }
}

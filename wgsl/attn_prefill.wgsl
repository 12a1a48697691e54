// #include "common.wgsl"
// #include "kv_load.wgsl"
// Causal paged attention for prefill chunks (flash-attention style online softmax). A workgroup takes a tile of up
// to 16 consecutive query tokens of one sequence and one query head; 4 lanes per query each own HEAD_DIM / 4 dims
// of q and of the output in registers. Keys [kStart, kEnd) of the tile, which include every earlier chunk already
// in the cache, stream through workgroup memory KV_TILE rows at a time via the block table; each query masks keys
// after its own position (and before its sliding window). GQA: head h reads kv head h / (numHeads / kvHeads).
// HEAD_DIM and KV_TILE are compile-time constants (HEAD_DIM % 4 == 0). Cache loads go through k4 / v4 of
// kv_load.wgsl (dense KT) or kv_load_q.wgsl (int8/int4, dequantized on load), 4 values at a time.

struct Params {
  nTiles: u32, numHeads: u32, kvHeads: u32, blockSize: u32,
  maxBlocks: u32, qStride: u32, window: u32, scale: f32,
}

const QT: u32 = 16u;        // queries per tile
const LANES: u32 = 4u;      // threads per query
const DL: u32 = HEAD_DIM / LANES;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;         // [T, qStride]: query head h at h * HEAD_DIM
@group(0) @binding(2) var<storage, read> kc: array<KV>;           // K cache, layout of the kv_load include
@group(0) @binding(3) var<storage, read> vc: array<KV>;           // V cache, same layout
@group(0) @binding(4) var<storage, read> bt: array<i32>;          // [B, maxBlocks] block tables
@group(0) @binding(5) var<storage, read> tiles: array<vec4<u32>>; // [nTiles, 2]: (seq, t0, count, 0), (kStart, kEnd, 0, 0)
@group(0) @binding(6) var<storage, read> pos: array<i32>;         // [T] positions
@group(0) @binding(7) var<storage, read_write> out: array<f32>;   // [T, numHeads * HEAD_DIM]

var<workgroup> ks: array<f32, KV_TILE * HEAD_DIM>;       // [KV_TILE, HEAD_DIM] keys of the current tile
var<workgroup> vs: array<f32, KV_TILE * HEAD_DIM>;       // [KV_TILE, HEAD_DIM] values
var<workgroup> partial: array<f32, QT * LANES * KV_TILE>; // [query, lane, key] partial dot products
var<workgroup> tinfo: array<vec4<u32>, 2>;

@compute @workgroup_size(64)
fn attn_prefill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let lid = lid3.x;
  let h = wid.y;
  if (lid == 0u) {
    tinfo[0] = tiles[2u * wid.x];
    tinfo[1] = tiles[2u * wid.x + 1u];
  }
  let ti = workgroupUniformLoad(&tinfo);
  let seq = ti[0].x;
  let kStart = ti[1].x;
  let kEnd = ti[1].y;
  let qi = lid / LANES;
  let lane = lid % LANES;
  let valid = qi < ti[0].z;
  let t = ti[0].y + qi;
  var p0 = 0u;
  var first = 0u;
  var q: array<f32, DL>;
  var acc: array<f32, DL>;
  if (valid) {
    p0 = u32(pos[t]);
    if (p.window > 0u && p0 + 1u > p.window) { first = p0 + 1u - p.window; }
    for (var i = 0u; i < DL; i++) { q[i] = qkv[t * p.qStride + h * HEAD_DIM + lane * DL + i] * p.scale; }
  }
  let kvh = h / (p.numHeads / p.kvHeads);
  var m = NEG_BIG;
  var l = 0.0;
  for (var j0 = kStart; j0 < kEnd; j0 += KV_TILE) {
    for (var e4 = lid; e4 < KV_TILE * HEAD_DIM / 4u; e4 += 64u) {
      let j = j0 + e4 / (HEAD_DIM / 4u);
      var kq = vec4<f32>(0.0);
      var vq = vec4<f32>(0.0);
      if (j < kEnd) {
        let blk = u32(bt[seq * p.maxBlocks + j / p.blockSize]);
        let row = (blk * p.kvHeads + kvh) * p.blockSize + j % p.blockSize;
        kq = k4(row, e4 % (HEAD_DIM / 4u));
        vq = v4(row, e4 % (HEAD_DIM / 4u));
      }
      let e = 4u * e4;
      ks[e] = kq.x;
      ks[e + 1u] = kq.y;
      ks[e + 2u] = kq.z;
      ks[e + 3u] = kq.w;
      vs[e] = vq.x;
      vs[e + 1u] = vq.y;
      vs[e + 2u] = vq.z;
      vs[e + 3u] = vq.w;
    }
    workgroupBarrier();
    for (var jj = 0u; jj < KV_TILE; jj++) {
      var s = 0.0;
      for (var i = 0u; i < DL; i++) { s += q[i] * ks[jj * HEAD_DIM + lane * DL + i]; }
      partial[lid * KV_TILE + jj] = s;
    }
    workgroupBarrier();
    var sj: array<f32, KV_TILE>;
    var mx = m;
    for (var jj = 0u; jj < KV_TILE; jj++) {
      let j = j0 + jj;
      sj[jj] = NEG_BIG;
      if (valid && j <= p0 && j >= first && j < kEnd) {
        let b = qi * LANES * KV_TILE + jj;
        sj[jj] = partial[b] + partial[b + KV_TILE] + partial[b + 2u * KV_TILE] + partial[b + 3u * KV_TILE];
        mx = max(mx, sj[jj]);
      }
    }
    let alpha = exp(m - mx);
    l *= alpha;
    for (var i = 0u; i < DL; i++) { acc[i] *= alpha; }
    for (var jj = 0u; jj < KV_TILE; jj++) {
      if (sj[jj] > NEG_BIG) {
        let pj = exp(sj[jj] - mx);
        l += pj;
        for (var i = 0u; i < DL; i++) { acc[i] += pj * vs[jj * HEAD_DIM + lane * DL + i]; }
      }
    }
    m = mx;
    workgroupBarrier();  // ks, vs and partial are rewritten by the next key tile
  }
  if (valid) {
    let o = t * p.numHeads * HEAD_DIM + h * HEAD_DIM + lane * DL;
    for (var i = 0u; i < DL; i++) { out[o + i] = acc[i] / l; }
  }
}

// #include "common.wgsl"
// Token selection on the GPU, one workgroup per logits row, so only the chosen ids are read back.
//   temperature < 1e-5: argmax (ties: lowest id).
//   otherwise: w_i = exp((l_i - max) / temperature); top-k keeps ids whose logit >= the k-th largest; top-p keeps
//   the smallest set of most likely survivors whose mass reaches topP (ties at the edge kept); then the id where
//   the running mass in id order first exceeds u * kept mass, u being the row's uniform draw in [0, 1) from the
//   host (the same counter-based draw the host sampler would use, src/sampling/rng.ts).
// Thresholds are found by bisection over the order-preserving u32 key of the logits (32 passes each), which is
// exact and needs no sort. Rows needing penalties, min-p, seeds or logprobs never come here (see sampling.ts).

struct Params { rows: u32, vocab: u32, row0: u32, _pad: u32 }
struct RowCfg { temperature: f32, topK: u32, topP: f32, u: f32 }

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;    // [row0 + rows, vocab]; rows row0.. are sampled here
@group(0) @binding(2) var<storage, read> cfg: array<RowCfg>;    // [rows] sampling settings and draw of each row
@group(0) @binding(3) var<storage, read_write> ids: array<i32>; // [rows] chosen token ids

var<workgroup> redf: array<f32, WG>;
var<workgroup> redu: array<u32, WG>;
var<workgroup> rowCfg: RowCfg;
var<workgroup> chosen: atomic<u32>;

// Order-preserving map from f32 to u32 (larger float, larger key).
fn okey(f: f32) -> u32 {
  let b = bitcast<u32>(f);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn sum_f(v: f32, lid: u32) -> f32 {
  redf[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { redf[lid] += redf[lid + s]; }
    workgroupBarrier();
  }
  let r = redf[0];
  workgroupBarrier();
  return r;
}

fn sum_u(v: u32, lid: u32) -> u32 {
  redu[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { redu[lid] += redu[lid + s]; }
    workgroupBarrier();
  }
  let r = redu[0];
  workgroupBarrier();
  return r;
}

// (max value, lowest index holding it) over the workgroup.
fn argmax_wg(v: f32, i: u32, lid: u32) -> u32 {
  redf[lid] = v;
  redu[lid] = i;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ov = redf[lid + s];
      let oi = redu[lid + s];
      if (ov > redf[lid] || (ov == redf[lid] && oi < redu[lid])) {
        redf[lid] = ov;
        redu[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  let r = redu[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(256)
fn sample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let lid = lid3.x;
  let r = wid.x;
  let V = p.vocab;
  let base = (p.row0 + r) * V;
  if (lid == 0u) {
    rowCfg = cfg[r];
    atomicStore(&chosen, 0xffffffffu);
  }
  let c = workgroupUniformLoad(&rowCfg);
  // Greedy, and the max logit every other path needs.
  var bv = NEG_BIG;
  var bi = 0xffffffffu;
  for (var i = lid; i < V; i += WG) {
    let v = logits[base + i];
    if (v > bv) { bv = v; bi = i; }
  }
  let top = argmax_wg(bv, bi, lid);
  if (c.temperature < 1e-5) {
    if (lid == 0u) { ids[r] = i32(top); }
    return;
  }
  let lmax = logits[base + top];
  let invT = 1.0 / c.temperature;
  // top-k: the largest key with at least k logits at or above it.
  var kth = 0u;
  if (c.topK > 0u && c.topK < V) {
    for (var b = 0u; b < 32u; b++) {
      let cand = kth | (0x80000000u >> b);
      var n = 0u;
      for (var i = lid; i < V; i += WG) { n += select(0u, 1u, okey(logits[base + i]) >= cand); }
      if (sum_u(n, lid) >= c.topK) { kth = cand; }
    }
  }
  // top-p: the largest key whose survivors at or above it still hold topP of the mass.
  var thr = kth;
  if (c.topP < 1.0) {
    var z = 0.0;
    for (var i = lid; i < V; i += WG) {
      let v = logits[base + i];
      if (okey(v) >= kth) { z += exp((v - lmax) * invT); }
    }
    let stop = c.topP * sum_f(z, lid);
    var tau = 0u;
    for (var b = 0u; b < 32u; b++) {
      let cand = tau | (0x80000000u >> b);
      let lo = max(cand, kth);
      var mass = 0.0;
      for (var i = lid; i < V; i += WG) {
        let v = logits[base + i];
        if (okey(v) >= lo) { mass += exp((v - lmax) * invT); }
      }
      if (sum_f(mass, lid) >= stop) { tau = cand; }
    }
    thr = max(tau, kth);
  }
  // Draw in id order: each thread owns a contiguous chunk; an inclusive scan of chunk masses finds the owner.
  let chunk = (V + WG - 1u) / WG;
  let lo = min(lid * chunk, V);
  let hi = min(lo + chunk, V);
  var local = 0.0;
  var lastKept = 0xffffffffu;
  for (var i = lo; i < hi; i++) {
    let v = logits[base + i];
    if (okey(v) >= thr) {
      local += exp((v - lmax) * invT);
      lastKept = i;
    }
  }
  redf[lid] = local;
  workgroupBarrier();
  for (var s = 1u; s < WG; s <<= 1u) {
    var add = 0.0;
    if (lid >= s) { add = redf[lid - s]; }
    workgroupBarrier();
    redf[lid] += add;
    workgroupBarrier();
  }
  let incl = redf[lid];
  let total = redf[WG - 1u];
  workgroupBarrier();
  let goal = c.u * total;
  let excl = incl - local;
  if (local > 0.0 && goal >= excl && goal < incl) {
    var cum = excl;
    var pick = lastKept;
    for (var i = lo; i < hi; i++) {
      let v = logits[base + i];
      if (okey(v) >= thr) {
        cum += exp((v - lmax) * invT);
        if (goal < cum) { pick = i; break; }
      }
    }
    atomicMin(&chosen, pick);
  }
  // Rounding can leave goal past every chunk's end: then the last kept id wins, as on the host.
  let fallback = argmax_wg(select(-1.0, f32(lid), local > 0.0), lastKept, lid);
  workgroupBarrier();
  if (lid == 0u) {
    let pick = atomicLoad(&chosen);
    ids[r] = i32(select(pick, fallback, pick == 0xffffffffu));
  }
}

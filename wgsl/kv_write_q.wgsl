// #include "kv_quant.wgsl"
// Quantize-on-write of the int8/int4 KV cache (layout in kv_quant.wgsl), after rope_kv has normed and rotated the
// key heads in place. One workgroup per (K or V head, token): the head vector x (HEAD_DIM values of qkv) is
// quantized exactly as quant/reference.ts kvRoundTrip does in f64:
//   zero  = largest f16 <= min x;   scale = smallest f16 >= (max x - zero) / (2^bits - 1), 0 when max x == zero;
//   q     = clamp(round((x - zero) / scale), 0, 2^bits - 1), rounding half up (Math.round); 0 when scale == 0.
// The f16 roundings are integer-exact (f16_down / f16_up); scale and q start from f32 estimates and are then
// corrected by exact comparisons (sign_sum), so the cache holds the reference's bits for the same x.

struct Params { T: u32, numHeads: u32, kvHeads: u32, blockSize: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;        // [T, (numHeads + 2 kvHeads) * HEAD_DIM] f32
@group(0) @binding(2) var<storage, read> slots: array<i32>;      // [T] block * blockSize + offset; < 0: no write
@group(0) @binding(3) var<storage, read_write> kc: array<u32>;   // kv_quant.wgsl layout, K
@group(0) @binding(4) var<storage, read_write> vc: array<u32>;   // kv_quant.wgsl layout, V

var<workgroup> lo: array<f32, WG>;
var<workgroup> hi: array<f32, WG>;

// The f16 grid step at |x| (f16 has 10 fraction bits; subnormal step 2^-24), as an exact power of two.
fn f16_ulp(x: f32) -> f32 {
  let e = i32((bitcast<u32>(x) >> 23u) & 0xffu) - 127;
  return bitcast<f32>(u32(max(e - 10, -24) + 127) << 23u);
}

// Largest f16 value <= x, and smallest f16 value >= x (|x| < 65504), exactly.
fn f16_down(x: f32) -> f32 {
  let u = f16_ulp(x);
  return floor(x / u) * u;
}

fn f16_up(x: f32) -> f32 {
  let u = f16_ulp(x);
  return ceil(x / u) * u;
}

// Sign of a + b - c, exact for f32 a, b, c (round to nearest): the rounded sum r decides unless r == c (if a + b
// <= c then r <= c, c being a float), then the rounding error of r (TwoSum) does.
fn sign_sum(a: f32, b: f32, c: f32) -> f32 {
  let r = a + b;
  if (r != c) { return sign(r - c); }
  let bb = r - a;
  return sign((a - (r - bb)) + (b - bb));
}

// q of one value: the f32 estimate, moved to the exact round-half-up of (x - zero) / scale. (k +- 0.5) * scale is
// exact in f32 (10 + 11 significant bits).
fn quantize(x: f32, zero: f32, scale: f32) -> u32 {
  var k = clamp(floor((x - zero) / scale + 0.5), -1.0, f32(KQM) + 1.0);
  if (sign_sum((k + 0.5) * scale, zero, x) <= 0.0) {
    k += 1.0;  // (k + 0.5) scale <= x - zero
  } else if (sign_sum((k - 0.5) * scale, zero, x) > 0.0) {
    k -= 1.0;  // (k - 0.5) scale > x - zero
  }
  return u32(clamp(k, 0.0, f32(KQM)));
}

@compute @workgroup_size(64)
fn kv_write_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let lid = lid3.x;
  let hh = wid.x;  // 0 .. kvHeads - 1: K heads, then V heads
  let t = wid.y;
  let slot = slots[t];
  if (slot < 0) { return; }  // uniform over the workgroup
  let isV = hh >= p.kvHeads;
  let kvh = hh % p.kvHeads;
  let base = (t * (p.numHeads + 2u * p.kvHeads) + p.numHeads + hh) * HEAD_DIM;
  var a = 3.0e38;
  var b = -3.0e38;
  for (var i = lid; i < HEAD_DIM; i += WG) {
    let v = qkv[base + i];
    a = min(a, v);
    b = max(b, v);
  }
  lo[lid] = a;
  hi[lid] = b;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      lo[lid] = min(lo[lid], lo[lid + s]);
      hi[lid] = max(hi[lid], hi[lid + s]);
    }
    workgroupBarrier();
  }
  let zero = f16_down(lo[0]);
  let mx = hi[0];
  var scale = 0.0;
  if (mx > zero) {
    // Estimate, then the exact test s * qmax >= max - zero (s * qmax is exact: 11 + 8 bits) against the f16 values
    // either side (scale * (1 +- 2^-12) is exact and lies strictly between neighbouring f16 values).
    let qm = f32(KQM);
    scale = f16_up((mx - zero) / qm);
    if (sign_sum(scale * qm, zero, mx) < 0.0) {
      scale = f16_up(scale * (1.0 + 1.0 / 4096.0));
    } else {
      let prev = f16_down(scale * (1.0 - 1.0 / 4096.0));
      if (sign_sum(prev * qm, zero, mx) >= 0.0) { scale = prev; }
    }
  }
  let s = u32(slot);
  let row = ((s / p.blockSize) * p.kvHeads + kvh) * p.blockSize + s % p.blockSize;
  let a2 = kvq_words(row);
  for (var w = lid; w < KDW; w += WG) {
    var word = 0u;
    if (scale > 0.0) {
      for (var i = 0u; i < VPW_KV; i++) {
        word |= quantize(qkv[base + w * VPW_KV + i], zero, scale) << (KV_BITS * i);
      }
    }
    if (isV) { vc[a2.x + w] = word; } else { kc[a2.x + w] = word; }
  }
  if (lid == 0u) {
    let sz = pack2x16float(vec2<f32>(scale, zero));
    if (isV) { vc[a2.y] = sz; } else { kc[a2.y] = sz; }
  }
}

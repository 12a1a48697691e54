// Shared by gemv_q.wgsl and gemm_q.wgsl: dequantization of the "rows-k" packed weights (src/quant/pack.ts (b)).
// BITS (4 or 8) and FP8 (0 or 1) come from the host. Row n of w holds Kw = ceil(K / VPW) u32 words; value i of word
// kw (bits BITS*i .. BITS*i + BITS - 1) is q[n, VPW*kw + i]. sb[n * nG + g] = (scale, bias) of row n, group g, in f32.
// Integer weights (FP8 0): bias = -zero * scale, so w = q * scale + bias is one FMA and equals (q - zero) * scale
// exactly in f32. FP8 E4M3 weights (FP8 1, BITS 8): each byte is an e4m3 code c = s eeee mmm, the pair is
// (256 * scale, 0) and w = e4m3x4(c) * (256 * scale) = e4m3(c) * scale, exact in f32 (at most 4 + 11 significant bits,
// never below 2^-31); the bias is not read.
const VPW: u32 = 32u / BITS;      // values per u32 word: 8 (int4) or 4 (int8 / fp8)
const V4: u32 = VPW / 4u;         // vec4s per word: 2 or 1
const QMASK: u32 = (1u << BITS) - 1u;
const QSHIFT: vec4<u32> = vec4<u32>(0u, BITS, 2u * BITS, 3u * BITS);

const_assert FP8 == 0u || BITS == 8u;  // e4m3 codes sit in the int8 byte positions

// Four e4m3 codes (one per component, < 256) → e4m3(c) * 2^-8 in f32, exactly: the value pack.ts's decode names
// (the f16 with bit 15 = s, bits 13..7 = eeee mmm), built in f32 bits so that no step sees a subnormal (WGSL lets
// implementations flush subnormal f16 / f32 operands, which unpack2x16float of e = 0 codes would be).
//   e > 0:  2^(e-15) (1 + m/8): the f32 with exponent field e + 112 and mmm as its top mantissa bits,
//           i.e. bits (eeee mmm << 20) + (112 << 23).
//   e == 0: 2^-14 (m/8) = m * 2^-17 (eeee mmm = m < 8): f32(m) times a power of two, exact and normal.
// The sign bit moves to bit 31. The NaN codes 0x7f / 0xff never reach a kernel (the readers refuse them).
fn e4m3x4(c: vec4<u32>) -> vec4<f32> {
  let em = c & vec4<u32>(0x7fu);
  let nrm = bitcast<vec4<f32>>((em << vec4<u32>(20u)) + vec4<u32>(112u << 23u));
  let sub = u2f(em) * 0x1p-17f;
  let mag = select(nrm, sub, em < vec4<u32>(8u));
  return bitcast<vec4<f32>>(bitcast<vec4<u32>>(mag) | ((c & vec4<u32>(0x80u)) << vec4<u32>(24u)));
}

// The 4 weights of word u starting at value 4 * j (j < V4), dequantized with (scale, bias) = sbv.
fn dq4(u: u32, j: u32, sbv: vec2<f32>) -> vec4<f32> {
  let q = (vec4<u32>(u) >> (QSHIFT + vec4<u32>(4u * BITS * j))) & vec4<u32>(QMASK);
  if (FP8 != 0u) { return e4m3x4(q) * sbv.x; }
  return fma(u2f(q), vec4<f32>(sbv.x), vec4<f32>(sbv.y));
}

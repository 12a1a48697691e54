// Shared by gemv_q.wgsl and gemm_q.wgsl: dequantization of the "rows-k" packed weights (src/quant/pack.ts (b)).
// BITS (4 or 8) comes from the host. Row n of w holds Kw = ceil(K / VPW) u32 words; value i of word kw (bits
// BITS*i .. BITS*i + BITS - 1) is q[n, VPW*kw + i]. sb[n * nG + g] = (scale, bias) of row n, group g, in f32, with
// bias = -zero * scale, so w = q * scale + bias is one FMA and equals (q - zero) * scale exactly in f32.
const VPW: u32 = 32u / BITS;      // values per u32 word: 8 (int4) or 4 (int8)
const V4: u32 = VPW / 4u;         // vec4s per word: 2 or 1
const QMASK: u32 = (1u << BITS) - 1u;
const QSHIFT: vec4<u32> = vec4<u32>(0u, BITS, 2u * BITS, 3u * BITS);

// The 4 weights of word u starting at value 4 * j (j < V4), dequantized with (scale, bias) = sbv.
fn dq4(u: u32, j: u32, sbv: vec2<f32>) -> vec4<f32> {
  let q = (vec4<u32>(u) >> (QSHIFT + vec4<u32>(4u * BITS * j))) & vec4<u32>(QMASK);
  return fma(vec4<f32>(q), vec4<f32>(sbv.x), vec4<f32>(sbv.y));
}

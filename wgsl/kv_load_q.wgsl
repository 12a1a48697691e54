// #include "kv_quant.wgsl"
// KV cache loads of the attention kernels, int8/int4 variant of kv_load.wgsl (layout in kv_quant.wgsl): the
// including kernel declares kc / vc as array<KV> = array<u32>. Each call dequantizes 4 values with one FMA each.
alias KV = u32;

fn kvq_dq4(word: u32, j: u32, sz: vec2<f32>) -> vec4<f32> {
  let sh = vec4<u32>(0u, KV_BITS, 2u * KV_BITS, 3u * KV_BITS) + vec4<u32>(4u * KV_BITS * j);
  let q = (vec4<u32>(word) >> sh) & vec4<u32>(KQM);
  return fma(u2f(q), vec4<f32>(sz.x), vec4<f32>(sz.y));
}

// Values 4i .. 4i + 3 of cache row `row`, as f32.
fn k4(row: u32, i: u32) -> vec4<f32> {
  let a = kvq_words(row);
  let per = VPW_KV / 4u;  // vec4s per word
  return kvq_dq4(kc[a.x + i / per], i % per, unpack2x16float(kc[a.y]));
}

fn v4(row: u32, i: u32) -> vec4<f32> {
  let a = kvq_words(row);
  let per = VPW_KV / 4u;
  return kvq_dq4(vc[a.x + i / per], i % per, unpack2x16float(vc[a.y]));
}

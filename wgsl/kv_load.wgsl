// KV cache loads of the attention kernels, dense variant (KT = f32 | f16). The including kernel declares
// kc / vc as array<KV>, [numBlocks, kvHeads, blockSize, HEAD_DIM / 4] vec4<KT>; a "row" is one (block, head,
// token): (block * kvHeads + kvh) * blockSize + offset. kv_load_q.wgsl is the int8/int4 variant (same functions).
alias KV = vec4<KT>;

// Values 4i .. 4i + 3 of cache row `row`, as f32.
fn k4(row: u32, i: u32) -> vec4<f32> {
  return vec4<f32>(kc[row * (HEAD_DIM / 4u) + i]);
}

fn v4(row: u32, i: u32) -> vec4<f32> {
  return vec4<f32>(vc[row * (HEAD_DIM / 4u) + i]);
}

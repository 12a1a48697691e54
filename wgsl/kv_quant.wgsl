// The int8/int4 KV cache layout (KV_BITS from the host), shared by the quantized write (kv_write_q.wgsl) and
// loads (kv_load_q.wgsl). Per layer, kc and vc are u32 arrays of regions, one per (block, kv head), in the order
// [numBlocks, kvHeads]; a region is [blockSize, KDW] u32 of packed q (value i of a token's head vector in bits
// KV_BITS * (i % VPW_KV) .. of word i / VPW_KV) followed by [blockSize] u32 pack2x16float(scale, zero), so a block's
// values and scales sit together. Bytes per token and head: HEAD_DIM * KV_BITS / 8 + 4 (quant/reference.ts
// kvHeadBytes). Dequantization, exactly the reference's x' = fround(q * scale + zero): one f32 FMA.
const VPW_KV: u32 = 32u / KV_BITS;            // values per word
const KDW: u32 = HEAD_DIM / VPW_KV;           // words of one token's head vector
const KQM: u32 = (1u << KV_BITS) - 1u;        // largest q

// Index of word 0 of a row's values, and of its (scale, zero) word. row = (block * kvHeads + kvh) * blockSize + off.
fn kvq_words(row: u32) -> vec2<u32> {
  let reg = row / p.blockSize;
  let off = row - reg * p.blockSize;
  let base = reg * p.blockSize * (KDW + 1u);
  return vec2<u32>(base + off * KDW, base + p.blockSize * KDW + off);
}

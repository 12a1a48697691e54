// GPU weight layouts of a QuantizedLinear (W[n, k] = (q - z) * s, N outputs, K inputs, groups of G along K).
// Kernels read these buffers; packX / unpackX are exact inverses (tests/quant_pack_test.ts).
//
// (a) "mma-m16n8k16" — CUDA tensor cores, sm >= 80. Kp = ceil(K/16)*16, Np = ceil(N/T)*T with T = 64 (int4) or
//     32 (int8). Padding has q = 0 and (scale, bias) = (0, 0), so padded weights are 0. Requires G % 16 == 0.
//   qweight: u32, tiles of 16 (k) x T (n), ordered n-tile major: tile (nt, kt) starts at word (nt * Kp/16 + kt) * 128.
//     Inside a tile, lane l (0..31) owns words [4l, 4l+4): one 128-bit load per thread per tile.
//     Lane l covers rows k0 = kt*16 + (l & 3)*2 and columns c = l >> 2 of each 8-wide n-subtile, i.e. the
//     m16n8k16 B fragment {b0, b1, b2, b3} = W[k0, c], W[k0+1, c], W[k0+8, c], W[k0+9, c] (PTX "row.col" B).
//     int4: word j (0..3) holds subtiles 2j and 2j+1 (columns na = nt*64 + 16j + c, nb = na + 8), values
//       v0..v3 = q at (k0, k0+1, k0+8, k0+9) of column na, v4..v7 the same of column nb, with value v_i in nibble
//       NIBBLE_OF[i] = [0,4,1,5,2,6,3,7][i]: pairs (0,4),(1,5),(2,6),(3,7) are (v0,v1),(v2,v3),(v4,v5),(v6,v7).
//       Conversion: lo = lop3(w, 0x000f000f, 0x64006400) = half2(1024+v0, 1024+v1);
//                   hi = lop3(w, 0x00f000f0, 0x64006400) = half2(1024+16*v2, 1024+16*v3);
//       then the same on w >> 8 for v4..v7. q = lo - 1024 (hsub2), q = hi * (1/16) - 64 (hfma2).
//     int8: word j holds subtile j (column nt*32 + 8j + c), bytes b0..b3 = q at k0, k0+1, k0+8, k0+9.
//       Conversion: __byte_perm(w, 0x64646464, 0x4140) = half2(1024+b0, 1024+b1), selector 0x4342 for b2, b3.
//   scaleBias: u32 [numGroups, Np]: one half2 per (group, column): low 16 bits f16 scale s, high 16 bits f16 bias
//     b = f16(-z * s). Dequantization is one FMA: w = hfma2(q, s, b). b is rounded to f16, so the fused result
//     differs from (q - z) * s by at most half an f16 ulp of z * s (plus the f16 rounding of the FMA itself);
//     dequantizeFused() below is that kernel math, in f32 before the final f16 rounding.
//
// (b) "rows-k" — WebGPU (and CUDA below sm 80): u32 [N, Kw] row-major, values packed along K of one output row.
//     int4: Kw = ceil(K/8), nibble i (bits 4i..4i+3) of word w of row n = q[n, 8w + i]. int8: Kw = ceil(K/4),
//     byte i of word w = q[n, 4w + i]. Padding beyond K is 0. G % 8 (int4) or G % 4 (int8) == 0, so the words of
//     one group are contiguous: group g of row n is words [g*G/8, (g+1)*G/8) (int4).
//   scaleBias: [N, numGroups] pairs (s, b = -z * s). "f32": Float32Array [N, numGroups, 2], exact, so
//     q * s + b == (q - z) * s bit for bit. "f16": u32 [N, numGroups], pack2x16float(s, b) (s in the low half).
//
// FP8 E4M3 linears (QuantizedLinear.fp8): the q bytes are e4m3 codes in the int8 positions of either layout. Kernels
// decode a code to e4m3 * 2^-8 by moving its bits into an f16 (sign to bit 15, the 7 other bits to bits 13..7), so
// every stored scale is s * 2^8 (f16 or f32; exact, src/quant/fp8.ts keeps s on that grid) and every bias 0:
// w = decode(q) * 256 s = e4m3(q) * s, exact in f32.
//
// Act-order (GPTQ g_idx): packFor sorts the input channels by group; `perm[k']` is the original input channel of
// packed channel k', and the kernel must read x[perm[k']]. perm is null when no reordering happened.
import { f16ToF32, f32ToF16 } from "../model/dtype.ts";
import { groupOf, numGroups, type QuantBits, type QuantizedLinear, toF16 } from "./types.ts";
import { e4m3ToF32, FP8_SCALE_SHIFT } from "./fp8.ts";

export const NIBBLE_OF: readonly number[] = [0, 4, 1, 5, 2, 6, 3, 7];

export interface MmaPacked {
  readonly layout: "mma-m16n8k16";
  readonly bits: QuantBits;
  readonly outDim: number;
  readonly inDim: number;
  readonly groupSize: number;
  readonly paddedOut: number;
  readonly paddedIn: number;
  /** see (a) above */ readonly qweight: Uint32Array;
  /** [numGroups, paddedOut] half2 (scale, bias) */ readonly scaleBias: Uint32Array;
  readonly perm: Int32Array | null;
  /** e4m3 codes; scales * 256, biases 0 (see FP8 above) */ readonly fp8: boolean;
}

export interface RowsPacked {
  readonly layout: "rows-k";
  readonly bits: QuantBits;
  readonly outDim: number;
  readonly inDim: number;
  readonly groupSize: number;
  /** [N, Kw] */ readonly qweight: Uint32Array;
  readonly scaleDType: "f32" | "f16";
  /** f32: [N, numGroups, 2]; f16: [N, numGroups] pack2x16float(s, b) */ readonly scaleBias: Float32Array | Uint32Array;
  readonly perm: Int32Array | null;
  /** e4m3 codes; scales * 256, biases 0 (see FP8 above) */ readonly fp8: boolean;
}

export type PackedLinear = MmaPacked | RowsPacked;

/** What unpacking gives back: q [N, K] u8, scales and zeros [N, numGroups] (gIdx-free; fp8: the linear's s, zeros 0). */
export type Unpacked = Pick<QuantizedLinear, "q" | "scales" | "zeros">;

const tileN = (bits: QuantBits) => (bits === 4 ? 64 : 32);

function half2(lo: number, hi: number): number {
  return (f32ToF16(lo) | (f32ToF16(hi) << 16)) >>> 0;
}

/** The f16 bias of a (scale, zero) pair. */
function biasOf(s: number, z: number): number {
  return toF16(-z * s);
}

/** The exact f32 (scale, bias) kernels hold for group entry i of `ql`: (s, -z s), fp8 (256 s, 0). */
function pairF32(ql: QuantizedLinear, i: number): [number, number] {
  const s = ql.scales[i]!;
  return ql.fp8 ? [s * FP8_SCALE_SHIFT, 0] : [s, -ql.zeros[i]! * s];
}

/** The same pair as half2 bits (scale low): the bias rounded to f16 (biasOf); fp8 exact. */
function pairHalf2(ql: QuantizedLinear, i: number): number {
  const s = ql.scales[i]!;
  return ql.fp8 ? half2(s * FP8_SCALE_SHIFT, 0) : half2(s, biasOf(s, ql.zeros[i]!));
}

/** Group (scale, zero) back from a stored (scale, bias) pair (fp8: s = stored / 256, zero 0). */
function unpair(fp8: boolean, s: number, b: number): [number, number] {
  return fp8 ? [s / FP8_SCALE_SHIFT, 0] : [s, zeroFrom(s, b)];
}

export function packMma(ql: QuantizedLinear): MmaPacked {
  const { outDim: N, inDim: K, bits, groupSize: G } = ql;
  if (ql.gIdx) throw new Error("packMma: reorder act-order weights first (packFor does)");
  if (G % 16 !== 0 && G < K) throw new Error(`packMma: group size ${G} is not a multiple of 16`);
  const T = tileN(bits), Kp = Math.ceil(K / 16) * 16, Np = Math.ceil(N / T) * T;
  const q = (n: number, k: number) => (n < N && k < K ? ql.q[n * K + k]! : 0);
  const qweight = new Uint32Array((Np / T) * (Kp / 16) * 128);
  for (let nt = 0; nt < Np / T; nt++) {
    for (let kt = 0; kt < Kp / 16; kt++) {
      const base = (nt * (Kp / 16) + kt) * 128;
      for (let l = 0; l < 32; l++) {
        const k0 = kt * 16 + (l & 3) * 2, c = l >> 2;
        const ks = [k0, k0 + 1, k0 + 8, k0 + 9];
        for (let j = 0; j < 4; j++) {
          let w = 0;
          if (bits === 4) {
            const na = nt * 64 + 16 * j + c;
            for (let i = 0; i < 8; i++) w |= q(i < 4 ? na : na + 8, ks[i & 3]!) << (4 * NIBBLE_OF[i]!);
          } else {
            const n = nt * 32 + 8 * j + c;
            for (let i = 0; i < 4; i++) w |= q(n, ks[i]!) << (8 * i);
          }
          qweight[base + 4 * l + j] = w >>> 0;
        }
      }
    }
  }
  const nG = numGroups(ql);
  const scaleBias = new Uint32Array(nG * Np);
  for (let g = 0; g < nG; g++) {
    for (let n = 0; n < N; n++) {
      scaleBias[g * Np + n] = pairHalf2(ql, n * nG + g);
    }
  }
  return {
    layout: "mma-m16n8k16",
    bits,
    outDim: N,
    inDim: K,
    groupSize: G,
    paddedOut: Np,
    paddedIn: Kp,
    qweight,
    scaleBias,
    perm: null,
    fp8: !!ql.fp8,
  };
}

function zeroFrom(s: number, b: number): number {
  return s === 0 ? 0 : Math.round(-b / s);
}

export function unpackMma(p: MmaPacked): Unpacked {
  const { outDim: N, inDim: K, bits, paddedIn: Kp, paddedOut: Np } = p;
  const T = tileN(bits);
  const q = new Uint8Array(N * K);
  const put = (n: number, k: number, v: number) => {
    if (n < N && k < K) q[n * K + k] = v;
  };
  for (let nt = 0; nt < Np / T; nt++) {
    for (let kt = 0; kt < Kp / 16; kt++) {
      const base = (nt * (Kp / 16) + kt) * 128;
      for (let l = 0; l < 32; l++) {
        const k0 = kt * 16 + (l & 3) * 2, c = l >> 2;
        const ks = [k0, k0 + 1, k0 + 8, k0 + 9];
        for (let j = 0; j < 4; j++) {
          const w = p.qweight[base + 4 * l + j]!;
          if (bits === 4) {
            const na = nt * 64 + 16 * j + c;
            for (let i = 0; i < 8; i++) put(i < 4 ? na : na + 8, ks[i & 3]!, (w >>> (4 * NIBBLE_OF[i]!)) & 0xf);
          } else {
            for (let i = 0; i < 4; i++) put(nt * 32 + 8 * j + c, ks[i]!, (w >>> (8 * i)) & 0xff);
          }
        }
      }
    }
  }
  const nG = p.scaleBias.length / Np;
  const scales = new Float32Array(N * nG), zeros = new Uint16Array(N * nG);
  for (let g = 0; g < nG; g++) {
    for (let n = 0; n < N; n++) {
      const w = p.scaleBias[g * Np + n]!;
      const s = f16ToF32(w & 0xffff), b = f16ToF32(w >>> 16);
      [scales[n * nG + g], zeros[n * nG + g]] = unpair(p.fp8, s, b);
    }
  }
  return { q, scales, zeros };
}

export function packRows(ql: QuantizedLinear, scaleDType: "f32" | "f16" = "f32"): RowsPacked {
  const { outDim: N, inDim: K, bits, groupSize: G } = ql;
  if (ql.gIdx) throw new Error("packRows: reorder act-order weights first (packFor does)");
  const per = 32 / bits;
  if (G % per !== 0 && G < K) throw new Error(`packRows: group size ${G} is not a multiple of ${per}`);
  const Kw = Math.ceil(K / per);
  const qweight = new Uint32Array(N * Kw);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) qweight[n * Kw + Math.floor(k / per)]! |= ql.q[n * K + k]! << (bits * (k % per));
  }
  const nG = numGroups(ql);
  const scaleBias = scaleDType === "f32" ? new Float32Array(N * nG * 2) : new Uint32Array(N * nG);
  for (let i = 0; i < N * nG; i++) {
    if (scaleBias instanceof Float32Array) [scaleBias[2 * i], scaleBias[2 * i + 1]] = pairF32(ql, i);
    else scaleBias[i] = pairHalf2(ql, i);
  }
  const fp8 = !!ql.fp8;
  return { layout: "rows-k", bits, outDim: N, inDim: K, groupSize: G, qweight, scaleDType, scaleBias, perm: null, fp8 };
}

export function unpackRows(p: RowsPacked): Unpacked {
  const { outDim: N, inDim: K, bits } = p;
  const per = 32 / bits, Kw = Math.ceil(K / per), mask = (1 << bits) - 1;
  const q = new Uint8Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) q[n * K + k] = (p.qweight[n * Kw + Math.floor(k / per)]! >>> (bits * (k % per))) & mask;
  }
  const nG = p.scaleDType === "f32" ? p.scaleBias.length / 2 / N : p.scaleBias.length / N;
  const scales = new Float32Array(N * nG), zeros = new Uint16Array(N * nG);
  for (let i = 0; i < N * nG; i++) {
    let s: number, b: number;
    if (p.scaleBias instanceof Float32Array) [s, b] = [p.scaleBias[2 * i]!, p.scaleBias[2 * i + 1]!];
    else [s, b] = [f16ToF32(p.scaleBias[i]! & 0xffff), f16ToF32(p.scaleBias[i]! >>> 16)];
    [scales[i], zeros[i]] = unpair(p.fp8, s, b);
  }
  return { q, scales, zeros };
}

export type GpuCapability = { kind: "cuda"; sm: number } | { kind: "webgpu"; shaderF16?: boolean };

/**
 * Sorts act-order (g_idx) input channels by group so groups become contiguous runs of G channels. Returns the
 * reordered linear and perm (packed channel k' reads original channel perm[k']); perm is null when no reorder was
 * needed. Throws when g_idx does not describe equal groups of G.
 */
export function sortActOrder(ql: QuantizedLinear): { ql: QuantizedLinear; perm: Int32Array | null } {
  if (!ql.gIdx) return { ql, perm: null };
  const { outDim: N, inDim: K, groupSize: G } = ql;
  const perm = Int32Array.from({ length: K }, (_, k) => k).sort((a, b) => groupOf(ql, a) - groupOf(ql, b) || a - b);
  perm.forEach((k, i) => {
    if (groupOf(ql, k) !== Math.floor(i / G)) throw new Error(`g_idx does not describe groups of ${G} channels`);
  });
  const q = new Uint8Array(N * K);
  for (let n = 0; n < N; n++) for (let i = 0; i < K; i++) q[n * K + i] = ql.q[n * K + perm[i]!]!;
  return { ql: { ...ql, q, gIdx: null }, perm };
}

/** Packs for the given device: mma tiles on CUDA sm >= 80, the row layout otherwise (f16 pairs where usable). */
export function packFor(cap: GpuCapability, ql: QuantizedLinear): PackedLinear {
  const { ql: sorted, perm } = sortActOrder(ql);
  if (cap.kind === "cuda") {
    if (cap.sm >= 80) return { ...packMma(sorted), perm };
    return { ...packRows(sorted, "f16"), perm };
  }
  return { ...packRows(sorted, cap.shaderF16 ? "f16" : "f32"), perm };
}

/** Unpacks either layout (into the packed channel order; apply perm to compare with an act-order original). */
export function unpack(p: PackedLinear): Unpacked {
  return p.layout === "mma-m16n8k16" ? unpackMma(p) : unpackRows(p);
}

/**
 * W[N, K] f32 as a kernel computes it from the packed buffers: q * s + b with the stored (f16 or f32) s and b,
 * one rounding to f32 (an f16 kernel rounds the result once more to f16). Packed channel order.
 */
export function dequantizeFused(p: PackedLinear): Float32Array {
  const { outDim: N, inDim: K, groupSize: G } = p;
  const u = unpack(p);
  const nG = u.scales.length / N;
  const bias = new Float32Array(N * nG);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < nG; g++) {
      const i = n * nG + g;
      if (p.layout === "rows-k" && p.scaleBias instanceof Float32Array) bias[i] = p.scaleBias[2 * i + 1]!;
      else {
        const w = p.layout === "mma-m16n8k16" ? p.scaleBias[g * p.paddedOut + n]! : p.scaleBias[i]!;
        bias[i] = f16ToF32(w >>> 16);
      }
    }
  }
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const i = n * nG + Math.floor(k / G);
      const q = u.q[n * K + k]!;
      out[n * K + k] = p.fp8
        ? (e4m3ToF32(q) / FP8_SCALE_SHIFT) * (u.scales[i]! * FP8_SCALE_SHIFT)
        : q * u.scales[i]! + bias[i]!;
    }
  }
  return out;
}

// Per-step device buffers, sized for a token / sequence capacity and grown on demand. Decode graphs bake these
// addresses in, so growing bumps `generation` and the backend drops its graphs.
import type { ModelSpec } from "../../core/types.ts";
import type { CudaDevice, DeviceBuffer } from "./device.ts";
import type { DevPtr } from "./ffi.ts";
import { MAX_PAIR_HALF, pairedRows } from "./gate_up.ts";
import { SAMPLE_CFG_BYTES } from "../../sampling/device_rule.ts";

export interface WorkspaceNeed {
  /** tokens in the step */ readonly n: number;
  /** sequences in the step */ readonly B: number;
  /** block-table row stride */ readonly stride: number;
  /** attention splits */ readonly splits: number;
  /** rows that get logits */ readonly rows: number;
}

// Activation buffers (xn, attn, act) take 4 bytes per element, enough for f32 or 16-bit activations.
type InputSection = "tokens" | "positions" | "slots" | "tokenSeq" | "rowIdx" | "tokenList" | "tiles" | "tables";

const I32 = 4, F32 = 4, ACT = 4;
/** Steps of a multi-step decode run ws.runIds holds (backend.ts CUDA_MAX_DECODE_STEPS). */
export const RUN_STEPS = 64;

export class Workspace implements Disposable {
  #cap: WorkspaceNeed = { n: 0, B: 0, stride: 0, splits: 0, rows: 0 };
  #partCap = 0;
  #owned: DeviceBuffer[] = [];
  generation = 0;
  /**
   * [9*n + B*stride] i32: tokens | positions | slots | tokenSeq | rowIdx | tokenList (split-K attention tokens) |
   * tiles [n, 3] (prefill attention tiles) | blockTables [B, stride]
   */
  inputs: DevPtr = 0n;
  /** [rows] i32 ids sampled on the GPU (sample.cu) */ ids: DevPtr = 0n;
  /** [RUN_STEPS, n] i32 ids of a multi-step decode run, step-major (backend.ts decodeSteps) */ runIds: DevPtr = 0n;
  /**
   * [rows] x (temperature f32, topK u32, topP f32, u f32) GPU sampler config, uploaded before each step (a decode
   * graph reads it from this fixed address)
   */
  sampleCfg: DevPtr = 0n;
  /** [n, h] f32 residual stream */ x: DevPtr = 0n;
  /** [n, h] f32 o_proj / down_proj output, added into x by the next norm */ res: DevPtr = 0n;
  /** [n, h] act normalized input of the next matmul */ xn: DevPtr = 0n;
  /** [n, (nh+2nkv)*d] f32 */ qkv: DevPtr = 0n;
  /** [n, nh, d] f32 roped queries */ q: DevPtr = 0n;
  /** [n, nh*d] act attention output */ attn: DevPtr = 0n;
  /** [n, 2f] f32 gate | up, or [n, N'] paired per n-tile (gate_up.ts: N' <= pairedRows(f, MAX_PAIR_HALF)) */ gu:
    DevPtr = 0n;
  /** [n, f] act silu(gate)*up */ act: DevPtr = 0n;
  /** [n*splits, nh, d] f32 attention partials */ partO: DevPtr = 0n;
  /** [n*splits, nh, 2] f32 running max / sum per split */ partML: DevPtr = 0n;
  /** [rows, vocab] f32 (rows: capacity of logits rows, sampled rows or every token with allLogits) */
  logits: DevPtr = 0n;

  constructor(readonly dev: CudaDevice, readonly spec: ModelSpec) {}

  get capacity(): WorkspaceNeed {
    return this.#cap;
  }

  /** Offsets (in i32 elements) of each input section for a capacity of n tokens. */
  inputOffsets(): Record<InputSection, number> {
    const n = this.#cap.n;
    return {
      tokens: 0,
      positions: n,
      slots: 2 * n,
      tokenSeq: 3 * n,
      rowIdx: 4 * n,
      tokenList: 5 * n,
      tiles: 6 * n,
      tables: 9 * n,
    };
  }

  input(section: InputSection): DevPtr {
    return this.inputs + BigInt(this.inputOffsets()[section] * I32);
  }

  /** Makes every buffer at least as large as `need`; true when buffers moved. */
  ensure(need: WorkspaceNeed): boolean {
    const c = this.#cap;
    const part = need.n * need.splits;
    const fits = need.n <= c.n && need.B <= c.B && need.stride <= c.stride && need.rows <= c.rows;
    if (fits && part <= this.#partCap) return false;
    const pow2 = (v: number, min: number) => Math.max(min, 2 ** Math.ceil(Math.log2(Math.max(1, v))));
    const cap: WorkspaceNeed = {
      n: Math.max(c.n, pow2(need.n, 64)),
      B: Math.max(c.B, pow2(need.B, 64)),
      stride: Math.max(c.stride, need.stride),
      splits: Math.max(c.splits, need.splits),
      rows: Math.max(c.rows, pow2(need.rows, 64)),
    };
    this.#partCap = Math.max(this.#partCap, part, cap.n * Math.min(cap.splits, 4));
    this.#release();
    this.#cap = cap;
    const s = this.spec, n = cap.n, h = s.hiddenSize, d = s.headDim, nh = s.numHeads, f = s.intermediateSize;
    const a = (bytes: number, label: string) => {
      const b = this.dev.alloc(bytes, `workspace.${label}`);
      this.#owned.push(b);
      return b.ptr;
    };
    this.inputs = a(I32 * (9 * n + cap.B * cap.stride), "inputs");
    this.ids = a(I32 * Math.max(n, cap.rows), "ids");
    this.runIds = a(I32 * RUN_STEPS * n, "runIds");
    this.sampleCfg = a(SAMPLE_CFG_BYTES * Math.max(n, cap.rows), "sampleCfg");
    this.x = a(F32 * n * h, "x");
    this.res = a(F32 * n * h, "res");
    this.xn = a(ACT * n * Math.max(h, nh * d), "xn");
    this.qkv = a(F32 * n * (nh + 2 * s.numKvHeads) * d, "qkv");
    this.q = a(F32 * n * nh * d, "q");
    this.attn = a(ACT * n * nh * d, "attn");
    this.gu = a(F32 * n * pairedRows(f, MAX_PAIR_HALF), "gu");
    this.act = a(ACT * n * f, "act");
    this.partO = a(F32 * this.#partCap * nh * d, "partO");
    this.partML = a(F32 * this.#partCap * nh * 2, "partML");
    this.logits = a(F32 * cap.rows * s.vocabSize, "logits");
    this.generation++;
    return true;
  }

  /** Splits the partial buffers can hold for n tokens. */
  maxSplits(n: number): number {
    return Math.floor(this.#partCap / Math.max(1, n));
  }

  #release(): void {
    for (const b of this.#owned) b[Symbol.dispose]();
    this.#owned = [];
  }

  get bytes(): number {
    return this.#owned.reduce((acc, b) => acc + b.bytes, 0);
  }

  [Symbol.dispose](): void {
    this.#release();
  }
}

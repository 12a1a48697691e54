// Counter-based deterministic random numbers (Philox4x32-10, Salmon et al. 2011), in 32-bit integer arithmetic.
// The draw for output token i of a request depends only on (seed, i), so batching, step order and preemption
// (which replays the same counters) never change what a seeded request samples.

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const TWO32 = 4294967296;
const TWO26 = 67108864;
const TWO53 = 9007199254740992;

/** High 32 bits of the 64-bit product of two unsigned 32-bit integers (exact: every partial product fits a double). */
function mulhi32(a: number, b: number): number {
  const ah = a >>> 16;
  const al = a & 0xffff;
  const bh = b >>> 16;
  const bl = b & 0xffff;
  const cross = ah * bl + al * bh; // < 2^33
  return (ah * bh + Math.floor((cross + Math.floor((al * bl) / 65536)) / 65536)) >>> 0;
}

const out = new Uint32Array(4);

/**
 * Philox4x32 with 10 rounds. `counter` has 4 words, `key` 2 words (unsigned 32-bit).
 * Returns a Uint32Array(4) that is reused by the next call: copy it to keep it.
 */
export function philox4x32(counter: ArrayLike<number>, key: ArrayLike<number>): Uint32Array {
  let c0 = (counter[0] ?? 0) >>> 0;
  let c1 = (counter[1] ?? 0) >>> 0;
  let c2 = (counter[2] ?? 0) >>> 0;
  let c3 = (counter[3] ?? 0) >>> 0;
  let k0 = (key[0] ?? 0) >>> 0;
  let k1 = (key[1] ?? 0) >>> 0;
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi0 = mulhi32(M0, c0);
    const lo1 = Math.imul(M1, c2) >>> 0;
    const hi1 = mulhi32(M1, c2);
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
}

/** Low and high 32-bit words of an integer (two's complement for negatives; non-finite counts as 0). */
function words(n: number): [number, number] {
  const t = Number.isFinite(n) ? Math.trunc(n) : 0;
  const lo = ((t % TWO32) + TWO32) % TWO32;
  const hi = ((Math.floor(t / TWO32) % TWO32) + TWO32) % TWO32;
  return [lo >>> 0, hi >>> 0];
}

const ctr = [0, 0, 0, 0];
const key = [0, 0];

/** A uniform double in [0, 1) with 53 random bits, a pure function of (seed, counter). */
export function uniform(seed: number, counter: number): number {
  const [s0, s1] = words(seed);
  const [c0, c1] = words(counter);
  ctr[0] = c0;
  ctr[1] = c1;
  key[0] = s0;
  key[1] = s1;
  const r = philox4x32(ctr, key);
  return ((r[0]! >>> 5) * TWO26 + (r[1]! >>> 6)) / TWO53;
}

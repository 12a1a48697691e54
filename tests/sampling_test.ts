import assert from "node:assert/strict";
import type { SamplingParams, SequenceSamplingState } from "../src/core/types.ts";
import {
  argmax,
  defaultSamplingParams,
  logSoftmax,
  sampleToken,
  samplingDistribution,
  uniform,
  validateSamplingParams,
} from "../src/sampling/sampler.ts";
import { philox4x32 } from "../src/sampling/rng.ts";
import { mulberry32 } from "../src/core/prng.ts";

// ---------- helpers ----------

function params(over: Partial<SamplingParams> = {}): SamplingParams {
  return { ...defaultSamplingParams(), ...over };
}

function st(
  over: Partial<SamplingParams> = {},
  promptIds: ArrayLike<number> = [],
  outputIds: ArrayLike<number> = [],
  fallbackSeed = 7,
): SequenceSamplingState {
  return { params: params(over), promptIds, outputIds, fallbackSeed };
}

/** Test-local PRNG, independent of the code under test. */
const rand = mulberry32;

function normalRow(n: number, scale: number, seed: number): Float32Array {
  const r = rand(seed);
  const row = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    row[i] = scale * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  }
  return row;
}

function softmax64(xs: ArrayLike<number>): number[] {
  const a = Array.from(xs);
  const m = a.reduce((x, y) => Math.max(x, y), -Infinity);
  const e = a.map((v) => Math.exp(v - m));
  const s = e.reduce((x, y) => x + y, 0);
  return e.map((v) => v / s);
}

/** Logits whose softmax is exactly `probs`. */
function logitsFor(probs: number[]): Float32Array {
  return Float32Array.from(probs.map((p) => Math.log(p)));
}

/** Draws n tokens at counters 0..n-1 (outputIds of growing length, no penalties) and counts them. */
function histogram(logits: Float32Array, over: Partial<SamplingParams>, n: number): number[] {
  const counts = new Array<number>(logits.length).fill(0);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const { id } = sampleToken(logits, st(over, [], out.subarray(0, i)));
    counts[id]!++;
  }
  return counts;
}

function chiSquare(counts: number[], probs: number[]): number {
  const n = counts.reduce((a, b) => a + b, 0);
  let chi = 0;
  for (let i = 0; i < counts.length; i++) {
    const e = n * probs[i]!;
    if (e === 0) assert.equal(counts[i], 0, `token ${i} has probability 0 but was drawn`);
    else chi += (counts[i]! - e) ** 2 / e;
  }
  return chi;
}

/** Straightforward vLLM-order reference in float64 with a full sort: id -> probability. */
function reference(logits: Float32Array, s: SequenceSamplingState): Map<number, number> {
  const p = s.params;
  const x = Array.from(logits);
  const seen = new Set<number>();
  for (const id of [...Array.from(s.promptIds), ...Array.from(s.outputIds)]) {
    if (seen.has(id) || p.repetitionPenalty === 1) continue;
    seen.add(id);
    x[id] = x[id]! > 0 ? x[id]! / p.repetitionPenalty : x[id]! * p.repetitionPenalty;
  }
  const counts = new Map<number, number>();
  for (const id of Array.from(s.outputIds)) counts.set(id, (counts.get(id) ?? 0) + 1);
  for (const [id, c] of counts) x[id] = x[id]! - p.frequencyPenalty * c - p.presencePenalty;
  if (p.temperature === 0) return new Map([[argmax(Float64Array.from(x)), 1]]);
  let y = x.map((v) => v / p.temperature);
  if (p.topK > 0 && p.topK < y.length) {
    const kth = [...y].sort((a, b) => b - a)[p.topK - 1]!;
    y = y.map((v) => (v >= kth ? v : -Infinity));
  }
  let probs = softmax64(y);
  if (p.topP < 1) {
    const order = probs.map((_, i) => i).sort((a, b) => probs[a]! - probs[b]! || b - a); // ascending
    let cum = 0;
    const masked = new Set<number>();
    for (let j = 0; j < order.length - 1; j++) {
      cum += probs[order[j]!]!;
      if (cum <= 1 - p.topP) masked.add(order[j]!);
    }
    probs = softmax64(y.map((v, i) => (masked.has(i) ? -Infinity : v)));
  }
  if (p.minP > 0) {
    const mx = probs.reduce((x, y) => Math.max(x, y), 0);
    probs = softmax64(probs.map((q) => (q < p.minP * mx ? -Infinity : Math.log(q))));
  }
  const m = new Map<number, number>();
  probs.forEach((q, i) => q > 0 && m.set(i, q));
  return m;
}

function assertSameDistribution(logits: Float32Array, s: SequenceSamplingState, tol = 1e-9): number {
  const d = samplingDistribution(logits, s);
  const ref = reference(logits, s);
  assert.deepEqual([...d.ids].sort((a, b) => a - b), [...ref.keys()].sort((a, b) => a - b));
  d.ids.forEach((id, j) => assert.ok(Math.abs(d.probs[j]! - ref.get(id)!) < tol, `prob of ${id}`));
  return d.ids.length;
}

// ---------- rng ----------

Deno.test("philox4x32() matches the Random123 known-answer vectors", () => {
  assert.deepEqual(Array.from(philox4x32([0, 0, 0, 0], [0, 0])), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
  assert.deepEqual(
    Array.from(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])),
    [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
  );
  assert.deepEqual(
    Array.from(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])),
    [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
  );
});

Deno.test("uniform() is a pure function of (seed, counter) in [0, 1) and looks uniform", () => {
  assert.equal(uniform(42, 5), uniform(42, 5));
  assert.notEqual(uniform(42, 5), uniform(42, 6));
  assert.notEqual(uniform(42, 5), uniform(43, 5));
  assert.notEqual(uniform(1, 0), uniform(1 + 2 ** 32, 0)); // high seed bits matter
  assert.notEqual(uniform(-1, 0), uniform(1, 0));
  // 16 equal buckets over 64k counters: chi-square with 15 dof, 99.99% quantile is 44.3.
  const buckets = new Array<number>(16).fill(0);
  const n = 65536;
  for (let i = 0; i < n; i++) {
    const u = uniform(123, i);
    assert.ok(u >= 0 && u < 1);
    buckets[Math.floor(u * 16)]!++;
  }
  const chi = chiSquare(buckets, new Array<number>(16).fill(1 / 16));
  assert.ok(chi < 44.3, `chi-square ${chi}`);
});

// ---------- greedy and the basic draw ----------

Deno.test("argmax() picks the lowest index on ties and ignores NaN", () => {
  assert.equal(argmax(Float32Array.from([1, 3, 2, 3])), 1);
  assert.equal(argmax(Float32Array.from([NaN, -1, NaN, 0])), 3);
  assert.equal(argmax(Float32Array.from([-Infinity, -Infinity])), 0);
});

Deno.test("sampleToken() greedy picks the lowest id on ties", () => {
  const logits = Float32Array.from([0.1, 2.5, -1, 2.5, 2.4]);
  for (let c = 0; c < 10; c++) {
    assert.equal(sampleToken(logits, st({ temperature: 0 }, [], new Array(c).fill(2))).id, 1);
  }
  assert.equal(sampleToken(Float32Array.from([NaN, 1, 5]), st({ temperature: 0 })).id, 2);
});

Deno.test("sampleToken() draws match softmax(logits / T) (chi-square, 5 dof, bound 25.74 = 99.99% quantile)", () => {
  const logits = Float32Array.from([1.0, 0.5, 0.0, -0.5, 2.0, 1.5]);
  const t = 0.7;
  const counts = histogram(logits, { temperature: t, seed: 1234 }, 30000);
  const chi = chiSquare(counts, softmax64(Array.from(logits).map((v) => v / t)));
  assert.ok(chi < 25.74, `chi-square ${chi}, counts ${counts}`);
  // The same draws against T = 1 must be rejected (guards against ignoring the temperature).
  assert.ok(chiSquare(counts, softmax64(logits)) > 100);
});

Deno.test("sampleToken() same seed and counter give the same token; counters and seeds vary it", () => {
  const logits = normalRow(50, 0.5, 3);
  const at = (seed: number | null, c: number, fallback = 7) =>
    sampleToken(logits, st({ seed }, [], new Array(c).fill(0), fallback)).id;
  for (let c = 0; c < 20; c++) assert.equal(at(99, c), at(99, c));
  const seq = (seed: number | null, fallback = 7) => Array.from({ length: 40 }, (_, c) => at(seed, c, fallback));
  assert.ok(new Set(seq(99)).size > 10, "different counters should give different tokens");
  assert.notDeepEqual(seq(99), seq(100));
  assert.deepEqual(seq(null, 99), seq(99), "null seed falls back to fallbackSeed");
  assert.deepEqual(seq(5, 1), seq(5, 2), "an explicit seed overrides fallbackSeed");
});

// ---------- filters ----------

Deno.test("sampleToken() top-k only ever returns the k most likely", () => {
  const logits = normalRow(1000, 1, 11);
  const top5 = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!).slice(0, 5);
  const counts = histogram(logits, { topK: 5, temperature: 1.5, seed: 1 }, 3000);
  const drawn = counts.flatMap((c, i) => (c > 0 ? [i] : [])).sort((a, b) => a - b);
  assert.deepEqual(drawn, [...top5].sort((a, b) => a - b));
  assertSameDistribution(logits, st({ topK: 5, temperature: 1.5 }));
  for (const k of [0, -1, 1000, 5000]) assert.equal(assertSameDistribution(logits, st({ topK: k })), 1000);
  assert.equal(assertSameDistribution(logits, st({ topK: 1, temperature: 2 })), 1);
});

Deno.test("sampleToken() top-p keeps exactly the expected nucleus", () => {
  // Shuffled positions: 0.5 at id 2, 0.3 at id 0, 0.15 at id 3, 0.05 at id 1.
  const logits = logitsFor([0.3, 0.05, 0.5, 0.15]);
  const nucleus = (topP: number) => samplingDistribution(logits, st({ topP }));
  const ids = (topP: number) => [...nucleus(topP).ids].sort((a, b) => a - b);
  assert.deepEqual(ids(0.45), [2]);
  assert.deepEqual(ids(0.75), [0, 2]);
  assert.deepEqual(ids(0.85), [0, 2, 3]);
  assert.deepEqual(ids(0.99), [0, 1, 2, 3]);
  const d = nucleus(0.75);
  d.ids.forEach((id, j) => assert.ok(Math.abs(d.probs[j]! - (id === 2 ? 0.625 : 0.375)) < 1e-6));
  // Empirically: only the nucleus, renormalised (chi-square, 1 dof, 99.99% quantile 15.1).
  const counts = histogram(logits, { topP: 0.75, seed: 5 }, 8000);
  assert.equal(counts[1]! + counts[3]!, 0);
  assert.ok(chiSquare(counts, [0.375, 0, 0.625, 0]) < 15.1);
});

Deno.test("sampleToken() top-p renormalises over the top-k survivors (vLLM order)", () => {
  const logits = logitsFor([0.4, 0.3, 0.2, 0.1]);
  // Over all four 0.4 + 0.3 = 0.7 < 0.72 keeps three; after top-k = 3 the first two hold 0.778 >= 0.72.
  const ids = (over: Partial<SamplingParams>) => [...samplingDistribution(logits, st(over)).ids].sort((a, b) => a - b);
  assert.deepEqual(ids({ topP: 0.72 }), [0, 1, 2]);
  assert.deepEqual(ids({ topP: 0.72, topK: 3 }), [0, 1]);
});

Deno.test("sampleToken() min-p drops tokens under min_p * max prob", () => {
  const logits = logitsFor([0.02, 0.4, 0.08, 0.3, 0.2]);
  const d = samplingDistribution(logits, st({ minP: 0.25 })); // cut at 0.1
  assert.deepEqual([...d.ids].sort(), [1, 3, 4]);
  d.ids.forEach((id, j) => assert.ok(Math.abs(d.probs[j]! - [0, 0.4, 0, 0.3, 0.2][id]! / 0.9) < 1e-6));
  const counts = histogram(logits, { minP: 0.25, seed: 8 }, 3000);
  assert.equal(counts[0]! + counts[2]!, 0);
  assert.equal(samplingDistribution(logits, st({ minP: 1 })).ids.length, 1);
  // Combined with a nucleus that holds all five (0.98 < 0.99), min-p still cuts the same two.
  assert.deepEqual([...samplingDistribution(logits, st({ minP: 0.25, topP: 0.99 })).ids].sort(), [1, 3, 4]);
});

Deno.test("samplingDistribution() matches a full-sort reference on random rows and settings", () => {
  const settings: Partial<SamplingParams>[] = [
    {},
    { temperature: 0.6, topK: 40 },
    { temperature: 0.8, topP: 0.9 },
    { temperature: 1.3, topP: 0.5, minP: 0.02 },
    { topK: 100, topP: 0.95, minP: 0.01 },
    { temperature: 0.7, minP: 0.1 },
    { topP: 0.99999 },
    { topP: 0.99, minP: 0.1 },
    { topK: 1500, topP: 0.999, temperature: 1.7 },
    { repetitionPenalty: 1.3, frequencyPenalty: 0.5, presencePenalty: -0.4, topP: 0.8 },
  ];
  let seed = 100;
  for (const over of settings) {
    for (const scale of [0.3, 2, 6]) {
      const logits = normalRow(2000, scale, seed++);
      const r = rand(seed++);
      const ids = Array.from({ length: 30 }, () => Math.floor(r() * 2000));
      assertSameDistribution(logits, st(over, ids.slice(0, 10), ids.slice(10)), 1e-7);
    }
  }
});

Deno.test("sampleToken() is exact on a 128k vocabulary", () => {
  const vocab = 128256;
  // A flat row: top-p 0.95 keeps most of the vocabulary, so the nucleus floor must not cut any of it.
  const flat = normalRow(vocab, 0.5, 77);
  const kept = assertSameDistribution(flat, st({ topP: 0.95 }), 1e-9);
  assert.ok(kept > 100000, `nucleus of ${kept}`);
  const peaky = normalRow(vocab, 4, 78);
  assertSameDistribution(peaky, st({ topP: 0.9, temperature: 0.8 }), 1e-9);
  const settings: Partial<SamplingParams>[] = [
    { temperature: 0 },
    {},
    { topK: 50 },
    { topK: 50, topP: 0.9 },
    { topP: 0.9 },
    { minP: 0.05 },
    { repetitionPenalty: 1.1, frequencyPenalty: 0.2, logprobs: true, topLogprobs: 5 },
  ];
  const prompt = Array.from({ length: 2000 }, (_, i) => (i * 7919) % vocab);
  for (const over of settings) {
    const s = st(over, prompt, prompt.slice(0, 500));
    const { ids } = samplingDistribution(peaky, s);
    const id = sampleToken(peaky, s).id;
    assert.ok(ids.includes(id), `${JSON.stringify(over)}: drew ${id} outside its own distribution`);
  }
});

// ---------- penalties ----------

Deno.test("sampleToken() repetition penalty divides positive and multiplies negative logits, once per id", () => {
  const g = (logits: number[], prompt: number[], out: number[], r: number) =>
    sampleToken(Float32Array.from(logits), st({ temperature: 0, repetitionPenalty: r }, prompt, out)).id;
  assert.equal(g([2.0, 1.8, -0.5], [0], [], 1), 0);
  assert.equal(g([2.0, 1.8, -0.5], [0], [], 1.2), 1); // 2 / 1.2 = 1.67 < 1.8
  assert.equal(g([2.0, 1.8, -0.5], [], [0], 1.2), 1); // output ids count too
  assert.equal(g([-1.0, -1.1], [0], [], 1.2), 1); // -1.2 < -1.1
  assert.equal(g([-1.0, -1.1], [0], [], 1 / 1.2), 0); // penalty < 1 rewards
  assert.equal(g([2.0, 1.5], [0, 0, 0], [0, 0], 1.2), 0); // once: 1.67 > 1.5 (five times would be 0.8)
  assert.equal(g([2.0, 1.5], [0, 99, -3], [], 1.2), 0); // out-of-range ids are ignored
});

Deno.test("sampleToken() frequency and presence penalties use output counts only", () => {
  const g = (logits: number[], prompt: number[], out: number[], freq: number, pres: number) =>
    sampleToken(
      Float32Array.from(logits),
      st({ temperature: 0, frequencyPenalty: freq, presencePenalty: pres }, prompt, out),
    ).id;
  assert.equal(g([3.0, 2.5, 2.0], [], [0, 0, 1], 0.4, 0), 0); // 2.2, 2.1, 2.0
  assert.equal(g([3.0, 2.5, 2.0], [], [0, 0, 1], 0.6, 0), 2); // 1.8, 1.9, 2.0
  assert.equal(g([3.0, 2.9], [], [0, 0, 0, 1], 0.1, 0), 1); // by count: 2.7 < 2.8
  assert.equal(g([3.0, 2.9], [], [0, 0, 0, 1], 0, 0.1), 0); // by presence: 2.9 > 2.8
  assert.equal(g([3.0, 2.5, 2.0], [], [0, 0, 0, 1], 0, 1.1), 2); // 1.9, 1.4, 2.0
  assert.equal(g([3.0, 2.5], [0, 0, 0, 0], [], 2, 2), 0); // prompt ids are not penalised
  assert.equal(g([3.0, 2.5], [], [1, 1], -0.3, 0), 1); // negative frequency rewards: 3.1 > 3.0
});

// ---------- logprobs, purity, validation ----------

Deno.test("sampleToken() logprobs are the raw log-softmax, top list sorted and correct", () => {
  const logits = normalRow(1000, 3, 21);
  const lse = (() => {
    const a = Array.from(logits);
    const m = Math.max(...a);
    return m + Math.log(a.reduce((s, v) => s + Math.exp(v - m), 0));
  })();
  const s = st({ temperature: 0.5, topK: 10, repetitionPenalty: 1.5, logprobs: true, topLogprobs: 20, seed: 3 }, [
    1,
    2,
  ], [3]);
  const { id, logprobs } = sampleToken(logits, s);
  assert.ok(logprobs);
  assert.equal(logprobs.chosen.id, id);
  assert.ok(Math.abs(logprobs.chosen.logprob - (logits[id]! - lse)) < 1e-5);
  const expected = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!).slice(0, 20);
  assert.deepEqual(logprobs.top.map((t) => t.id), expected);
  for (const t of logprobs.top) assert.ok(Math.abs(t.logprob - (logits[t.id]! - lse)) < 1e-5);
  for (let j = 1; j < 20; j++) assert.ok(logprobs.top[j - 1]!.logprob >= logprobs.top[j]!.logprob);
  assert.deepEqual(sampleToken(logits, st({ logprobs: true })).logprobs?.top, []);
  assert.equal(sampleToken(logits, st({ topLogprobs: 5 })).logprobs, null);
  const ties = sampleToken(Float32Array.from([1, 2, 2, 0]), st({ logprobs: true, topLogprobs: 3 })).logprobs;
  assert.deepEqual(ties?.top.map((t) => t.id), [1, 2, 0]);
});

Deno.test("logSoftmax() matches a float64 log-softmax within 1e-5", () => {
  const row = normalRow(5000, 5, 31);
  const ls = logSoftmax(row);
  const ref = softmax64(row).map(Math.log);
  let s = 0;
  ls.forEach((v, i) => {
    assert.ok(Math.abs(v - ref[i]!) < 1e-5);
    s += Math.exp(v);
  });
  assert.ok(Math.abs(s - 1) < 1e-4);
});

Deno.test("sampleToken() does not mutate the input logits", () => {
  const logits = normalRow(3000, 2, 41);
  const copy = logits.slice();
  const all = {
    temperature: 0.7,
    topK: 30,
    topP: 0.8,
    minP: 0.05,
    repetitionPenalty: 1.3,
    frequencyPenalty: 0.5,
    presencePenalty: 0.5,
    logprobs: true,
    topLogprobs: 5,
  };
  for (const over of [all, { ...all, topP: 1 }, { ...all, temperature: 0 }]) {
    sampleToken(logits, st(over, [1, 2, 3], [4, 4, 5]));
    samplingDistribution(logits, st(over, [1, 2, 3], [4, 4, 5]));
    assert.deepEqual(logits, copy);
  }
});

Deno.test("validateSamplingParams() accepts defaults and catches each bad value", () => {
  assert.equal(validateSamplingParams(defaultSamplingParams()), null);
  assert.equal(
    validateSamplingParams(params({ temperature: 0, topK: -1, topP: 0.01, minP: 1, seed: -5, topLogprobs: 20 })),
    null,
  );
  const bad: [Partial<SamplingParams>, string][] = [
    [{ temperature: -0.1 }, "temperature"],
    [{ temperature: NaN }, "temperature"],
    [{ temperature: 101 }, "temperature"],
    [{ topP: 0 }, "top_p"],
    [{ topP: 1.01 }, "top_p"],
    [{ topP: NaN }, "top_p"],
    [{ minP: -0.1 }, "min_p"],
    [{ minP: 1.5 }, "min_p"],
    [{ topK: -2 }, "top_k"],
    [{ topK: 2.5 }, "top_k"],
    [{ repetitionPenalty: 0 }, "repetition_penalty"],
    [{ repetitionPenalty: -1 }, "repetition_penalty"],
    [{ repetitionPenalty: Infinity }, "repetition_penalty"],
    [{ presencePenalty: 2.5 }, "presence_penalty"],
    [{ presencePenalty: -2.5 }, "presence_penalty"],
    [{ frequencyPenalty: 3 }, "frequency_penalty"],
    [{ frequencyPenalty: -2.01 }, "frequency_penalty"],
    [{ seed: 1.5 }, "seed"],
    [{ topLogprobs: 21 }, "top_logprobs"],
    [{ topLogprobs: -1 }, "top_logprobs"],
    [{ topLogprobs: 1.5 }, "top_logprobs"],
  ];
  for (const [over, field] of bad) {
    const msg = validateSamplingParams(params(over));
    assert.ok(msg !== null && msg.startsWith(field + " "), `${JSON.stringify(over)} -> ${msg}`);
  }
});

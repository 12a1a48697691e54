// A quantized checkpoint's forward pass against the f32 model of its dequantized weights, on the reference backend.
import assert from "node:assert/strict";
import type { WeightDType } from "../../src/core/types.ts";
import type { OutTensor } from "../../src/quant/tensors.ts";
import { openCheckpoint } from "../../src/model/checkpoint.ts";
import { MemoryTensorSource } from "../../src/model/memory_source.ts";
import { ReferenceBackend } from "../../src/backends/reference/backend.ts";
import { sequenceLogits } from "../../src/engine/sequential.ts";
import { defaultSamplingParams } from "../../src/sampling/params.ts";

/**
 * Asserts that the checkpoint in `dir` (loaded at `weight`) gives exactly the logits of an f32 model holding its F16
 * `tensors` and, for each linear, `dense` [name, [N, K], dequantized W]. Removes `dir`.
 */
export async function assertForwardEqualsDense(
  dir: string,
  weight: WeightDType,
  tensors: readonly OutTensor[],
  dense: Iterable<readonly [string, readonly [number, number], Float32Array]>,
): Promise<void> {
  const ckpt = await openCheckpoint(dir);
  await using q = new ReferenceBackend();
  await q.load(ckpt.spec, ckpt.weights, { weight, kv: "f32", compute: "f32" });
  ckpt.weights.close();
  const mem = new MemoryTensorSource();
  for (const t of tensors) if (t.dtype === "F16") mem.add(t.name, t);
  for (const [name, shape, w] of dense) mem.addF32(name, shape, w);
  await using f = new ReferenceBackend();
  await f.load({ ...ckpt.spec, quantization: null }, mem, { weight: "f32", kv: "f32", compute: "f32" });
  const ids = [1, 5, 9, 33, 2, 60, 17];
  const greedy = { ...defaultSamplingParams(), temperature: 0 };
  assert.deepEqual(await sequenceLogits(q, ids, greedy), await sequenceLogits(f, ids, greedy));
  await Deno.remove(dir, { recursive: true });
}

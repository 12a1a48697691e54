import assert from "node:assert/strict";
import { readSafetensorsHeader, SafetensorsSource, writeSafetensors } from "../src/model/safetensors.ts";
import { openCheckpoint, safetensorsFiles } from "../src/model/checkpoint.ts";
import { fromF32 } from "../src/model/dtype.ts";
import { CheckpointError } from "../src/core/errors.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { STORIES_DIR } from "./helpers/models.ts";

function rand(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return (s / 2 ** 32) * 4 - 2;
  });
}

async function writeFixture(dir: string): Promise<{ a: Float32Array; b: Float32Array }> {
  const a = rand(6, 1), b = rand(12, 2);
  await writeSafetensors(`${dir}/model.safetensors`, [
    { name: "a", dtype: "F32", shape: [2, 3], data: fromF32(a, "F32") },
    { name: "b", dtype: "F16", shape: [3, 4], data: fromF32(b, "F16") },
    { name: "c", dtype: "BF16", shape: [12], data: fromF32(b, "BF16") },
  ]);
  return { a, b };
}

async function expectCheckpointError(p: Promise<unknown>, ...fragments: string[]): Promise<CheckpointError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${e}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `message "${e.message}" lacks "${f}"`);
    return e;
  }
  assert.fail("expected a CheckpointError");
}

Deno.test("SafetensorsSource.f32() reads F32, F16 and BF16 tensors", async () => {
  const dir = await Deno.makeTempDir();
  const { a, b } = await writeFixture(dir);
  const src = await SafetensorsSource.open([`${dir}/model.safetensors`]);
  assert.deepEqual(await src.f32("a", [2, 3]), a);
  const bh = await src.f32("b");
  const bb = await src.f32("c");
  for (let i = 0; i < b.length; i++) {
    assert.ok(Math.abs(bh[i]! - b[i]!) <= Math.abs(b[i]!) * 2 ** -11 + 1e-7, `f16 element ${i}`);
    assert.ok(Math.abs(bb[i]! - b[i]!) <= Math.abs(b[i]!) * 2 ** -8 + 1e-7, `bf16 element ${i}`);
  }
  src.close();
});

Deno.test("readSafetensorsHeader() names the file on a truncated file", async () => {
  const dir = await Deno.makeTempDir();
  await writeFixture(dir);
  const full = await Deno.readFile(`${dir}/model.safetensors`);
  await Deno.writeFile(`${dir}/cut.safetensors`, full.subarray(0, full.length - 10));
  const e = await expectCheckpointError(
    readSafetensorsHeader(`${dir}/cut.safetensors`),
    "cut.safetensors",
    "truncated",
  );
  assert.equal(e.tensor, "c");
  await Deno.writeFile(`${dir}/tiny.safetensors`, full.subarray(0, 5));
  await expectCheckpointError(readSafetensorsHeader(`${dir}/tiny.safetensors`), "tiny.safetensors", "truncated");
  await Deno.writeFile(`${dir}/half.safetensors`, full.subarray(0, 40));
  await expectCheckpointError(readSafetensorsHeader(`${dir}/half.safetensors`), "half.safetensors", "truncated");
});

Deno.test("readSafetensorsHeader() rejects a bad header with the file name", async () => {
  const dir = await Deno.makeTempDir();
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, 1n << 40n, true);
  await Deno.writeFile(`${dir}/huge.safetensors`, new Uint8Array([...len, 1, 2, 3]));
  await expectCheckpointError(readSafetensorsHeader(`${dir}/huge.safetensors`), "huge.safetensors", "bad header");
  const junk = new TextEncoder().encode("{not json!");
  new DataView(len.buffer).setBigUint64(0, BigInt(junk.length), true);
  await Deno.writeFile(`${dir}/junk.safetensors`, new Uint8Array([...len, ...junk]));
  await expectCheckpointError(readSafetensorsHeader(`${dir}/junk.safetensors`), "junk.safetensors", "not valid JSON");
  const badDtype = new TextEncoder().encode(JSON.stringify({ w: { dtype: "Q9", shape: [1], data_offsets: [0, 1] } }));
  new DataView(len.buffer).setBigUint64(0, BigInt(badDtype.length), true);
  await Deno.writeFile(`${dir}/dt.safetensors`, new Uint8Array([...len, ...badDtype, 0]));
  await expectCheckpointError(readSafetensorsHeader(`${dir}/dt.safetensors`), "dt.safetensors", `"w"`, "dtype");
  const badSpan = new TextEncoder().encode(JSON.stringify({ w: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }));
  new DataView(len.buffer).setBigUint64(0, BigInt(badSpan.length), true);
  await Deno.writeFile(`${dir}/span.safetensors`, new Uint8Array([...len, ...badSpan, 0, 0, 0, 0]));
  await expectCheckpointError(readSafetensorsHeader(`${dir}/span.safetensors`), "span.safetensors", `"w"`, "needs 8");
});

Deno.test("SafetensorsSource.f32() names file and tensor on a missing tensor or a wrong shape", async () => {
  const dir = await Deno.makeTempDir();
  await writeFixture(dir);
  const src = await SafetensorsSource.open([`${dir}/model.safetensors`]);
  await expectCheckpointError(src.f32("nope"), "missing tensor", "nope", "model.safetensors");
  await expectCheckpointError(src.f32("a", [3, 2]), "model.safetensors", `"a"`, "[2,3]", "[3,2]");
  src.close();
});

Deno.test("openCheckpoint() follows model.safetensors.index.json across shards", async () => {
  const dir = await Deno.makeTempDir();
  const src = await SafetensorsSource.open([`${STORIES_DIR}/model.safetensors`]);
  const names = src.names();
  const half = Math.floor(names.length / 2);
  const shards = [names.slice(0, half), names.slice(half)];
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    const tensors = [];
    for (const n of shard) {
      const info = src.info(n);
      tensors.push({ name: n, dtype: info.dtype, shape: info.shape, data: await src.bytes(n) });
      weightMap[n] = file;
    }
    await writeSafetensors(`${dir}/${file}`, tensors);
  }
  src.close();
  await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, JSON.stringify({ weight_map: weightMap }));
  await Deno.copyFile(`${STORIES_DIR}/config.json`, `${dir}/config.json`);
  assert.equal((await safetensorsFiles(dir)).length, 2);
  const ckpt = await openCheckpoint(dir);
  assert.equal(ckpt.weights.names().length, names.length);
  const backend = new ReferenceBackend();
  await backend.load(ckpt.spec, ckpt.weights, { weight: "f32", kv: "f32", compute: "f32" });
  ckpt.weights.close();
});

Deno.test("ReferenceBackend.load() fails naming the tensor when a checkpoint lacks one or has a wrong shape", async () => {
  const dir = await Deno.makeTempDir();
  const src = await SafetensorsSource.open([`${STORIES_DIR}/model.safetensors`]);
  const tensors = [];
  for (const n of src.names()) {
    if (n === "model.layers.3.mlp.up_proj.weight") continue;
    const info = src.info(n);
    tensors.push({ name: n, dtype: info.dtype, shape: info.shape, data: await src.bytes(n) });
  }
  await writeSafetensors(`${dir}/model.safetensors`, tensors);
  await Deno.copyFile(`${STORIES_DIR}/config.json`, `${dir}/config.json`);
  const ckpt = await openCheckpoint(dir);
  await expectCheckpointError(
    new ReferenceBackend().load(ckpt.spec, ckpt.weights, { weight: "f32", kv: "f32", compute: "f32" }),
    "model.layers.3.mlp.up_proj.weight",
    "model.safetensors",
  );
  // Wrong shape: a config that claims a wider FFN than the tensors have.
  const cfg = JSON.parse(await Deno.readTextFile(`${STORIES_DIR}/config.json`));
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...cfg, intermediate_size: 200 }));
  await writeSafetensors(`${dir}/model.safetensors`, [...tensors, {
    name: "model.layers.3.mlp.up_proj.weight",
    dtype: "F32",
    shape: [172, 64],
    data: new Uint8Array(172 * 64 * 4),
  }]);
  const ckpt2 = await openCheckpoint(dir);
  await expectCheckpointError(
    new ReferenceBackend().load(ckpt2.spec, ckpt2.weights, { weight: "f32", kv: "f32", compute: "f32" }),
    "has shape [172,64], expected [200,64]",
  );
  src.close();
});

// safetensors reader: validates headers up front and reads each tensor straight from its file offset into one
// buffer of exactly its size, so the checkpoint is never held in the JS heap twice.
import type { SafetensorsDType, TensorInfo, TensorSource } from "../core/types.ts";
import { CheckpointError } from "../core/errors.ts";
import { toF32 } from "./dtype.ts";

export const DTYPE_BYTES: Record<SafetensorsDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  F8_E4M3: 1,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

interface Entry extends TensorInfo {
  /** absolute byte offset of the tensor in its file */
  readonly offset: number;
}

/** Parses and validates one file's header. Throws CheckpointError naming the file (and tensor). */
export async function readSafetensorsHeader(file: string): Promise<Entry[]> {
  let size: number;
  try {
    size = (await Deno.stat(file)).size;
  } catch (e) {
    throw new CheckpointError(`${file}: cannot open (${(e as Error).message})`, file);
  }
  if (size < 8) throw new CheckpointError(`${file}: truncated file (${size} bytes, no header length)`, file);
  using f = await Deno.open(file);
  const lenBuf = new Uint8Array(8);
  await readExact(f, lenBuf, file);
  const headerLen = Number(new DataView(lenBuf.buffer).getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES || headerLen < 2) {
    throw new CheckpointError(`${file}: bad header (declared header length ${headerLen} bytes)`, file);
  }
  if (8 + headerLen > size) {
    throw new CheckpointError(`${file}: truncated file (header needs ${headerLen} bytes, file has ${size})`, file);
  }
  const headerBytes = new Uint8Array(headerLen);
  await readExact(f, headerBytes, file);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new CheckpointError(`${file}: bad header (not valid JSON: ${(e as Error).message})`, file);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new CheckpointError(`${file}: bad header (not a JSON object)`, file);
  }
  const dataStart = 8 + headerLen;
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const bad = (why: string) => new CheckpointError(`${file}: tensor "${name}": ${why}`, file, name);
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== "object" || e === null) throw bad("header entry is not an object");
    const dtype = e.dtype as SafetensorsDType;
    if (typeof dtype !== "string" || !(dtype in DTYPE_BYTES)) throw bad(`unsupported dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw bad(`bad shape ${JSON.stringify(e.shape)}`);
    }
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0)) {
      throw bad(`bad data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    const shape = e.shape as number[];
    const byteLength = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    if (end - begin !== byteLength) {
      throw bad(`data_offsets span ${end - begin} bytes but ${dtype}${JSON.stringify(shape)} needs ${byteLength}`);
    }
    if (dataStart + end > size) {
      throw bad(`truncated file: tensor ends at byte ${dataStart + end}, file has ${size}`);
    }
    entries.push({ name, dtype, shape, file, byteLength, offset: dataStart + begin });
  }
  return entries;
}

async function readExact(f: Deno.FsFile, buf: Uint8Array, file: string, tensor?: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const n = await f.read(buf.subarray(done));
    if (n === null) {
      throw new CheckpointError(`${file}${tensor ? `: tensor "${tensor}"` : ""}: unexpected end of file`, file, tensor);
    }
    done += n;
  }
}

/** A TensorSource over one or more safetensors files. */
export class SafetensorsSource implements TensorSource {
  readonly #entries = new Map<string, Entry>();
  readonly #files = new Map<string, Deno.FsFile>();

  private constructor(entries: Entry[]) {
    for (const e of entries) {
      const prev = this.#entries.get(e.name);
      if (prev) {
        throw new CheckpointError(`tensor "${e.name}" appears in both ${prev.file} and ${e.file}`, e.file, e.name);
      }
      this.#entries.set(e.name, e);
    }
  }

  static async open(files: string[]): Promise<SafetensorsSource> {
    const all: Entry[] = [];
    for (const f of files) all.push(...await readSafetensorsHeader(f));
    return new SafetensorsSource(all);
  }

  names(): string[] {
    return [...this.#entries.keys()];
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  info(name: string): TensorInfo {
    const e = this.#entries.get(name);
    if (!e) {
      const files = [...new Set([...this.#entries.values()].map((x) => x.file))].join(", ");
      throw new CheckpointError(`missing tensor "${name}" (not found in ${files || "any file"})`, undefined, name);
    }
    return e;
  }

  async bytes(name: string): Promise<Uint8Array> {
    const e = this.info(name) as Entry;
    let f = this.#files.get(e.file);
    if (!f) {
      f = await Deno.open(e.file);
      this.#files.set(e.file, f);
    }
    const buf = new Uint8Array(e.byteLength);
    await f.seek(e.offset, Deno.SeekMode.Start);
    await readExact(f, buf, e.file, name);
    return buf;
  }

  async f32(name: string, shape?: readonly number[]): Promise<Float32Array> {
    const e = this.info(name);
    if (shape && (shape.length !== e.shape.length || shape.some((d, i) => d !== e.shape[i]))) {
      throw new CheckpointError(
        `${e.file}: tensor "${name}" has shape ${JSON.stringify(e.shape)}, expected ${JSON.stringify(shape)}`,
        e.file,
        name,
      );
    }
    const raw = await this.bytes(name);
    try {
      return toF32(raw, e.dtype);
    } catch (err) {
      throw new CheckpointError(`${e.file}: tensor "${name}": ${(err as Error).message}`, e.file, name);
    }
  }

  close(): void {
    for (const f of this.#files.values()) f.close();
    this.#files.clear();
  }
}

/** Writes a safetensors file (used by the quantizer, the demo model and test fixtures). */
export async function writeSafetensors(
  file: string,
  tensors: { name: string; dtype: SafetensorsDType; shape: readonly number[]; data: Uint8Array }[],
  metadata: Record<string, string> = { format: "pt" },
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  for (const t of tensors) {
    const need = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (need !== t.data.byteLength) {
      throw new Error(`writeSafetensors: ${t.name} has ${t.data.byteLength} bytes, needs ${need}`);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + need] };
    off += need;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += " ";
  const hb = new TextEncoder().encode(json);
  using f = await Deno.open(file, { write: true, create: true, truncate: true });
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(hb.length), true);
  await writeAll(f, len);
  await writeAll(f, hb);
  for (const t of tensors) await writeAll(f, t.data);
}

async function writeAll(f: Deno.FsFile, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) done += await f.write(data.subarray(done));
}

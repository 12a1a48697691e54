// Reading a JSON request body with a size limit (checked on Content-Length and on the bytes actually received).
import { ApiError, badRequest } from "./errors.ts";

export type JsonObject = Record<string, unknown>;

export const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;

function tooLarge(limit: number): ApiError {
  return new ApiError(
    413,
    `the request body is larger than ${limit} bytes`,
    "invalid_request_error",
    null,
    "request_too_large",
  );
}

/** Reads at most `limit` bytes of the body; throws 413 beyond that. */
async function readLimited(req: Request, limit: number): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared) > limit) throw tooLarge(limit);
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    parts.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** The body as a JSON object; 400 when it is not valid UTF-8 JSON or not an object, 413 when too large. */
export async function readJsonObject(req: Request, limit = DEFAULT_MAX_BODY_BYTES): Promise<JsonObject> {
  const bytes = await readLimited(req, limit);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw badRequest("the request body is not valid UTF-8");
  }
  if (text.trim() === "") throw badRequest("the request body is empty; expected a JSON object");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw badRequest(`the request body is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw badRequest("the request body must be a JSON object");
  }
  return value as JsonObject;
}

// What the HTTP handlers share: the engine, the served model, limits, and the registry of in-flight requests
// (OpenAI ids such as chatcmpl-... mapped to engine handles, for /abort and shutdown).
import type { Engine } from "../engine/engine.ts";
import type { RequestHandle } from "../engine/request.ts";
import type { TextTokenizer } from "../tokenizer/mod.ts";
import type { JsonObject } from "./body.ts";
import { modelNotFound } from "./errors.ts";
import { optString } from "./fields.ts";

export interface ServerContext {
  readonly engine: Engine;
  /** The name clients pass as `model` (--served-model-name, else the model id). */
  readonly modelName: string;
  /** The model's own id (path or Hub id, or the demo id). */
  readonly modelRoot: string;
  /** Shown by /v1/models as `description` (the demo model says it is random noise). */
  readonly description: string | null;
  readonly tokenizer: TextTokenizer | null;
  /** Bearer token required on every route but /health and /metrics; null: no auth. */
  readonly apiKey: string | null;
  /** Most requests waiting for admission before new ones get 429. */
  readonly maxWaiting: number;
  readonly maxBodyBytes: number;
  /** Allowed CORS origins ("*" for any); empty: no CORS headers. */
  readonly corsOrigins: readonly string[];
  /** Unix seconds, reported as `created`. */
  readonly created: number;
  readonly active: ActiveRequests;
  /** Set at shutdown: /health answers 503 and new requests are refused. */
  closing: boolean;
}

/** In-flight API requests by OpenAI id, and the open SSE streams (closed by force at the end of shutdown). */
export class ActiveRequests {
  readonly #byId = new Map<string, readonly RequestHandle[]>();
  readonly #streams = new Set<ReadableStreamDefaultController<Uint8Array>>();

  add(id: string, handles: readonly RequestHandle[]): void {
    this.#byId.set(id, handles);
  }

  delete(id: string): void {
    this.#byId.delete(id);
  }

  get size(): number {
    return this.#byId.size;
  }

  /** Aborts every engine request of one API request; false when the id is unknown or already finished. */
  abort(id: string): boolean {
    const hs = this.#byId.get(id);
    if (!hs) return false;
    this.#byId.delete(id);
    for (const h of hs) h.abort();
    return true;
  }

  addStream(c: ReadableStreamDefaultController<Uint8Array>): void {
    this.#streams.add(c);
  }

  deleteStream(c: ReadableStreamDefaultController<Uint8Array>): void {
    this.#streams.delete(c);
  }

  /** Errors every open stream (clients that stopped reading would otherwise hold the listener open). */
  closeStreams(): void {
    for (const c of this.#streams) {
      try {
        c.error(new Error("server shut down"));
      } catch { /* already closed */ }
    }
    this.#streams.clear();
  }
}

/** Checks the optional `model` field against the served name; 404 model_not_found otherwise. */
export function checkModel(ctx: ServerContext, body: JsonObject): void {
  const model = optString(body, "model");
  if (model !== undefined && model !== ctx.modelName) throw modelNotFound(model);
}

/** OpenAI-style id: prefix + 24 random hex digits. */
export function newRequestId(prefix: string): string {
  const b = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("")}`;
}

// OpenAI-style API errors: `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status.
import { UserError } from "../core/errors.ts";

export type ApiErrorType = "invalid_request_error" | "rate_limit_error" | "server_error";

export interface ApiErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: ApiErrorType;
    readonly param: string | null;
    readonly code: string | null;
  };
}

export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Allow, Retry-After, WWW-Authenticate). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  response(): Response {
    return Response.json(this.body(), { status: this.status, headers: this.headers });
  }
}

/** 400 invalid_request_error naming the offending field. */
export function badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, "invalid_request_error", param, code);
}

export function modelNotFound(model: string): ApiError {
  return new ApiError(
    404,
    `The model \`${model}\` does not exist or you do not have access to it.`,
    "invalid_request_error",
    "model",
    "model_not_found",
  );
}

export function shuttingDown(): ApiError {
  return new ApiError(503, "the server is shutting down", "server_error", null, "shutting_down");
}

export function contextLengthExceeded(message: string, param: string): ApiError {
  return badRequest(message, param, "context_length_exceeded");
}

/** Maps anything thrown by a handler to an ApiError: UserError → 400, the rest → 500 (logged). */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof UserError) return badRequest(e.message);
  const msg = e instanceof Error ? e.message : String(e);
  console.error(`internal error: ${e instanceof Error ? e.stack ?? msg : msg}`);
  return new ApiError(500, `internal server error: ${msg}`, "server_error", null, "internal_error");
}

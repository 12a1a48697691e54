// Named errors. Each carries enough context to act on without a stack trace.

/** A checkpoint file is unreadable, truncated, or inconsistent with config.json. Names the file and tensor. */
export class CheckpointError extends Error {
  override readonly name = "CheckpointError";
  constructor(message: string, readonly file?: string, readonly tensor?: string) {
    super(message);
  }
}

/** Bad user input (CLI flags, request fields). The message is shown as-is. */
export class UserError extends Error {
  override readonly name = "UserError";
}

/** A backend cannot start on this machine; `reason` says why (shown by `info`). */
export class BackendUnavailableError extends Error {
  override readonly name = "BackendUnavailableError";
}

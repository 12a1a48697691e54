// The two ways of answering a generation request: one JSON body after every choice ends, or an SSE stream.
// Either way a client that disconnects aborts the engine requests at once, and the API id leaves the registry.
import type { ServerContext } from "./context.ts";
import { type Choice, collectChoice, type CollectedChoice } from "./generation.ts";
import { sseResponse } from "./sse.ts";

function abortAll(choices: readonly Choice[]): void {
  for (const c of choices) c.handle.abort();
}

/**
 * Waits for every choice (in index order); aborts them all if the client goes away first (request.signal; in Deno's
 * legacy mode this signal also fires after a successful response, harmlessly, and Deno logs a one-time notice
 * unless run with --unstable-no-legacy-abort).
 */
export async function collectChoices(
  ctx: ServerContext,
  apiId: string,
  choices: readonly Choice[],
  signal: AbortSignal,
): Promise<CollectedChoice[]> {
  const onAbort = () => abortAll(choices);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    if (signal.aborted) onAbort();
    return await Promise.all(choices.map(collectChoice));
  } finally {
    signal.removeEventListener("abort", onAbort);
    ctx.active.delete(apiId);
  }
}

/** Streams the chunks `chunks` makes; closing early (client gone, shutdown) aborts every choice. */
export function streamChoices(
  ctx: ServerContext,
  apiId: string,
  choices: readonly Choice[],
  chunks: AsyncGenerator<unknown>,
): Response {
  return sseResponse(ctx, chunks, {
    onClose: () => {
      abortAll(choices);
      ctx.active.delete(apiId);
    },
  });
}

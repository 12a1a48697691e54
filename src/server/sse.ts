// Server-sent events: `data: {json}\n\n` per chunk, then `data: [DONE]\n\n`. The body is pulled, so chunks are made
// only as fast as the client reads. A client that goes away makes Deno cancel the body at once (even while no chunk
// is being written), which triggers onClose: the engine requests are aborted and their KV blocks freed.
// (request.signal is not used here: in Deno's legacy mode it also fires after every successful response.)
import type { ServerContext } from "./context.ts";
import { toApiError } from "./errors.ts";

const encoder = new TextEncoder();
const DONE = encoder.encode("data: [DONE]\n\n");

export interface SseOptions {
  /** Called once when the stream ends for any reason (finished, cancelled, client gone, error). */
  readonly onClose: () => void;
}

export function sseResponse(ctx: ServerContext, events: AsyncGenerator<unknown>, opts: SseOptions): Response {
  let controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    if (controller) ctx.active.deleteStream(controller);
    opts.onClose();
  };
  const finish = (c: ReadableStreamDefaultController<Uint8Array>, last: Uint8Array[]) => {
    close();
    try {
      for (const chunk of last) c.enqueue(chunk);
      c.close();
    } catch { /* cancelled meanwhile */ }
  };
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      ctx.active.addStream(c);
    },
    async pull(c) {
      if (closed) return finish(c, []);
      try {
        const r = await events.next();
        if (r.done) return finish(c, [DONE]);
        if (!closed) c.enqueue(encoder.encode(`data: ${JSON.stringify(r.value)}\n\n`));
      } catch (e) {
        // Headers are gone already: report the error in-band, as OpenAI does.
        finish(c, [encoder.encode(`data: ${JSON.stringify(toApiError(e).body())}\n\n`)]);
      }
    },
    cancel() {
      close();
      events.return(undefined).catch(() => {});
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      // no-transform also keeps Deno from compressing (and so buffering) the stream.
      "cache-control": "no-cache, no-transform",
      "x-accel-buffering": "no",
    },
  });
}

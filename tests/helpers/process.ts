// A `serve` child process in tests: wait for the URL it prints on its first stdout line, then stop it with SIGTERM.
import assert from "node:assert/strict";

export interface ServeProcess {
  readonly url: string;
  /** SIGTERM, then the exit code and everything it wrote to stderr. */
  stop(): Promise<{ code: number; stderr: string }>;
}

/** Reads the child's stdout up to its first newline and returns the http://127.0.0.1:PORT URL printed there. */
export async function servedUrl(child: Deno.ChildProcess): Promise<ServeProcess> {
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const url = /http:\/\/127\.0\.0\.1:(\d+)/.exec(out)?.[0];
  if (!url) {
    child.kill("SIGKILL");
    assert.fail(`no URL in ${JSON.stringify(out)}; stderr: ${await stderr}`);
  }
  assert.doesNotMatch(url, /:0$/);
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      const status = await child.status;
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      return { code: status.code, stderr: await stderr };
    },
  };
}

// CLI entry: `deno run -A main.ts <command> [flags]`. Each command has --help.
import { BackendUnavailableError, CheckpointError, UserError } from "./src/core/errors.ts";

const COMMANDS: Record<string, { summary: string; load: () => Promise<(args: string[]) => Promise<void>> }> = {
  serve: {
    summary: "start the OpenAI-compatible HTTP server",
    load: async () => (await import("./src/cli/serve.ts")).serveCommand,
  },
  chat: {
    summary: "chat with a model in the terminal",
    load: async () => (await import("./src/cli/chat.ts")).chatCommand,
  },
  generate: {
    summary: "generate a continuation of one prompt",
    load: async () => (await import("./src/cli/generate.ts")).generateCommand,
  },
  logits: {
    summary: "print the logits of every prompt position as JSON",
    load: async () => (await import("./src/cli/logits.ts")).logitsCommand,
  },
  quantize: {
    summary: "quantize a model's weights to int4 (AWQ layout) or int8 (GPTQ layout)",
    load: async () => (await import("./src/cli/quantize.ts")).quantizeCommand,
  },
  "eval-ppl": {
    summary: "perplexity, top-1 agreement and KL of a (quantized) run against an f32 reference",
    load: async () => (await import("./src/cli/eval_ppl.ts")).evalPplCommand,
  },
  info: {
    summary: "list the backends that can start here",
    load: async () => (await import("./src/cli/info.ts")).infoCommand,
  },
};

const HELP = `turbodeno: a Deno-native LLM inference server (OpenAI-compatible)

Usage: deno run -A main.ts <command> [flags]     (each command takes --help)

Commands:
${Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`).join("\n")}`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    console.log(HELP);
    return cmd ? 0 : 1;
  }
  const c = COMMANDS[cmd];
  if (!c) {
    console.error(`unknown command "${cmd}"\n\n${HELP}`);
    return 2;
  }
  try {
    await (await c.load())(rest);
    return 0;
  } catch (e) {
    if (e instanceof UserError || e instanceof CheckpointError || e instanceof BackendUnavailableError) {
      console.error(`error: ${e.message}`);
      return 1;
    }
    if (e instanceof TypeError && /option|argument/i.test(e.message) && (e as { code?: string }).code) {
      console.error(`error: ${e.message} (see: main.ts ${cmd} --help)`);
      return 2;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));

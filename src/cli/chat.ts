// `chat`: an interactive terminal chat through the engine and the model's chat template. Reads one user turn per
// line from stdin (a terminal or a pipe), streams the answer, and keeps the conversation. Commands: /reset, /exit.
import { parseArgs } from "node:util";
import { UserError } from "../core/errors.ts";
import type { SamplingParams } from "../core/types.ts";
import { DEFAULT_ENGINE_CONFIG, Engine } from "../engine/engine.ts";
import type { RequestHandle } from "../engine/request.ts";
import { defaultSamplingParams, validateSamplingParams } from "../sampling/params.ts";
import type { ChatMessage, TextTokenizer } from "../tokenizer/mod.ts";
import { loadModel, MODEL_FLAG_OPTIONS, MODEL_FLAGS_HELP } from "./common.ts";

export const CHAT_HELP = `Usage: main.ts chat [--model DIR] [options]

Chats with a model in the terminal: type a message and press Enter; the answer streams back and the conversation
is kept. Works with piped input too (one user turn per line). Ctrl-C stops an answer; at the prompt it exits.
Commands: /reset (forget the conversation), /exit (quit).
${MODEL_FLAGS_HELP}
  --system TEXT          system prompt
  --max-tokens N         longest answer in tokens (default 512)
  --temperature T        default 0.7 (0 for greedy)
  --top-p P, --top-k K, --min-p P, --repetition-penalty R, --seed N`;

function num(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UserError(`--${name} must be a number, got "${v}"`);
  return n;
}

/** Lines of stdin, without their line ends. */
async function* stdinLines(): AsyncGenerator<string> {
  let buf = "";
  for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    buf += text;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl).replace(/\r$/, "");
      buf = buf.slice(nl + 1);
    }
  }
  if (buf !== "") yield buf;
}

const encoder = new TextEncoder();
const write = (s: string) => Deno.stdout.writeSync(encoder.encode(s));

class Conversation {
  messages: ChatMessage[] = [];
  constructor(readonly system: string | undefined) {
    this.reset();
  }
  reset(): void {
    this.messages = this.system ? [{ role: "system", content: this.system }] : [];
  }
  /** Prompt ids for the next answer, dropping the oldest turns while it does not fit; null if even one turn is too long. */
  promptIds(tok: TextTokenizer, maxLen: number): number[] | null {
    while (true) {
      const text = tok.applyChatTemplate(this.messages, { addGenerationPrompt: true });
      const ids = tok.encode(text, { addSpecialTokens: false });
      if (ids.length < maxLen) return ids;
      const first = this.messages.findIndex((m) => m.role !== "system");
      if (first < 0 || first === this.messages.length - 1) return null;
      this.messages.splice(first, this.messages[first + 1]?.role === "assistant" ? 2 : 1);
      console.error("(the conversation is longer than the context; dropped the oldest turn)");
    }
  }
}

export async function chatCommand(args: string[]): Promise<void> {
  const { values: f } = parseArgs({
    args,
    options: {
      ...MODEL_FLAG_OPTIONS,
      system: { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      "top-p": { type: "string" },
      "top-k": { type: "string" },
      "min-p": { type: "string" },
      "repetition-penalty": { type: "string" },
      seed: { type: "string" },
    },
  });
  if (f.help) return console.log(CHAT_HELP);
  const maxTokens = num(f["max-tokens"], "max-tokens", 512);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new UserError("--max-tokens must be a positive integer");
  const sampling: SamplingParams = {
    ...defaultSamplingParams(),
    temperature: num(f.temperature, "temperature", 0.7),
    topP: num(f["top-p"], "top-p", 1),
    topK: num(f["top-k"], "top-k", 0),
    minP: num(f["min-p"], "min-p", 0),
    repetitionPenalty: num(f["repetition-penalty"], "repetition-penalty", 1),
    seed: f.seed === undefined ? null : num(f.seed, "seed", 0),
  };
  const bad = validateSamplingParams(sampling);
  if (bad) throw new UserError(bad);

  const m = await loadModel(f);
  await using _backend = m.backend;
  const tok = m.tokenizer;
  if (!tok) throw new UserError(`${m.id} has no tokenizer (tokenizer.json), so it cannot chat`);
  await using engine = new Engine(m.backend, m.spec, m.precision, tok, DEFAULT_ENGINE_CONFIG);
  const interactive = Deno.stdin.isTerminal();
  if (interactive) {
    const note = m.isDemo ? " (built-in demo model: random weights, its answers are noise)" : "";
    console.error(`chatting with ${m.id}${note}. /reset forgets the conversation, /exit quits.`);
  }

  const convo = new Conversation(f.system);
  let current: RequestHandle | null = null;
  const onSigint = () => {
    if (current) current.abort();
    else Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", onSigint);
  try {
    if (interactive) write("> ");
    for await (const raw of stdinLines()) {
      const line = raw.trim();
      if (line === "/exit" || line === "/quit") break;
      if (line === "/reset") {
        convo.reset();
        console.error("(conversation reset)");
      } else if (line !== "") {
        convo.messages.push({ role: "user", content: line });
        const ids = convo.promptIds(tok, engine.maxModelLen);
        if (ids === null) {
          convo.messages.pop();
          console.error("(that message alone is longer than the model's context)");
        } else {
          current = engine.submit({
            promptIds: ids,
            sampling,
            maxTokens: Math.min(maxTokens, engine.maxModelLen - ids.length),
          });
          let answer = "";
          for await (const d of current) {
            answer += d.text;
            write(d.text);
          }
          const r = await current.result;
          current = null;
          write(r.finishReason === "abort" ? " [stopped]\n" : "\n");
          convo.messages.push({ role: "assistant", content: answer });
        }
      }
      if (interactive) write("> ");
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
}

// A terminal progress bar on stderr. On a terminal it redraws one line; otherwise it prints a line per 10%.
const enc = new TextEncoder();

function fmtBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

export class ProgressBar {
  readonly #tty: boolean;
  readonly #start = performance.now();
  #lastDecile = -1;
  #lastDraw = 0;
  #closed = false;

  constructor(
    readonly title: string,
    readonly total: number,
    readonly unit: "bytes" | "items" = "bytes",
    readonly quiet = false,
  ) {
    this.#tty = !quiet && Deno.stderr.isTerminal();
  }

  update(done: number, label = ""): void {
    if (this.quiet || this.#closed) return;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const now = performance.now();
    if (this.#tty) {
      if (now - this.#lastDraw < 50 && frac < 1) return;
      this.#lastDraw = now;
      const width = 30;
      const fill = Math.round(frac * width);
      const secs = (now - this.#start) / 1000;
      const amount = this.unit === "bytes" ? `${fmtBytes(done)}/${fmtBytes(this.total)}` : `${done}/${this.total}`;
      const rate = this.unit === "bytes" && secs > 0 ? ` ${fmtBytes(done / secs)}/s` : "";
      const line = `\r${this.title} [${"#".repeat(fill)}${"-".repeat(width - fill)}] ${
        (frac * 100).toFixed(0).padStart(3)
      }% ${amount}${rate} ${label}`.slice(0, 160);
      Deno.stderr.writeSync(enc.encode(line + "\x1b[K"));
    } else {
      const decile = Math.floor(frac * 10);
      if (decile === this.#lastDecile) return;
      this.#lastDecile = decile;
      Deno.stderr.writeSync(enc.encode(`${this.title}: ${decile * 10}%\n`));
    }
  }

  done(): void {
    if (this.quiet || this.#closed) return;
    this.update(this.total);
    this.#closed = true;
    const secs = ((performance.now() - this.#start) / 1000).toFixed(1);
    if (this.#tty) Deno.stderr.writeSync(enc.encode(`\r${this.title}: done in ${secs}s\x1b[K\n`));
  }
}

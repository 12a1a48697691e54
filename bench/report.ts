// Benchmark outputs: JSON (everything), a markdown table, and an SVG bar chart of one column.

export interface Report {
  readonly suite: string;
  readonly meta: Record<string, string | number>;
  readonly columns: readonly string[];
  readonly rows: readonly Record<string, number | string>[];
  /** The column drawn in the chart, and the one labelling each bar. */
  readonly chart: { value: string; label: (row: Record<string, number | string>) => string; title: string };
}

function cell(v: number | string): string {
  if (typeof v === "string") return v;
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
}

export function markdown(r: Report): string {
  const head = `${r.suite}: ${Object.entries(r.meta).map(([k, v]) => `${k} ${v}`).join(", ")}`;
  return [
    head,
    "",
    `| ${r.columns.join(" | ")} |`,
    `| ${r.columns.map(() => "---:").join(" | ")} |`,
    ...r.rows.map((row) => `| ${r.columns.map((c) => cell(row[c] ?? "")).join(" | ")} |`),
  ].join("\n") + "\n";
}

function esc(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);
}

/** A horizontal bar chart: one bar per row, scaled to the largest value. */
export function svgChart(r: Report): string {
  const values = r.rows.map((row) => Number(row[r.chart.value] ?? 0));
  const max = Math.max(1e-9, ...values);
  const barH = 22, left = 220, width = 420, top = 40;
  const height = top + r.rows.length * (barH + 6) + 20;
  const bars = r.rows.map((row, i) => {
    const y = top + i * (barH + 6);
    const w = Math.max(1, (values[i]! / max) * width);
    return `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(r.chart.label(row))}</text>` +
      `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="#4a7bd0"/>` +
      `<text x="${left + w + 6}" y="${y + 15}">${esc(cell(values[i]!))}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 120}" height="${height}" ` +
    `font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>` +
    `<text x="10" y="22" font-size="14" font-weight="bold">${esc(r.chart.title)}</text>${bars.join("")}</svg>\n`;
}

/** Writes OUT/SUITE.json, OUT/SUITE.md and OUT/SUITE.svg; returns the markdown. */
export async function writeReport(out: string, r: Report): Promise<string> {
  await Deno.mkdir(out, { recursive: true });
  await Deno.writeTextFile(`${out}/${r.suite}.json`, JSON.stringify({ ...r, chart: r.chart.title }, null, 2) + "\n");
  const md = markdown(r);
  await Deno.writeTextFile(`${out}/${r.suite}.md`, md);
  await Deno.writeTextFile(`${out}/${r.suite}.svg`, svgChart(r));
  return md;
}

/** p-th percentile (0..100) of unsorted values, linear interpolation. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const x = (p / 100) * (s.length - 1);
  const lo = Math.floor(x), hi = Math.ceil(x);
  return s[lo]! + (s[hi]! - s[lo]!) * (x - lo);
}

// `info`: which backends can start here, and why the others cannot.
import { parseArgs } from "node:util";
import { probeAll } from "../backends/select.ts";

export const INFO_HELP = `Usage: main.ts info [--json]

Lists the backends that can start on this machine (cuda, webgpu, reference) and why the others cannot.`;

export async function infoCommand(args: string[]): Promise<void> {
  const { values: f } = parseArgs({
    args,
    options: { json: { type: "boolean", default: false }, help: { type: "boolean", short: "h", default: false } },
  });
  if (f.help) return console.log(INFO_HELP);
  const probes = await probeAll();
  if (f.json) return console.log(JSON.stringify({ backends: probes }));
  console.log(`deno ${Deno.version.deno} on ${Deno.build.os}/${Deno.build.arch}`);
  for (const p of probes) console.log(`${p.available ? "✔" : "✘"} ${p.name.padEnd(9)} ${p.detail}`);
}

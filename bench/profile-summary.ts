// Summarizes a V8 .cpuprofile (from `node --cpu-prof`): self time by package/file and the
// hottest functions. Usage: tsx bench/profile-summary.ts <file.cpuprofile> [top]
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg] = process.argv.slice(2);
if (!file) throw new Error("usage: profile-summary <file.cpuprofile> [top]");
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);

function bucketOf(url: string, name: string): string {
  if (name === "(idle)" || name === "(program)" || name === "(garbage collector)") return name;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  // node:internal/http2/core.js → node:internal/http2 (the module family is what tells them apart)
  if (url.startsWith("node:")) return `node:${url.slice(5).split("/").slice(0, url.startsWith("node:internal/") ? 2 : 1).join("/").replace(/\.js$/, "")}`;
  if (url.includes("/dist/src/")) return "app:" + url.split("/dist/src/")[1];
  if (url.includes("/dist/gen/")) return "gen";
  return url === "" ? `(native) ${name}` : url;
}

const buckets = new Map<string, number>();
const functions = new Map<string, number>();
for (const [id, time] of self) {
  const node = byId.get(id)!;
  const { functionName, url, lineNumber } = node.callFrame;
  const bucket = bucketOf(url, functionName);
  buckets.set(bucket, (buckets.get(bucket) ?? 0) + time);
  const key = `${functionName || "(anonymous)"} ${bucket}:${lineNumber + 1}`;
  functions.set(key, (functions.get(key) ?? 0) + time);
}
const busy = total - (buckets.get("(idle)") ?? 0);
const print = (title: string, map: Map<string, number>) => {
  console.log(`\n${title} (% of busy time ${(busy / 1e6).toFixed(1)} s of ${(total / 1e6).toFixed(1)} s)`);
  for (const [key, time] of [...map].filter(([k]) => k !== "(idle)").sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((time / busy) * 100).toFixed(1).padStart(5)} %  ${key}`);
  }
};
// Inclusive time: each sample counts once for every distinct function on its stack.
const parent = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
const inclusive = new Map<string, number>();
for (const [id, time] of self) {
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const { functionName, url, lineNumber } = byId.get(at)!.callFrame;
    if (functionName === "(root)" || functionName === "(idle)") continue;
    seen.add(`${functionName || "(anonymous)"} ${bucketOf(url, functionName)}:${lineNumber + 1}`);
  }
  for (const key of seen) inclusive.set(key, (inclusive.get(key) ?? 0) + time);
}
print("self time by package/file", buckets);
print("hottest functions", functions);
print("inclusive time (the function and what it calls)", inclusive);

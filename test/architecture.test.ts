// The house rules of docs/architecture.md, checked over the import statements of src/ and web/src/:
// each room imports only the rooms below it, and no file imports itself through others.
// When a new room is added, add it here and to the table in docs/architecture.md.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { projectRoot } from "../src/paths.js";

const SRC = join(projectRoot, "src");
const WEB = join(projectRoot, "web", "src");

/** Rooms by path prefix (longest first wins), and the rooms each may import besides itself. */
const ROOMS: { room: string; prefix: string; mayImport: string[] }[] = [
  { room: "entry", prefix: "src/", mayImport: ["*"] }, // main.ts, cli.ts, server.ts, config.ts, bootstrap.ts
  { room: "paths", prefix: "src/paths.ts", mayImport: [] },
  { room: "http", prefix: "src/http/", mayImport: ["ops"] },
  { room: "rpc", prefix: "src/rpc/", mayImport: ["domain", "ops", "protobuf", "db"] },
  { room: "ops", prefix: "src/ops/", mayImport: [] },
  { room: "domain", prefix: "src/domain/", mayImport: ["store", "db", "protobuf"] },
  { room: "store", prefix: "src/store/", mayImport: ["db"] },
  { room: "db", prefix: "src/store/db/", mayImport: ["paths"] },
  { room: "protobuf", prefix: "src/protobuf/", mayImport: [] },
  // A client of the server, not a part of it: only gen/ and libraries.
  { room: "runner-agent", prefix: "src/runner-agent/", mayImport: [] },
  // The web dashboard (runs in the browser): only gen/ and browser packages.
  { room: "web", prefix: "web/src/", mayImport: [] },
];
/** Importable from every room: the generated code and the project's file locations (not in a browser). */
const EVERYONE_MAY_IMPORT = ["gen", "paths"];
/** Rooms whose code runs in a browser: no Node built-ins, and not even src/paths.ts. */
const BROWSER_ROOMS = ["web"];

function roomOf(path: string): string {
  if (path.startsWith("gen/")) return "gen";
  const match = ROOMS.filter((r) => path === r.prefix || (r.prefix.endsWith("/") && path.startsWith(r.prefix)))
    .sort((a, b) => b.prefix.length - a.prefix.length)[0];
  if (!match) return "outside";
  // Only files directly in src/ are entry points; a new folder must be given a room.
  if (match.room === "entry" && path.slice("src/".length).includes("/")) return `unknown folder ${dirname(path)}`;
  return match.room;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return /\.(ts|tsx)$/.test(entry.name) && !entry.name.endsWith(".d.ts") ? [path] : [];
  });
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^"'`;]*?from\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|^\s*import\s*["']([^"']+)["']/gm;

/** Project-relative paths of the project files a file imports. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const match of text.matchAll(IMPORT)) {
    const specifier = match[1] ?? match[2] ?? match[3]!;
    if (!specifier.startsWith(".")) continue; // packages and node: builtins
    const resolved = resolve(dirname(file), specifier);
    const target = [resolved.replace(/\.js$/, ".ts"), resolved.replace(/\.js$/, ".tsx")].find((path) => existsSync(path)) ?? resolved.replace(/\.js$/, ".ts");
    out.push(relative(projectRoot, target).split("\\").join("/"));
  }
  return out;
}

const graph = new Map([...sourceFiles(SRC), ...sourceFiles(WEB)].map((file) => [relative(projectRoot, file).split("\\").join("/"), importsOf(file)]));

describe("architecture", () => {
  it("finds the files and their imports", () => {
    expect(graph.size).toBeGreaterThan(30);
    expect(graph.get("src/server.ts")).toContain("src/rpc/router.ts");
  });

  it("every file is in a known room", () => {
    const unknown = [...graph.keys()].map((file) => [file, roomOf(file)]).filter(([, room]) => room.startsWith("unknown"));
    expect(unknown).toEqual([]);
  });

  it("each room imports only the rooms below it", () => {
    const violations: string[] = [];
    for (const [file, imports] of graph) {
      const from = roomOf(file);
      const allowed = ROOMS.find((r) => r.room === from)?.mayImport ?? [];
      for (const target of imports) {
        const to = roomOf(target);
        const everyone = BROWSER_ROOMS.includes(from) ? ["gen"] : EVERYONE_MAY_IMPORT;
        if (to === from || allowed.includes("*") || allowed.includes(to) || everyone.includes(to)) continue;
        violations.push(`${file} (${from}) imports ${target} (${to})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it("keeps Node out of the browser's rooms", () => {
    const nodeImports = [...graph.keys()]
      .filter((file) => BROWSER_ROOMS.includes(roomOf(file)))
      .flatMap((file) => [...readFileSync(join(projectRoot, file), "utf8").matchAll(IMPORT)].map((m) => [file, m[1] ?? m[2] ?? m[3]!]))
      .filter(([, specifier]) => /^node:|^(fs|path|os|child_process|crypto|http|https|net|stream|url)$/.test(specifier!));
    expect(graph.get("web/src/app.tsx")).toBeDefined();
    expect(nodeImports).toEqual([]);
  });

  it("has no import circles", () => {
    const circles: string[] = [];
    const state = new Map<string, "visiting" | "done">();
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === "done") return;
      if (state.get(file) === "visiting") {
        circles.push([...path.slice(path.indexOf(file)), file].join(" -> "));
        return;
      }
      state.set(file, "visiting");
      for (const target of graph.get(file) ?? []) if (graph.has(target)) visit(target, [...path, file]);
      state.set(file, "done");
    };
    for (const file of graph.keys()) visit(file, []);
    expect(circles).toEqual([]);
  });
});

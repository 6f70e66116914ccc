// The house rules of docs/architecture.md, checked over the import statements of src/:
// each room imports only the rooms below it, and no file imports itself through others.
// When a new room is added, add it here and to the table in docs/architecture.md.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { projectRoot } from "../src/paths.js";

const SRC = join(projectRoot, "src");

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
];
/** Importable from every room: the generated code and the project's file locations. */
const EVERYONE_MAY_IMPORT = ["gen", "paths"];

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
    const target = resolve(dirname(file), specifier).replace(/\.js$/, ".ts");
    out.push(relative(projectRoot, target).split("\\").join("/"));
  }
  return out;
}

const graph = new Map(sourceFiles(SRC).map((file) => [relative(projectRoot, file).split("\\").join("/"), importsOf(file)]));

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
        if (to === from || allowed.includes("*") || allowed.includes(to) || EVERYONE_MAY_IMPORT.includes(to)) continue;
        violations.push(`${file} (${from}) imports ${target} (${to})`);
      }
    }
    expect(violations).toEqual([]);
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

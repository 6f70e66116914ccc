// The Dockerfile cannot be built here (no Docker engine), so this checks it against what
// can be: package.json's scripts, the README's commands, and the health check run for real.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectRoot } from "../src/paths.js";
import { startServer, type TestServer } from "./harness.js";

interface Instruction {
  keyword: string;
  args: string;
}
interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Dockerfile → stages of instructions (comments dropped, continuation lines joined). */
function parseDockerfile(text: string): Stage[] {
  const logical = text
    .split("\n")
    .filter((line) => !/^\s*#/.test(line))
    .join("\n")
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  const stages: Stage[] = [];
  for (const line of logical) {
    const [, keyword, args] = /^(\w+)\s+(.*)$/.exec(line)!;
    if (keyword!.toUpperCase() === "FROM") {
      const [from, as, name] = args!.split(/\s+/);
      stages.push({ from: from!, name: as?.toUpperCase() === "AS" ? name : undefined, instructions: [] });
    } else {
      stages.at(-1)!.instructions.push({ keyword: keyword!.toUpperCase(), args: args! });
    }
  }
  return stages;
}

const read = (file: string) => readFileSync(join(projectRoot, file), "utf8");
const stages = parseDockerfile(read("Dockerfile"));
const final = stages.at(-1)!;
const build = stages.find((stage) => stage.name === "build")!;
const pkg = JSON.parse(read("package.json")) as { scripts: Record<string, string> };
const all = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword).map((i) => i.args);
const one = (stage: Stage, keyword: string) => {
  const found = all(stage, keyword);
  expect(found, `${keyword} in the final stage`).toHaveLength(1);
  return found[0]!;
};
/** The argv of an exec-form instruction (JSON array); shell form would make /bin/sh PID 1. */
const execForm = (args: string): string[] => {
  expect(args.startsWith("["), `exec form (JSON array) expected: ${args}`).toBe(true);
  return JSON.parse(args) as string[];
};

describe("Dockerfile", () => {
  it("builds on node:20 slim images in a build stage and a run stage", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) expect(stage.from).toMatch(/^node:20[\w.-]*-slim$/);
    expect(build).toBeDefined();
  });

  it("builds with npm ci, whose prepare script is the build, and ships only production dependencies", () => {
    const runs = all(build, "RUN").join(" && ");
    expect(runs).toMatch(/\bnpm ci\b/);
    expect(runs).not.toMatch(/\bnpm (install|i)\b/);
    expect(pkg.scripts.prepare).toBe(pkg.scripts.build);
    expect(runs).toMatch(/npm prune --omit=dev/);
    // The build also makes the web dashboard (dist/web, inside dist/), from web/.
    expect(pkg.scripts.build).toContain("vite build --config web/vite.config.ts");
    expect(all(build, "COPY")).toContain("web ./web");
    const copied = all(final, "COPY").filter((args) => args.startsWith("--from=build"));
    for (const dir of ["node_modules", "dist", "migrations", "package.json"]) {
      expect(copied.some((args) => args.includes(`/app/${dir} `)), dir).toBe(true);
    }
  });

  it("runs exactly the command of `npm start`, in exec form so node is PID 1 and gets SIGTERM", () => {
    // `exec` makes the shell npm runs the script in hand its pid to node (SIGTERM reaches the server).
    expect(pkg.scripts.start).toMatch(/^exec /);
    expect(execForm(one(final, "CMD"))).toEqual(pkg.scripts.start!.replace(/^exec /, "").split(/\s+/));
    expect(all(final, "ENTRYPOINT")).toEqual([]);
  });

  it("runs as an unprivileged user", () => {
    const user = one(final, "USER");
    expect(user).not.toMatch(/^(root|0)(:|$)/);
  });

  it("exposes the default port 8080", () => {
    expect(one(final, "EXPOSE")).toBe("8080");
    expect(all(final, "ENV").join(" ")).toMatch(/\bPORT=8080\b/);
  });

  it("has a HEALTHCHECK that runs the compiled health check", () => {
    const healthcheck = one(final, "HEALTHCHECK");
    const [, options, command] = /^(.*?)CMD\s+(\[.*\])$/.exec(healthcheck)!;
    expect(options).toMatch(/--interval=\S+/);
    const argv = execForm(command!);
    expect(argv).toEqual(["node", "dist/src/ops/healthcheck.js"]);
    expect(read("src/ops/healthcheck.ts")).toContain('"/healthz"');
  });
});

describe("the health check", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server?.close());

  const healthcheck = (port: number) =>
    new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, ["--import", "tsx", "src/ops/healthcheck.ts"], {
        cwd: projectRoot,
        env: { ...process.env, PORT: String(port), TLS_CERT_FILE: "" },
        stdio: "ignore",
      });
      child.on("error", reject);
      child.on("exit", resolve);
    });

  it("exits 0 while the server answers /healthz, and 1 when nothing listens", async () => {
    expect(await healthcheck(server.port)).toBe(0);
    const { port } = server;
    await server.close();
    expect(await healthcheck(port)).toBe(1);
  });
});

describe("README", () => {
  const readme = read("README.md");
  const container = readme.slice(readme.indexOf("### Container"));

  it("documents the same build and run commands as the Dockerfile and package.json", () => {
    expect(container).toContain("docker build");
    expect(container).toContain(`\`${execForm(one(final, "CMD")).join(" ")}\``);
    expect(container).toContain("npm start");
    expect(readme).toContain("npm ci");
    // The CLI hint for the image points at a file the build produces.
    const cli = /`(node dist\/src\/(\w[\w-]*)\.js)/.exec(readme.slice(readme.indexOf("## Operating")));
    expect(cli?.[2]).toBe("cli");
    expect(read(`src/${cli![2]}.ts`)).toContain("api-key");
  });
});

describe("docs/operations.md", () => {
  it("documents every environment variable the server reads, with its default", () => {
    const source = read("src/config.ts");
    const names = new Set([...source.matchAll(/\benv\.([A-Z][A-Z0-9_]+)|integer\(env, "([A-Z][A-Z0-9_]+)"/g)].map((m) => m[1] ?? m[2]!));
    expect(names.size).toBeGreaterThanOrEqual(15);
    const docs = read("docs/operations.md");
    const rows = new Map(
      [...docs.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \| ([^|]+) \|/gm)].map((m) => [m[1]!, m[2]!.trim()]),
    );
    for (const name of names) {
      expect(rows.get(name), `${name} in the configuration reference`).toBeTruthy();
    }
    const documentedDefault = /integer\(env, "PORT", (\d+)/.exec(source)![1];
    expect(rows.get("PORT")).toContain(documentedDefault);
  });

  it("is linked from the README", () => {
    expect(read("README.md")).toContain("(docs/operations.md)");
  });
});

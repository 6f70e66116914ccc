// What a server says at startup when something it needs is not there yet or not right (issue
// #10): a PostgreSQL that starts after it, broken TLS files, no API key to begin with.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { projectRoot } from "../src/paths.js";
import { testDatabaseUrl } from "./harness.js";
import { isolatedDatabase, type IsolatedDatabase } from "./isolated-database.js";
import { runNode } from "./processes.js";
import { TcpProxy } from "./tcp-proxy.js";

const tempDirs: string[] = [];
const databases: IsolatedDatabase[] = [];
afterAll(async () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  await Promise.all(databases.map((database) => database.drop()));
});

describe("startup", () => {
  it("checks the TLS files before any database work, naming the variable in a structured line", { timeout: 120_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "rcp-startup-"));
    tempDirs.push(dataDir);
    writeFileSync(join(dataDir, "cert.pem"), "not a certificate\n");
    writeFileSync(join(dataDir, "key.pem"), "not a key\n");
    const run = await runNode(["src/main.ts"], { DATA_DIR: dataDir, TLS_CERT_FILE: join(dataDir, "cert.pem"), TLS_KEY_FILE: join(dataDir, "key.pem"), PORT: "0" });
    expect(run.code).toBe(2);
    const line = JSON.parse(run.stderr.trim().split("\n").at(-1)!) as { level: number; msg: string };
    expect(line.level).toBe(60);
    expect(line.msg).toMatch(/^configuration error: TLS_(CERT|KEY)_FILE \(/);
    expect(existsSync(join(dataDir, "pgdata"))).toBe(false);
  });

  it.runIf(testDatabaseUrl())("waits for a PostgreSQL that is not up yet, then says how to get the first API key", { timeout: 180_000 }, async () => {
    const database = await isolatedDatabase();
    databases.push(database);
    const url = new URL(database.url!);
    const proxy = new TcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    const port = await proxy.start();
    proxy.cut(); // PostgreSQL "not started yet"
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: projectRoot,
      env: { ...process.env, DATABASE_URL: TcpProxy.via(database.url!, port), PORT: "0", HOST: "127.0.0.1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    const waitFor = async (text: string) => {
      const deadline = Date.now() + 90_000;
      while (!output.includes(text)) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no "${text}" in:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    try {
      await waitFor('"msg":"the database at DATABASE_URL is not reachable yet; retrying"');
      expect(output).toContain('"variable":"DATABASE_URL"');
      proxy.restore();
      await waitFor('"msg":"ready"');
      expect(output).toContain("the database has no organization and no API key yet: create an API key with `npm run --silent cli -- api-key create");
    } finally {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("close", resolve));
      await proxy.close();
    }
  });
});

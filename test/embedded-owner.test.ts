// The embedded database has exactly one owner (src/store/db/embedded-lock.ts): a second server on
// the same DATA_DIR refuses to start, a crashed owner's lock is taken over, and the CLI carries out
// its commands through the running server (src/control-socket.ts) or refuses: never a success
// that did not happen, never a revocation that does not revoke.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { migrateDataDir, runNode, startServerProcess, type ServerProcess } from "./processes.js";
import { readMigrations } from "../src/store/db/migrate.js";
import { projectRoot } from "../src/paths.js";

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "rcp-owner-"));
  tempDirs.push(dir);
  return dir;
}
const children: ServerProcess[] = [];
afterAll(async () => {
  await Promise.all(children.map(stop));
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

const cli = (dataDir: string, ...args: string[]) => runNode(["src/cli.ts", ...args], { DATA_DIR: dataDir });
const impatientCli = (dataDir: string, ...args: string[]) => runNode(["src/cli.ts", ...args], { DATA_DIR: dataDir, CLI_WAIT_MS: "0" });

async function start(dataDir: string): Promise<ServerProcess> {
  const server = await startServerProcess({ DATA_DIR: dataDir, SECRETS_KEY: "", SECRETS_KEY_FILE: "" });
  children.push(server);
  return server;
}

async function stop(server: ServerProcess): Promise<number | null> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return server.child.exitCode;
  const exited = new Promise<number | null>((resolve) => server.child.once("exit", (code) => resolve(code)));
  server.child.kill("SIGTERM");
  return exited;
}

async function identityStatus(server: ServerProcess, apiKey: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${server.port}/gitpod.v1.IdentityService/GetAuthenticatedIdentity`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}` },
    body: "{}",
  });
  await response.arrayBuffer();
  return response.status;
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.once("exit", resolve));
  return child.pid!;
}

const TIMEOUT = 180_000; // real server and CLI processes, each opening PGlite

describe("one owner of the embedded database", () => {
  it("a second server on the same DATA_DIR refuses to start and names the owner's pid", { timeout: TIMEOUT }, async () => {
    const dataDir = tempDir();
    const first = await start(dataDir);
    const second = await runNode(["src/main.ts"], { DATA_DIR: dataDir, PORT: "0", HOST: "127.0.0.1" });
    expect(second.code).toBe(1);
    expect(second.stdout).toContain(`"ownerPid":${first.child.pid}`);
    expect(second.stdout).toContain(`in use by process ${first.child.pid}`);
    expect(readFileSync(join(dataDir, "pgdata.lock"), "utf8").trim()).toBe(String(first.child.pid));
    // The first one still serves, and gives the lock back when it stops.
    expect((await fetch(`http://127.0.0.1:${first.port}/readyz`)).status).toBe(200);
    expect(await stop(first)).toBe(0);
    expect(() => statSync(join(dataDir, "pgdata.lock"))).toThrow();
  });

  it("the CLI's commands go through the running server: keys work and revocations hold at once and after a restart", { timeout: TIMEOUT }, async () => {
    const dataDir = tempDir();
    let server = await start(dataDir);
    const socket = statSync(join(dataDir, "control.sock"));
    expect(socket.isSocket()).toBe(true);
    expect(socket.mode & 0o777).toBe(0o600);

    const created = await cli(dataDir, "api-key", "create", "--org", "live", "--user", "live@example.com");
    expect(created.code, created.stderr).toBe(0);
    const apiKey = created.stdout.trim().split("\n").at(-1)!;
    expect(await identityStatus(server, apiKey)).toBe(200);
    const keyId = /created API key ([0-9a-f-]{36})/.exec(created.stderr)![1]!;

    const revoked = await cli(dataDir, "api-key", "revoke", keyId);
    expect([revoked.code, revoked.stderr.trim()]).toEqual([0, `revoked API key ${keyId}`]);
    expect(await identityStatus(server, apiKey)).toBe(401);
    // Not-found and usage answers come back with their exit codes too.
    expect((await cli(dataDir, "api-key", "revoke", "00000000-0000-4000-8000-000000000000")).code).toBe(3);
    expect((await cli(dataDir, "api-key", "list", "--org", "nope")).code).toBe(3);
    expect(server.output()).toContain('"command":"api-key revoke","exitCode":0,"msg":"cli command carried out"');

    expect(await stop(server)).toBe(0);
    const listed = await cli(dataDir, "api-key", "list", "--org", "live"); // the CLI's own process now
    expect(listed.code, listed.stderr).toBe(0);
    const row = listed.stdout.split("\n").find((line) => line.startsWith(keyId))?.split("\t");
    expect(row?.[4]).not.toBe("-");
    // A deleted initial-api-key is not written again (the database has its organization); the log says what to run.
    const initialKey = readFileSync(join(dataDir, "initial-api-key"), "utf8").trim();
    rmSync(join(dataDir, "initial-api-key"));
    server = await start(dataDir);
    expect(server.output()).toContain("no initial API key file (it is written on the first start only): create an API key with `npm run --silent cli -- api-key create");
    expect(await identityStatus(server, apiKey)).toBe(401);
    expect(await identityStatus(server, initialKey)).toBe(200);
    await stop(server);
  });

  it("a lock left by a process that died is taken over, by a server and by the CLI", { timeout: TIMEOUT }, async () => {
    const dataDir = tempDir();
    writeFileSync(join(dataDir, "pgdata.lock"), `${await deadPid()}\n`);
    const migrated = await cli(dataDir, "migrate");
    expect([migrated.code, migrated.stderr.trim()]).toEqual([0, `applied: ${readMigrations().map((m) => m.version).join(", ")}`]);
    writeFileSync(join(dataDir, "pgdata.lock"), `${await deadPid()}\n`);
    const server = await start(dataDir);
    expect(readFileSync(join(dataDir, "pgdata.lock"), "utf8").trim()).toBe(String(server.child.pid));
    await stop(server);
  });

  it("refuses with exit code 1 while a process that takes no commands holds the database", { timeout: TIMEOUT }, async () => {
    const dataDir = await migrateDataDir(tempDir());
    // A live process holds the lock but has no control socket (e.g. a server still starting).
    const holder = spawn(process.execPath, ["-e", "setTimeout(() => {}, 120000)"], { stdio: "ignore" });
    try {
      writeFileSync(join(dataDir, "pgdata.lock"), `${holder.pid}\n`);
      const refused = await impatientCli(dataDir, "api-key", "create", "--org", "x", "--user", "x@example.com");
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe("");
      expect(refused.stderr).toContain(`in use by process ${holder.pid}`);
      expect(refused.stderr).toContain("stop the server first");
      // A patient one waits for the holder to finish, then does the work itself.
      const waiting = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", "api-key", "create", "--org", "x", "--user", "x@example.com"], {
        cwd: projectRoot,
        env: { ...process.env, DATABASE_URL: "", DATA_DIR: dataDir },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      waiting.stdout.on("data", (chunk) => (stdout += chunk));
      waiting.stderr.on("data", (chunk) => {
        stderr += chunk;
        if (stderr.includes(`waiting for process ${holder.pid}`)) holder.kill();
      });
      const code = await new Promise((resolve) => waiting.once("close", resolve));
      expect(code, stderr).toBe(0);
      expect(stdout.trim()).toMatch(/^rcpk_/);
    } finally {
      holder.kill();
    }
  });
});

describe("cli migrate", () => {
  it("reports what it applied; other commands do not migrate but say the schema is behind", { timeout: TIMEOUT }, async () => {
    const dataDir = tempDir();
    const versions = readMigrations().map((m) => m.version);
    const behind = await cli(dataDir, "api-key", "list");
    expect([behind.code, behind.stdout]).toEqual([1, ""]);
    expect(behind.stderr).toContain(`the database schema is behind: ${versions.length} migration(s) not applied (${versions.join(", ")}); run \`cli migrate\` first`);
    const applied = await cli(dataDir, "migrate");
    expect([applied.code, applied.stderr.trim()]).toEqual([0, `applied: ${versions.join(", ")}`]);
    const again = await cli(dataDir, "migrate");
    expect([again.code, again.stderr.trim()]).toEqual([0, "schema is up to date"]);
    expect((await cli(dataDir, "api-key", "list")).code).toBe(0);
  });
});

// What an operator runs: `npm start` on an empty data directory, the CLI, migrations.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import pg from "pg";
import { openDatabase } from "../src/store/db/database.js";
import { migrate, readMigrations } from "../src/store/db/migrate.js";
import { projectRoot } from "../src/paths.js";
import { loadConfig } from "../src/config.js";
import { processRuns } from "../src/store/db/embedded-lock.js";
import { postJson, startServer, testDatabaseUrl, uniqueSlug, type TestServer } from "./harness.js";
import { migrateDataDir, runNode } from "./processes.js";

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "rcp-test-"));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

// Each call of the CLI is a process that opens the database (PGlite takes seconds on a busy machine).
const CLI_TIMEOUT_MS = 180_000;

const cli = (args: string[], env: Record<string, string>) => runNode(["src/cli.ts", ...args], env);

/** Where the CLI should point: this run's PostgreSQL database, or a fresh (migrated) embedded data directory. */
async function databaseEnv(): Promise<Record<string, string>> {
  const url = testDatabaseUrl();
  if (!url) return { DATA_DIR: await migrateDataDir(tempDir()) };
  const db = await openDatabase({ databaseUrl: url, dataDir: undefined, poolSize: 1 });
  try {
    await migrate(db);
  } finally {
    await db.close();
  }
  return { DATABASE_URL: url };
}

describe("npm start on an empty data directory", () => {
  it("creates a default organization, leaves its API key in a 0600 file, serves it, and stops cleanly on SIGTERM", { timeout: CLI_TIMEOUT_MS }, async () => {
    const dataDir = tempDir();
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: projectRoot,
      env: { ...process.env, DATABASE_URL: "", DATA_DIR: dataDir, PORT: "0", HOST: "127.0.0.1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 60_000);
      const onData = (chunk: Buffer) => {
        output += chunk;
        const match = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
        if (match && output.includes('"msg":"ready"')) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
    });
    const keyFile = join(dataDir, "initial-api-key");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const apiKey = readFileSync(keyFile, "utf8").trim();
    expect(apiKey).toMatch(/^rcpk_/);
    expect(output).toContain(keyFile);
    expect(output).not.toContain(apiKey);

    const response = await postJson({ baseUrl: `http://127.0.0.1:${port}` } as TestServer, "gitpod.v1.IdentityService/GetAuthenticatedIdentity", {}, {
      authorization: `Bearer ${apiKey}`,
    });
    expect(response.status).toBe(200);
    expect(response.body.subject.principal).toBe("PRINCIPAL_USER");

    const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    expect(await exit).toBe(0);
    expect(output).not.toContain(apiKey);
    // The last line says the drain finished.
    expect(JSON.parse(output.trim().split("\n").at(-1)!)).toMatchObject({ msg: "stopped", signal: "SIGTERM" });
  });

  it("SIGTERM to the npm start process reaches the server, which drains and exits", { timeout: CLI_TIMEOUT_MS }, async () => {
    // --ignore-scripts: without prestart's build (dist/ is built by npm ci's prepare).
    const npm = spawn("npm", ["start", "--ignore-scripts"], {
      cwd: projectRoot,
      env: { ...process.env, DATABASE_URL: "", DATA_DIR: tempDir(), PORT: "0", HOST: "127.0.0.1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    npm.stdout.on("data", (chunk) => (output += chunk));
    npm.stderr.on("data", (chunk) => (output += chunk));
    const deadline = Date.now() + 60_000;
    while (!output.includes('"msg":"ready"')) {
      if (Date.now() > deadline || npm.exitCode !== null) throw new Error(`npm start did not get ready:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const serverPid = Number(/"pid":(\d+)[^\n]*"msg":"ready"/.exec(output)![1]);
    expect(serverPid).not.toBe(npm.pid);
    const exited = new Promise((resolve) => npm.once("exit", resolve));
    npm.kill("SIGTERM");
    await exited;
    // The server (npm's child) got the signal too: it drained, said so, and is gone.
    const gone = Date.now() + 30_000;
    while (processRuns(serverPid)) {
      if (Date.now() > gone) throw new Error(`the server (pid ${serverPid}) kept running after npm exited:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(output).toContain('"msg":"shutting down: draining in-flight requests"');
  });

  it("listens on 127.0.0.1 unless HOST says otherwise", () => {
    expect(loadConfig({}).host).toBe("127.0.0.1");
    expect(loadConfig({ HOST: "0.0.0.0" }).host).toBe("0.0.0.0");
  });
});

describe("cli", () => {
  it("creates an API key (last line of stdout), lists keys without secrets, and revokes", { timeout: CLI_TIMEOUT_MS }, async () => {
    const env = await databaseEnv();
    const created = await cli(["api-key", "create", "--org", "cli-org", "--user", "ops@example.com", "--description", "ci key"], env);
    expect(created.code).toBe(0);
    const apiKey = created.stdout.trim().split("\n").at(-1)!;
    expect(apiKey).toMatch(/^rcpk_[0-9A-Za-z]{49}$/);

    const listed = await cli(["api-key", "list", "--org", "cli-org"], env);
    expect(listed.code).toBe(0);
    expect(listed.stdout).not.toContain(apiKey);
    const rows = listed.stdout.trim().split("\n").map((line) => line.split("\t"));
    expect(rows[0]).toEqual(["id", "organization", "user", "created", "revoked", "description"]);
    const row = rows.find((cells) => cells[5] === "ci key");
    expect(row?.slice(1, 3)).toEqual(["cli-org", "ops@example.com"]);
    expect(row?.[4]).toBe("-");

    const revoked = await cli(["api-key", "revoke", row![0]!], env);
    expect(revoked.code).toBe(0);
    const after = await cli(["api-key", "list", "--org", "cli-org"], env);
    expect(after.stdout.split("\n").find((line) => line.startsWith(row![0]!))?.split("\t")[4]).not.toBe("-");
  });

  it("uses exit codes a script can rely on", { timeout: CLI_TIMEOUT_MS }, async () => {
    const env = await databaseEnv();
    expect((await cli(["--help"], env)).code).toBe(0);
    expect((await cli(["api-key", "create", "--help"], env)).stdout).toContain("--org");
    expect((await cli(["api-key", "create", "--org", "x"], env)).code).toBe(2);
    expect((await cli(["frobnicate"], env)).code).toBe(2);
    expect((await cli(["api-key", "create", "--org", "Not A Slug", "--user", "a@b.c"], env)).code).toBe(2);
    expect((await cli(["api-key", "revoke", "00000000-0000-4000-8000-000000000000"], env)).code).toBe(3);
    expect((await cli(["migrate"], env)).code).toBe(0);
    const noOrg = await cli(["api-key", "list", "--org", "no-such-org"], env);
    expect([noOrg.code, noOrg.stderr.trim(), noOrg.stdout]).toEqual([3, 'no organization with slug "no-such-org"', ""]);
    expect((await cli(["user", "list", "--org", "no-such-org"], env)).code).toBe(3);
    // A mistyped option names itself and points at the command's help instead of printing all of it.
    const bogus = await cli(["api-key", "list", "--bogus"], env);
    expect(bogus.stderr).not.toContain("commands:");
  });

  it("prints help for every command on stdout with exit 0, and refuses what a command does not take", { timeout: CLI_TIMEOUT_MS }, async () => {
    const env = await databaseEnv();
    const helps: [string[], string][] = [
      [["--help"], "usage: cli <command>"],
      [["help"], "exit codes: 0 ok, 1 failure"],
      [["migrate", "--help"], "usage: cli migrate"],
      [["api-key", "--help"], "usage: cli api-key <create|list|revoke>"],
      [["api-key", "create", "-h"], "--description <text>"],
      [["api-key", "list", "--help"], "tab-separated"],
      [["api-key", "revoke", "--help"], "Exit code 3"],
      [["help", "api-key", "revoke"], "usage: cli api-key revoke <id>"],
    ];
    const misuse: [string[], string][] = [
      [["api-key"], "api-key needs a subcommand"],
      [["migrate", "now"], 'unexpected argument "now"'],
      [["api-key", "list", "--user", "a@b.c"], "api-key list does not take --user"],
      [["api-key", "revoke"], "needs the key id"],
      [["api-key", "revoke", "not-a-uuid"], '"not-a-uuid" is not an API key id: ids are UUIDs'],
      [["api-key", "create", "--bogus"], "unknown option --bogus\n\nrun: cli api-key create --help"],
      [["api-key", "create", "--org"], "--org needs a value"],
    ];
    const [helped, refused] = await Promise.all([
      Promise.all(helps.map(([args]) => cli(args, env))),
      Promise.all(misuse.map(([args]) => cli(args, env))),
    ]);
    helps.forEach(([args, text], i) => {
      expect({ args, code: helped[i]!.code }).toEqual({ args, code: 0 });
      expect(helped[i]!.stdout, args.join(" ")).toContain(text);
    });
    misuse.forEach(([args, text], i) => {
      expect({ args, code: refused[i]!.code }).toEqual({ args, code: 2 });
      expect(refused[i]!.stderr, args.join(" ")).toContain(text);
      expect(refused[i]!.stdout).toBe("");
    });
  });

  it.runIf(testDatabaseUrl())("creates a key that a running server accepts at once", { timeout: CLI_TIMEOUT_MS }, async () => {
    const server = await startServer();
    try {
      const created = await cli(["api-key", "create", "--org", "live-org", "--user", "live@example.com"], { DATABASE_URL: testDatabaseUrl()! });
      const apiKey = created.stdout.trim().split("\n").at(-1)!;
      const response = await postJson(server, "gitpod.v1.IdentityService/GetAuthenticatedIdentity", {}, { authorization: `Bearer ${apiKey}` });
      expect(response.status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe("cli user", () => {
  it("creates users (the first of an organization is its admin), changes roles, lists them, keeps an admin", { timeout: CLI_TIMEOUT_MS }, async () => {
    const env = await databaseEnv();
    const org = uniqueSlug("users");
    const first = await cli(["user", "create", "--org", org, "--email", "Founder@Example.com"], env);
    expect([first.code, first.stderr.trim()]).toEqual([0, `created user founder@example.com (admin) in organization ${org}`]);
    expect(first.stdout.trim()).toMatch(/^[0-9a-f-]{36}$/);
    const second = await cli(["user", "create", "--org", org, "--email", "dev@example.com", "--role", "admin"], env);
    expect([second.code, second.stderr]).toEqual([0, expect.stringContaining("(admin)")]);
    expect((await cli(["user", "set-role", "--org", org, "--email", "founder@example.com", "--role", "member"], env)).code).toBe(0);
    const last = await cli(["user", "set-role", "--org", org, "--email", "dev@example.com", "--role", "member"], env);
    expect([last.code, last.stderr.trim()]).toEqual([2, `dev@example.com is the last admin of ${org}: make another user admin first`]);
    const nobody = await cli(["user", "set-role", "--org", org, "--email", "nobody@example.com", "--role", "admin"], env);
    expect([nobody.code, nobody.stderr.trim()]).toEqual([3, `no user nobody@example.com in organization ${org}`]);
    const listed = await cli(["user", "list", "--org", org], env);
    expect(listed.code).toBe(0);
    const rows = listed.stdout.trim().split("\n").map((line) => line.split("\t"));
    expect(rows.map((cells) => [cells[0], cells[1], cells[2], cells[3], cells[5]])).toEqual([
      ["id", "organization", "email", "role", "groups"],
      [first.stdout.trim(), org, "founder@example.com", "member", "-"],
      [second.stdout.trim(), org, "dev@example.com", "admin", "-"],
    ]);
  });

  it("refuses what a command does not take, before opening the database, with exit code 2; has help", { timeout: CLI_TIMEOUT_MS }, async () => {
    const env = await databaseEnv();
    const cases: [string[], string][] = [
      [["user", "create", "--org", "x", "--email", "x@example.com", "--role", "owner"], 'role "owner" must be admin or member'],
      [["user", "create", "--org", "x"], "user create needs --org <slug> and --email <email>"],
      [["user", "set-role", "--org", "x", "--email", "x@example.com"], "--role admin|member"],
      [["user"], "user needs a subcommand"],
      [["user", "list", "--email", "a@b.c"], "user list does not take --email"],
    ];
    const helps = [["user", "--help"], ["user", "create", "--help"], ["help", "user", "set-role"], ["user", "list", "-h"]];
    const [refused, helped] = await Promise.all([Promise.all(cases.map(([args]) => cli(args, env))), Promise.all(helps.map((args) => cli(args, env)))]);
    cases.forEach(([args, message], i) => {
      expect({ args, code: refused[i]!.code }).toEqual({ args, code: 2 });
      expect(refused[i]!.stderr, args.join(" ")).toContain(message);
    });
    helped.forEach((help, i) => expect({ args: helps[i], code: help.code, usage: help.stdout.includes("usage: cli user") }).toEqual({ args: helps[i], code: 0, usage: true }));
  });
});

describe("migrations", () => {
  it("apply once, in order, recorded in schema_migrations", { timeout: CLI_TIMEOUT_MS }, async () => {
    const db = await openDatabase({ databaseUrl: undefined, dataDir: undefined, poolSize: 1 });
    try {
      const versions = readMigrations().map((migration) => migration.version);
      expect(await migrate(db)).toEqual(versions);
      expect(await migrate(db)).toEqual([]);
      const { rows } = await db.query<{ version: string }>("SELECT version FROM schema_migrations ORDER BY version");
      expect(rows.map((row) => row.version)).toEqual(versions);
    } finally {
      await db.close();
    }
  });

  it.runIf(testDatabaseUrl())("started by three replicas at once apply once", async () => {
    const schema = `mig_${Date.now()}`;
    const admin = new pg.Client({ connectionString: testDatabaseUrl() });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    const url = new URL(testDatabaseUrl()!);
    url.searchParams.set("options", `-c search_path=${schema}`);
    const replicas = await Promise.all([1, 2, 3].map(() => openDatabase({ databaseUrl: url.toString(), dataDir: undefined, poolSize: 2 })));
    try {
      const results = await Promise.all(replicas.map((db) => migrate(db)));
      expect(results.filter((applied) => applied.length > 0)).toHaveLength(1);
      const { rows } = await admin.query(`SELECT count(*)::int AS n FROM ${schema}.schema_migrations`);
      expect(rows[0].n).toBe(readMigrations().length);
    } finally {
      await Promise.all(replicas.map((db) => db.close()));
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    }
  });
});

describe("WORKERS (node:cluster)", () => {
  it("refuses more than one worker on the embedded database", async () => {
    const run = await runNode(["src/main.ts"], { DATA_DIR: tempDir(), WORKERS: "2" });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("WORKERS > 1 needs DATABASE_URL");
  });

  it.runIf(testDatabaseUrl())("serves from several processes on one port and stops them all on SIGTERM", async () => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: projectRoot,
      env: { ...process.env, DATABASE_URL: testDatabaseUrl()!, WORKERS: "2", PORT: String(port), HOST: "127.0.0.1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    const deadline = Date.now() + 30_000;
    while ((output.match(/"msg":"ready"/g) ?? []).length < 2) {
      if (Date.now() > deadline) throw new Error(`workers did not start:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const pids = new Set([...output.matchAll(/"pid":(\d+)[^\n]*"msg":"ready"/g)].map((match) => match[1]));
    expect(pids.size).toBe(2);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    expect(await exit).toBe(0);
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });
});

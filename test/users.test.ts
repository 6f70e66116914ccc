// Organization roles as an operator sees them: the CLI's user commands, the roles of users that
// the other paths create (api-key create, the first start), and the upgrade that introduced roles.
//
//   npx vitest run test/users.test.ts
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../src/domain/clock.js";
import { createUser, issueApiKey, listUsers, NoSuchUser, roleName, setUserRole } from "../src/domain/accounts.js";
import { bootstrapEmptyDatabase } from "../src/bootstrap.js";
import { openDatabase, type Database } from "../src/store/db/database.js";
import { migrate, readMigrations } from "../src/store/db/migrate.js";
import { IdentityStore, ROLE_ADMIN, ROLE_MEMBER } from "../src/store/identity-store.js";
import { projectRoot } from "../src/paths.js";
import { testDatabaseUrl, uniqueSlug } from "./harness.js";

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "rcp-users-"));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], {
      cwd: projectRoot,
      env: { ...process.env, DATABASE_URL: "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** This run's PostgreSQL database, or a fresh embedded data directory. */
function databaseEnv(): Record<string, string> {
  const url = testDatabaseUrl();
  return url ? { DATABASE_URL: url } : { DATA_DIR: tempDir() };
}

// Each call of the CLI is a process that opens the database (PGlite takes seconds on a busy machine).
const CLI_TIMEOUT_MS = 180_000;

describe("cli user", () => {
  it("creates users (the first of an organization is its admin), changes roles, lists them, keeps an admin", { timeout: CLI_TIMEOUT_MS }, async () => {
    const env = databaseEnv();
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
      [first.stdout.trim(), org, "founder@example.com", "member", "-"],
      [second.stdout.trim(), org, "dev@example.com", "admin", "-"],
    ]);
  });

  it("refuses what a command does not take, before opening the database, with exit code 2; has help", { timeout: CLI_TIMEOUT_MS }, async () => {
    const env = databaseEnv();
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

describe("the account rules behind the CLI", () => {
  let db: Database;
  beforeAll(async () => {
    db = await openDatabase({ databaseUrl: testDatabaseUrl(), dataDir: undefined, poolSize: 8 });
    await migrate(db);
  });
  afterAll(() => db?.close());

  it("make the first user of an organization its admin and later ones members, refuse duplicates and keep an admin", async () => {
    const identities = new IdentityStore(db);
    const organizationSlug = uniqueSlug("rules");
    const first = await createUser(identities, systemClock, { organizationSlug, email: "first@example.com" });
    const second = await createUser(identities, systemClock, { organizationSlug, email: "second@example.com" });
    expect([first.user.role, second.user.role]).toEqual([ROLE_ADMIN, ROLE_MEMBER]);
    // api-key create for a new user of an existing organization makes a member, and leaves an existing user's role alone.
    expect((await issueApiKey(identities, systemClock, { organizationSlug, userEmail: "ci@example.com" })).user.role).toBe(ROLE_MEMBER);
    expect((await issueApiKey(identities, systemClock, { organizationSlug, userEmail: "first@example.com" })).user.role).toBe(ROLE_ADMIN);
    await expect(createUser(identities, systemClock, { organizationSlug, email: "SECOND@example.com", role: ROLE_ADMIN })).rejects.toThrow(/already exists/);
    await expect(setUserRole(identities, { organizationSlug, email: "first@example.com", role: ROLE_MEMBER })).rejects.toThrow(/last admin/);
    await expect(setUserRole(identities, { organizationSlug, email: "nobody@example.com", role: ROLE_MEMBER })).rejects.toBeInstanceOf(NoSuchUser);
    await setUserRole(identities, { organizationSlug, email: "second@example.com", role: ROLE_ADMIN });
    await setUserRole(identities, { organizationSlug, email: "first@example.com", role: ROLE_MEMBER });
    expect((await listUsers(identities, organizationSlug)).map((user) => [user.email, roleName(user.role)])).toEqual([
      ["first@example.com", "member"],
      ["second@example.com", "admin"],
      ["ci@example.com", "member"],
    ]);
  });

  it("keep one admin when the last two demote each other at once", async () => {
    const identities = new IdentityStore(db);
    for (let round = 0; round < 10; round++) {
      const organizationSlug = uniqueSlug("demote");
      for (const email of ["a@example.com", "b@example.com"]) await createUser(identities, systemClock, { organizationSlug, email, role: ROLE_ADMIN });
      const outcomes = await Promise.allSettled(
        ["a@example.com", "b@example.com"].map((email) => setUserRole(identities, { organizationSlug, email, role: ROLE_MEMBER })),
      );
      expect(outcomes.map((outcome) => outcome.status).sort()).toEqual(["fulfilled", "rejected"]);
      expect((await listUsers(identities, organizationSlug)).filter((user) => user.role === ROLE_ADMIN)).toHaveLength(1);
    }
  });

  it("make exactly one of the users created at once for a new organization its admin", async () => {
    const identities = new IdentityStore(db);
    for (let round = 0; round < 10; round++) {
      const org = await identities.ensureOrganization(uniqueSlug("race"), "race", new Date());
      const made = await Promise.all(Array.from({ length: 8 }, (_, i) => identities.ensureUser(org.id, `racer-${i}@example.com`, new Date())));
      expect(made.map(({ user }) => user.role).sort()).toEqual([ROLE_ADMIN, ...Array(7).fill(ROLE_MEMBER)]);
    }
  });
});

describe("roles of users made elsewhere", () => {
  it("makes the user of the first start an admin", async () => {
    const db = await openDatabase({ databaseUrl: undefined, dataDir: undefined, poolSize: 1 });
    try {
      await migrate(db);
      expect(await bootstrapEmptyDatabase(db, tempDir(), systemClock)).toBeDefined();
      expect((await new IdentityStore(db).listUsers("default")).map((user) => [user.email, user.role])).toEqual([["admin@localhost", ROLE_ADMIN]]);
    } finally {
      await db.close();
    }
  });
});

describe("the upgrade to organization roles (migration 0003)", () => {
  it("makes every existing user an admin, so nobody loses access", async () => {
    const db = await openDatabase({ databaseUrl: undefined, dataDir: undefined, poolSize: 1 });
    try {
      const migrations = readMigrations();
      const before = migrations.filter((migration) => migration.version < "0003");
      await migrate(db, before);
      const now = new Date();
      await db.query("INSERT INTO organizations (id, slug, name, created_at) VALUES ('00000000-0000-4000-8000-000000000001', 'old', 'old', $1)", [now]);
      for (const [i, email] of ["first@old.example", "second@old.example"].entries()) {
        await db.query("INSERT INTO users (id, organization_id, email, created_at) VALUES ($1, '00000000-0000-4000-8000-000000000001', $2, $3)", [
          `00000000-0000-4000-8000-00000000010${i}`,
          email,
          now,
        ]);
      }
      await migrate(db, migrations);
      const identities = new IdentityStore(db);
      expect((await identities.listUsers("old")).map((user) => user.role)).toEqual([ROLE_ADMIN, ROLE_ADMIN]);
      // Later users of that organization are members.
      const org = (await identities.organizationBySlug("old"))!;
      expect((await identities.ensureUser(org.id, "third@old.example", now)).user.role).toBe(ROLE_MEMBER);
    } finally {
      await db.close();
    }
  });
});

// Organization roles as an operator sees them: the account rules behind the CLI's user commands
// (the commands themselves: test/operator.test.ts), the roles of users that the other paths create
// (api-key create, the first start), and the upgrade that introduced roles.
//
//   npx vitest run test/users.test.ts
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

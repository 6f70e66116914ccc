// One LISTEN session per process for every NOTIFY channel (src/store/db/notifications.ts), on
// real PostgreSQL (TEST_DATABASE_URL): notifications reach the subscribers of their channel only,
// a lost session tells every subscriber that notifications may have been missed and then that
// they flow again, and the session ends with its last subscriber.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase, type Database } from "../src/store/db/database.js";
import { testDatabaseUrl } from "./harness.js";

const databaseUrl = testDatabaseUrl();

async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.runIf(databaseUrl)("the notification session", () => {
  let db: Database;
  let admin: Database;
  const listenSessions = async () =>
    (await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'runner-control-plane-listen' AND datname = current_database()")).rows[0]!.n;

  beforeAll(async () => {
    db = await openDatabase({ databaseUrl, dataDir: undefined, poolSize: 2 });
    admin = await openDatabase({ databaseUrl, dataDir: undefined, poolSize: 1 });
  });
  afterAll(async () => {
    await db?.close();
    await admin?.close();
  });

  it("carries every channel over one session, and ends with its last subscriber", async () => {
    const [a, b] = [`rcp_test_${randomUUID().slice(0, 8)}`, `rcp_test_${randomUUID().slice(0, 8)}`];
    const got: string[] = [];
    const states: string[] = [];
    const stopA = await db.listen(a, (payload) => got.push(`a:${payload}`), (live) => states.push(`a:${live}`));
    const stopB = await db.listen(b, (payload) => got.push(`b:${payload}`), (live) => states.push(`b:${live}`));
    expect(states).toEqual(["a:true", "b:true"]);
    expect(await listenSessions()).toBe(1);

    await admin.query("SELECT pg_notify($1, 'one'), pg_notify($2, 'two')", [a, b]);
    await until(() => got.length === 2, "both notifications");
    expect(got.sort()).toEqual(["a:one", "b:two"]);

    await stopA();
    await admin.query("SELECT pg_notify($1, 'gone'), pg_notify($2, 'three')", [a, b]);
    await until(() => got.includes("b:three"), "the notification on b");
    expect(got).not.toContain("a:gone");

    await stopB();
    await until(async () => (await listenSessions()) === 0, "the session to end");
  });

  it("tells every subscriber when the session is lost, and again when it is back", async () => {
    const [a, b] = [`rcp_test_${randomUUID().slice(0, 8)}`, `rcp_test_${randomUUID().slice(0, 8)}`];
    const states: string[] = [];
    const got: string[] = [];
    const stopA = await db.listen(a, (payload) => got.push(payload), (live) => states.push(`a:${live}`));
    const stopB = await db.listen(b, () => {}, (live) => states.push(`b:${live}`));
    states.length = 0;
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'runner-control-plane-listen' AND datname = current_database()");
    await until(() => states.filter((s) => s.endsWith("true")).length === 2, "the session to come back");
    expect(states.slice(0, 2).sort()).toEqual(["a:false", "b:false"]);
    expect(states.slice(2).sort()).toEqual(["a:true", "b:true"]);
    // And it LISTENs again on every channel.
    await admin.query("SELECT pg_notify($1, 'after')", [a]);
    await until(() => got.includes("after"), "a notification after the reconnect");
    await stopA();
    await stopB();
  });
});

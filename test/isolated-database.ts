// A database of one's own for tests of deployment-wide state (the token signing keys): on
// PostgreSQL (TEST_DATABASE_URL) a fresh database next to this run's, dropped by `drop`; on the
// embedded database every server already has its own (url undefined).
import { randomBytes } from "node:crypto";
import pg from "pg";
import { openDatabase, type Database } from "../src/store/db/database.js";
import { migrate } from "../src/store/db/migrate.js";
import { testDatabaseUrl } from "./harness.js";

export interface IsolatedDatabase {
  /** The PostgreSQL URL, or undefined on the embedded database. */
  url: string | undefined;
  /** A new, migrated connection to it (the embedded database: a new in-memory one each time). */
  open(): Promise<Database>;
  drop(): Promise<void>;
}

export async function isolatedDatabase(): Promise<IsolatedDatabase> {
  const runUrl = testDatabaseUrl();
  const connect = async (databaseUrl: string | undefined) => {
    const db = await openDatabase({ databaseUrl, dataDir: undefined, poolSize: 8 });
    await migrate(db);
    return db;
  };
  if (!runUrl) return { url: undefined, open: () => connect(undefined), drop: async () => {} };
  const name = `rcp_test_isolated_${Date.now()}_${randomBytes(3).toString("hex")}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: runUrl });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(runUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), open: () => connect(url.toString()), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

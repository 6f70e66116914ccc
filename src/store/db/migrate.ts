// Applies migrations/NNNN_name.sql in order, each once, recorded in schema_migrations.
// A session-level advisory lock serializes replicas that start at the same moment: the
// first applies, the others wait and then find nothing left to do.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Database } from "./database.js";
import { migrationsDir } from "../../paths.js";

// Arbitrary constant shared by every replica ("rcp-migr" in ASCII).
const MIGRATION_LOCK_KEY = 0x7263702d6d696772n.toString();

export interface Migration {
  version: string;
  script: string;
}

export function readMigrations(dir: string = migrationsDir): Migration[] {
  return readdirSync(dir)
    .filter((file) => /^\d{4}_[a-z0-9_]+\.sql$/.test(file))
    .sort()
    .map((file) => ({ version: file.replace(/\.sql$/, ""), script: readFileSync(join(dir, file), "utf8") }));
}

/** Returns the versions this call applied (empty when the schema was already current). */
export async function migrate(db: Database, migrations: Migration[] = readMigrations()): Promise<string[]> {
  return db.withConnection(async (conn) => {
    await conn.query("SELECT pg_advisory_lock($1::bigint)", [MIGRATION_LOCK_KEY]);
    try {
      await conn.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
      );
      const { rows } = await conn.query<{ version: string }>("SELECT version FROM schema_migrations");
      const applied = new Set(rows.map((row) => row.version));
      const done: string[] = [];
      for (const migration of migrations) {
        if (applied.has(migration.version)) continue;
        await conn.exec("BEGIN");
        try {
          await conn.exec(migration.script);
          await conn.query("INSERT INTO schema_migrations (version) VALUES ($1)", [migration.version]);
          await conn.exec("COMMIT");
        } catch (err) {
          await conn.exec("ROLLBACK").catch(() => {});
          throw new Error(`migration ${migration.version} failed: ${(err as Error).message}`, { cause: err });
        }
        done.push(migration.version);
      }
      return done;
    } finally {
      await conn.query("SELECT pg_advisory_unlock($1::bigint)", [MIGRATION_LOCK_KEY]).catch(() => {});
    }
    // Waiting for another replica's migrations, and a long migration, may exceed the query timeout.
  }, { unbounded: true });
}

/** The versions not applied yet, without changing anything (the CLI's commands other than migrate). */
export async function pendingMigrations(db: Database, migrations: Migration[] = readMigrations()): Promise<string[]> {
  const { rows: tables } = await db.query<{ exists: boolean }>("SELECT to_regclass('schema_migrations') IS NOT NULL AS exists");
  if (!tables[0]?.exists) return migrations.map((migration) => migration.version);
  const { rows } = await db.query<{ version: string }>("SELECT version FROM schema_migrations");
  const applied = new Set(rows.map((row) => row.version));
  return migrations.map((migration) => migration.version).filter((version) => !applied.has(version));
}

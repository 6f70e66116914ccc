// Rows from PostgreSQL are read as arrays and made objects by src/store/db/database.ts; they must
// be what pg's own object rows are: the same keys in the same order, the same values, a plain
// prototype. (The embedded database returns PGlite's rows unchanged.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { openDatabase, sql, type Database } from "../src/store/db/database.js";
import { testDatabaseUrl } from "./harness.js";

const url = testDatabaseUrl();

describe.skipIf(!url)("rows read from PostgreSQL", () => {
  let db: Database;
  let client: pg.Client;
  beforeAll(async () => {
    db = await openDatabase({ databaseUrl: url, dataDir: undefined, poolSize: 2 });
    client = new pg.Client({ connectionString: url });
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
    await db?.close();
  });

  const text = `SELECT 1::int AS a, 'x'::text AS "b c", NULL::text AS "nullable", true AS flag, '\\x0102'::bytea AS bytes,
      '{"k":[1,2]}'::jsonb AS doc, ARRAY[3,4]::smallint[] AS list, 'first'::text AS dup, 'second'::text AS dup,
      'p'::text AS "__proto__", 7::int AS "1", gen_random_uuid() IS NOT NULL AS "constructor"
    FROM generate_series(1, 3)`;

  it.each([
    ["a named statement", sql("test_rows_shape", text)],
    ["a text statement", text],
  ] as const)("are pg's object rows, for %s", async (_name, statement) => {
    const ours = await db.query(statement);
    const theirs = await client.query(text);
    expect(ours.rowCount).toBe(3);
    expect(ours.rows).toEqual(theirs.rows);
    for (const [i, row] of ours.rows.entries()) {
      expect(Object.keys(row)).toEqual(Object.keys(theirs.rows[i]));
      expect(Object.getPrototypeOf(row)).toBe(Object.getPrototypeOf(theirs.rows[i]));
      expect(Object.hasOwn(row, "__proto__")).toBe(true);
      expect(row.dup).toBe("second");
    }
  });

  it("are empty for a statement without rows, with its row count", async () => {
    expect(await db.query("SELECT 1 AS n WHERE false")).toEqual({ rows: [], rowCount: 0 });
  });
});

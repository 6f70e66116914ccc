// The timestamptz parser given to pg (src/store/db/timestamptz.ts) must read every text PostgreSQL
// can send exactly as pg's default parser (postgres-date) does.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parseTimestamptz, TIMESTAMPTZ_OID } from "../src/store/db/timestamptz.js";
import pg from "pg";
import { testDatabaseUrl } from "./harness.js";

const postgresDate = pg.types.getTypeParser(TIMESTAMPTZ_OID, "text") as (text: string) => Date | number | null;
const same = (value: Date | number | null) => (value instanceof Date ? { date: value.getTime() } : { value });
const pad = (n: number, width: number) => String(n).padStart(width, "0");

const zoneArb = fc.oneof(
  fc.constant("+00"),
  fc.tuple(fc.constantFrom("+", "-"), fc.integer({ min: 0, max: 15 })).map(([s, h]) => `${s}${pad(h, 2)}`),
  fc.tuple(fc.constantFrom("+", "-"), fc.integer({ min: 0, max: 15 }), fc.constantFrom(0, 30, 45)).map(([s, h, m]) => `${s}${pad(h, 2)}:${pad(m, 2)}`),
  fc.tuple(fc.constantFrom("+", "-"), fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 59 })).map(
    ([s, h, m, sec]) => `${s}${pad(h, 2)}:${pad(m, 2)}:${pad(sec, 2)}`,
  ),
);
const textArb = fc
  .record({
    year: fc.oneof(fc.integer({ min: 1000, max: 9999 }), fc.integer({ min: 1, max: 999 }), fc.integer({ min: 10000, max: 294276 })),
    month: fc.integer({ min: 1, max: 12 }),
    day: fc.integer({ min: 1, max: 31 }),
    hour: fc.integer({ min: 0, max: 23 }),
    minute: fc.integer({ min: 0, max: 59 }),
    second: fc.integer({ min: 0, max: 60 }),
    fraction: fc.option(fc.stringMatching(/^[0-9]{1,7}$/), { nil: undefined }),
    zone: zoneArb,
    bc: fc.boolean(),
  })
  .map(({ year, month, day, hour, minute, second, fraction, zone, bc }) => {
    const text = `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)} ${pad(hour, 2)}:${pad(minute, 2)}:${pad(second, 2)}${fraction === undefined ? "" : `.${fraction}`}${zone}`;
    return bc ? `${text} BC` : text;
  });

describe("timestamptz parser", () => {
  it("reads generated PostgreSQL texts exactly as postgres-date does", () => {
    fc.assert(
      fc.property(textArb, (text) => {
        expect(same(parseTimestamptz(text))).toEqual(same(postgresDate(text)));
      }),
      { numRuns: 20_000 },
    );
  });

  it("reads odd and malformed texts as postgres-date does", () => {
    const texts = [
      "infinity", "-infinity", "", "2026-11-27", "2026-11-27 22:00:00", "2026-11-27 22:00:00Z", "2026-11-27T22:00:00+00",
      "2026-11-27 22:00:00.+00", "2026-11-27 22:00:00.1234567+00", "2026-11-27 22:0a:00+00", "2026-11-27 22:00:00+0", "2026-11-27 22:00:00+00:3",
      "2026-11-27 22:00:00+00:30:00:00", "2026-13-40 25:61:61+00", "0099-01-01 00:00:00+00", "0001-01-01 00:00:00+00 BC",
    ];
    for (const text of [...texts, ...fc.sample(fc.string({ maxLength: 30 }), 500)]) {
      expect(same(parseTimestamptz(text)), text).toEqual(same(postgresDate(text)));
    }
  });

  it.skipIf(!testDatabaseUrl())("reads what PostgreSQL sends in other session time zones", async () => {
    const client = new pg.Client({ connectionString: testDatabaseUrl(), types: { getTypeParser: (oid: number) => (oid === TIMESTAMPTZ_OID ? parseTimestamptz : pg.types.getTypeParser(oid)) } });
    await client.connect();
    try {
      for (const zone of ["UTC", "Asia/Kolkata", "America/St_Johns", "Pacific/Chatham", "Europe/Amsterdam", "America/Los_Angeles"]) {
        await client.query(`SET TIME ZONE '${zone}'`);
        const { rows } = await client.query<{ t: Date; text: string; ms: number }>(
          `SELECT t, t::text AS text, floor(extract(epoch FROM t) * 1000)::float8 AS ms
             FROM (VALUES (now()), ('1999-12-31 23:59:59.999999+00'::timestamptz), ('2026-03-29 01:30:00.5+00'::timestamptz),
                          ('1883-11-18 12:00:00+00'::timestamptz)) AS v(t)`,
        );
        for (const row of rows) {
          expect(row.t.getTime(), `${zone}: ${row.text}`).toBe(row.ms);
          expect(same(row.t), row.text).toEqual(same(postgresDate(row.text)));
        }
      }
    } finally {
      await client.end();
    }
  });
});

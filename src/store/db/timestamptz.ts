// A parser for PostgreSQL `timestamptz` text ("2026-11-27 22:00:00.123456+00"), for the pg
// driver. pg's default (postgres-date) runs three regular expressions per value; a page of 25
// runners has about a hundred timestamps, and their parsing was 9 % of a ListRunners call's CPU
// (bench/README.md). This reads the usual shape by character positions and gives anything else
// (BC dates, years before 1000, infinity, other layouts) to pg's default, so the result is
// always pg's own: test/timestamptz.test.ts compares the two.
import pg from "pg";

export const TIMESTAMPTZ_OID = 1184;
const postgresDate = pg.types.getTypeParser(TIMESTAMPTZ_OID, "text") as (text: string) => Date | number | null;

const ZERO = 48;

/** Same as pg's default parser (postgres-date) for `timestamptz` text. */
export function parseTimestamptz(text: string): Date | number | null {
  // YYYY-MM-DD HH:MM:SS, then an optional fraction, then ±HH[:MM[:SS]].
  const length = text.length;
  if (length < 22 || text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45 || text.charCodeAt(10) !== 32 || text.charCodeAt(13) !== 58 || text.charCodeAt(16) !== 58) {
    return postgresDate(text);
  }
  const year = digits(text, 0, 4);
  const month = digits(text, 5, 2);
  const day = digits(text, 8, 2);
  const hour = digits(text, 11, 2);
  const minute = digits(text, 14, 2);
  const second = digits(text, 17, 2);
  if (year < 1000 || month < 0 || day < 0 || hour < 0 || minute < 0 || second < 0) return postgresDate(text);
  let at = 19;
  let milliseconds = 0;
  if (text.charCodeAt(at) === 46) {
    // A fraction of up to 6 digits; as postgres-date, milliseconds are truncated.
    let end = at + 1;
    while (end < length && isDigit(text.charCodeAt(end))) end++;
    if (end === at + 1 || end - at - 1 > 6) return postgresDate(text);
    milliseconds = 1000 * Number.parseFloat(text.slice(at, end));
    at = end;
  }
  const sign = text.charCodeAt(at);
  if (sign !== 43 && sign !== 45) return postgresDate(text);
  const zone = parseZone(text, at + 1);
  if (zone < 0) return postgresDate(text);
  const offsetMs = (sign === 45 ? -zone : zone) * 1000;
  return new Date(Date.UTC(year, month - 1, day, hour, minute, second, milliseconds) - offsetMs);
}

/** Seconds east of UTC in "HH", "HH:MM" or "HH:MM:SS" from `at` to the end, or -1. */
function parseZone(text: string, at: number): number {
  const rest = text.length - at;
  if (rest !== 2 && rest !== 5 && rest !== 8) return -1;
  let seconds = digits(text, at, 2) * 3600;
  for (let part = at + 2, factor = 60; part < text.length; part += 3, factor = 1) {
    if (text.charCodeAt(part) !== 58) return -1;
    seconds += digits(text, part + 1, 2) * factor;
  }
  return seconds < 0 ? -1 : seconds;
}

/** The decimal number of `count` digits at `at`, or a negative number when one is not a digit. */
function digits(text: string, at: number, count: number): number {
  let value = 0;
  for (let i = at; i < at + count; i++) {
    const code = text.charCodeAt(i);
    if (!isDigit(code)) return -1e9;
    value = value * 10 + code - ZERO;
  }
  return value;
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

// Server-wide values that every replica must share, created by whichever starts first.
import { randomBytes } from "node:crypto";
import { sql, type Database } from "./db/database.js";

const q = {
  insertIfAbsent: sql("setting_insert", "INSERT INTO server_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"),
  get: sql("setting_get", "SELECT value FROM server_settings WHERE key = $1"),
};

/** A random secret of `bytes` length under `key`, generated once for the whole deployment. */
export async function sharedSecret(db: Database, key: string, bytes = 32): Promise<Buffer> {
  await db.query(q.insertIfAbsent, [key, randomBytes(bytes)]);
  const { rows } = await db.query<{ value: Uint8Array }>(q.get, [key]);
  return Buffer.from(rows[0]!.value);
}

// All SQL for the token signing keys (migrations/0007_signing_keys.sql). Every statement that
// changes the set announces it on SIGNING_KEYS_CHANNEL in the same statement, so each replica's
// cache (src/domain/signing-keys.ts) reloads on commit.
import { sql, type Database } from "./db/database.js";

export const SIGNING_KEYS_CHANNEL = "rcp_signing_keys";

export interface SigningKeyRow {
  kid: string;
  algorithm: string;
  publicJwk: Record<string, unknown>;
  privateKeySealed: Uint8Array;
  createdAt: Date;
  signsFrom: Date;
  revokedAt: Date | null;
}

const columns = `kid, algorithm, public_jwk AS "publicJwk", private_key_sealed AS "privateKeySealed",
  created_at AS "createdAt", signs_from AS "signsFrom", revoked_at AS "revokedAt"`;
const notify = (kidColumn: string) => `pg_notify('${SIGNING_KEYS_CHANNEL}', ${kidColumn})`;

// Arbitrary constant ("rcp-sign" in ASCII): serializes replicas creating the first key at once.
const FIRST_KEY_LOCK = 0x7263702d7369676en.toString();

const q = {
  all: sql("signing_keys_all", `SELECT ${columns} FROM signing_keys ORDER BY signs_from, created_at, kid`),
  insert: sql(
    "signing_keys_insert",
    `WITH inserted AS (
       INSERT INTO signing_keys (kid, algorithm, public_jwk, private_key_sealed, created_at, signs_from)
       VALUES ($1, $2, $3::jsonb, $4, $5, $6) RETURNING kid)
     SELECT ${notify("kid")} FROM inserted`,
  ),
  anyUsable: sql("signing_keys_any_usable", "SELECT EXISTS (SELECT 1 FROM signing_keys WHERE revoked_at IS NULL AND signs_from <= $1) AS found"),
  lock: sql("signing_keys_lock", "SELECT pg_advisory_xact_lock($1::bigint)"),
  revoke: sql(
    "signing_keys_revoke",
    `WITH revoked AS (UPDATE signing_keys SET revoked_at = $2 WHERE kid = $1 AND revoked_at IS NULL RETURNING kid)
     SELECT ${notify("kid")} FROM revoked`,
  ),
  delete: sql(
    "signing_keys_delete",
    `WITH deleted AS (DELETE FROM signing_keys WHERE kid = ANY($1::text[]) RETURNING kid) SELECT ${notify("kid")} FROM deleted`,
  ),
  replaceSealed: sql(
    "signing_keys_replace_sealed",
    `WITH updated AS (UPDATE signing_keys SET private_key_sealed = $3 WHERE kid = $1 AND private_key_sealed = $2 RETURNING kid)
     SELECT ${notify("kid")} FROM updated`,
  ),
};

export type NewSigningKey = Omit<SigningKeyRow, "revokedAt">;

export class SigningKeyStore {
  constructor(private readonly db: Database) {}

  async all(): Promise<SigningKeyRow[]> {
    const { rows } = await this.db.query<SigningKeyRow>(q.all);
    return rows;
  }

  async insert(key: NewSigningKey): Promise<void> {
    await this.db.query(q.insert, insertValues(key));
  }

  /**
   * Inserts `key` only when no unrevoked key already signs at `now`; false when one does. Replicas
   * that start together on an empty table thus agree on one first key (which is backdated, so
   * clocks a little behind agree too).
   */
  insertIfNoneSigns(key: NewSigningKey, now: Date): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      await tx.query(q.lock, [FIRST_KEY_LOCK]);
      const { rows } = await tx.query<{ found: boolean }>(q.anyUsable, [now]);
      if (rows[0]!.found) return false;
      await tx.query(q.insert, insertValues(key));
      return true;
    });
  }

  async revoke(kid: string, now: Date): Promise<boolean> {
    return (await this.db.query(q.revoke, [kid, now])).rowCount > 0;
  }

  async delete(kids: string[]): Promise<number> {
    if (kids.length === 0) return 0;
    return (await this.db.query(q.delete, [kids])).rowCount;
  }

  /** Compare-and-set of the sealed private key (re-sealing after a secrets key rotation). */
  async replaceSealed(kid: string, before: Uint8Array, after: Uint8Array): Promise<boolean> {
    return (await this.db.query(q.replaceSealed, [kid, before, after])).rowCount > 0;
  }
}

function insertValues(key: NewSigningKey): unknown[] {
  return [key.kid, key.algorithm, JSON.stringify(key.publicJwk), key.privateKeySealed, key.createdAt, key.signsFrom];
}

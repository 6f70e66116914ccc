// All SQL for organizations, users and their API keys.
import { randomUUID } from "node:crypto";
import { sql, type Database } from "./db/database.js";
import { insertLocalConfigurationRunner } from "./runner-store.js";
import { CREDENTIALS_CHANNEL, revocationPayloadSql } from "./credential-revocations.js";

export interface Organization {
  id: string;
  slug: string;
  name: string;
  tier: string;
}

export interface User {
  id: string;
  organizationId: string;
  email: string;
}

export interface ApiKeyInfo {
  id: string;
  organizationSlug: string;
  userEmail: string;
  description: string;
  createdAt: Date;
  revokedAt: Date | null;
}

/** Who a valid user API key belongs to. */
export interface UserCredential {
  apiKeyId: string;
  userId: string;
  organizationId: string;
  organizationTier: string;
}

const q = {
  insertOrganization: sql(
    "org_insert",
    `INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (slug) DO NOTHING RETURNING id`,
  ),
  anyOrganization: sql("org_none", "SELECT NOT EXISTS (SELECT 1 FROM organizations) AS empty"),
  organizationBySlug: sql("org_by_slug", "SELECT id, slug, name, tier FROM organizations WHERE slug = $1"),
  upsertUser: sql(
    "user_upsert",
    `INSERT INTO users (id, organization_id, email, created_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (organization_id, email) DO UPDATE SET email = EXCLUDED.email
     RETURNING id, organization_id AS "organizationId", email`,
  ),
  insertApiKey: sql(
    "api_key_insert",
    `INSERT INTO api_keys (id, token_hash, user_id, organization_id, description, created_at)
     VALUES ($1, $2, $3, $4, $5, $6)`,
  ),
  apiKeyByHash: sql(
    "api_key_by_hash",
    `SELECT k.id AS "apiKeyId", k.user_id AS "userId", k.organization_id AS "organizationId", o.tier AS "organizationTier",
            k.token_hash AS "tokenHash"
       FROM api_keys k JOIN organizations o ON o.id = k.organization_id
      WHERE k.token_hash = $1 AND k.revoked_at IS NULL`,
  ),
  listApiKeys: sql(
    "api_key_list",
    `SELECT k.id, o.slug AS "organizationSlug", u.email AS "userEmail", k.description,
            k.created_at AS "createdAt", k.revoked_at AS "revokedAt"
       FROM api_keys k JOIN users u ON u.id = k.user_id JOIN organizations o ON o.id = k.organization_id
      WHERE $1::text IS NULL OR o.slug = $1
      ORDER BY o.slug, k.created_at, k.id`,
  ),
  userEmail: sql("user_email", "SELECT email FROM users WHERE id = $1"),
  // The notification (delivered on commit) tells every replica to drop the cached key.
  revokeApiKey: sql(
    "api_key_revoke",
    `WITH revoked AS (UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING id)
     SELECT id, pg_notify('${CREDENTIALS_CHANNEL}', ${revocationPayloadSql.apiKey("id")}) FROM revoked`,
  ),
};

export class IdentityStore {
  constructor(private readonly db: Database) {}

  /**
   * Returns the organization with this slug, creating it (and its LOCAL_CONFIGURATION
   * runner, in the same transaction) when it does not exist yet.
   */
  async ensureOrganization(slug: string, name: string, now: Date): Promise<Organization> {
    const existing = await this.organizationBySlug(slug);
    if (existing) return existing;
    await this.db.transaction(async (tx) => {
      const id = randomUUID();
      const inserted = await tx.query(q.insertOrganization, [id, slug, name, now]);
      // Another process may have created it between our read and insert: keep theirs.
      if (inserted.rowCount === 1) await insertLocalConfigurationRunner(tx, id, now);
    });
    const created = await this.organizationBySlug(slug);
    if (!created) throw new Error(`organization ${slug} vanished after creation`);
    return created;
  }

  /** False on a database no organization was created in yet (a first start). */
  async hasOrganizations(): Promise<boolean> {
    const { rows } = await this.db.query<{ empty: boolean }>(q.anyOrganization);
    return !rows[0]?.empty;
  }

  async organizationBySlug(slug: string): Promise<Organization | undefined> {
    const { rows } = await this.db.query<Organization>(q.organizationBySlug, [slug]);
    return rows[0];
  }

  async ensureUser(organizationId: string, email: string, now: Date): Promise<User> {
    const { rows } = await this.db.query<User>(q.upsertUser, [randomUUID(), organizationId, email, now]);
    return rows[0]!;
  }

  async userEmail(userId: string): Promise<string | undefined> {
    const { rows } = await this.db.query<{ email: string }>(q.userEmail, [userId]);
    return rows[0]?.email;
  }

  async insertApiKey(user: User, tokenHash: Buffer, description: string, now: Date): Promise<string> {
    const id = randomUUID();
    await this.db.query(q.insertApiKey, [id, tokenHash, user.id, user.organizationId, description, now]);
    return id;
  }

  async userByApiKeyHash(tokenHash: Buffer): Promise<(UserCredential & { tokenHash: Uint8Array }) | undefined> {
    const { rows } = await this.db.query<UserCredential & { tokenHash: Uint8Array }>(q.apiKeyByHash, [tokenHash]);
    return rows[0];
  }

  async listApiKeys(organizationSlug?: string): Promise<ApiKeyInfo[]> {
    const { rows } = await this.db.query<ApiKeyInfo>(q.listApiKeys, [organizationSlug ?? null]);
    return rows;
  }

  /** False when no key has this id. Revoking a revoked key keeps the first revocation time. */
  async revokeApiKey(id: string, now: Date): Promise<boolean> {
    const { rowCount } = await this.db.query(q.revokeApiKey, [id, now]);
    return rowCount === 1;
  }
}

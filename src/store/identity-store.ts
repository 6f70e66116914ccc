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

/** gitpod.v1.OrganizationRole numbers, as stored in users.role. */
export const ROLE_ADMIN = 1;
export const ROLE_MEMBER = 2;

export interface User {
  id: string;
  organizationId: string;
  email: string;
  /** ROLE_ADMIN or ROLE_MEMBER. */
  role: number;
}

export interface UserInfo {
  id: string;
  organizationSlug: string;
  email: string;
  role: number;
  /** Names of the groups the user is a member of, sorted. */
  groups: string[];
  createdAt: Date;
}

export type SetRoleOutcome = { outcome: "set"; user: User } | { outcome: "no-such-user" } | { outcome: "last-admin" };

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
  role: number;
  /** The groups the user is a member of. */
  groupIds: string[];
}

const q = {
  insertOrganization: sql(
    "org_insert",
    `INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (slug) DO NOTHING RETURNING id`,
  ),
  anyOrganization: sql("org_none", "SELECT NOT EXISTS (SELECT 1 FROM organizations) AS empty"),
  organizationBySlug: sql("org_by_slug", "SELECT id, slug, name, tier FROM organizations WHERE slug = $1"),
  lockOrganization: sql("org_lock", "SELECT id FROM organizations WHERE id = $1 FOR UPDATE"),
  lockOrganizationBySlug: sql("org_lock_by_slug", "SELECT id FROM organizations WHERE slug = $1 FOR UPDATE"),
  // Run with the organization's row locked, so that of two users created at once only one is
  // the first (this statement's snapshot is taken after the lock was granted).
  insertUser: sql(
    "user_insert",
    `INSERT INTO users (id, organization_id, email, created_at, role)
     SELECT $1, $2, $3, $4,
            COALESCE($5::smallint, CASE WHEN EXISTS (SELECT 1 FROM users WHERE organization_id = $2) THEN ${ROLE_MEMBER} ELSE ${ROLE_ADMIN} END)
     ON CONFLICT (organization_id, email) DO NOTHING
     RETURNING id, organization_id AS "organizationId", email, role`,
  ),
  userByEmail: sql(
    "user_by_email",
    `SELECT id, organization_id AS "organizationId", email, role FROM users WHERE organization_id = $1 AND email = $2`,
  ),
  // Run with the organization's row locked: demoting admins one by one at the same time cannot
  // leave the organization without one. The notification evicts the user's cached callers on
  // every replica, so the new role applies to their next call.
  userBySlugAndEmail: sql(
    "user_by_slug_and_email",
    `SELECT u.id, u.organization_id AS "organizationId", u.email, u.role
       FROM users u JOIN organizations o ON o.id = u.organization_id WHERE o.slug = $1 AND u.email = $2`,
  ),
  // Run with the organization's row locked: demoting admins one by one at the same time cannot
  // leave the organization without one. The notification evicts the user's cached callers on
  // every replica, so the new role applies to their next call.
  setRole: sql(
    "user_set_role",
    `WITH changed AS (
       UPDATE users u SET role = $2
        WHERE u.id = $1
          AND ($2 = ${ROLE_ADMIN} OR u.role = ${ROLE_MEMBER}
               OR EXISTS (SELECT 1 FROM users a WHERE a.organization_id = u.organization_id AND a.role = ${ROLE_ADMIN} AND a.id <> u.id))
        RETURNING u.id, u.organization_id AS "organizationId", u.email, u.role
     )
     SELECT id, "organizationId", email, role, pg_notify('${CREDENTIALS_CHANNEL}', ${revocationPayloadSql.user("id")}) FROM changed`,
  ),
  listUsers: sql(
    "user_list",
    `SELECT u.id, o.slug AS "organizationSlug", u.email, u.role, u.created_at AS "createdAt",
            ARRAY(SELECT g.name FROM group_memberships m JOIN groups g ON g.id = m.group_id
                   WHERE m.user_id = u.id ORDER BY g.name) AS groups
       FROM users u JOIN organizations o ON o.id = u.organization_id
      WHERE $1::text IS NULL OR o.slug = $1
      ORDER BY o.slug, u.created_at, u.email`,
  ),
  insertApiKey: sql(
    "api_key_insert",
    `INSERT INTO api_keys (id, token_hash, user_id, organization_id, description, created_at)
     VALUES ($1, $2, $3, $4, $5, $6)`,
  ),
  apiKeyByHash: sql(
    "api_key_by_hash",
    `SELECT k.id AS "apiKeyId", k.user_id AS "userId", k.organization_id AS "organizationId", o.tier AS "organizationTier",
            u.role, ARRAY(SELECT m.group_id::text FROM group_memberships m WHERE m.user_id = k.user_id ORDER BY 1) AS "groupIds",
            k.token_hash AS "tokenHash"
       FROM api_keys k JOIN organizations o ON o.id = k.organization_id JOIN users u ON u.id = k.user_id
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

  /**
   * Returns the user with this email, creating it when absent: with `role` when given, else as
   * the organization's admin when it is its first user and as a member otherwise. An existing
   * user keeps its role.
   */
  async ensureUser(organizationId: string, email: string, now: Date, role?: number): Promise<{ user: User; created: boolean }> {
    return this.db.transaction(async (tx) => {
      await tx.query(q.lockOrganization, [organizationId]);
      const { rows } = await tx.query<User>(q.insertUser, [randomUUID(), organizationId, email, now, role ?? null]);
      if (rows[0]) return { user: rows[0], created: true };
      const existing = await tx.query<User>(q.userByEmail, [organizationId, email]);
      return { user: existing.rows[0]!, created: false };
    });
  }

  /** Changes a user's role, unless that would leave the organization without an admin. */
  async setRole(organizationSlug: string, email: string, role: number): Promise<SetRoleOutcome> {
    return this.db.transaction(async (tx) => {
      await tx.query(q.lockOrganizationBySlug, [organizationSlug]);
      const found = await tx.query<User>(q.userBySlugAndEmail, [organizationSlug, email]);
      if (!found.rows[0]) return { outcome: "no-such-user" };
      const { rows } = await tx.query<User>(q.setRole, [found.rows[0].id, role]);
      const user = rows[0];
      if (!user) return { outcome: "last-admin" };
      return { outcome: "set", user: { id: user.id, organizationId: user.organizationId, email: user.email, role: user.role } };
    });
  }

  async listUsers(organizationSlug?: string): Promise<UserInfo[]> {
    const { rows } = await this.db.query<UserInfo>(q.listUsers, [organizationSlug ?? null]);
    return rows;
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

// All SQL for groups and their memberships. Every change of who is in which group publishes a
// notification in the same statement (delivered on commit), so every replica's credential
// cache drops the callers concerned (src/store/credential-revocations.ts).
import { auditSetting, setAudit } from "./db/audit-context.js";
import { randomUUID } from "node:crypto";
import { sql, type Database } from "./db/database.js";
import { CREDENTIALS_CHANNEL, revocationPayloadSql } from "./credential-revocations.js";
import type { ListCursor } from "./runner-store.js";

export interface GroupRow {
  id: string;
  organizationId: string;
  name: string;
  description: string;
  createdAt: Date;
  updatedAt: Date;
  memberCount: number;
}

export interface MembershipRow {
  id: string;
  groupId: string;
  userId: string;
  email: string;
  createdAt: Date;
}

export interface GroupFilter {
  /** Case-insensitive substring of the name, the description or the id; "" matches all. */
  search: string;
  /** Only these groups; empty = no restriction. */
  groupIds: string[];
  /** Leave out the groups that hold a role on this runner. */
  excludeAssignedToRunner: string | undefined;
}

const GROUP_COLUMNS = `g.id, g.organization_id AS "organizationId", g.name, g.description, g.created_at AS "createdAt",
  g.updated_at AS "updatedAt", (SELECT count(*)::int FROM group_memberships m WHERE m.group_id = g.id) AS "memberCount"`;

/** SQLSTATE of a unique violation (a group name taken by a concurrent change). */
const UNIQUE_VIOLATION = "23505";

const q = {
  insertGroup: sql(
    "group_insert",
    `INSERT INTO groups AS g (id, organization_id, name, description, created_at, updated_at)
     SELECT $1, $2, $3, $4, $5, $5 WHERE ${setAudit(6)}
     ON CONFLICT (organization_id, name) DO NOTHING
     RETURNING ${GROUP_COLUMNS}`,
  ),
  groupById: sql("group_by_id", `SELECT ${GROUP_COLUMNS} FROM groups g WHERE g.organization_id = $1 AND g.id = $2`),
  groupByName: sql("group_by_name", `SELECT ${GROUP_COLUMNS} FROM groups g WHERE g.organization_id = $1 AND g.name = $2`),
  listGroups: sql(
    "group_list",
    `SELECT ${GROUP_COLUMNS} FROM groups g
      WHERE g.organization_id = $1
        AND ($2 = '' OR strpos(lower(g.name), lower($2)) > 0 OR strpos(lower(g.description), lower($2)) > 0
             OR strpos(g.id::text, lower($2)) > 0)
        AND (cardinality($3::uuid[]) = 0 OR g.id = ANY($3::uuid[]))
        AND ($4::uuid IS NULL OR NOT EXISTS (SELECT 1 FROM runner_policies p JOIN runners r ON r.id = p.runner_id AND r.deleted_at IS NULL
                                              WHERE p.group_id = g.id AND p.runner_id = $4::uuid))
        AND ($5::timestamptz IS NULL OR (g.created_at, g.id) > ($5::timestamptz, $6::uuid))
      ORDER BY g.created_at, g.id
      LIMIT $7`,
  ),
  updateGroup: sql(
    "group_update",
    `UPDATE groups g SET name = $3, description = $4, updated_at = GREATEST($5, updated_at)
      WHERE g.organization_id = $1 AND g.id = $2
        AND NOT EXISTS (SELECT 1 FROM groups o WHERE o.organization_id = $1 AND o.name = $3 AND o.id <> $2) AND ${setAudit(6)}
     RETURNING ${GROUP_COLUMNS}`,
  ),
  // Memberships and the group's runner policies go with it (ON DELETE CASCADE); its members'
  // cached callers, which list the group, are evicted everywhere.
  deleteGroup: sql(
    "group_delete",
    `WITH deleted AS (DELETE FROM groups WHERE organization_id = $1 AND id = $2 AND ${setAudit(3)} RETURNING id)
     SELECT id, pg_notify('${CREDENTIALS_CHANNEL}', ${revocationPayloadSql.group("id")}) FROM deleted`,
  ),
  // Group and user must both be of the organization; an existing membership is left alone.
  insertMembership: sql(
    "membership_insert",
    `WITH target AS (
       SELECT g.id AS group_id, u.id AS user_id, u.email FROM groups g JOIN users u ON u.organization_id = g.organization_id
        WHERE g.organization_id = $1 AND g.id = $2 AND u.id = $3 AND ${setAudit(6)}
     ), inserted AS (
       INSERT INTO group_memberships (id, group_id, user_id, created_at)
       SELECT $4, group_id, user_id, $5 FROM target
       ON CONFLICT (group_id, user_id) DO NOTHING
       RETURNING id, group_id, user_id, created_at
     )
     SELECT i.id, i.group_id AS "groupId", i.user_id AS "userId", t.email, i.created_at AS "createdAt",
            pg_notify('${CREDENTIALS_CHANNEL}', ${revocationPayloadSql.user("i.user_id")})
       FROM inserted i CROSS JOIN target t`,
  ),
  userInOrganization: sql("membership_user", "SELECT 1 FROM users WHERE organization_id = $1 AND id = $2"),
  deleteMembership: sql(
    "membership_delete",
    `WITH deleted AS (
       DELETE FROM group_memberships m USING groups g
        WHERE m.id = $2 AND g.id = m.group_id AND g.organization_id = $1 AND ${setAudit(3)}
        RETURNING m.user_id
     )
     SELECT user_id AS "userId", pg_notify('${CREDENTIALS_CHANNEL}', ${revocationPayloadSql.user("user_id")}) FROM deleted`,
  ),
  membership: sql(
    "membership_get",
    `SELECT m.id, m.group_id AS "groupId", m.user_id AS "userId", u.email, m.created_at AS "createdAt"
       FROM group_memberships m JOIN users u ON u.id = m.user_id
      WHERE m.group_id = $1 AND m.user_id = $2`,
  ),
  listMemberships: sql(
    "membership_list",
    `SELECT m.id, m.group_id AS "groupId", m.user_id AS "userId", u.email, m.created_at AS "createdAt"
       FROM group_memberships m JOIN users u ON u.id = m.user_id
      WHERE m.group_id = $1
        AND ($2 = '' OR strpos(lower(u.email), lower($2)) > 0 OR strpos(u.id::text, lower($2)) > 0)
        AND ($3::timestamptz IS NULL OR (m.created_at, m.id) > ($3::timestamptz, $4::uuid))
      ORDER BY m.created_at, m.id
      LIMIT $5`,
  ),
};

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === UNIQUE_VIOLATION;
}

export class GroupStore {
  constructor(private readonly db: Database) {}

  /** Undefined when the organization already has a group of this name. */
  async insertGroup(organizationId: string, name: string, description: string, now: Date): Promise<GroupRow | undefined> {
    const { rows } = await this.db.query<GroupRow>(q.insertGroup, [randomUUID(), organizationId, name, description, now, auditSetting("groups")]);
    return rows[0];
  }

  async groupById(organizationId: string, groupId: string): Promise<GroupRow | undefined> {
    const { rows } = await this.db.query<GroupRow>(q.groupById, [organizationId, groupId]);
    return rows[0];
  }

  async groupByName(organizationId: string, name: string): Promise<GroupRow | undefined> {
    const { rows } = await this.db.query<GroupRow>(q.groupByName, [organizationId, name]);
    return rows[0];
  }

  async listGroups(organizationId: string, filter: GroupFilter, after: ListCursor | undefined, limit: number): Promise<GroupRow[]> {
    const { rows } = await this.db.query<GroupRow>(q.listGroups, [
      organizationId, filter.search, filter.groupIds, filter.excludeAssignedToRunner ?? null,
      after?.createdAt ?? null, after?.id ?? null, limit,
    ]);
    return rows;
  }

  /** "missing": no such group; "name-taken": another group of the organization has this name. */
  async updateGroup(organizationId: string, groupId: string, name: string, description: string, now: Date): Promise<GroupRow | "missing" | "name-taken"> {
    try {
      const { rows } = await this.db.query<GroupRow>(q.updateGroup, [organizationId, groupId, name, description, now, auditSetting("groups")]);
      if (rows[0]) return rows[0];
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      return "name-taken"; // taken by a concurrent change after the statement's check
    }
    return (await this.groupById(organizationId, groupId)) ? "name-taken" : "missing";
  }

  /** False when the organization has no such group. */
  async deleteGroup(organizationId: string, groupId: string): Promise<boolean> {
    const { rowCount } = await this.db.query(q.deleteGroup, [organizationId, groupId, auditSetting("groups")]);
    return rowCount === 1;
  }

  /** The new membership; else why not: no such group or user in the organization, or already a member. */
  async insertMembership(
    organizationId: string,
    groupId: string,
    userId: string,
    now: Date,
  ): Promise<MembershipRow | "no-group" | "no-user" | "exists"> {
    const { rows } = await this.db.query<MembershipRow>(q.insertMembership, [organizationId, groupId, userId, randomUUID(), now, auditSetting("group_memberships")]);
    if (rows[0]) return rows[0];
    if (!(await this.groupById(organizationId, groupId))) return "no-group";
    const user = await this.db.query(q.userInOrganization, [organizationId, userId]);
    return user.rowCount === 0 ? "no-user" : "exists";
  }

  /** The member's user id, or undefined when the organization has no such membership. */
  async deleteMembership(organizationId: string, membershipId: string): Promise<string | undefined> {
    const { rows } = await this.db.query<{ userId: string }>(q.deleteMembership, [organizationId, membershipId, auditSetting("group_memberships")]);
    return rows[0]?.userId;
  }

  async membership(groupId: string, userId: string): Promise<MembershipRow | undefined> {
    const { rows } = await this.db.query<MembershipRow>(q.membership, [groupId, userId]);
    return rows[0];
  }

  async listMemberships(groupId: string, search: string, after: ListCursor | undefined, limit: number): Promise<MembershipRow[]> {
    const { rows } = await this.db.query<MembershipRow>(q.listMemberships, [groupId, search, after?.createdAt ?? null, after?.id ?? null, limit]);
    return rows;
  }
}

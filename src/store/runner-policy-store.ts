// All SQL for runner policies: a group's role (RunnerRole numbers) on one runner, which is
// also that group's role assignment on the runner (GroupService). Policies are not cached
// anywhere: the runner store reads them with the runner on every call, so a change needs no
// notification to apply to the next call on every replica.
import { auditSetting, setAudit } from "./db/audit-context.js";
import { randomUUID } from "node:crypto";
import { sql, type Database } from "./db/database.js";
import type { ListCursor } from "./runner-store.js";

/** RunnerRole.ADMIN, as stored. */
const RUNNER_ROLE_ADMIN = 1;

export interface PolicyRow {
  id: string;
  runnerId: string;
  groupId: string;
  organizationId: string;
  role: number;
  createdAt: Date;
}

export interface AssignmentFilter {
  groupId: string | undefined;
  /** Only the policies of groups this user is a member of. */
  userId: string | undefined;
  /** Only policies on these runners; empty = all. */
  runnerIds: string[];
  /** Only these RunnerRole numbers; empty = all. */
  roles: number[];
}

const POLICY_COLUMNS = `p.id, p.runner_id AS "runnerId", p.group_id AS "groupId", p.organization_id AS "organizationId", p.role,
  p.created_at AS "createdAt"`;

const q = {
  // The group must be of the runner's organization (the caller's; the use case checked the runner).
  insert: sql(
    "runner_policy_insert",
    `INSERT INTO runner_policies AS p (id, runner_id, group_id, organization_id, role, created_at)
     SELECT $1, $2, g.id, g.organization_id, $5, $6 FROM groups g WHERE g.id = $3 AND g.organization_id = $4 AND ${setAudit(7)}
     ON CONFLICT (runner_id, group_id) DO NOTHING
     RETURNING ${POLICY_COLUMNS}`,
  ),
  update: sql(
    "runner_policy_update",
    `UPDATE runner_policies p SET role = $4 WHERE p.organization_id = $1 AND p.runner_id = $2 AND p.group_id = $3 AND ${setAudit(5)} RETURNING ${POLICY_COLUMNS}`,
  ),
  delete: sql(
    "runner_policy_delete",
    `DELETE FROM runner_policies p WHERE p.organization_id = $1 AND p.runner_id = $2 AND p.group_id = $3 AND ${setAudit(4)} RETURNING ${POLICY_COLUMNS}`,
  ),
  byId: sql(
    "runner_policy_by_id",
    `SELECT ${POLICY_COLUMNS} FROM runner_policies p JOIN runners r ON r.id = p.runner_id AND r.deleted_at IS NULL
      WHERE p.organization_id = $1 AND p.id = $2`,
  ),
  listForRunner: sql(
    "runner_policy_list",
    `SELECT ${POLICY_COLUMNS} FROM runner_policies p
      WHERE p.runner_id = $1 AND ($2::timestamptz IS NULL OR (p.created_at, p.id) > ($2::timestamptz, $3::uuid))
      ORDER BY p.created_at, p.id
      LIMIT $4`,
  ),
  // Policies of deleted runners are kept with the runner's row but never shown.
  listAssignments: sql(
    "runner_policy_list_assignments",
    `SELECT ${POLICY_COLUMNS} FROM runner_policies p JOIN runners r ON r.id = p.runner_id AND r.deleted_at IS NULL
      WHERE p.organization_id = $1
        AND ($2::uuid IS NULL OR p.group_id = $2::uuid)
        AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM group_memberships m WHERE m.group_id = p.group_id AND m.user_id = $3::uuid))
        AND (cardinality($4::uuid[]) = 0 OR p.runner_id = ANY($4::uuid[]))
        AND (cardinality($5::smallint[]) = 0 OR p.role = ANY($5::smallint[]))
        -- The caller's scope (src/domain/access.ts listingScope): all (null), or the policies of
        -- these groups and every policy on a runner one of these groups administers.
        AND ($6::uuid[] IS NULL OR p.group_id = ANY($6::uuid[])
             OR EXISTS (SELECT 1 FROM runner_policies a
                         WHERE a.runner_id = p.runner_id AND a.role = ${RUNNER_ROLE_ADMIN} AND a.group_id = ANY($6::uuid[])))
        AND ($7::timestamptz IS NULL OR (p.created_at, p.id) > ($7::timestamptz, $8::uuid))
      ORDER BY p.created_at, p.id
      LIMIT $9`,
  ),
};

export class RunnerPolicyStore {
  constructor(private readonly db: Database) {}

  /** Undefined when the organization has no such group or the group already has a policy on the runner. */
  async insert(organizationId: string, runnerId: string, groupId: string, role: number, now: Date): Promise<PolicyRow | undefined> {
    const { rows } = await this.db.query<PolicyRow>(q.insert, [randomUUID(), runnerId, groupId, organizationId, role, now, auditSetting("runner_policies")]);
    return rows[0];
  }

  async update(organizationId: string, runnerId: string, groupId: string, role: number): Promise<PolicyRow | undefined> {
    const { rows } = await this.db.query<PolicyRow>(q.update, [organizationId, runnerId, groupId, role, auditSetting("runner_policies")]);
    return rows[0];
  }

  async delete(organizationId: string, runnerId: string, groupId: string): Promise<PolicyRow | undefined> {
    const { rows } = await this.db.query<PolicyRow>(q.delete, [organizationId, runnerId, groupId, auditSetting("runner_policies")]);
    return rows[0];
  }

  /** A policy of a live runner of the organization, by its role assignment id. */
  async byId(organizationId: string, id: string): Promise<PolicyRow | undefined> {
    const { rows } = await this.db.query<PolicyRow>(q.byId, [organizationId, id]);
    return rows[0];
  }

  async listForRunner(runnerId: string, after: ListCursor | undefined, limit: number): Promise<PolicyRow[]> {
    const { rows } = await this.db.query<PolicyRow>(q.listForRunner, [runnerId, after?.createdAt ?? null, after?.id ?? null, limit]);
    return rows;
  }

  /** `scope`: undefined lists all of the organization's; groups list what listingScope allows. */
  async listAssignments(
    organizationId: string,
    filter: AssignmentFilter,
    scope: { groupIds: readonly string[] } | undefined,
    after: ListCursor | undefined,
    limit: number,
  ): Promise<PolicyRow[]> {
    const { rows } = await this.db.query<PolicyRow>(q.listAssignments, [
      organizationId, filter.groupId ?? null, filter.userId ?? null, filter.runnerIds, filter.roles,
      scope ? [...scope.groupIds] : null, after?.createdAt ?? null, after?.id ?? null, limit,
    ]);
    return rows;
  }
}

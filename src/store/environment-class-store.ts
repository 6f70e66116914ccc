// All SQL for environment classes: created by admins (CreateEnvironmentClass) or offered by a
// runner at Signup, one row each.
import { sql, type Database, type Queryable } from "./db/database.js";
import { runnerInScope, type ListCursor, type StoredFieldValue } from "./runner-store.js";
import { auditSetting, setAudit } from "./db/audit-context.js";

export interface EnvironmentClassRow {
  id: string;
  runnerId: string;
  organizationId: string;
  displayName: string;
  description: string;
  configuration: StoredFieldValue[];
  enabled: boolean;
  createdAt: Date;
  updatedAt: Date;
}

export interface EnvironmentClassFilter {
  runnerIds: string[];
  enabled: boolean | undefined;
  kinds: number[];
  providers: number[];
  /** Only the classes with these ids (the runner-side list). */
  ids: string[];
}

const COLUMNS = `c.id, c.runner_id AS "runnerId", c.organization_id AS "organizationId", c.display_name AS "displayName",
  c.description, c.configuration, c.enabled, c.created_at AS "createdAt", c.updated_at AS "updatedAt"`;

const q = {
  insert: sql(
    "environment_class_insert",
    `INSERT INTO environment_classes AS c (id, runner_id, organization_id, display_name, description, configuration, enabled, created_at, updated_at)
     SELECT $1, $2, $3, $4, $5, $6::jsonb, true, $7, $7 WHERE ${setAudit(8)}
     RETURNING ${COLUMNS}`,
  ),
  // A runner's Signup offers: new ones are added, known ones (same id, same runner) take the
  // offered display name, description and configuration; `enabled` is the admins' switch and stays.
  offer: sql(
    "environment_class_offer",
    `INSERT INTO environment_classes AS c (id, runner_id, organization_id, display_name, description, configuration, enabled, created_at, updated_at)
     SELECT t.id, $2, r.organization_id, t.display_name, t.description, t.configuration, t.enabled, $3, $3
       FROM jsonb_to_recordset($1::jsonb) AS t(id uuid, display_name text, description text, configuration jsonb, enabled boolean)
       JOIN runners r ON r.id = $2
     ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name, description = EXCLUDED.description,
       configuration = EXCLUDED.configuration, updated_at = EXCLUDED.updated_at
       WHERE c.runner_id = EXCLUDED.runner_id`,
  ),
  byId: sql(
    "environment_class_by_id",
    `SELECT ${COLUMNS} FROM environment_classes c
      WHERE c.id = $1 AND c.organization_id = $2 AND EXISTS (SELECT 1 FROM runners r WHERE r.id = c.runner_id AND r.deleted_at IS NULL)`,
  ),
  // Within the caller's scope ($6: null = all; else runners without policies or with one of these groups').
  list: sql(
    "environment_class_list",
    `SELECT ${COLUMNS} FROM environment_classes c JOIN runners r ON r.id = c.runner_id AND r.deleted_at IS NULL
      WHERE c.organization_id = $1
        AND (cardinality($2::uuid[]) = 0 OR c.runner_id = ANY($2::uuid[]))
        AND ($3::boolean IS NULL OR c.enabled = $3::boolean)
        AND (cardinality($4::smallint[]) = 0 OR r.kind = ANY($4::smallint[]))
        AND (cardinality($5::smallint[]) = 0 OR r.provider = ANY($5::smallint[]))
        AND ${runnerInScope("r", "$6")}
        AND (cardinality($7::uuid[]) = 0 OR c.id = ANY($7::uuid[]))
        AND ($8::timestamptz IS NULL OR (c.created_at, c.id) < ($8::timestamptz, $9::uuid))
      ORDER BY c.created_at DESC, c.id DESC
      LIMIT $10`,
  ),
  update: sql(
    "environment_class_update",
    `UPDATE environment_classes c SET
       display_name = COALESCE($3, display_name),
       description = COALESCE($4, description),
       enabled = COALESCE($5, enabled),
       updated_at = GREATEST($6, updated_at)
     WHERE c.id = $1 AND c.organization_id = $2 AND ${setAudit(7)}
     RETURNING ${COLUMNS}`,
  ),
};

export interface OfferedClass {
  id: string;
  displayName: string;
  description: string;
  configuration: StoredFieldValue[];
  enabled: boolean;
}

/** Stores the classes a runner offered at Signup (RunnerStore.signup calls it in its transaction). */
export async function offerEnvironmentClasses(conn: Queryable, runnerId: string, classes: OfferedClass[], now: Date): Promise<void> {
  const records = classes.map((c) => ({ id: c.id, display_name: c.displayName, description: c.description, configuration: c.configuration, enabled: c.enabled }));
  await conn.query(q.offer, [JSON.stringify(records), runnerId, now]);
}

export class EnvironmentClassStore {
  constructor(private readonly db: Database) {}

  async insert(row: { id: string; runnerId: string; organizationId: string; displayName: string; description: string; configuration: StoredFieldValue[] }, now: Date) {
    const { rows } = await this.db.query<EnvironmentClassRow>(q.insert, [
      row.id, row.runnerId, row.organizationId, row.displayName, row.description, JSON.stringify(row.configuration), now, auditSetting("environment_classes"),
    ]);
    return rows[0]!;
  }

  async get(organizationId: string, id: string): Promise<EnvironmentClassRow | undefined> {
    const { rows } = await this.db.query<EnvironmentClassRow>(q.byId, [id, organizationId]);
    return rows[0];
  }

  async list(
    organizationId: string,
    filter: EnvironmentClassFilter,
    scope: { groupIds: readonly string[] } | undefined,
    after: ListCursor | undefined,
    limit: number,
  ): Promise<EnvironmentClassRow[]> {
    const { rows } = await this.db.query<EnvironmentClassRow>(q.list, [
      organizationId, filter.runnerIds, filter.enabled ?? null, filter.kinds, filter.providers,
      scope ? [...scope.groupIds] : null, filter.ids, after?.createdAt ?? null, after?.id ?? null, limit,
    ]);
    return rows;
  }

  async update(organizationId: string, id: string, patch: { displayName?: string; description?: string; enabled?: boolean }, now: Date) {
    const { rows } = await this.db.query<EnvironmentClassRow>(q.update, [
      id, organizationId, patch.displayName ?? null, patch.description ?? null, patch.enabled ?? null, now, auditSetting("environment_classes"),
    ]);
    return rows[0];
  }
}

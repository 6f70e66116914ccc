// All SQL of the audit log (rows written by the triggers of migrations/0004_events_audit.sql).
import { sql, type Database } from "./db/database.js";
import type { ListCursor } from "./runner-store.js";

export interface AuditRow {
  id: string;
  actorId: string | null;
  actorPrincipal: number;
  subjectId: string | null;
  subjectType: number;
  action: string;
  kind: number;
  createdAt: Date;
}

export interface AuditFilter {
  actorIds: string[];
  actorPrincipals: number[];
  subjectIds: string[];
  subjectTypes: number[];
  /** Inclusive. */
  from: Date | undefined;
  /** Exclusive. */
  to: Date | undefined;
}

const COLUMNS = `id, actor_id AS "actorId", actor_principal AS "actorPrincipal", subject_id AS "subjectId",
  subject_type AS "subjectType", action, kind, created_at AS "createdAt"`;

const WHERE = `organization_id = $1
        AND (cardinality($2::uuid[]) = 0 OR actor_id = ANY($2::uuid[]))
        AND (cardinality($3::smallint[]) = 0 OR actor_principal = ANY($3::smallint[]))
        AND (cardinality($4::uuid[]) = 0 OR subject_id = ANY($4::uuid[]))
        AND (cardinality($5::smallint[]) = 0 OR subject_type = ANY($5::smallint[]))
        AND ($6::timestamptz IS NULL OR created_at >= $6::timestamptz)
        AND ($7::timestamptz IS NULL OR created_at < $7::timestamptz)`;

const q = {
  listDesc: sql(
    "audit_list_desc",
    `SELECT ${COLUMNS} FROM audit_log WHERE ${WHERE}
        AND ($8::timestamptz IS NULL OR (created_at, id) < ($8::timestamptz, $9::uuid))
      ORDER BY created_at DESC, id DESC LIMIT $10`,
  ),
  listAsc: sql(
    "audit_list_asc",
    `SELECT ${COLUMNS} FROM audit_log WHERE ${WHERE}
        AND ($8::timestamptz IS NULL OR (created_at, id) > ($8::timestamptz, $9::uuid))
      ORDER BY created_at, id LIMIT $10`,
  ),
  get: sql("audit_get", `SELECT ${COLUMNS} FROM audit_log WHERE organization_id = $1 AND id = $2`),
};

export class AuditStore {
  constructor(private readonly db: Database) {}

  async list(organizationId: string, filter: AuditFilter, ascending: boolean, after: ListCursor | undefined, limit: number): Promise<AuditRow[]> {
    const { rows } = await this.db.query<AuditRow>(ascending ? q.listAsc : q.listDesc, [
      organizationId, filter.actorIds, filter.actorPrincipals, filter.subjectIds, filter.subjectTypes,
      filter.from ?? null, filter.to ?? null, after?.createdAt ?? null, after?.id ?? null, limit,
    ]);
    return rows;
  }

  async get(organizationId: string, id: string): Promise<AuditRow | undefined> {
    const { rows } = await this.db.query<AuditRow>(q.get, [organizationId, id]);
    return rows[0];
  }
}

// SQL of the event stream and its elected sweeper: the NOTIFY channel the triggers of
// migrations/0004_events_audit.sql publish on, the sweep that marks silent runners INACTIVE,
// the lease that elects one sweeper per deployment, and audit log retention.
import { sql, type Database } from "./db/database.js";

/** The channel every change is published on (payload: StoredEvent as JSON). */
export const EVENTS_CHANNEL = "rcp_events";

/** A change as the triggers publish it: numbers are gitpod.v1 ResourceOperation / ResourceType. */
export interface StoredEvent {
  operation: number;
  resourceType: number;
  resourceId: string;
  organizationId: string;
  creatorId: string | undefined;
  /** The group a group, membership or role assignment event concerns. */
  groupId: string | undefined;
}

/** Undefined for a payload that is not one of ours. */
export function parseEvent(payload: string): StoredEvent | undefined {
  try {
    const e = JSON.parse(payload) as { o?: unknown; t?: unknown; r?: unknown; g?: unknown; c?: unknown; x?: unknown };
    if (typeof e.o !== "number" || typeof e.t !== "number" || typeof e.r !== "string" || typeof e.g !== "string") return undefined;
    return {
      operation: e.o,
      resourceType: e.t,
      resourceId: e.r,
      organizationId: e.g,
      creatorId: typeof e.c === "string" ? e.c : undefined,
      groupId: typeof e.x === "string" ? e.x : undefined,
    };
  } catch {
    return undefined;
  }
}

const KIND_LOCAL_CONFIGURATION = 3;

const q = {
  // Conditional on `live`: with several sweepers at once a runner still flips (and its trigger
  // publishes) once.
  markSilent: sql(
    "event_mark_silent_runners",
    `UPDATE runners SET live = false
      WHERE live AND deleted_at IS NULL AND kind <> ${KIND_LOCAL_CONFIGURATION} AND signed_up_at IS NOT NULL
        AND COALESCE(last_active_at, signed_up_at) <= $1
      RETURNING id`,
  ),
  policies: sql(
    "event_runner_policies",
    `SELECT runner_id AS "runnerId", group_id AS "groupId", role FROM runner_policies WHERE runner_id = ANY($1::uuid[])`,
  ),
  // Taken when free or lapsed, renewed by its holder; the database's clock, so replicas agree.
  lease: sql(
    "lease_take",
    `INSERT INTO leases AS l (name, holder, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3::double precision / 1000))
     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
      WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
     RETURNING holder`,
  ),
  release: sql("lease_release", "DELETE FROM leases WHERE name = $1 AND holder = $2"),
  pruneAudit: sql(
    "audit_prune",
    `DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE created_at < $1 LIMIT $2)`,
  ),
};

export class EventStore {
  constructor(private readonly db: Database) {}

  /** Flips runners whose last heartbeat is at or before `silentSince` to not live; their ids. */
  async markSilentRunners(silentSince: Date): Promise<string[]> {
    const { rows } = await this.db.query<{ id: string }>(q.markSilent, [silentSince]);
    return rows.map((row) => row.id);
  }

  /** The groups holding a role on each runner (deleted runners too: their DELETE event is decided with them). */
  async runnerPolicies(runnerIds: string[]): Promise<Map<string, { groupId: string; role: number }[]>> {
    const { rows } = await this.db.query<{ runnerId: string; groupId: string; role: number }>(q.policies, [runnerIds]);
    const out = new Map<string, { groupId: string; role: number }[]>(runnerIds.map((id) => [id, []]));
    for (const row of rows) out.get(row.runnerId)?.push({ groupId: row.groupId, role: row.role });
    return out;
  }

  /** True when `holder` holds the lease `name` for the next `ttlMs`. */
  async takeLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const { rows } = await this.db.query<{ holder: string }>(q.lease, [name, holder, ttlMs]);
    return rows[0]?.holder === holder;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.db.query(q.release, [name, holder]);
  }

  /** Deletes up to `limit` audit entries older than `before`; how many. */
  async pruneAuditLog(before: Date, limit: number): Promise<number> {
    const { rowCount } = await this.db.query(q.pruneAudit, [before, limit]);
    return rowCount;
  }
}

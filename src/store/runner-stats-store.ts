// Aggregate runner counts for /metrics. Separate from runner-store.ts (the per-request
// SQL) because it runs only at scrape time, at most once per cache period.
import { sql, type Database } from "./db/database.js";
import { RunnerPhase } from "../../gen/gitpod/v1/runner_pb.js";
import { RunnerKind } from "../../gen/gitpod/v1/runner_configuration_pb.js";

// The phase rules of observedStatus() in src/domain/runners.ts, as SQL: not signed up =
// CREATED, silent for the whole liveness window = INACTIVE, a degradation message = DEGRADED,
// else ACTIVE. Each organization's LOCAL_CONFIGURATION runner is no runner process (it would
// count as ACTIVE on a fresh install with none), so it is not counted.
const q = {
  phases: sql(
    "runner_stats_phases",
    `SELECT phase, count(*)::int AS n FROM (
       SELECT CASE
         WHEN signed_up_at IS NULL THEN $2
         WHEN COALESCE(last_active_at, signed_up_at) <= $3 THEN $4
         WHEN degradation_message <> '' THEN $5
         ELSE $6
       END AS phase
       FROM runners WHERE deleted_at IS NULL AND kind <> $1
     ) observed GROUP BY phase`,
  ),
  organizations: sql("runner_stats_organizations", "SELECT count(*)::int AS n FROM organizations"),
};

/** Phase names as in the API without the prefix: CREATED, ACTIVE, DEGRADED, INACTIVE. */
const reported = [RunnerPhase.CREATED, RunnerPhase.ACTIVE, RunnerPhase.DEGRADED, RunnerPhase.INACTIVE] as const;

export interface RunnerStats {
  /** Every reported phase is present (0 when no runner is in it). */
  phases: Map<string, number>;
  organizations: number;
}

export async function runnerStats(db: Database, now: Date, livenessWindowMs: number): Promise<RunnerStats> {
  const cutoff = new Date(now.getTime() - livenessWindowMs);
  const [phases, organizations] = await Promise.all([
    db.query<{ phase: number; n: number }>(q.phases, [
      RunnerKind.LOCAL_CONFIGURATION,
      RunnerPhase.CREATED,
      cutoff,
      RunnerPhase.INACTIVE,
      RunnerPhase.DEGRADED,
      RunnerPhase.ACTIVE,
    ]),
    db.query<{ n: number }>(q.organizations),
  ]);
  const counts = new Map<string, number>(reported.map((phase) => [RunnerPhase[phase], 0]));
  for (const row of phases.rows) {
    const name = RunnerPhase[row.phase] ?? "UNSPECIFIED";
    counts.set(name, (counts.get(name) ?? 0) + row.n);
  }
  return { phases: counts, organizations: organizations.rows[0]?.n ?? 0 };
}

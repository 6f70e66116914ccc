// All SQL for the runner aggregate: the runner row, its spec and reported status, and its
// exchange and access tokens. Every write is a single statement (atomic on its own) unless
// it has to read before it writes; none of them lose a concurrent change to another field.
import { randomUUID } from "node:crypto";
import { isConnectionError, sql, type Database, type Queryable } from "./db/database.js";
import { CREDENTIALS_CHANNEL, revocationPayloadSql } from "./credential-revocations.js";
import { auditSetting, batchAuditSetting, setAudit, type AuditActor } from "./db/audit-context.js";

/** Enum numbers as stored; they are the gitpod.v1 wire values. */
const KIND_LOCAL_CONFIGURATION = 3;
const PHASE_ACTIVE = 3;
const PRINCIPAL_UNSPECIFIED = 0;

export interface RunnerSpecColumns {
  desiredPhase: number;
  variant: number;
  region: string;
  releaseChannel: number;
  autoUpdate: boolean;
  logLevel: number;
  devcontainerImageCacheEnabled: boolean;
  continuousProfiling: boolean;
  updateWindowStart: number | null;
  updateWindowEnd: number | null;
  metricsEnabled: boolean;
  metricsUrl: string;
  metricsUsername: string;
  metricsPassword: string;
  metricsManagedEnabled: boolean;
  metricsIncludeVerbose: boolean;
}

export interface StoredFieldValue {
  key: string;
  value: string;
}

export interface RunnerRow extends RunnerSpecColumns {
  id: string;
  organizationId: string;
  creatorId: string | null;
  creatorPrincipal: number;
  name: string;
  kind: number;
  provider: number;
  runnerManagerId: string | null;
  createdAt: Date;
  updatedAt: Date;
  publicKey: Uint8Array | null;
  signedUpAt: Date | null;
  lastActiveAt: Date | null;
  statusReportedAt: Date | null;
  statusVersion: string;
  statusSystemDetails: string;
  statusLogUrl: string;
  statusRegion: string;
  statusLlmUrl: string;
  statusSupportBundleUrl: string;
  degradationMessage: string;
  additionalInfo: StoredFieldValue[];
  capabilities: number[];
  gatewayInfo: unknown;
  /**
   * The groups holding a role on the runner (runner_policies; RunnerRole numbers), for the access
   * rules; read only by getManyWithPolicies (undefined otherwise).
   */
  policies?: { groupId: string; role: number }[];
  /** Write-only for users; delivered to the runner sealed (GetRunnerConfiguration). */
  honeycombApiKey: string;
}

export interface NewRunner extends RunnerSpecColumns {
  id: string;
  organizationId: string;
  creatorId: string;
  creatorPrincipal: number;
  name: string;
  kind: number;
  provider: number;
  runnerManagerId: string | null;
  createdAt: Date;
}

/** A presence-based patch: undefined leaves a column alone. */
export type RunnerSpecPatch = {
  name?: string;
  desiredPhase?: number;
  releaseChannel?: number;
  autoUpdate?: boolean;
  logLevel?: number;
  devcontainerImageCacheEnabled?: boolean;
  continuousProfiling?: boolean;
  /** null clears the window; an object replaces it. */
  updateWindow?: { start: number; end: number } | null;
  metricsEnabled?: boolean;
  metricsUrl?: string;
  metricsUsername?: string;
  metricsPassword?: string;
  metricsManagedEnabled?: boolean;
  metricsIncludeVerbose?: boolean;
  honeycombApiKey?: string;
};

export interface StatusPatch {
  version?: string;
  systemDetails?: string;
  logUrl?: string;
  degradationMessage?: string;
  region?: string;
  llmUrl?: string;
  supportBundleUrl?: string;
  capabilities?: number[];
  gatewayInfo?: unknown;
  /** Applied in order: a value sets the key, undefined or "" removes it. */
  additionalInfo?: { key: string; value: string | undefined }[];
}

/** A registration: the runner, its first exchange token, and who asked (for the audit log). */
export interface NewRunnerWithToken {
  runner: NewRunner;
  tokenHash: Buffer;
  expiresAt: Date;
  audit?: AuditActor | undefined;
}

export interface ListFilter {
  kinds: number[];
  providers: number[];
  creatorIds: string[];
}

export interface ListCursor {
  createdAt: Date;
  id: string;
}

const RUNNER_COLUMNS = `
  id, organization_id AS "organizationId", creator_id AS "creatorId", creator_principal AS "creatorPrincipal",
  name, kind, provider, runner_manager_id AS "runnerManagerId", created_at AS "createdAt", updated_at AS "updatedAt",
  desired_phase AS "desiredPhase", variant, region, release_channel AS "releaseChannel", auto_update AS "autoUpdate",
  log_level AS "logLevel", devcontainer_image_cache_enabled AS "devcontainerImageCacheEnabled",
  continuous_profiling AS "continuousProfiling", update_window_start AS "updateWindowStart",
  update_window_end AS "updateWindowEnd", metrics_enabled AS "metricsEnabled", metrics_url AS "metricsUrl",
  metrics_username AS "metricsUsername", metrics_password AS "metricsPassword",
  metrics_managed_enabled AS "metricsManagedEnabled", metrics_include_verbose AS "metricsIncludeVerbose",
  public_key AS "publicKey", signed_up_at AS "signedUpAt", last_active_at AS "lastActiveAt",
  status_reported_at AS "statusReportedAt", status_version AS "statusVersion",
  status_system_details AS "statusSystemDetails", status_log_url AS "statusLogUrl", status_region AS "statusRegion",
  status_llm_url AS "statusLlmUrl", status_support_bundle_url AS "statusSupportBundleUrl",
  degradation_message AS "degradationMessage", additional_info AS "additionalInfo", capabilities,
  gateway_info AS "gatewayInfo", honeycomb_api_key AS "honeycombApiKey"`;

// Reading the policies costs a subquery per runner (about as much again as the row itself), so
// only the reads that decide for organization members ask for them.
const POLICIES_COLUMN = `COALESCE((SELECT jsonb_agg(jsonb_build_object('groupId', p.group_id, 'role', p.role))
    FROM runner_policies p WHERE p.runner_id = runners.id), '[]'::jsonb) AS policies`;

const INSERT_RUNNER_COLUMNS = `id, organization_id, creator_id, creator_principal, name, kind, provider, runner_manager_id,
  created_at, updated_at, desired_phase, variant, region, release_channel, auto_update, log_level,
  devcontainer_image_cache_enabled, continuous_profiling, update_window_start, update_window_end,
  metrics_enabled, metrics_url, metrics_username, metrics_password, metrics_managed_enabled, metrics_include_verbose`;

const q = {
  // One statement for a whole batch of registrations: each runner and its first exchange
  // token commit together, in one round trip and one commit for all of them.
  insertRunnersWithTokens: sql(
    "runner_insert_with_token",
    `WITH input AS (
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::smallint[], $5::text[], $6::smallint[], $7::smallint[],
                            $8::uuid[], $9::timestamptz[], $10::smallint[], $11::smallint[], $12::text[], $13::smallint[],
                            $14::boolean[], $15::smallint[], $16::boolean[], $17::boolean[], $18::smallint[], $19::smallint[],
                            $20::boolean[], $21::text[], $22::text[], $23::text[], $24::boolean[], $25::boolean[],
                            $26::bytea[], $27::timestamptz[])
         AS t(${INSERT_RUNNER_COLUMNS.replace("created_at, updated_at", "created_at")}, token_hash, expires_at)
     ), runner AS (
       INSERT INTO runners (${INSERT_RUNNER_COLUMNS})
       SELECT ${INSERT_RUNNER_COLUMNS.replace("created_at, updated_at", "created_at, created_at")} FROM input
        WHERE ${setAudit(28)}
       RETURNING id
     )
     INSERT INTO runner_exchange_tokens (token_hash, runner_id, created_at, expires_at)
     SELECT input.token_hash, runner.id, input.created_at, input.expires_at FROM runner JOIN input ON input.id = runner.id`,
  ),
  insertLocalConfiguration: sql(
    "runner_insert_local_configuration",
    `INSERT INTO runners (id, organization_id, creator_principal, name, kind, provider, created_at, updated_at, desired_phase)
     VALUES ($1, $2, ${PRINCIPAL_UNSPECIFIED}, 'Local configuration', ${KIND_LOCAL_CONFIGURATION}, 0, $3, $3, ${PHASE_ACTIVE})
     ON CONFLICT DO NOTHING`,
  ),
  getMany: sql("runner_get_many", `SELECT ${RUNNER_COLUMNS} FROM runners WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL`),
  getManyWithPolicies: sql(
    "runner_get_many_with_policies",
    `SELECT ${RUNNER_COLUMNS}, ${POLICIES_COLUMN} FROM runners WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL`,
  ),
  kindOf: sql("runner_kind", "SELECT kind, deleted_at IS NOT NULL AS deleted FROM runners WHERE id = $1 AND organization_id = $2"),
  list: sql(
    "runner_list",
    `SELECT ${RUNNER_COLUMNS} FROM runners
      WHERE organization_id = $1 AND deleted_at IS NULL
        AND (cardinality($2::smallint[]) = 0 OR kind = ANY($2::smallint[]))
        AND (cardinality($3::smallint[]) = 0 OR provider = ANY($3::smallint[]))
        AND (cardinality($4::uuid[]) = 0 OR creator_id = ANY($4::uuid[]))
        AND ($5::timestamptz IS NULL OR (created_at, id) < ($5::timestamptz, $6::uuid))
        -- The caller's scope (src/domain/access.ts listingScope): all (null), or the runners
        -- without policies and those on which one of these groups holds a role.
        AND ($8::uuid[] IS NULL
             OR NOT EXISTS (SELECT 1 FROM runner_policies p WHERE p.runner_id = runners.id)
             OR EXISTS (SELECT 1 FROM runner_policies p WHERE p.runner_id = runners.id AND p.group_id = ANY($8::uuid[])))
      ORDER BY created_at DESC, id DESC
      LIMIT $7`,
  ),
  // Each column changes only when its parameter is not null, so concurrent patches of
  // different fields both survive without a read-modify-write.
  update: sql(
    "runner_update",
    `UPDATE runners SET
       name = COALESCE($3, name),
       desired_phase = COALESCE($4, desired_phase),
       release_channel = COALESCE($5, release_channel),
       auto_update = COALESCE($6, auto_update),
       log_level = COALESCE($7, log_level),
       devcontainer_image_cache_enabled = COALESCE($8, devcontainer_image_cache_enabled),
       continuous_profiling = COALESCE($9, continuous_profiling),
       update_window_start = CASE WHEN $10::boolean THEN $11::smallint ELSE update_window_start END,
       update_window_end = CASE WHEN $10::boolean THEN $12::smallint ELSE update_window_end END,
       metrics_enabled = COALESCE($13, metrics_enabled),
       metrics_url = COALESCE($14, metrics_url),
       metrics_username = COALESCE($15, metrics_username),
       metrics_password = COALESCE($16, metrics_password),
       metrics_managed_enabled = COALESCE($17, metrics_managed_enabled),
       metrics_include_verbose = COALESCE($18, metrics_include_verbose),
       honeycomb_api_key = COALESCE($19, honeycomb_api_key),
       updated_at = GREATEST($20, updated_at)
     WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL
       AND ($4::smallint IS NULL OR kind = ${KIND_LOCAL_CONFIGURATION}) AND ${setAudit(21)}
     RETURNING id`,
  ),
  // Deleting revokes the runner's credentials: every replica drops them from its cache.
  delete: sql(
    "runner_delete",
    `WITH deleted AS (
       UPDATE runners SET deleted_at = COALESCE(deleted_at, $3)
        WHERE id = $1 AND organization_id = $2 AND kind <> ${KIND_LOCAL_CONFIGURATION} AND ${setAudit(4)}
        RETURNING id
     )
     SELECT id, pg_notify('${CREDENTIALS_CHANNEL}', ${revocationPayloadSql.runner("id")}) FROM deleted`,
  ),
  insertExchangeToken: sql(
    "runner_exchange_token_insert",
    `INSERT INTO runner_exchange_tokens (token_hash, runner_id, created_at, expires_at)
     SELECT $3, id, $4, $5 FROM runners
      WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL AND kind <> ${KIND_LOCAL_CONFIGURATION}
     RETURNING runner_id`,
  ),
  // The conditional UPDATE is the whole race: concurrent callers queue on the token's row
  // lock and re-check used_at after the winner commits, so exactly one gets a row back.
  exchange: sql(
    "runner_exchange",
    `WITH used AS (
       UPDATE runner_exchange_tokens t SET used_at = $2
         FROM runners r
        WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > $2
          AND r.id = t.runner_id AND r.deleted_at IS NULL
        RETURNING t.runner_id
     )
     INSERT INTO runner_access_tokens (token_hash, runner_id, created_at)
     SELECT $3, runner_id, $2 FROM used
     RETURNING runner_id AS "runnerId"`,
  ),
  accessTokenByHash: sql(
    "runner_access_token_by_hash",
    `SELECT t.runner_id AS "runnerId", r.organization_id AS "organizationId", t.token_hash AS "tokenHash"
       FROM runner_access_tokens t JOIN runners r ON r.id = t.runner_id
      WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND r.deleted_at IS NULL`,
  ),
  signup: sql(
    "runner_signup",
    `UPDATE runners SET public_key = $2, environment_classes = $3::jsonb,
            signed_up_at = $4, last_active_at = GREATEST($4, last_active_at),
            status_reported_at = GREATEST($4, status_reported_at), live = true
      WHERE id = $1 AND deleted_at IS NULL AND ${setAudit(5)}
      RETURNING id`,
  ),
  markActive: sql(
    "runner_mark_active",
    `UPDATE runners SET last_active_at = GREATEST($2, last_active_at), live = true
      WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL AND signed_up_at IS NOT NULL
      RETURNING id`,
  ),
  additionalInfoForUpdate: sql(
    "runner_additional_info_for_update",
    `SELECT additional_info AS "additionalInfo" FROM runners WHERE id = $1 AND deleted_at IS NULL FOR UPDATE`,
  ),
  updateStatus: sql(
    "runner_update_status",
    `UPDATE runners SET
       status_version = COALESCE($2, status_version),
       status_system_details = COALESCE($3, status_system_details),
       status_log_url = COALESCE($4, status_log_url),
       degradation_message = COALESCE($5, degradation_message),
       status_region = COALESCE($6, status_region),
       status_llm_url = COALESCE($7, status_llm_url),
       status_support_bundle_url = COALESCE($8, status_support_bundle_url),
       capabilities = COALESCE($9::integer[], capabilities),
       gateway_info = COALESCE($10::jsonb, gateway_info),
       additional_info = COALESCE($11::jsonb, additional_info),
       status_reported_at = GREATEST($12, status_reported_at),
       last_active_at = GREATEST($12, last_active_at),
       live = true
     WHERE id = $1 AND deleted_at IS NULL AND signed_up_at IS NOT NULL
     RETURNING id`,
  ),
};

export function insertLocalConfigurationRunner(tx: Queryable, organizationId: string, now: Date): Promise<unknown> {
  return tx.query(q.insertLocalConfiguration, [randomUUID(), organizationId, now]);
}

/** Patches leave absent fields alone: SQL receives NULL, and COALESCE keeps the column. */
function orNull<T>(value: T | undefined): T | null {
  return value === undefined ? null : value;
}

export type ExistingRunner = { kind: number; deleted: boolean } | undefined;

function applyAdditionalInfo(current: StoredFieldValue[], updates: NonNullable<StatusPatch["additionalInfo"]>) {
  const next = new Map(current.map((entry) => [entry.key, entry.value]));
  for (const { key, value } of updates) {
    if (value === undefined || value === "") next.delete(key);
    else next.set(key, value);
  }
  return [...next].map(([key, value]) => ({ key, value }));
}

export class RunnerStore {
  constructor(private readonly db: Database) {}

  /**
   * Stores runners with their first exchange tokens in one statement. When the batch fails
   * for a reason other than the connection, each is retried alone, so one bad row only
   * fails its own request.
   */
  async insertWithExchangeTokens(items: NewRunnerWithToken[]): Promise<(undefined | Error)[]> {
    try {
      await this.db.query(q.insertRunnersWithTokens, this.insertValues(items));
      return items.map(() => undefined);
    } catch (err) {
      if (items.length === 1 || isConnectionError(err)) return items.map(() => err as Error);
      return Promise.all(
        items.map((item) =>
          this.db.query(q.insertRunnersWithTokens, this.insertValues([item])).then(
            () => undefined,
            (itemErr: unknown) => itemErr as Error,
          ),
        ),
      );
    }
  }

  private insertValues(items: NewRunnerWithToken[]): unknown[] {
    const column = <T>(pick: (runner: NewRunner) => T) => items.map((item) => pick(item.runner));
    return [
      column((r) => r.id), column((r) => r.organizationId), column((r) => r.creatorId), column((r) => r.creatorPrincipal),
      column((r) => r.name), column((r) => r.kind), column((r) => r.provider), column((r) => r.runnerManagerId),
      column((r) => r.createdAt), column((r) => r.desiredPhase), column((r) => r.variant), column((r) => r.region),
      column((r) => r.releaseChannel), column((r) => r.autoUpdate), column((r) => r.logLevel),
      column((r) => r.devcontainerImageCacheEnabled), column((r) => r.continuousProfiling), column((r) => r.updateWindowStart),
      column((r) => r.updateWindowEnd), column((r) => r.metricsEnabled), column((r) => r.metricsUrl),
      column((r) => r.metricsUsername), column((r) => r.metricsPassword), column((r) => r.metricsManagedEnabled),
      column((r) => r.metricsIncludeVerbose), items.map((item) => item.tokenHash), items.map((item) => item.expiresAt),
      batchAuditSetting("runners", items.map((item) => ({ id: item.runner.id, actor: item.audit }))),
    ];
  }

  /** Live runners with these ids, of any organization: callers check ownership. */
  async getMany(runnerIds: string[]): Promise<RunnerRow[]> {
    const { rows } = await this.db.query<RunnerRow>(q.getMany, [runnerIds]);
    return rows;
  }

  /** As getMany, with each runner's policies. */
  async getManyWithPolicies(runnerIds: string[]): Promise<RunnerRow[]> {
    const { rows } = await this.db.query<RunnerRow>(q.getManyWithPolicies, [runnerIds]);
    return rows;
  }

  /** Kind and deletion state of a runner of this organization (for telling errors apart). */
  async existing(organizationId: string, runnerId: string): Promise<ExistingRunner> {
    const { rows } = await this.db.query<{ kind: number; deleted: boolean }>(q.kindOf, [runnerId, organizationId]);
    return rows[0];
  }

  /** `scope`: undefined lists every runner; groups list those without policies or with a policy for one of them. */
  async list(
    organizationId: string,
    filter: ListFilter,
    after: ListCursor | undefined,
    limit: number,
    scope?: { groupIds: readonly string[] },
  ): Promise<RunnerRow[]> {
    const { rows } = await this.db.query<RunnerRow>(q.list, [
      organizationId, filter.kinds, filter.providers, filter.creatorIds,
      after?.createdAt ?? null, after?.id ?? null, limit, scope ? [...scope.groupIds] : null,
    ]);
    return rows;
  }

  /** False when nothing matched: no such live runner, or desired_phase on a runner that is not LOCAL_CONFIGURATION. */
  async update(organizationId: string, runnerId: string, patch: RunnerSpecPatch, now: Date): Promise<boolean> {
    const { rowCount } = await this.db.query(q.update, [
      runnerId, organizationId, orNull(patch.name), orNull(patch.desiredPhase), orNull(patch.releaseChannel),
      orNull(patch.autoUpdate), orNull(patch.logLevel), orNull(patch.devcontainerImageCacheEnabled),
      orNull(patch.continuousProfiling), patch.updateWindow !== undefined, patch.updateWindow?.start ?? null,
      patch.updateWindow?.end ?? null, orNull(patch.metricsEnabled), orNull(patch.metricsUrl),
      orNull(patch.metricsUsername), orNull(patch.metricsPassword), orNull(patch.metricsManagedEnabled),
      orNull(patch.metricsIncludeVerbose), orNull(patch.honeycombApiKey), now, auditSetting("runners"),
    ]);
    return rowCount === 1;
  }

  /** True when the runner is (now or already) deleted; false when it is not deletable or absent. */
  async markDeleted(organizationId: string, runnerId: string, now: Date): Promise<boolean> {
    const { rowCount } = await this.db.query(q.delete, [runnerId, organizationId, now, auditSetting("runners")]);
    return rowCount === 1;
  }

  async insertExchangeToken(organizationId: string, runnerId: string, tokenHash: Buffer, now: Date, expiresAt: Date) {
    const { rowCount } = await this.db.query(q.insertExchangeToken, [runnerId, organizationId, tokenHash, now, expiresAt]);
    return rowCount === 1;
  }

  /** Consumes an exchange token and stores the access token; the runner id, or undefined when the token is not valid. */
  async exchange(exchangeTokenHash: Buffer, accessTokenHash: Buffer, now: Date): Promise<string | undefined> {
    const { rows } = await this.db.query<{ runnerId: string }>(q.exchange, [exchangeTokenHash, now, accessTokenHash]);
    return rows[0]?.runnerId;
  }

  async runnerByAccessTokenHash(tokenHash: Buffer) {
    const { rows } = await this.db.query<{ runnerId: string; organizationId: string; tokenHash: Uint8Array }>(
      q.accessTokenByHash,
      [tokenHash],
    );
    return rows[0];
  }

  async signup(runnerId: string, publicKey: Uint8Array, environmentClasses: unknown[], now: Date): Promise<boolean> {
    const { rowCount } = await this.db.query(q.signup, [runnerId, publicKey, JSON.stringify(environmentClasses), now, auditSetting("runners")]);
    return rowCount === 1;
  }

  /** Records a heartbeat for each id; returns the ids that exist, are live and have signed up. */
  async markActive(runnerIds: string[], now: Date): Promise<Set<string>> {
    const { rows } = await this.db.query<{ id: string }>(q.markActive, [runnerIds, now]);
    return new Set(rows.map((row) => row.id));
  }

  async updateStatus(runnerId: string, patch: StatusPatch, now: Date): Promise<boolean> {
    const run = async (conn: Queryable, additionalInfo: StoredFieldValue[] | null) => {
      const { rowCount } = await conn.query(q.updateStatus, [
        runnerId, orNull(patch.version), orNull(patch.systemDetails), orNull(patch.logUrl),
        orNull(patch.degradationMessage), orNull(patch.region), orNull(patch.llmUrl), orNull(patch.supportBundleUrl),
        orNull(patch.capabilities), patch.gatewayInfo === undefined ? null : JSON.stringify(patch.gatewayInfo),
        additionalInfo === null ? null : JSON.stringify(additionalInfo), now,
      ]);
      return rowCount === 1;
    };
    const updates = patch.additionalInfo;
    if (!updates || updates.length === 0) return run(this.db, null);
    // The key/value patch needs the current list; the row lock keeps concurrent reports in order.
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ additionalInfo: StoredFieldValue[] }>(q.additionalInfoForUpdate, [runnerId]);
      if (!rows[0]) return false;
      return run(tx, applyAdditionalInfo(rows[0].additionalInfo, updates));
    });
  }
}

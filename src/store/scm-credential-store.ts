// All SQL for SCM integrations (which hosts a runner works with) and the users' host
// authentication tokens for them: one file, because removing an integration's OAuth or PAT
// deletes the tokens of that source in the same statement. Secrets arrive here already sealed
// (src/domain/scm-credentials.ts): this file never sees a plaintext.
import { sql, type Database } from "./db/database.js";
import { runnerInScope, type ListCursor } from "./runner-store.js";
import { auditSetting, setAudit } from "./db/audit-context.js";

export interface IntegrationRow {
  id: string;
  runnerId: string;
  organizationId: string;
  scmId: string;
  host: string;
  oauthClientId: string | null;
  oauthClientSecretSealed: Uint8Array | null;
  issuerUrl: string;
  pat: boolean;
  virtualDirectory: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface TokenRow {
  id: string;
  runnerId: string;
  organizationId: string;
  host: string;
  subjectId: string;
  subjectPrincipal: number;
  source: number;
  tokenSealed: Uint8Array;
  refreshTokenSealed: Uint8Array | null;
  expiresAt: Date | null;
  integrationId: string | null;
  scopes: string[];
  createdAt: Date;
  updatedAt: Date;
}

/** What a deleted token leaves behind for the runner's EventHostAuthenticationTokenDeleted. */
export interface DeletedToken {
  runnerId: string;
  host: string;
  subjectId: string;
}

/** A presence-based patch of an integration: undefined leaves the column alone. */
export interface IntegrationPatch {
  /** null removes OAuth (client id and secret). */
  oauth?: { clientId: string; secretSealed: Uint8Array | undefined } | null;
  pat?: boolean;
  issuerUrl?: string;
  virtualDirectory?: string;
}

/**
 * Which runners a list may show: undefined = every runner of the organization (an admin);
 * otherwise the runners without policies and those on which one of these groups holds a role.
 */
export type RunnerScope = { groupIds: readonly string[] } | undefined;

const INTEGRATION_COLUMNS = `i.id, i.runner_id AS "runnerId", i.organization_id AS "organizationId", i.scm_id AS "scmId", i.host,
  i.oauth_client_id AS "oauthClientId", i.oauth_client_secret_sealed AS "oauthClientSecretSealed", i.issuer_url AS "issuerUrl",
  i.pat, i.virtual_directory AS "virtualDirectory", i.created_at AS "createdAt", i.updated_at AS "updatedAt"`;

const TOKEN_COLUMNS = `t.id, t.runner_id AS "runnerId", t.organization_id AS "organizationId", t.host, t.subject_id AS "subjectId",
  t.subject_principal AS "subjectPrincipal", t.source, t.token_sealed AS "tokenSealed",
  t.refresh_token_sealed AS "refreshTokenSealed", t.expires_at AS "expiresAt", t.integration_id AS "integrationId", t.scopes,
  t.created_at AS "createdAt", t.updated_at AS "updatedAt"`;

/** The live runner of the row, within `$scope` (null = all): the rule of src/domain/access.ts runnerAccess. */
const usableRunner = (alias: string, scope: string) =>
  `EXISTS (SELECT 1 FROM runners r WHERE r.id = ${alias}.runner_id AND r.deleted_at IS NULL AND ${runnerInScope("r", scope)})`;

/** The live runner of the row, managed within `$scope` (null = all): a RUNNER_ROLE_ADMIN (1) policy of one of the groups. */
const managedRunner = (alias: string, scope: string) => `EXISTS (SELECT 1 FROM runners r WHERE r.id = ${alias}.runner_id AND r.deleted_at IS NULL
    AND (${scope}::uuid[] IS NULL
         OR EXISTS (SELECT 1 FROM runner_policies p WHERE p.runner_id = r.id AND p.role = 1 AND p.group_id = ANY(${scope}::uuid[]))))`;

const SOURCE_OAUTH = 1;
const SOURCE_PAT = 2;
const KIND_LOCAL_CONFIGURATION = 3;

const q = {
  insertIntegration: sql(
    "scm_integration_insert",
    `INSERT INTO scm_integrations AS i (id, runner_id, organization_id, scm_id, host, oauth_client_id, oauth_client_secret_sealed,
                                        issuer_url, pat, virtual_directory, created_at, updated_at)
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11 WHERE ${setAudit(12)}
     ON CONFLICT (runner_id, host) DO NOTHING
     RETURNING ${INTEGRATION_COLUMNS}`,
  ),
  integrationById: sql(
    "scm_integration_by_id",
    `SELECT ${INTEGRATION_COLUMNS} FROM scm_integrations i
      WHERE i.id = $1 AND i.organization_id = $2 AND EXISTS (SELECT 1 FROM runners r WHERE r.id = i.runner_id AND r.deleted_at IS NULL)`,
  ),
  listIntegrations: sql(
    "scm_integration_list",
    `SELECT ${INTEGRATION_COLUMNS} FROM scm_integrations i
      WHERE i.organization_id = $1
        AND (cardinality($2::uuid[]) = 0 OR i.runner_id = ANY($2::uuid[]))
        AND ${usableRunner("i", "$3")}
        AND ($4::timestamptz IS NULL OR (i.created_at, i.id) < ($4::timestamptz, $5::uuid))
      ORDER BY i.created_at DESC, i.id DESC
      LIMIT $6`,
  ),
  // A runner's own integrations; a local runner's also include its organization's
  // LOCAL_CONFIGURATION runner's (shared by all local runners).
  listForRunner: sql(
    "scm_integration_list_for_runner",
    `SELECT ${INTEGRATION_COLUMNS} FROM scm_integrations i
      WHERE (i.runner_id = $1
             OR ($2::boolean AND i.runner_id IN (SELECT id FROM runners WHERE organization_id = $3 AND kind = ${KIND_LOCAL_CONFIGURATION})))
        AND (cardinality($4::uuid[]) = 0 OR i.id = ANY($4::uuid[]))
        AND ($5::timestamptz IS NULL OR (i.created_at, i.id) < ($5::timestamptz, $6::uuid))
      ORDER BY i.created_at DESC, i.id DESC
      LIMIT $7`,
  ),
  updateIntegration: sql(
    "scm_integration_update",
    `UPDATE scm_integrations i SET
       oauth_client_id = CASE WHEN $3::boolean THEN $4::text ELSE oauth_client_id END,
       oauth_client_secret_sealed = CASE WHEN $3::boolean AND $4::text IS NULL THEN NULL
                                         WHEN $5::bytea IS NOT NULL THEN $5::bytea
                                         ELSE oauth_client_secret_sealed END,
       pat = COALESCE($6, pat),
       issuer_url = COALESCE($7, issuer_url),
       virtual_directory = CASE WHEN $8::text IS NULL THEN virtual_directory WHEN $8::text = '' THEN NULL ELSE $8::text END,
       updated_at = GREATEST($9, updated_at)
     WHERE i.id = $1 AND i.organization_id = $2 AND ${setAudit(10)}
     RETURNING ${INTEGRATION_COLUMNS}`,
  ),
  deleteIntegration: sql(
    "scm_integration_delete",
    `DELETE FROM scm_integrations i WHERE i.id = $1 AND i.organization_id = $2 AND ${setAudit(3)} RETURNING ${INTEGRATION_COLUMNS}`,
  ),
  // Tokens of a runner and host, of the given sources.
  deleteTokensOf: sql(
    "host_token_delete_of_host",
    `DELETE FROM host_authentication_tokens t WHERE t.runner_id = $1 AND t.host = $2 AND t.source = ANY($3::smallint[])
     RETURNING t.runner_id AS "runnerId", t.host, t.subject_id AS "subjectId"`,
  ),
  // One per (runner, host, subject): storing again replaces secret and metadata, keeping the id.
  upsertToken: sql(
    "host_token_upsert",
    `INSERT INTO host_authentication_tokens AS t (id, runner_id, organization_id, host, subject_id, subject_principal, source,
                                                   token_sealed, refresh_token_sealed, expires_at, integration_id, scopes,
                                                   created_at, updated_at)
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13 WHERE ${setAudit(14)}
     ON CONFLICT (runner_id, host, subject_id) DO UPDATE SET
       subject_principal = EXCLUDED.subject_principal, source = EXCLUDED.source, token_sealed = EXCLUDED.token_sealed,
       refresh_token_sealed = EXCLUDED.refresh_token_sealed, expires_at = EXCLUDED.expires_at,
       integration_id = EXCLUDED.integration_id, scopes = EXCLUDED.scopes, updated_at = EXCLUDED.updated_at
     RETURNING ${TOKEN_COLUMNS}`,
  ),
  tokenById: sql(
    "host_token_by_id",
    `SELECT ${TOKEN_COLUMNS} FROM host_authentication_tokens t
      WHERE t.id = $1 AND t.organization_id = $2 AND EXISTS (SELECT 1 FROM runners r WHERE r.id = t.runner_id AND r.deleted_at IS NULL)`,
  ),
  tokenFor: sql(
    "host_token_for",
    `SELECT ${TOKEN_COLUMNS} FROM host_authentication_tokens t WHERE t.runner_id = $1 AND t.subject_id = $2 AND t.host = $3`,
  ),
  // The subject's own tokens, and every token on a runner the caller manages ($4: managing scope).
  listTokens: sql(
    "host_token_list",
    `SELECT ${TOKEN_COLUMNS} FROM host_authentication_tokens t
      WHERE t.organization_id = $1
        AND (t.subject_id = $2 OR ($3::boolean AND ${managedRunner("t", "$4")}))
        AND EXISTS (SELECT 1 FROM runners r WHERE r.id = t.runner_id AND r.deleted_at IS NULL)
        AND ($5::uuid IS NULL OR t.runner_id = $5::uuid)
        AND ($6::uuid IS NULL OR t.subject_id = $6::uuid)
        AND ($7::timestamptz IS NULL OR (t.created_at, t.id) < ($7::timestamptz, $8::uuid))
      ORDER BY t.created_at DESC, t.id DESC
      LIMIT $9`,
  ),
  updateToken: sql(
    "host_token_update",
    `UPDATE host_authentication_tokens t SET
       token_sealed = COALESCE($2, token_sealed),
       expires_at = CASE WHEN $3::boolean THEN $4::timestamptz ELSE expires_at END,
       refresh_token_sealed = CASE WHEN $5::boolean THEN $6::bytea ELSE refresh_token_sealed END,
       scopes = COALESCE($7::text[], scopes),
       updated_at = GREATEST($8, updated_at)
     WHERE t.id = $1 AND ${setAudit(9)}
     RETURNING ${TOKEN_COLUMNS}`,
  ),
  deleteToken: sql(
    "host_token_delete",
    `DELETE FROM host_authentication_tokens t WHERE t.id = $1 AND ${setAudit(2)} RETURNING t.runner_id AS "runnerId", t.host, t.subject_id AS "subjectId"`,
  ),
  sealedTokens: sql(
    "host_token_sealed",
    `SELECT t.id, t.runner_id AS "runnerId", t.host, t.subject_id AS "subjectId", t.token_sealed AS "tokenSealed",
            t.refresh_token_sealed AS "refreshTokenSealed" FROM host_authentication_tokens t`,
  ),
  replaceSealedToken: sql("host_token_reseal", `UPDATE host_authentication_tokens SET token_sealed = $3 WHERE id = $1 AND token_sealed = $2`),
  replaceSealedRefreshToken: sql(
    "host_token_reseal_refresh",
    `UPDATE host_authentication_tokens SET refresh_token_sealed = $3 WHERE id = $1 AND refresh_token_sealed = $2`,
  ),
};

export type NewToken = Omit<TokenRow, "createdAt" | "updatedAt">;

export interface SealedTokenRow {
  id: string;
  runnerId: string;
  host: string;
  subjectId: string;
  tokenSealed: Uint8Array;
  refreshTokenSealed: Uint8Array | null;
}

export interface TokenPatch {
  tokenSealed?: Uint8Array;
  /** null clears. */
  expiresAt?: Date | null;
  /** null clears. */
  refreshTokenSealed?: Uint8Array | null;
  scopes?: string[];
}

export class ScmCredentialStore {
  constructor(private readonly db: Database) {}

  /** undefined when the runner already has an integration for the host. */
  async insertIntegration(row: Omit<IntegrationRow, "createdAt" | "updatedAt">, now: Date): Promise<IntegrationRow | undefined> {
    const { rows } = await this.db.query<IntegrationRow>(q.insertIntegration, [
      row.id, row.runnerId, row.organizationId, row.scmId, row.host, row.oauthClientId, row.oauthClientSecretSealed,
      row.issuerUrl, row.pat, row.virtualDirectory, now, auditSetting("scm_integrations"),
    ]);
    return rows[0];
  }

  async integration(organizationId: string, id: string): Promise<IntegrationRow | undefined> {
    const { rows } = await this.db.query<IntegrationRow>(q.integrationById, [id, organizationId]);
    return rows[0];
  }

  async listIntegrations(organizationId: string, runnerIds: string[], scope: RunnerScope, after: ListCursor | undefined, limit: number) {
    const { rows } = await this.db.query<IntegrationRow>(q.listIntegrations, [
      organizationId, runnerIds, scope ? [...scope.groupIds] : null, after?.createdAt ?? null, after?.id ?? null, limit,
    ]);
    return rows;
  }

  async listForRunner(
    runner: { id: string; organizationId: string; local: boolean },
    ids: string[],
    after: ListCursor | undefined,
    limit: number,
  ): Promise<IntegrationRow[]> {
    const { rows } = await this.db.query<IntegrationRow>(q.listForRunner, [
      runner.id, runner.local, runner.organizationId, ids, after?.createdAt ?? null, after?.id ?? null, limit,
    ]);
    return rows;
  }

  /**
   * Applies the patch; removing OAuth (or PAT) deletes the runner's tokens of that source for the
   * host, in the same transaction. undefined when there is no such integration.
   */
  async updateIntegration(
    organizationId: string,
    id: string,
    patch: IntegrationPatch,
    now: Date,
  ): Promise<{ integration: IntegrationRow; deleted: DeletedToken[] } | undefined> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<IntegrationRow>(q.updateIntegration, [
        id, organizationId, patch.oauth !== undefined, patch.oauth ? patch.oauth.clientId : null, patch.oauth?.secretSealed ?? null,
        patch.pat ?? null, patch.issuerUrl ?? null, patch.virtualDirectory ?? null, now, auditSetting("scm_integrations"),
      ]);
      const integration = rows[0];
      if (!integration) return undefined;
      const sources = [...(patch.oauth === null ? [SOURCE_OAUTH] : []), ...(patch.pat === false ? [SOURCE_PAT] : [])];
      if (sources.length === 0) return { integration, deleted: [] };
      const deleted = await tx.query<DeletedToken>(q.deleteTokensOf, [integration.runnerId, integration.host, sources]);
      return { integration, deleted: deleted.rows };
    });
  }

  /** Deletes the integration and every token of its runner and host. */
  async deleteIntegration(organizationId: string, id: string): Promise<{ integration: IntegrationRow; deleted: DeletedToken[] } | undefined> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<IntegrationRow>(q.deleteIntegration, [id, organizationId, auditSetting("scm_integrations")]);
      const integration = rows[0];
      if (!integration) return undefined;
      const deleted = await tx.query<DeletedToken>(q.deleteTokensOf, [integration.runnerId, integration.host, [SOURCE_OAUTH, SOURCE_PAT]]);
      return { integration, deleted: deleted.rows };
    });
  }

  async upsertToken(token: NewToken, now: Date): Promise<TokenRow> {
    const { rows } = await this.db.query<TokenRow>(q.upsertToken, [
      token.id, token.runnerId, token.organizationId, token.host, token.subjectId, token.subjectPrincipal, token.source,
      token.tokenSealed, token.refreshTokenSealed, token.expiresAt, token.integrationId, token.scopes, now,
      auditSetting("host_authentication_tokens"),
    ]);
    return rows[0]!;
  }

  async token(organizationId: string, id: string): Promise<TokenRow | undefined> {
    const { rows } = await this.db.query<TokenRow>(q.tokenById, [id, organizationId]);
    return rows[0];
  }

  async tokenFor(runnerId: string, subjectId: string, host: string): Promise<TokenRow | undefined> {
    const { rows } = await this.db.query<TokenRow>(q.tokenFor, [runnerId, subjectId, host]);
    return rows[0];
  }

  /** `managed`: also the tokens on runners the caller manages, within `scope` (undefined: all). */
  async listTokens(
    organizationId: string,
    subjectId: string,
    managed: { scope: RunnerScope } | undefined,
    filter: { runnerId?: string; subjectId?: string },
    after: ListCursor | undefined,
    limit: number,
  ): Promise<TokenRow[]> {
    const { rows } = await this.db.query<TokenRow>(q.listTokens, [
      organizationId, subjectId, managed !== undefined, managed?.scope ? [...managed.scope.groupIds] : null,
      filter.runnerId ?? null, filter.subjectId ?? null, after?.createdAt ?? null, after?.id ?? null, limit,
    ]);
    return rows;
  }

  async updateToken(id: string, patch: TokenPatch, now: Date): Promise<TokenRow | undefined> {
    const { rows } = await this.db.query<TokenRow>(q.updateToken, [
      id, patch.tokenSealed ?? null, patch.expiresAt !== undefined, patch.expiresAt ?? null,
      patch.refreshTokenSealed !== undefined, patch.refreshTokenSealed ?? null, patch.scopes ?? null, now,
      auditSetting("host_authentication_tokens"),
    ]);
    return rows[0];
  }

  async deleteToken(id: string): Promise<DeletedToken | undefined> {
    const { rows } = await this.db.query<DeletedToken>(q.deleteToken, [id, auditSetting("host_authentication_tokens")]);
    return rows[0];
  }

  /** Every sealed token value, for re-sealing after a secrets key rotation (cli secrets-key reseal). */
  async sealedTokens(): Promise<SealedTokenRow[]> {
    const { rows } = await this.db.query<SealedTokenRow>(q.sealedTokens, []);
    return rows;
  }

  async replaceSealed(column: "token" | "refresh_token", id: string, before: Uint8Array, after: Uint8Array): Promise<boolean> {
    const { rowCount } = await this.db.query(column === "token" ? q.replaceSealedToken : q.replaceSealedRefreshToken, [id, before, after]);
    return rowCount === 1;
  }
}

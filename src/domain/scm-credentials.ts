// SCM integrations and host authentication tokens (RunnerConfigurationService, and the
// runner-side ListRunnerSCMIntegrations / GetHostAuthenticationTokenValue; reference 7.3/7.4).
//
// Where each secret lives:
// - An integration's OAuth client secret is sealed to the runner's public key when it arrives
//   (src/domain/sealed-box.ts) and stored only so: nobody but that runner can open it. A runner
//   that has not signed up has no key yet: OAuth then answers failed_precondition (PAT-only
//   integrations need no key).
// - A user's token and refresh token are sealed with the server secrets key (envelope
//   encryption, src/domain/secrets.ts), bound to (runner, host, subject), because they have to be
//   sealed again to the runner's key on every GetHostAuthenticationTokenValue. Without a
//   configured secrets key, storing or reading a token value answers failed_precondition naming
//   SECRETS_KEY_FILE; everything else works.
// - No answer to a user ever carries a token; the integration's secret only as the runner's
//   sealed box. The plaintext never reaches a log line (the request logs carry no bodies).
//
// Who may do what: whoever may use a runner reads its integrations and stores their own tokens
// for it; whoever manages it changes its integrations and sees (metadata only) and deletes its
// users' tokens. Only a token's owner replaces its secret.
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  HostAuthenticationTokenSource,
  type CreateHostAuthenticationTokenRequest,
  type CreateSCMIntegrationRequest,
  type HostAuthenticationTokenSchema,
  type ListHostAuthenticationTokensRequest,
  type ListSCMIntegrationsRequest,
  type SCMIntegrationSchema,
  type UpdateHostAuthenticationTokenRequest,
  type UpdateSCMIntegrationRequest,
} from "../../gen/gitpod/v1/runner_configuration_pb.js";
import { Principal } from "../../gen/gitpod/v1/identity_pb.js";
import { RunnerKind } from "../../gen/gitpod/v1/runner_configuration_pb.js";
import type {
  GetHostAuthenticationTokenValueRequest,
  GetHostAuthenticationTokenValueResponseSchema,
  ListRunnerSCMIntegrationsRequest,
} from "../../gen/gitpod/v1/runner_interaction_pb.js";
import type { DeletedToken, IntegrationPatch, IntegrationRow, ScmCredentialStore, TokenRow } from "../store/scm-credential-store.js";
import type { RunnerRow } from "../store/runner-store.js";
import { isOrganizationAdmin, listingScope } from "./access.js";
import type { UserCaller } from "./caller.js";
import type { Clock } from "./clock.js";
import { alreadyExists, failedPrecondition, invalidArgument, notFound, permissionDenied } from "./errors.js";
import { scopeDigest, type PageTokenCodec } from "./page-token.js";
import type { EventRequest } from "./runner-channel.js";
import type { RunnerRegistry } from "./runner-registry.js";
import { sealFor } from "./sealed-box.js";
import type { SealedColumn, SecretsKeyring } from "./secrets.js";

/** Sends one event on a runner's channel (RunnerChannel.sendEvent). */
export type SendEvent = (runnerId: string, event: EventRequest) => Promise<void>;

const cursorOf = (row: { createdAt: Date; id: string }) => ({ createdAt: row.createdAt, id: row.id });
const encoder = new TextEncoder();

/** The context a token's sealed values are bound to: stable across replacements of the same token. */
function tokenContext(column: "token" | "refresh_token", token: { runnerId: string; host: string; subjectId: string }): string {
  return `host_authentication_tokens.${column}:${token.runnerId}:${token.host}:${token.subjectId}`;
}

/** A host as stored and compared: lower case, no scheme, path or credentials. */
function normalizedHost(host: string, field: string): string {
  const trimmed = host.trim().toLowerCase();
  if (trimmed === "") throw invalidArgument(field, "is required (e.g. github.com)", "scm.host_required");
  if (!/^[a-z0-9.-]+(:[0-9]{1,5})?$/.test(trimmed)) {
    throw invalidArgument(field, "must be a host name with an optional port (e.g. github.com or git.example.com:8443), without scheme or path", "scm.host_format");
  }
  return trimmed;
}

export function integrationMessage(row: IntegrationRow): MessageInitShape<typeof SCMIntegrationSchema> {
  return {
    id: row.id,
    scmId: row.scmId,
    host: row.host,
    oauth:
      row.oauthClientId === null
        ? undefined
        : { clientId: row.oauthClientId, encryptedClientSecret: row.oauthClientSecretSealed ?? new Uint8Array(0), issuerUrl: row.issuerUrl },
    pat: row.pat,
    runnerId: row.runnerId,
    virtualDirectory: row.virtualDirectory ?? undefined,
  };
}

export function tokenMessage(row: TokenRow): MessageInitShape<typeof HostAuthenticationTokenSchema> {
  return {
    id: row.id,
    runnerId: row.runnerId,
    userId: row.subjectPrincipal === Principal.USER ? row.subjectId : "",
    host: row.host,
    source: row.source,
    expiresAt: row.expiresAt ? timestampFromDate(row.expiresAt) : undefined,
    integrationId: row.integrationId ?? "",
    scopes: row.scopes,
    subject: { id: row.subjectId, principal: row.subjectPrincipal },
  };
}

export class ScmCredentials {
  constructor(
    private readonly store: ScmCredentialStore,
    private readonly registry: RunnerRegistry,
    private readonly clock: Clock,
    private readonly pageTokens: PageTokenCodec,
    private readonly keyring: SecretsKeyring | undefined,
    private readonly sendEvent: SendEvent,
  ) {}

  // --- integrations ---------------------------------------------------------------------

  async createIntegration(user: UserCaller, request: CreateSCMIntegrationRequest): Promise<string> {
    const runner = await this.registry.authorize(user, request.runnerId, "manage");
    if (request.scmId.trim() === "") throw invalidArgument("scm_id", "is required (e.g. github, gitlab, bitbucket)", "scm.scm_id_required");
    const host = normalizedHost(request.host, "host");
    const clientId = request.oauthClientId ?? "";
    const secret = request.oauthPlaintextClientSecret ?? "";
    if (clientId === "" && secret !== "") {
      throw invalidArgument("oauth_client_id", "is required when oauth_plaintext_client_secret is set", "scm.oauth_client_id_required");
    }
    if (clientId !== "" && secret === "") {
      throw invalidArgument("oauth_plaintext_client_secret", "is required when oauth_client_id is set", "scm.oauth_secret_required");
    }
    const row = await this.store.insertIntegration(
      {
        id: randomUUID(),
        runnerId: runner.id,
        organizationId: runner.organizationId,
        scmId: request.scmId.trim(),
        host,
        oauthClientId: clientId === "" ? null : clientId,
        oauthClientSecretSealed: clientId === "" ? null : await this.sealForRunner(runner, secret),
        issuerUrl: request.issuerUrl ?? "",
        pat: request.pat,
        virtualDirectory: request.virtualDirectory || null,
      },
      this.clock.now(),
    );
    if (!row) throw alreadyExists(`runner ${runner.id} already has an SCM integration for host ${host}: update that one`);
    await this.sendEvent(row.runnerId, { case: "eventScmIntegrationChange", value: { scmIntegrationId: row.id } } as EventRequest);
    return row.id;
  }

  /** The integration, when the user may use its runner (and `manage` it for changes); else not_found. */
  private async visibleIntegration(user: UserCaller, id: string, action: "use" | "manage"): Promise<IntegrationRow> {
    const row = await this.store.integration(user.organizationId, id);
    const access = row ? await this.registry.accessTo(user, row.runnerId) : "none";
    if (!row || access === "none") throw notFound(`SCM integration ${id}`);
    if (action === "manage") await this.registry.authorize(user, row.runnerId, "manage");
    return row;
  }

  getIntegration(user: UserCaller, id: string): Promise<IntegrationRow> {
    return this.visibleIntegration(user, id, "use");
  }

  async listIntegrations(user: UserCaller, request: ListSCMIntegrationsRequest): Promise<{ rows: IntegrationRow[]; nextToken: string }> {
    const runnerIds = (request.filter?.runnerIds ?? []).map((id) => id.toLowerCase());
    return this.pageTokens.page(
      request.pagination,
      scopeDigest(["ListSCMIntegrations", user.organizationId, [...runnerIds].sort().join(",")]),
      "ListSCMIntegrations",
      (after, limit) => this.store.listIntegrations(user.organizationId, runnerIds, listingScope(user), after, limit),
      cursorOf,
    );
  }

  /**
   * Presence-based (reference 7.4): an empty oauth_client_id removes OAuth and deletes the
   * runner's OAuth tokens for the host; pat=false deletes its PAT tokens. The runner hears of
   * the change and of every deleted token.
   */
  async updateIntegration(user: UserCaller, request: UpdateSCMIntegrationRequest): Promise<void> {
    const existing = await this.visibleIntegration(user, request.id, "manage");
    const patch: IntegrationPatch = { pat: request.pat, issuerUrl: request.issuerUrl, virtualDirectory: request.virtualDirectory };
    const clientId = request.oauthClientId;
    const secret = request.oauthPlaintextClientSecret;
    if (clientId === "") {
      patch.oauth = null;
    } else if (clientId !== undefined || (secret !== undefined && secret !== "")) {
      const newClientId = clientId ?? existing.oauthClientId;
      if (newClientId === null) {
        throw invalidArgument("oauth_client_id", "is required to set oauth_plaintext_client_secret on an integration without OAuth", "scm.oauth_client_id_required");
      }
      const clientChanged = newClientId !== existing.oauthClientId;
      if (clientChanged && (secret === undefined || secret === "")) {
        throw invalidArgument("oauth_plaintext_client_secret", "is required when oauth_client_id changes", "scm.oauth_secret_required");
      }
      const runner = await this.registry.authorize(user, existing.runnerId, "manage");
      patch.oauth = { clientId: newClientId, secretSealed: secret ? await this.sealForRunner(runner, secret) : undefined };
    }
    const result = await this.store.updateIntegration(user.organizationId, existing.id, patch, this.clock.now());
    if (!result) throw notFound(`SCM integration ${request.id}`);
    await this.sendEvent(existing.runnerId, { case: "eventScmIntegrationChange", value: { scmIntegrationId: existing.id } } as EventRequest);
    await this.announceDeleted(result.deleted);
  }

  /** Deletes the integration and, with it, every token of its runner for the host. */
  async deleteIntegration(user: UserCaller, id: string): Promise<void> {
    const existing = await this.visibleIntegration(user, id, "manage");
    const result = await this.store.deleteIntegration(user.organizationId, existing.id);
    if (!result) return; // deleted concurrently: the other call told the runner
    await this.sendEvent(existing.runnerId, { case: "eventScmIntegrationChange", value: { scmIntegrationId: existing.id } } as EventRequest);
    await this.announceDeleted(result.deleted);
  }

  /** The calling runner's integrations (a local runner's include the organization's local configuration). */
  async listForRunner(runner: RunnerRow, request: ListRunnerSCMIntegrationsRequest) {
    const ids = (request.filter?.scmIntegrationIds ?? []).map((id) => id.toLowerCase());
    const local = runner.kind === RunnerKind.LOCAL;
    return this.pageTokens.page(
      request.pagination,
      scopeDigest(["ListRunnerSCMIntegrations", runner.id, [...ids].sort().join(",")]),
      "ListRunnerSCMIntegrations",
      (after, limit) => this.store.listForRunner({ id: runner.id, organizationId: runner.organizationId, local }, ids, after, limit),
      cursorOf,
    );
  }

  private async sealForRunner(runner: RunnerRow, secret: string): Promise<Uint8Array> {
    if (!runner.publicKey || runner.publicKey.length === 0) {
      throw failedPrecondition(
        runner.kind === RunnerKind.LOCAL_CONFIGURATION
          ? "oauth_plaintext_client_secret: the organization's local configuration runner has no key to seal it to; local runners use personal access tokens (pat: true)"
          : `oauth_plaintext_client_secret: runner ${runner.id} has not signed up yet, and the secret is sealed to the public key it sends with Signup; start the runner first, or create the integration without OAuth`,
      );
    }
    return sealFor(runner.publicKey, secret);
  }

  private async announceDeleted(deleted: DeletedToken[]): Promise<void> {
    for (const token of deleted) {
      await this.sendEvent(token.runnerId, {
        case: "eventHostAuthenticationTokenDeleted",
        value: { host: token.host, principalId: token.subjectId },
      } as EventRequest);
    }
  }

  // --- host authentication tokens --------------------------------------------------------

  private requireKeyring(): SecretsKeyring {
    if (!this.keyring) {
      throw failedPrecondition(
        "host authentication tokens are stored encrypted with the server secrets key, and none is configured: set SECRETS_KEY_FILE (or SECRETS_KEY) on every replica (docs/runner-configuration.md)",
      );
    }
    return this.keyring;
  }

  private seal(keyring: SecretsKeyring, value: string, column: "token" | "refresh_token", token: { runnerId: string; host: string; subjectId: string }) {
    return keyring.seal(encoder.encode(value), tokenContext(column, token));
  }

  /** Stores the caller's token for (runner, host); a second one for the same triple replaces the first (same id). */
  async createToken(user: UserCaller, request: CreateHostAuthenticationTokenRequest): Promise<TokenRow> {
    const keyring = this.requireKeyring();
    const runner = await this.registry.authorize(user, request.runnerId, "use");
    const subjectId = (request.subject?.id || request.userId || user.userId).toLowerCase();
    const principal = request.subject?.principal || Principal.USER;
    if (subjectId !== user.userId || principal !== Principal.USER) {
      throw permissionDenied("subject: a user stores only their own host authentication tokens (leave subject empty, or name yourself)");
    }
    if (request.source === HostAuthenticationTokenSource.UNSPECIFIED) {
      throw invalidArgument("source", "must be HOST_AUTHENTICATION_TOKEN_SOURCE_PAT or HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH", "host_token.source_required");
    }
    const host = normalizedHost(request.host, "host");
    let integrationId: string | null = null;
    if (request.integrationId !== "") {
      const integration = await this.store.integration(user.organizationId, request.integrationId);
      if (!integration || integration.runnerId !== runner.id || integration.host !== host) {
        throw invalidArgument("integration_id", `must name an SCM integration of runner ${runner.id} for host ${host}`, "host_token.integration");
      }
      integrationId = integration.id;
    }
    const key = { runnerId: runner.id, host, subjectId };
    return this.store.upsertToken(
      {
        id: randomUUID(),
        ...key,
        organizationId: runner.organizationId,
        subjectPrincipal: principal,
        source: request.source,
        tokenSealed: this.seal(keyring, request.token, "token", key),
        refreshTokenSealed: request.refreshToken === "" ? null : this.seal(keyring, request.refreshToken, "refresh_token", key),
        expiresAt: request.expiresAt ? timestampDate(request.expiresAt) : null,
        integrationId,
        scopes: request.scopes,
      },
      this.clock.now(),
    );
  }

  /** The token when the caller owns it or manages its runner; else not_found. */
  private async visibleToken(user: UserCaller, id: string): Promise<{ row: TokenRow; owner: boolean }> {
    const row = await this.store.token(user.organizationId, id);
    if (row && row.subjectId === user.userId) return { row, owner: true };
    if (row && (await this.registry.accessTo(user, row.runnerId)) === "manage") return { row, owner: false };
    throw notFound(`host authentication token ${id}`);
  }

  async getToken(user: UserCaller, id: string): Promise<TokenRow> {
    return (await this.visibleToken(user, id)).row;
  }

  async listTokens(user: UserCaller, request: ListHostAuthenticationTokensRequest): Promise<{ rows: TokenRow[]; nextToken: string }> {
    const filter = {
      runnerId: request.filter?.runnerId?.toLowerCase(),
      subjectId: (request.filter?.subjectId ?? request.filter?.userId)?.toLowerCase(),
    };
    // Members manage the runners on which one of their groups holds RUNNER_ROLE_ADMIN.
    const managed = isOrganizationAdmin(user) ? { scope: undefined } : { scope: { groupIds: user.groupIds } };
    return this.pageTokens.page(
      request.pagination,
      scopeDigest(["ListHostAuthenticationTokens", user.organizationId, user.userId, filter.runnerId ?? "", filter.subjectId ?? ""]),
      "ListHostAuthenticationTokens",
      (after, limit) => this.store.listTokens(user.organizationId, user.userId, managed, filter, after, limit),
      cursorOf,
    );
  }

  async updateToken(user: UserCaller, request: UpdateHostAuthenticationTokenRequest): Promise<void> {
    const { row, owner } = await this.visibleToken(user, request.id);
    if (!owner) throw permissionDenied(`host authentication token ${request.id}: only its owner replaces it; managers of the runner may delete it`);
    const changesSecret = request.token !== undefined || request.refreshToken !== undefined;
    const keyring = changesSecret ? this.requireKeyring() : undefined;
    const updated = await this.store.updateToken(
      row.id,
      {
        tokenSealed: request.token !== undefined ? this.seal(keyring!, request.token, "token", row) : undefined,
        refreshTokenSealed:
          request.refreshToken === undefined ? undefined : request.refreshToken === "" ? null : this.seal(keyring!, request.refreshToken, "refresh_token", row),
        expiresAt: request.expiresAt === undefined ? undefined : timestampDate(request.expiresAt),
        scopes: request.scopes.length > 0 ? request.scopes : undefined,
      },
      this.clock.now(),
    );
    if (!updated) throw notFound(`host authentication token ${request.id}`);
  }

  async deleteToken(user: UserCaller, id: string): Promise<void> {
    const { row } = await this.visibleToken(user, id);
    const deleted = await this.store.deleteToken(row.id);
    if (deleted) await this.announceDeleted([deleted]);
  }

  /**
   * GetHostAuthenticationTokenValue: the principal's token for the host on the calling runner,
   * opened with the secrets key and sealed to the runner's key. One token per (runner, host,
   * principal), so target_url has nothing to choose between.
   */
  async valueFor(runner: RunnerRow, request: GetHostAuthenticationTokenValueRequest): Promise<MessageInitShape<typeof GetHostAuthenticationTokenValueResponseSchema>> {
    const keyring = this.requireKeyring();
    const host = normalizedHost(request.host, "host");
    const row = await this.store.tokenFor(runner.id, request.principalId.toLowerCase(), host);
    if (!row) throw notFound(`host authentication token of principal ${request.principalId} for host ${host}`);
    const publicKey = runner.publicKey!;
    const open = (sealed: Uint8Array, column: "token" | "refresh_token") => {
      const plaintext = keyring.open(sealed, tokenContext(column, row));
      try {
        return sealFor(publicKey, plaintext.toString("utf8"));
      } finally {
        plaintext.fill(0);
      }
    };
    return {
      value: await open(row.tokenSealed, "token"),
      tokenId: row.id,
      expiresAt: row.expiresAt ? timestampFromDate(row.expiresAt) : undefined,
      refreshToken: row.refreshTokenSealed ? await open(row.refreshTokenSealed, "refresh_token") : new Uint8Array(0),
      source: row.source,
      integrationId: row.integrationId ?? undefined,
    };
  }
}

/** The sealed token columns, for `cli secrets-key reseal` (ids are `<column>:<token id>`). */
export function sealedTokenColumns(store: ScmCredentialStore): SealedColumn[] {
  const column = (name: "token" | "refresh_token"): SealedColumn => {
    const keys = new Map<string, { runnerId: string; host: string; subjectId: string }>();
    return {
      name: `host_authentication_tokens.${name}_sealed`,
      async rows() {
        const rows = await store.sealedTokens();
        const out: { id: string; sealed: Uint8Array }[] = [];
        for (const row of rows) {
          keys.set(row.id, row);
          const sealed = name === "token" ? row.tokenSealed : row.refreshTokenSealed;
          if (sealed) out.push({ id: row.id, sealed });
        }
        return out;
      },
      context: (id) => tokenContext(name, keys.get(id)!),
      replace: (id, before, after) => store.replaceSealed(name, id, before, after),
    };
  };
  return [column("token"), column("refresh_token")];
}

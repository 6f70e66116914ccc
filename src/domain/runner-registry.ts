// The runner use cases: what each RPC does, independent of transport and of SQL.
import { randomUUID } from "node:crypto";
import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  GatewayInfoSchema,
  type ListRunnersRequest,
  type Runner,
  type UpdateRunnerRequest,
} from "../../gen/gitpod/v1/runner_pb.js";
import type { SignupRequest, UpdateRunnerStatusRequest } from "../../gen/gitpod/v1/runner_interaction_pb.js";
import type { Clock } from "./clock.js";
import type { ListFilter, NewRunnerWithToken, RunnerRow, RunnerStore, StatusPatch } from "../store/runner-store.js";
import { currentAuditActor } from "../store/db/audit-context.js";
import { Batcher } from "../store/db/batcher.js";
import type { Queryable } from "../store/db/database.js";
import { offerEnvironmentClasses } from "../store/environment-class-store.js";
import type { Revocation } from "../store/credential-revocations.js";
import { failedPrecondition, notFound } from "./errors.js";
import { filterDigest, type PageTokenCodec } from "./page-token.js";
import type { Caller, UserCaller } from "./caller.js";
import {
  listingScope,
  managesEveryRunner,
  requireMayCreateRunners,
  requireRunnerAccess,
  runnerAccess,
  type RunnerAccess,
  type RunnerAction,
} from "./access.js";
import {
  EXCHANGE_TOKEN_TTL_MS,
  environmentClassId,
  newRunnerFrom,
  rowOfNewRunner,
  runnerMessage,
  specPatchFrom,
  type LivenessPolicy,
} from "./runners.js";
import { RunnerSecrets } from "./runner-secrets.js";
import { checkToken, generateToken, hashToken, trimToken } from "./tokens.js";

export { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from "./page-token.js";

const invalidExchangeToken = () =>
  new ConnectError("exchange token is not valid: it is unknown, expired or already used", Code.Unauthenticated);

// Batches: up to this many calls per statement, this many statements in flight per kind. Two in
// flight measured better than four for CreateRunner (bigger batches, fewer round trips and
// commits per call; bench/README.md) and no worse for heartbeats.
const BATCH = { maxBatch: 128, maxInFlight: 2 };

export class RunnerRegistry {
  private readonly reads: Batcher<string, RunnerRow | undefined>;
  /** Reads with the runners' policies, for decisions about organization members. */
  private readonly guardedReads: Batcher<string, RunnerRow | undefined>;
  private readonly heartbeats: Batcher<string, boolean>;
  private readonly registrations: Batcher<NewRunnerWithToken, undefined>;

  constructor(
    private readonly store: RunnerStore,
    private readonly clock: Clock,
    private readonly liveness: LivenessPolicy,
    private readonly pageTokens: PageTokenCodec,
    /** Called when credentials stop being valid, so caches can drop them at once. */
    private readonly onRevoked: (revocation: Revocation) => void = () => {},
    /** Called (and awaited) after UpdateRunner changed a runner's spec.configuration; the runner is told. */
    private readonly onConfigurationChanged: (runnerId: string) => Promise<void> = async () => {},
    /** Seals the metrics password and Honeycomb key at rest (src/domain/runner-secrets.ts). */
    readonly secrets: RunnerSecrets = new RunnerSecrets(undefined),
  ) {
    const readBatch = (read: (ids: string[]) => Promise<RunnerRow[]>) => async (ids: string[]) => {
      const rows = new Map((await read([...new Set(ids)])).map((row) => [row.id, row]));
      return ids.map((id) => rows.get(id.toLowerCase()));
    };
    this.reads = new Batcher(readBatch((ids) => store.getMany(ids)), BATCH);
    this.guardedReads = new Batcher(readBatch((ids) => store.getManyWithPolicies(ids)), BATCH);
    // One timestamp per batch: heartbeats in one statement are one moment.
    this.heartbeats = new Batcher(async (ids) => {
      const accepted = await store.markActive([...new Set(ids)], this.clock.now());
      return ids.map((id) => accepted.has(id));
    }, BATCH);
    this.registrations = new Batcher((items) => store.insertWithExchangeTokens(items), BATCH);
  }

  async create(user: UserCaller, request: Parameters<typeof newRunnerFrom>[0]): Promise<{ runner: Runner; exchangeToken: string }> {
    requireMayCreateRunners(user);
    const now = this.clock.now();
    const runner = this.secrets.sealNew(newRunnerFrom(request, { runnerId: randomUUID(), organizationId: user.organizationId, creatorId: user.userId }, now));
    const exchangeToken = generateToken("exchange");
    // Resolves only after the batch that holds this runner and its token hash has committed.
    await this.registrations.submit({
      runner,
      tokenHash: hashToken(exchangeToken),
      expiresAt: new Date(now.getTime() + EXCHANGE_TOKEN_TTL_MS),
      audit: currentAuditActor(), // the batch runs outside this call's context
    });
    return { runner: runnerMessage(rowOfNewRunner(runner), now, this.liveness), exchangeToken };
  }

  /**
   * The live runner, when the user may do `action` with it (src/domain/access.ts); else
   * `not_found` (also for a runner the user may not see) or `permission_denied`. For every use
   * case that acts on one runner, such as the SCM calls through it.
   */
  async authorize(user: UserCaller, runnerId: string, action: RunnerAction): Promise<RunnerRow> {
    const row = await this.readFor(user, runnerId);
    requireRunnerAccess(user, row, runnerId, action);
    return row!;
  }

  /** What the user may do with the runner ("none" also when there is no such live runner). */
  async accessTo(user: UserCaller, runnerId: string): Promise<RunnerAccess> {
    const row = await this.readFor(user, runnerId);
    return row ? runnerAccess(user, row) : "none";
  }

  /** The runner, with its policies unless the user is one for whom they do not matter. */
  private readFor(user: UserCaller, runnerId: string): Promise<RunnerRow | undefined> {
    return (managesEveryRunner(user) ? this.reads : this.guardedReads).submit(runnerId);
  }

  /** Checks `manage` before a change; an admin manages every runner, so nothing is read for them. */
  private async authorizeChange(user: UserCaller, runnerId: string): Promise<void> {
    if (!managesEveryRunner(user)) await this.authorize(user, runnerId, "manage");
  }

  async get(caller: Caller, runnerId: string): Promise<Runner> {
    if (caller.kind === "user") return runnerMessage(await this.authorize(caller, runnerId, "use"), this.clock.now(), this.liveness);
    const row = await this.reads.submit(runnerId);
    // Another organization's runner is indistinguishable from a missing one.
    if (!row || row.organizationId !== caller.organizationId) throw notFound(`runner ${runnerId}`);
    return runnerMessage(row, this.clock.now(), this.liveness);
  }

  /** The runners of the user's organization they may use (all of them for an admin). */
  async list(user: UserCaller, request: ListRunnersRequest): Promise<{ runners: Runner[]; nextToken: string }> {
    const { organizationId } = user;
    const filter: ListFilter = {
      kinds: request.filter?.kinds ?? [],
      providers: request.filter?.providers ?? [],
      creatorIds: request.filter?.creatorIds ?? [],
    };
    const scope = listingScope(user);
    const { rows, nextToken } = await this.pageTokens.page(
      request.pagination,
      filterDigest(organizationId, filter),
      "ListRunners",
      (after, limit) => this.store.list(organizationId, filter, after, limit, scope),
      (row) => ({ createdAt: row.createdAt, id: row.id }),
    );
    const now = this.clock.now();
    return { runners: rows.map((row) => runnerMessage(row, now, this.liveness)), nextToken };
  }

  async update(user: UserCaller, request: UpdateRunnerRequest): Promise<void> {
    const { organizationId } = user;
    await this.authorizeChange(user, request.runnerId);
    const patch = this.secrets.sealPatch(request.runnerId.toLowerCase(), specPatchFrom(request));
    const changesSomething = Object.values(patch).some((value) => value !== undefined);
    if (changesSomething && (await this.store.update(organizationId, request.runnerId, patch, this.clock.now()))) {
      const configurationChanged = Object.entries(patch).some(([field, value]) => value !== undefined && field !== "name" && field !== "desiredPhase");
      if (configurationChanged) await this.onConfigurationChanged(request.runnerId.toLowerCase());
      return;
    }
    const existing = await this.store.existing(organizationId, request.runnerId);
    if (!existing || existing.deleted) throw notFound(`runner ${request.runnerId}`);
    if (!changesSomething) return; // nothing to change: updated_at stays
    // The only way a live runner is not updated: desired_phase on a runner that is not LOCAL_CONFIGURATION.
    throw failedPrecondition("spec.desired_phase: can only be changed on the organization's RUNNER_KIND_LOCAL_CONFIGURATION runner");
  }

  async delete(user: UserCaller, runnerId: string): Promise<void> {
    const { organizationId } = user;
    await this.authorizeChange(user, runnerId);
    if (await this.store.markDeleted(organizationId, runnerId, this.clock.now())) {
      this.onRevoked({ runnerId: runnerId.toLowerCase() });
      return;
    }
    const existing = await this.store.existing(organizationId, runnerId);
    if (!existing) throw notFound(`runner ${runnerId}`);
    throw failedPrecondition("the RUNNER_KIND_LOCAL_CONFIGURATION runner belongs to the organization and cannot be deleted");
  }

  async createExchangeToken(user: UserCaller, runnerId: string): Promise<string> {
    const { organizationId } = user;
    await this.authorizeChange(user, runnerId);
    const now = this.clock.now();
    const exchangeToken = generateToken("exchange");
    const expiresAt = new Date(now.getTime() + EXCHANGE_TOKEN_TTL_MS);
    if (await this.store.insertExchangeToken(organizationId, runnerId, hashToken(exchangeToken), now, expiresAt)) return exchangeToken;
    const existing = await this.store.existing(organizationId, runnerId);
    if (!existing || existing.deleted) throw notFound(`runner ${runnerId}`);
    throw failedPrecondition("the RUNNER_KIND_LOCAL_CONFIGURATION runner is not a process and has no credentials");
  }

  /** Trades a one-time exchange token for a new runner access token. */
  async exchange(sent: string): Promise<string> {
    const exchangeToken = trimToken(sent); // e.g. read from a file with its newline
    const checked = checkToken(exchangeToken);
    if (checked !== "exchange") {
      const hint =
        typeof checked === "string"
          ? "it is not an exchange token (rcpx_…); send it as Authorization: Bearer instead"
          : checked.problem === "checksum"
            ? "its checksum does not match: it was truncated or mistyped"
            : "exchange tokens are rcpx_ followed by 49 letters and digits";
      throw new ConnectError(`exchange token is not valid: ${hint}`, Code.Unauthenticated);
    }
    const accessToken = generateToken("runnerAccess");
    const runnerId = await this.store.exchange(hashToken(exchangeToken), hashToken(accessToken), this.clock.now());
    if (!runnerId) throw invalidExchangeToken();
    return accessToken;
  }

  async signup(runnerId: string, request: SignupRequest): Promise<void> {
    const environmentClasses = request.environmentClasses.map((environmentClass) => ({
      id: environmentClassId(runnerId, environmentClass.id, environmentClass.displayName),
      displayName: environmentClass.displayName,
      description: environmentClass.description,
      configuration: environmentClass.configuration.map(({ key, value }) => ({ key, value })),
      enabled: environmentClass.enabled,
    }));
    const now = this.clock.now();
    const offer = environmentClasses.length > 0 ? (tx: Queryable) => offerEnvironmentClasses(tx, runnerId, environmentClasses, now) : undefined;
    if (!(await this.store.signup(runnerId, request.publicKey, now, offer))) {
      throw notFound(`runner ${runnerId}`);
    }
  }

  /** Resolves once the heartbeat is committed, so a following GetRunner already sees it. */
  async heartbeat(runnerId: string): Promise<void> {
    if (!(await this.heartbeats.submit(runnerId))) throw this.notSignedUp(runnerId);
  }

  async updateStatus(runnerId: string, request: UpdateRunnerStatusRequest): Promise<void> {
    const patch: StatusPatch = {
      version: request.version,
      systemDetails: request.systemDetails,
      logUrl: request.logUrl,
      degradationMessage: request.degredationMessage,
      region: request.region,
      llmUrl: request.llmUrl,
      supportBundleUrl: request.supportBundleUrl,
      // An empty list leaves capabilities alone; [UNSPECIFIED] is the documented way to clear them.
      capabilities: request.capabilities.length > 0 ? request.capabilities.filter((capability) => capability !== 0) : undefined,
      gatewayInfo: request.gatewayInfo ? toJson(GatewayInfoSchema, request.gatewayInfo) : undefined,
      additionalInfo: request.additionalInfo.map(({ key, value }) => ({ key, value })),
    };
    if (!(await this.store.updateStatus(runnerId, patch, this.clock.now()))) throw this.notSignedUp(runnerId);
  }

  /** The calling runner's own row; `failed_precondition` before Signup. */
  async signedUp(runnerId: string): Promise<RunnerRow> {
    const row = await this.reads.submit(runnerId);
    if (!row) throw notFound(`runner ${runnerId}`);
    if (!row.signedUpAt) throw this.notSignedUp(runnerId);
    return row;
  }

  private notSignedUp(runnerId: string): ConnectError {
    return failedPrecondition(`runner ${runnerId} has not signed up yet: call Signup first`);
  }
}

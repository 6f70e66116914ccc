// The five RunnerService RPCs that only a runner can answer (its SCM credentials and network
// access live with it): each is relayed as a call on the runner channel (reference 2.4/7.1),
// on behalf of the calling user (principal_id), after the public request's own validation.
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ParseContextURLPreconditionFailureDetailsSchema,
  ParseContextURLResponseSchema,
  RunnerCapability,
  type CheckAuthenticationForHostRequest,
  type CheckAuthenticationForHostResponse,
  type CheckRepositoryAccessRequest,
  type CheckRepositoryAccessResponse,
  type ListSCMOrganizationsRequest,
  type ListSCMOrganizationsResponseSchema,
  type ParseContextURLRequest,
  type ParseContextURLResponse,
  type SearchRepositoriesRequest,
  type SearchRepositoriesResponseSchema,
} from "../../gen/gitpod/v1/runner_pb.js";
import { RunnerKind } from "../../gen/gitpod/v1/runner_configuration_pb.js";
import type { RunnerRow, RunnerStore } from "../store/runner-store.js";
import type { Caller } from "./caller.js";
import { failedPrecondition, notFound } from "./errors.js";
import type { CallOptions, RunnerChannel } from "./runner-channel.js";

type User = Extract<Caller, { kind: "user" }>;
/** What a delegated RPC needs besides its request: how long to wait, the caller's signal and trace. */
export type DelegationOptions = Omit<CallOptions, "method">;

/** Most runners of an organization considered when ParseContextURL names none. */
const MAX_CANDIDATES = 1000;

export class DelegatedCalls {
  constructor(
    private readonly runners: RunnerStore,
    private readonly channel: RunnerChannel,
  ) {}

  /**
   * May this caller use this runner for a delegated call? Today: a live runner of the caller's
   * organization; any other runner is `not_found`, like one that does not exist. (Role-based
   * "use" rules of organization groups belong here.)
   */
  async useRunner(caller: User, runnerId: string): Promise<RunnerRow> {
    const [row] = await this.runners.getMany([runnerId]);
    if (!row || row.organizationId !== caller.organizationId) throw notFound(`runner ${runnerId}`);
    if (row.kind === RunnerKind.LOCAL_CONFIGURATION) {
      throw failedPrecondition(`runner ${runnerId} is the organization's RUNNER_KIND_LOCAL_CONFIGURATION runner, which is no process and cannot answer calls`);
    }
    return row;
  }

  async parseContextUrl(caller: User, request: ParseContextURLRequest, options: DelegationOptions): Promise<ParseContextURLResponse> {
    const call = { case: "callParseContext" as const, value: { contextUrl: request.contextUrl, principalId: caller.userId } };
    const method = "ParseContextURL";
    if (request.runnerId !== "") {
      const runner = await this.useRunner(caller, request.runnerId);
      const answer = await this.channel.call(runner.id, call, { ...options, method });
      return answer.resp ?? create(ParseContextURLResponseSchema);
    }
    // No runner named: the organization's connected runners, the caller's own first (they hold
    // the caller's credentials most likely), newest first; each gets its share of the deadline.
    const candidates = (await this.runners.list(caller.organizationId, { kinds: [], providers: [], creatorIds: [] }, undefined, MAX_CANDIDATES))
      .filter((row) => row.kind !== RunnerKind.LOCAL_CONFIGURATION && row.signedUpAt !== null);
    const live = await this.channel.liveRunners(candidates.map((row) => row.id));
    const connected = candidates
      .filter((row) => live.has(row.id))
      .sort((a, b) => Number(b.creatorId === caller.userId) - Number(a.creatorId === caller.userId));
    if (connected.length === 0) {
      throw preconditionFailure(
        `no runner of the organization is connected to resolve ${request.contextUrl}: start one, or name one in runner_id`,
        { runnerIds: candidates.map((row) => row.id) },
      );
    }
    const deadline = performance.now() + options.timeoutMs;
    const failures: { runnerId: string; error: ConnectError }[] = [];
    for (const [index, runner] of connected.entries()) {
      const share = (deadline - performance.now()) / (connected.length - index);
      if (share < 1) break;
      try {
        const answer = await this.channel.call(runner.id, call, { ...options, timeoutMs: share, method });
        return answer.resp ?? create(ParseContextURLResponseSchema);
      } catch (err) {
        const error = ConnectError.from(err);
        if (options.signal?.aborted) throw error;
        failures.push({ runnerId: runner.id, error });
      }
    }
    throw noRunnerCould(request.contextUrl, failures);
  }

  async searchRepositories(caller: User, request: SearchRepositoriesRequest, options: DelegationOptions): Promise<MessageInitShape<typeof SearchRepositoriesResponseSchema>> {
    const runner = await this.useRunner(caller, request.runnerId);
    const { runnerId: _, $typeName: __, ...fields } = request;
    const answer = await this.channel.call(runner.id, { case: "callSearchRepositories", value: { ...fields, principalId: caller.userId } }, { ...options, method: "SearchRepositories" });
    return { repositories: answer.repositories, pagination: answer.pagination, lastPage: answer.lastPage };
  }

  async listScmOrganizations(caller: User, request: ListSCMOrganizationsRequest, options: DelegationOptions): Promise<MessageInitShape<typeof ListSCMOrganizationsResponseSchema>> {
    const runner = await this.useRunner(caller, request.runnerId);
    requireCapability(runner, RunnerCapability.LIST_SCM_ORGANIZATIONS, "ListSCMOrganizations");
    const value = { principalId: caller.userId, scmHost: request.scmHost, query: request.query, pagination: request.pagination };
    const answer = await this.channel.call(runner.id, { case: "callListScmOrganizations", value }, { ...options, method: "ListSCMOrganizations" });
    return { organizations: answer.organizations, pagination: answer.pagination };
  }

  async checkAuthenticationForHost(caller: User, request: CheckAuthenticationForHostRequest, options: DelegationOptions): Promise<CheckAuthenticationForHostResponse | Record<string, never>> {
    const runner = await this.useRunner(caller, request.runnerId);
    const value = { host: request.host, principalId: caller.userId };
    const answer = await this.channel.call(runner.id, { case: "callCheckAuthenticationForHost", value }, { ...options, method: "CheckAuthenticationForHost" });
    return answer.resp ?? {};
  }

  async checkRepositoryAccess(caller: User, request: CheckRepositoryAccessRequest, options: DelegationOptions): Promise<CheckRepositoryAccessResponse | Record<string, never>> {
    const runner = await this.useRunner(caller, request.runnerId);
    requireCapability(runner, RunnerCapability.CHECK_REPOSITORY_ACCESS, "CheckRepositoryAccess");
    const value = { principalId: caller.userId, repositoryUrl: request.repositoryUrl };
    const answer = await this.channel.call(runner.id, { case: "callCheckRepositoryAccess", value }, { ...options, method: "CheckRepositoryAccess" });
    return answer.resp ?? {};
  }
}

/** Calls that need a capability go only to runners that advertise it (UpdateRunnerStatus.capabilities). */
function requireCapability(runner: RunnerRow, capability: RunnerCapability, method: string): void {
  if (runner.capabilities.includes(capability)) return;
  throw new ConnectError(
    `runner ${runner.id} does not support ${method}: it does not advertise RUNNER_CAPABILITY_${RunnerCapability[capability]}`,
    Code.Unimplemented,
  );
}

function preconditionFailure(message: string, details: { authenticationRequiredUrl?: string; scmId?: string; runnerIds: string[] }): ConnectError {
  return new ConnectError(message, Code.FailedPrecondition, undefined, [
    { desc: ParseContextURLPreconditionFailureDetailsSchema, value: details },
  ]);
}

/**
 * No connected runner could parse the URL. When runners need the caller to authenticate
 * (failed_precondition), that is the answer, listing them; when all failed alike (e.g. the URL
 * is invalid), their error is; otherwise failed_precondition with what each said.
 */
function noRunnerCould(contextUrl: string, failures: { runnerId: string; error: ConnectError }[]): ConnectError {
  const needAuth = failures.filter((f) => f.error.code === Code.FailedPrecondition);
  if (needAuth.length > 0) {
    const first = needAuth[0]!.error;
    const detail = first.details.flatMap((d) =>
      "desc" in d ? [] : d.type === ParseContextURLPreconditionFailureDetailsSchema.typeName ? [fromBinary(ParseContextURLPreconditionFailureDetailsSchema, d.value)] : [],
    )[0];
    return preconditionFailure(first.rawMessage, {
      authenticationRequiredUrl: detail?.authenticationRequiredUrl ?? "",
      scmId: detail?.scmId ?? "",
      runnerIds: needAuth.map((f) => f.runnerId),
    });
  }
  const codes = new Set(failures.map((f) => f.error.code));
  if (failures.length > 0 && codes.size === 1 && ![Code.Unavailable, Code.DeadlineExceeded].includes(failures[0]!.error.code)) {
    return failures[0]!.error;
  }
  const said = failures.map((f) => `${f.runnerId}: ${Code[f.error.code]} ${f.error.rawMessage}`).join("; ");
  return preconditionFailure(`no connected runner of the organization could resolve ${contextUrl}${said ? ` (${said})` : ""}`, {
    runnerIds: failures.map((f) => f.runnerId),
  });
}

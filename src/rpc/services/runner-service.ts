// gitpod.v1.RunnerService: thin handlers that check who may call and delegate to the use cases,
// which apply the access rules (src/domain/access.ts).
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { DelegatedCalls, DelegationOptions } from "../../domain/delegated-calls.js";
import type { RunnerService } from "../../../gen/gitpod/v1/runner_pb.js";
import { callerOf, requireUser } from "../../domain/auth.js";
import { permissionDenied } from "../../domain/errors.js";
import type { TokenIssuer } from "../../domain/id-tokens.js";
import type { RunnerPolicies } from "../../domain/runner-policies.js";
import type { RunnerRegistry } from "../../domain/runner-registry.js";

export interface RunnerServiceDeps {
  registry: RunnerRegistry;
  policies: RunnerPolicies;
  tokens: TokenIssuer;
  delegated: DelegatedCalls;
  /** How long a delegated call waits for the runner when the caller sent no deadline. */
  callTimeoutMs: number;
}

export function runnerService({ registry, policies, tokens, delegated, callTimeoutMs }: RunnerServiceDeps): ServiceImpl<typeof RunnerService> {
  // The caller's deadline (else the default), its cancellation, and its trace context for the runner.
  const delegation = (ctx: HandlerContext): DelegationOptions => {
    const traceContext: Record<string, string> = {};
    for (const name of ["traceparent", "tracestate"]) {
      const value = ctx.requestHeader.get(name);
      if (value) traceContext[name] = value;
    }
    return { timeoutMs: ctx.timeoutMs() ?? callTimeoutMs, signal: ctx.signal, traceContext };
  };
  return {
    async createRunner(request, ctx) {
      const user = requireUser(ctx);
      const { runner, exchangeToken } = await registry.create(user, request);
      return { runner, exchangeToken };
    },

    async getRunner(request, ctx: HandlerContext) {
      const caller = callerOf(ctx);
      // A runner may read itself (it knows it exists); any other runner is off limits.
      if (caller.kind === "runner" && request.runnerId.toLowerCase() !== caller.runnerId) {
        throw permissionDenied("a runner may only read itself");
      }
      return { runner: await registry.get(caller, request.runnerId) };
    },

    async listRunners(request, ctx) {
      const user = requireUser(ctx);
      const { runners, nextToken } = await registry.list(user, request);
      return { runners, pagination: { nextToken } };
    },

    async updateRunner(request, ctx) {
      await registry.update(requireUser(ctx), request);
      return {};
    },

    async deleteRunner(request, ctx) {
      await registry.delete(requireUser(ctx), request.runnerId);
      return {};
    },

    async createRunnerToken(request, ctx) {
      return { exchangeToken: await registry.createExchangeToken(requireUser(ctx), request.runnerId) };
    },

    // A one-hour token for this runner's logs and support bundle (docs/oidc.md). Reading a
    // runner's logs is part of managing it.
    async createRunnerLogsToken(request, ctx) {
      const user = requireUser(ctx);
      const runner = await registry.authorize(user, request.runnerId, "manage");
      return { accessToken: await tokens.logsToken(user, runner) };
    },
    // Relayed to a runner over the runner channel (src/domain/delegated-calls.ts), for users who may use it.
    parseContextURL: (request, ctx) => delegated.parseContextUrl(requireUser(ctx), request, delegation(ctx)),
    searchRepositories: (request, ctx) => delegated.searchRepositories(requireUser(ctx), request, delegation(ctx)),
    listSCMOrganizations: (request, ctx) => delegated.listScmOrganizations(requireUser(ctx), request, delegation(ctx)),
    checkAuthenticationForHost: (request, ctx) => delegated.checkAuthenticationForHost(requireUser(ctx), request, delegation(ctx)),
    checkRepositoryAccess: (request, ctx) => delegated.checkRepositoryAccess(requireUser(ctx), request, delegation(ctx)),

    async listRunnerPolicies(request, ctx) {
      const { policies: page, nextToken } = await policies.list(requireUser(ctx), request.runnerId, request.pagination);
      return { policies: page, pagination: { nextToken } };
    },

    async createRunnerPolicy(request, ctx) {
      return { policy: await policies.createPolicy(requireUser(ctx), request) };
    },

    async updateRunnerPolicy(request, ctx) {
      return { policy: await policies.update(requireUser(ctx), request) };
    },

    async deleteRunnerPolicy(request, ctx) {
      await policies.delete(requireUser(ctx), request);
      return {};
    },
  };
}

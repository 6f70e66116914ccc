// gitpod.v1.RunnerService: thin handlers that check who may call and delegate to the registry.
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { DelegatedCalls, DelegationOptions } from "../../domain/delegated-calls.js";
import type { RunnerService } from "../../../gen/gitpod/v1/runner_pb.js";
import { callerOf, requireUser } from "../../domain/auth.js";
import { permissionDenied } from "../../domain/errors.js";
import type { RunnerRegistry } from "../../domain/runner-registry.js";
import { notImplemented } from "./not-implemented.js";

const noPolicies = "runner policies (group roles) are not supported yet";

export interface RunnerServiceDeps {
  registry: RunnerRegistry;
  delegated: DelegatedCalls;
  /** How long a delegated call waits for the runner when the caller sent no deadline. */
  callTimeoutMs: number;
}

export function runnerService({ registry, delegated, callTimeoutMs }: RunnerServiceDeps): ServiceImpl<typeof RunnerService> {
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
      return { runner: await registry.get(caller.organizationId, request.runnerId) };
    },

    async listRunners(request, ctx) {
      const user = requireUser(ctx);
      const { runners, nextToken } = await registry.list(user.organizationId, request);
      return { runners, pagination: { nextToken } };
    },

    async updateRunner(request, ctx) {
      const user = requireUser(ctx);
      await registry.update(user.organizationId, request);
      return {};
    },

    async deleteRunner(request, ctx) {
      const user = requireUser(ctx);
      await registry.delete(user.organizationId, request.runnerId);
      return {};
    },

    async createRunnerToken(request, ctx) {
      const user = requireUser(ctx);
      return { exchangeToken: await registry.createExchangeToken(user.organizationId, request.runnerId) };
    },

    createRunnerLogsToken: notImplemented("CreateRunnerLogsToken", "runner logs are not proxied"),

    // Relayed to a runner over the runner channel (src/domain/delegated-calls.ts).
    parseContextURL: (request, ctx) => delegated.parseContextUrl(requireUser(ctx), request, delegation(ctx)),
    searchRepositories: (request, ctx) => delegated.searchRepositories(requireUser(ctx), request, delegation(ctx)),
    listSCMOrganizations: (request, ctx) => delegated.listScmOrganizations(requireUser(ctx), request, delegation(ctx)),
    checkAuthenticationForHost: (request, ctx) => delegated.checkAuthenticationForHost(requireUser(ctx), request, delegation(ctx)),
    checkRepositoryAccess: (request, ctx) => delegated.checkRepositoryAccess(requireUser(ctx), request, delegation(ctx)),

    listRunnerPolicies: notImplemented("ListRunnerPolicies", noPolicies),
    createRunnerPolicy: notImplemented("CreateRunnerPolicy", noPolicies),
    updateRunnerPolicy: notImplemented("UpdateRunnerPolicy", noPolicies),
    deleteRunnerPolicy: notImplemented("DeleteRunnerPolicy", noPolicies),
  };
}

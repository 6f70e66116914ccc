// gitpod.v1.RunnerService: thin handlers that check who may call and delegate to the use cases,
// which apply the access rules (src/domain/access.ts).
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { RunnerService } from "../../../gen/gitpod/v1/runner_pb.js";
import { callerOf, requireUser } from "../../domain/auth.js";
import type { RunnerAction } from "../../domain/access.js";
import { permissionDenied } from "../../domain/errors.js";
import type { TokenIssuer } from "../../domain/id-tokens.js";
import type { RunnerPolicies } from "../../domain/runner-policies.js";
import type { RunnerRegistry } from "../../domain/runner-registry.js";
import { notImplemented } from "./not-implemented.js";

const noScm = "it has no SCM integrations";

export function runnerService(registry: RunnerRegistry, policies: RunnerPolicies, tokens: TokenIssuer): ServiceImpl<typeof RunnerService> {
  /**
   * An RPC this server does not serve yet, whose access rule applies already: a caller who
   * may not `action` the runner gets not_found or permission_denied, the others unimplemented.
   */
  const guardedNotImplemented =
    (method: string, action: RunnerAction, reason: string) =>
    async (request: { runnerId: string }, ctx: HandlerContext): Promise<never> => {
      const user = requireUser(ctx);
      // ParseContextURL may leave runner_id empty (the server would pick a runner).
      if (request.runnerId !== "") await registry.authorize(user, request.runnerId, action);
      return notImplemented(method, reason)();
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
    // The SCM calls through a runner are "use".
    parseContextURL: guardedNotImplemented("ParseContextURL", "use", noScm),
    searchRepositories: guardedNotImplemented("SearchRepositories", "use", noScm),
    listSCMOrganizations: guardedNotImplemented("ListSCMOrganizations", "use", noScm),
    checkAuthenticationForHost: guardedNotImplemented("CheckAuthenticationForHost", "use", noScm),
    checkRepositoryAccess: guardedNotImplemented("CheckRepositoryAccess", "use", noScm),

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

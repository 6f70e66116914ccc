// gitpod.v1.RunnerService: thin handlers that check who may call and delegate to the registry.
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { RunnerService } from "../../../gen/gitpod/v1/runner_pb.js";
import { callerOf, requireUser } from "../../domain/auth.js";
import { permissionDenied } from "../../domain/errors.js";
import type { TokenIssuer } from "../../domain/id-tokens.js";
import { runnerUserMayManage } from "../../domain/runner-access.js";
import type { RunnerRegistry } from "../../domain/runner-registry.js";
import { notImplemented } from "./not-implemented.js";

const noScm = "it has no SCM integrations";
const noPolicies = "runner policies (group roles) are not supported yet";

export function runnerService(registry: RunnerRegistry, tokens: TokenIssuer): ServiceImpl<typeof RunnerService> {
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

    // A one-hour token for this runner's logs and support bundle, for users who may manage it (docs/oidc.md).
    async createRunnerLogsToken(request, ctx) {
      const user = requireUser(ctx);
      const runner = await runnerUserMayManage(registry, user, request.runnerId);
      return { accessToken: await tokens.logsToken(user, runner) };
    },
    parseContextURL: notImplemented("ParseContextURL", noScm),
    searchRepositories: notImplemented("SearchRepositories", noScm),
    listSCMOrganizations: notImplemented("ListSCMOrganizations", noScm),
    checkAuthenticationForHost: notImplemented("CheckAuthenticationForHost", noScm),
    checkRepositoryAccess: notImplemented("CheckRepositoryAccess", noScm),
    listRunnerPolicies: notImplemented("ListRunnerPolicies", noPolicies),
    createRunnerPolicy: notImplemented("CreateRunnerPolicy", noPolicies),
    updateRunnerPolicy: notImplemented("UpdateRunnerPolicy", noPolicies),
    deleteRunnerPolicy: notImplemented("DeleteRunnerPolicy", noPolicies),
  };
}

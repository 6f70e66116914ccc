// gitpod.v1.RunnerConfigurationService: SCM integrations, host authentication tokens and
// environment classes (src/domain/scm-credentials.ts, src/domain/environment-classes.ts), for
// users; runners read theirs through RunnerInteractionService. Schema, validation and LLM
// integrations answer unimplemented with the reason.
import type { ServiceImpl } from "@connectrpc/connect";
import type { RunnerConfigurationService } from "../../../gen/gitpod/v1/runner_configuration_pb.js";
import { requireUser } from "../../domain/auth.js";
import { environmentClassMessage, type EnvironmentClasses } from "../../domain/environment-classes.js";
import { integrationMessage, tokenMessage, type ScmCredentials } from "../../domain/scm-credentials.js";
import { notImplemented } from "./not-implemented.js";

const NO_SCHEMAS = "this server does not store runner configuration schemas (UpdateRunnerConfigurationSchema is not served)";
const NO_VALIDATION = "validation is relayed to the runner as CallValidateConfig, which this server does not send";
const NO_LLM = "LLM integrations are not part of this server";

export function runnerConfigurationService(scm: ScmCredentials, classes: EnvironmentClasses): ServiceImpl<typeof RunnerConfigurationService> {
  return {
    async createHostAuthenticationToken(request, ctx) {
      return { token: tokenMessage(await scm.createToken(requireUser(ctx), request)) };
    },
    async getHostAuthenticationToken(request, ctx) {
      return { token: tokenMessage(await scm.getToken(requireUser(ctx), request.id)) };
    },
    async listHostAuthenticationTokens(request, ctx) {
      const { rows, nextToken } = await scm.listTokens(requireUser(ctx), request);
      return { tokens: rows.map(tokenMessage), pagination: { nextToken } };
    },
    async updateHostAuthenticationToken(request, ctx) {
      await scm.updateToken(requireUser(ctx), request);
      return {};
    },
    async deleteHostAuthenticationToken(request, ctx) {
      await scm.deleteToken(requireUser(ctx), request.id);
      return {};
    },
    getRunnerConfigurationSchema: notImplemented("GetRunnerConfigurationSchema", NO_SCHEMAS),
    async createSCMIntegration(request, ctx) {
      return { id: await scm.createIntegration(requireUser(ctx), request) };
    },
    async getSCMIntegration(request, ctx) {
      return { integration: integrationMessage(await scm.getIntegration(requireUser(ctx), request.id)) };
    },
    async listSCMIntegrations(request, ctx) {
      const { rows, nextToken } = await scm.listIntegrations(requireUser(ctx), request);
      return { integrations: rows.map(integrationMessage), pagination: { nextToken } };
    },
    async updateSCMIntegration(request, ctx) {
      await scm.updateIntegration(requireUser(ctx), request);
      return {};
    },
    async deleteSCMIntegration(request, ctx) {
      await scm.deleteIntegration(requireUser(ctx), request.id);
      return {};
    },
    async createEnvironmentClass(request, ctx) {
      return { id: await classes.create(requireUser(ctx), request) };
    },
    async getEnvironmentClass(request, ctx) {
      return { environmentClass: environmentClassMessage(await classes.get(requireUser(ctx), request.environmentClassId)) };
    },
    async listEnvironmentClasses(request, ctx) {
      const { rows, nextToken } = await classes.list(requireUser(ctx), request);
      return { environmentClasses: rows.map(environmentClassMessage), pagination: { nextToken } };
    },
    async updateEnvironmentClass(request, ctx) {
      await classes.update(requireUser(ctx), request);
      return {};
    },
    validateRunnerConfiguration: notImplemented("ValidateRunnerConfiguration", NO_VALIDATION),
    createLLMIntegration: notImplemented("CreateLLMIntegration", NO_LLM),
    getLLMIntegration: notImplemented("GetLLMIntegration", NO_LLM),
    listLLMIntegrations: notImplemented("ListLLMIntegrations", NO_LLM),
    updateLLMIntegration: notImplemented("UpdateLLMIntegration", NO_LLM),
    deleteLLMIntegration: notImplemented("DeleteLLMIntegration", NO_LLM),
  };
}

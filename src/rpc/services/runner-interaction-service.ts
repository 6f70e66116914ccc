// gitpod.v1.RunnerInteractionService: the calls a runner process makes about itself, and the
// runner channel (WatchRequests / SendResponse).
import type { ServiceImpl } from "@connectrpc/connect";
import type { RunnerInteractionService } from "../../../gen/gitpod/v1/runner_interaction_pb.js";
import { requireRunner, requireRunnerSelf } from "../../domain/auth.js";
import type { RunnerChannel } from "../../domain/runner-channel.js";
import type { RunnerRegistry } from "../../domain/runner-registry.js";
import { latestVersionFor, type ReleaseSource } from "../../domain/releases.js";
import { runnerConfigurationOf } from "../../domain/runner-configuration.js";
import type { RunnerMetrics } from "../../domain/runner-metrics.js";
import { integrationMessage, type ScmCredentials } from "../../domain/scm-credentials.js";
import { environmentClassMessage, type EnvironmentClasses } from "../../domain/environment-classes.js";

export interface RunnerInteractionDeps {
  registry: RunnerRegistry;
  channel: RunnerChannel;
  releases: ReleaseSource;
  metrics: RunnerMetrics;
  scm: ScmCredentials;
  classes: EnvironmentClasses;
}

export function runnerInteractionService({ registry, channel, releases, metrics, scm, classes }: RunnerInteractionDeps): ServiceImpl<typeof RunnerInteractionService> {
  return {
    async signup(request, ctx) {
      const runner = requireRunner(ctx);
      await registry.signup(runner.runnerId, request);
      return { runnerId: runner.runnerId };
    },

    async markRunnerActive(request, ctx) {
      const runner = requireRunnerSelf(ctx, request.runnerId);
      await registry.heartbeat(runner.runnerId);
      return {};
    },

    async updateRunnerStatus(request, ctx) {
      const runner = requireRunnerSelf(ctx, request.runnerId);
      await registry.updateStatus(runner.runnerId, request);
      return {};
    },

    // A user's token for a host, sealed to this runner's key (src/domain/scm-credentials.ts).
    async getHostAuthenticationTokenValue(request, ctx) {
      const runner = requireRunnerSelf(ctx, request.runnerId);
      return scm.valueFor(await registry.signedUp(runner.runnerId), request);
    },

    async listRunnerEnvironmentClasses(request, ctx) {
      const runner = requireRunnerSelf(ctx, request.runnerId);
      const { rows, nextToken } = await classes.listForRunner({ id: runner.runnerId, organizationId: runner.organizationId }, request);
      return { environmentClasses: rows.map(environmentClassMessage), pagination: { nextToken } };
    },

    async listRunnerSCMIntegrations(request, ctx) {
      const runner = requireRunnerSelf(ctx, request.runnerId);
      const { rows, nextToken } = await scm.listForRunner(await registry.signedUp(runner.runnerId), request);
      return { scmIntegrations: rows.map(integrationMessage), pagination: { nextToken } };
    },

    // Only the runner itself, once signed up; the stream lasts until the runner goes away.
    async *watchRequests(request, ctx) {
      const runner = requireRunnerSelf(ctx, request.runnerId);
      await registry.signedUp(runner.runnerId);
      yield* channel.watch(runner.runnerId, { workerId: request.workerId, shardIds: request.shardIds }, ctx.signal);
    },

    async sendResponse(request, ctx) {
      const runner = requireRunnerSelf(ctx, request.runnerId);
      await channel.answer(runner.runnerId, request);
      return {};
    },

    async getLatestVersion(request, ctx) {
      const runner = requireRunnerSelf(ctx, request.runnerId);
      const row = await registry.signedUp(runner.runnerId);
      return latestVersionFor(releases.current(), row, request.currentVersion || row.statusVersion);
    },

    // Secrets sealed to the runner's Signup key; before Signup there is none: failed_precondition.
    async getRunnerConfiguration(request, ctx) {
      const runner = requireRunnerSelf(ctx, request.runnerId);
      const row = await registry.signedUp(runner.runnerId);
      return runnerConfigurationOf({ ...row, publicKey: row.publicKey ?? new Uint8Array(0) }, registry.secrets.open(row));
    },

    async reportRunnerMetrics(request, ctx) {
      const runner = requireRunnerSelf(ctx, request.runnerId);
      await metrics.report(await registry.signedUp(runner.runnerId), request.compressedMetrics);
      return {};
    },
  };
}

// gitpod.v1.RunnerInteractionService: the calls a runner process makes about itself, and the
// runner channel (WatchRequests / SendResponse).
import type { ServiceImpl } from "@connectrpc/connect";
import type { RunnerInteractionService } from "../../../gen/gitpod/v1/runner_interaction_pb.js";
import { requireRunner, requireRunnerSelf } from "../../domain/auth.js";
import type { RunnerChannel } from "../../domain/runner-channel.js";
import type { RunnerRegistry } from "../../domain/runner-registry.js";
import { notImplemented } from "./not-implemented.js";

export interface RunnerInteractionDeps {
  registry: RunnerRegistry;
  channel: RunnerChannel;
}

export function runnerInteractionService({ registry, channel }: RunnerInteractionDeps): ServiceImpl<typeof RunnerInteractionService> {
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

    getLatestVersion: notImplemented("GetLatestVersion", "it does not distribute runner releases"),
    getRunnerConfiguration: notImplemented("GetRunnerConfiguration", "runner-side configuration delivery needs payload encryption, which is not built yet"),
    reportRunnerMetrics: notImplemented("ReportRunnerMetrics", "it does not ingest runner metrics"),
  };
}

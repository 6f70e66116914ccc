// gitpod.v1.RunnerInteractionService: the calls a runner process makes about itself.
import type { ServiceImpl } from "@connectrpc/connect";
import type { RunnerInteractionService } from "../../../gen/gitpod/v1/runner_interaction_pb.js";
import { requireRunner, requireRunnerSelf } from "../../domain/auth.js";
import type { RunnerRegistry } from "../../domain/runner-registry.js";
import { notImplemented } from "./not-implemented.js";

export function runnerInteractionService(registry: RunnerRegistry): ServiceImpl<typeof RunnerInteractionService> {
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

    watchRequests: notImplemented("WatchRequests", "the runner channel is not built yet"),
    sendResponse: notImplemented("SendResponse", "the runner channel is not built yet"),
    getLatestVersion: notImplemented("GetLatestVersion", "it does not distribute runner releases"),
    getRunnerConfiguration: notImplemented("GetRunnerConfiguration", "runner-side configuration delivery needs payload encryption, which is not built yet"),
    reportRunnerMetrics: notImplemented("ReportRunnerMetrics", "it does not ingest runner metrics"),
  };
}

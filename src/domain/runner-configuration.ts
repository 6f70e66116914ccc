// GetRunnerConfiguration: the runner's own configuration as its owner set it (spec.configuration),
// with the secrets in it (metrics username and password, Honeycomb key) sealed to the runner's
// Signup public key (src/domain/sealed-box.ts); the stored secrets come opened from
// src/domain/runner-secrets.ts.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GetRunnerConfigurationResponseSchema } from "../../gen/gitpod/v1/runner_interaction_pb.js";
import type { RunnerRow } from "../store/runner-store.js";
import { sealFor } from "./sealed-box.js";

export async function runnerConfigurationOf(
  row: RunnerRow & { publicKey: Uint8Array },
  secrets: { metricsPassword: string; honeycombApiKey: string },
): Promise<MessageInitShape<typeof GetRunnerConfigurationResponseSchema>> {
  const [encryptedUsername, encryptedPassword, encryptedHoneycombApiKey] = await Promise.all([
    sealFor(row.publicKey, row.metricsUsername),
    sealFor(row.publicKey, secrets.metricsPassword),
    sealFor(row.publicKey, secrets.honeycombApiKey),
  ]);
  return {
    configuration: {
      region: row.region,
      releaseChannel: row.releaseChannel,
      autoUpdate: row.autoUpdate,
      metrics: {
        enabled: row.metricsEnabled,
        url: row.metricsUrl,
        encryptedUsername,
        encryptedPassword,
        managedMetricsEnabled: row.metricsManagedEnabled,
        includeVerboseMetrics: row.metricsIncludeVerbose,
      },
      logLevel: row.logLevel,
      devcontainerImageCacheEnabled: row.devcontainerImageCacheEnabled,
      updateWindow: row.updateWindowStart === null ? undefined : { startHour: row.updateWindowStart, endHour: row.updateWindowEnd ?? undefined },
      encryptedHoneycombApiKey,
      continuousProfiling: row.continuousProfiling,
    },
  };
}

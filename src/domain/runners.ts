// Runner business rules that the .proto annotations cannot express (cross-field rules,
// rules kept in upstream comments), and how a stored runner is presented on the wire.
import { createHash } from "node:crypto";
import { fromJson, type DescEnum, type JsonValue } from "@bufbuild/protobuf";
import {
  LogLevelSchema,
  RunnerPhase,
  RunnerPhaseSchema,
  RunnerReleaseChannelSchema,
  RunnerSchema,
  RunnerVariantSchema,
  GatewayInfoSchema,
  type CreateRunnerRequest,
  type MetricsConfiguration,
  type Runner,
  type UpdateRunnerRequest,
  type UpdateWindow,
} from "../../gen/gitpod/v1/runner_pb.js";
import { RunnerKind, RunnerKindSchema, RunnerProvider, RunnerProviderSchema } from "../../gen/gitpod/v1/runner_configuration_pb.js";
import { Principal } from "../../gen/gitpod/v1/identity_pb.js";
import { invalidArgument } from "./errors.js";
import { createMessage } from "../protobuf/create-message.js";
import type { NewRunner, RunnerRow, RunnerSpecColumns, RunnerSpecPatch } from "../store/runner-store.js";

/** The kind every provider implies (CreateRunner derives `kind` from `provider`). */
export const kindOfProvider: Readonly<Record<number, RunnerKind>> = {
  [RunnerProvider.AWS_EC2]: RunnerKind.REMOTE,
  [RunnerProvider.GCP]: RunnerKind.REMOTE,
  [RunnerProvider.MANAGED]: RunnerKind.REMOTE,
  [RunnerProvider.LINUX_HOST]: RunnerKind.LOCAL,
  [RunnerProvider.DESKTOP_MAC]: RunnerKind.LOCAL,
  [RunnerProvider.DEV_AGENT]: RunnerKind.LOCAL,
};

/** Desired phases a caller may ask for; UNSPECIFIED on create means ACTIVE. */
const selectableDesiredPhases = new Set([RunnerPhase.ACTIVE, RunnerPhase.INACTIVE]);

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;


/**
 * The id of a class a runner offers at Signup: its own id when that is a UUID, else a UUID
 * derived from (runner, id) (or the display name when it sent none), so a Signup repeated after a
 * restart updates the same classes. Migration 0008 derives ids of earlier Signups the same way.
 */
export function environmentClassId(runnerId: string, offeredId: string, displayName: string): string {
  if (UUID.test(offeredId)) return offeredId.toLowerCase();
  const hex = createHash("md5").update(`${runnerId}:${offeredId || `display:${displayName}`}`).digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export const EXCHANGE_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;
/** The heartbeat interval runners keep (the development runner's default); the liveness window is a multiple of it. */
export const HEARTBEAT_INTERVAL_MS = 30_000;

function requireDefined(schema: DescEnum, value: number, field: string): void {
  if (schema.value[value] === undefined) {
    throw invalidArgument(field, `value must be one of the defined enum values, got ${value}`, "enum.defined_only");
  }
}

function enumName(schema: DescEnum, value: number): string {
  return schema.value[value]?.name ?? String(value);
}

/** Normalised window, null for "no window", undefined when the message was absent. */
function updateWindowOf(window: UpdateWindow | undefined, field: string): { start: number; end: number } | null | undefined {
  if (window === undefined) return undefined;
  const { startHour, endHour } = window;
  if (startHour === undefined && endHour === undefined) return null;
  if (startHour === undefined) {
    throw invalidArgument(`${field}.start_hour`, "is required when end_hour is set", "update_window.start_hour_required");
  }
  for (const [name, hour] of [["start_hour", startHour], ["end_hour", endHour]] as const) {
    if (hour !== undefined && hour > 23) {
      throw invalidArgument(`${field}.${name}`, `must be an hour of the day (0..23), got ${hour}`, "update_window.hour_range");
    }
  }
  const end = endHour ?? (startHour + 2) % 24;
  // Overnight windows (e.g. 22 -> 4) are fine; the window must still span at least two hours.
  if ((end - startHour + 24) % 24 < 2) {
    throw invalidArgument(field, "must be at least 2 hours long (overnight windows such as 22..4 are allowed)", "update_window.min_length");
  }
  return { start: startHour, end };
}

function requireHttpUrl(url: string, field: string): void {
  if (url === "") return;
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:") || parsed.host === "") {
    throw invalidArgument(field, "must be an absolute http:// or https:// URL", "metrics.url_http");
  }
}

/** Validates a CreateRunner request beyond its field annotations and returns the row to store. */
export function newRunnerFrom(
  request: CreateRunnerRequest,
  ids: { runnerId: string; organizationId: string; creatorId: string },
  now: Date,
): NewRunner {
  requireDefined(RunnerKindSchema, request.kind, "kind");
  requireDefined(RunnerProviderSchema, request.provider, "provider");
  if (request.kind !== RunnerKind.UNSPECIFIED && request.provider !== RunnerProvider.UNSPECIFIED) {
    throw invalidArgument("kind", "must not be set together with provider; kind is derived from provider", "runner.kind_provider_exclusive");
  }
  if (request.kind === RunnerKind.UNSPECIFIED && request.provider === RunnerProvider.UNSPECIFIED) {
    throw invalidArgument("provider", "is required (or, deprecated, kind)", "runner.provider_required");
  }
  if (request.kind === RunnerKind.LOCAL_CONFIGURATION) {
    throw invalidArgument("kind", "RUNNER_KIND_LOCAL_CONFIGURATION runners are created by the system, one per organization", "runner.kind_not_creatable");
  }
  const kind = request.provider !== RunnerProvider.UNSPECIFIED ? kindOfProvider[request.provider]! : request.kind;

  if (request.provider === RunnerProvider.MANAGED) {
    if (request.runnerManagerId === "") {
      throw invalidArgument("runner_manager_id", "is required when provider is RUNNER_PROVIDER_MANAGED", "runner.manager_id_required");
    }
  } else if (request.runnerManagerId !== "") {
    throw invalidArgument("runner_manager_id", "must be empty unless provider is RUNNER_PROVIDER_MANAGED", "runner.manager_id_unexpected");
  }
  if (request.runnerManagerId !== "" && !UUID.test(request.runnerManagerId)) {
    throw invalidArgument("runner_manager_id", "must be a UUID", "string.uuid");
  }

  const spec = request.spec;
  requireDefined(RunnerPhaseSchema, spec?.desiredPhase ?? 0, "spec.desired_phase");
  const desiredPhase = spec?.desiredPhase || RunnerPhase.ACTIVE;
  if (!selectableDesiredPhases.has(desiredPhase)) {
    throw invalidArgument(
      "spec.desired_phase",
      `must be RUNNER_PHASE_ACTIVE or RUNNER_PHASE_INACTIVE (or unset), got ${enumName(RunnerPhaseSchema, desiredPhase)}`,
      "runner.desired_phase_selectable",
    );
  }
  requireDefined(RunnerVariantSchema, spec?.variant ?? 0, "spec.variant");
  const configuration = spec?.configuration;
  requireDefined(RunnerReleaseChannelSchema, configuration?.releaseChannel ?? 0, "spec.configuration.release_channel");
  requireDefined(LogLevelSchema, configuration?.logLevel ?? 0, "spec.configuration.log_level");
  const window = updateWindowOf(configuration?.updateWindow, "spec.configuration.update_window");
  const metrics: Partial<MetricsConfiguration> = configuration?.metrics ?? {};
  requireHttpUrl(metrics.url ?? "", "spec.configuration.metrics.url");

  return {
    id: ids.runnerId,
    organizationId: ids.organizationId,
    creatorId: ids.creatorId,
    creatorPrincipal: Principal.USER,
    name: request.name,
    kind,
    provider: request.provider,
    runnerManagerId: request.runnerManagerId || null,
    createdAt: now,
    desiredPhase,
    variant: spec?.variant ?? 0,
    region: configuration?.region ?? "",
    releaseChannel: configuration?.releaseChannel ?? 0,
    autoUpdate: configuration?.autoUpdate ?? false,
    logLevel: configuration?.logLevel ?? 0,
    devcontainerImageCacheEnabled: configuration?.devcontainerImageCacheEnabled ?? false,
    continuousProfiling: configuration?.continuousProfiling ?? false,
    updateWindowStart: window?.start ?? null,
    updateWindowEnd: window?.end ?? null,
    metricsEnabled: metrics.enabled ?? false,
    metricsUrl: metrics.url ?? "",
    metricsUsername: metrics.username ?? "",
    metricsPassword: metrics.password ?? "",
    metricsManagedEnabled: metrics.managedMetricsEnabled ?? false,
    metricsIncludeVerbose: metrics.includeVerboseMetrics ?? false,
  };
}

/** Validates an UpdateRunner request and turns its present fields into a patch. */
export function specPatchFrom(request: UpdateRunnerRequest): RunnerSpecPatch {
  const patch: RunnerSpecPatch = {};
  if (request.name !== undefined) patch.name = request.name;
  const spec = request.spec;
  if (spec?.desiredPhase !== undefined) {
    requireDefined(RunnerPhaseSchema, spec.desiredPhase, "spec.desired_phase");
    if (!selectableDesiredPhases.has(spec.desiredPhase)) {
      throw invalidArgument(
        "spec.desired_phase",
        `must be RUNNER_PHASE_ACTIVE or RUNNER_PHASE_INACTIVE, got ${enumName(RunnerPhaseSchema, spec.desiredPhase)}`,
        "runner.desired_phase_selectable",
      );
    }
    patch.desiredPhase = spec.desiredPhase;
  }
  const configuration = spec?.configuration;
  if (configuration) {
    if (configuration.releaseChannel !== undefined) {
      requireDefined(RunnerReleaseChannelSchema, configuration.releaseChannel, "spec.configuration.release_channel");
      patch.releaseChannel = configuration.releaseChannel;
    }
    if (configuration.logLevel !== undefined) {
      requireDefined(LogLevelSchema, configuration.logLevel, "spec.configuration.log_level");
      patch.logLevel = configuration.logLevel;
    }
    patch.autoUpdate = configuration.autoUpdate;
    patch.devcontainerImageCacheEnabled = configuration.devcontainerImageCacheEnabled;
    patch.continuousProfiling = configuration.continuousProfiling;
    patch.honeycombApiKey = configuration.honeycombApiKey;
    patch.updateWindow = updateWindowOf(configuration.updateWindow, "spec.configuration.update_window");
    const metrics = configuration.metrics;
    if (metrics) {
      if (metrics.url !== undefined) requireHttpUrl(metrics.url, "spec.configuration.metrics.url");
      patch.metricsEnabled = metrics.enabled;
      patch.metricsUrl = metrics.url;
      patch.metricsUsername = metrics.username;
      patch.metricsPassword = metrics.password;
      patch.metricsManagedEnabled = metrics.managedMetricsEnabled;
      patch.metricsIncludeVerbose = metrics.includeVerboseMetrics;
    }
  }
  return patch;
}

export interface LivenessPolicy {
  /** A signed-up runner without a heartbeat for this long is INACTIVE. */
  windowMs: number;
}

/** The observed phase is computed from stored timestamps at read time: no sweeper job needed. */
export function observedStatus(row: RunnerRow, now: Date, liveness: LivenessPolicy): { phase: RunnerPhase; message: string; updatedAt: Date } {
  if (row.kind === RunnerKind.LOCAL_CONFIGURATION) {
    // Not a process: its phase is the switch admins set for the organization's local runners.
    return { phase: row.desiredPhase, message: "", updatedAt: row.updatedAt };
  }
  if (!row.signedUpAt) return { phase: RunnerPhase.CREATED, message: "", updatedAt: row.createdAt };
  const lastActive = row.lastActiveAt ?? row.signedUpAt;
  const lastReport = row.statusReportedAt && row.statusReportedAt > lastActive ? row.statusReportedAt : lastActive;
  const expiresAt = lastActive.getTime() + liveness.windowMs;
  if (now.getTime() >= expiresAt) {
    return {
      phase: RunnerPhase.INACTIVE,
      message: `no heartbeat since ${lastActive.toISOString()}`,
      updatedAt: new Date(Math.max(expiresAt, lastReport.getTime())),
    };
  }
  if (row.degradationMessage !== "") return { phase: RunnerPhase.DEGRADED, message: row.degradationMessage, updatedAt: lastReport };
  return { phase: RunnerPhase.ACTIVE, message: "", updatedAt: lastReport };
}

function specOf(row: RunnerSpecColumns) {
  return {
    desiredPhase: row.desiredPhase,
    variant: row.variant,
    configuration: {
      region: row.region,
      releaseChannel: row.releaseChannel,
      autoUpdate: row.autoUpdate,
      logLevel: row.logLevel,
      devcontainerImageCacheEnabled: row.devcontainerImageCacheEnabled,
      continuousProfiling: row.continuousProfiling,
      updateWindow:
        row.updateWindowStart === null ? undefined : { startHour: row.updateWindowStart, endHour: row.updateWindowEnd ?? undefined },
      // The metrics password is write-only: it is stored for the runner, never echoed to users.
      metrics: {
        enabled: row.metricsEnabled,
        url: row.metricsUrl,
        username: row.metricsUsername,
        managedMetricsEnabled: row.metricsManagedEnabled,
        includeVerboseMetrics: row.metricsIncludeVerbose,
      },
    },
  };
}

export function runnerMessage(row: RunnerRow, now: Date, liveness: LivenessPolicy): Runner {
  const status = observedStatus(row, now, liveness);
  // Built for every runner of every read (pages of 25): compiled create (src/protobuf/create-message.ts).
  return createMessage(RunnerSchema, {
    runnerId: row.id,
    createdAt: timestampOf(row.createdAt),
    updatedAt: timestampOf(row.updatedAt),
    name: row.name,
    spec: specOf(row),
    status: {
      updatedAt: timestampOf(status.updatedAt),
      version: row.statusVersion,
      systemDetails: row.statusSystemDetails,
      phase: status.phase,
      logUrl: row.statusLogUrl,
      message: status.message,
      region: row.statusRegion,
      additionalInfo: row.additionalInfo,
      capabilities: row.capabilities,
      gatewayInfo: row.gatewayInfo == null ? undefined : fromJson(GatewayInfoSchema, row.gatewayInfo as JsonValue),
      llmUrl: row.statusLlmUrl,
      publicKey: row.publicKey ?? new Uint8Array(0),
      supportBundleUrl: row.statusSupportBundleUrl,
    },
    creator: row.creatorId ? { id: row.creatorId, principal: row.creatorPrincipal } : undefined,
    kind: row.kind,
    provider: row.provider,
    runnerManagerId: row.runnerManagerId ?? "",
  });
}

/** A Timestamp init of a date (as timestampFromDate, without building the message here). */
function timestampOf(date: Date): { seconds: bigint; nanos: number } {
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1_000_000 };
}

/** The row a freshly created runner would read back as, without a round trip. */
export function rowOfNewRunner(runner: NewRunner): RunnerRow {
  // Object.assign, not a spread: on Node 20, `{ ...runner, <16 more properties> }` takes a slow
  // path in V8 that cost about 45 µs per CreateRunner (bench/README.md).
  return Object.assign({}, runner, {
    updatedAt: runner.createdAt,
    publicKey: null,
    signedUpAt: null,
    lastActiveAt: null,
    statusReportedAt: null,
    statusVersion: "",
    statusSystemDetails: "",
    statusLogUrl: "",
    statusRegion: "",
    statusLlmUrl: "",
    statusSupportBundleUrl: "",
    degradationMessage: "",
    additionalInfo: [],
    capabilities: [],
    gatewayInfo: null,
    honeycombApiKey: "",
    metricsPasswordSealed: runner.metricsPasswordSealed ?? null,
    honeycombApiKeySealed: null,
  });
}

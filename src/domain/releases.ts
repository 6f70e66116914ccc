// GetLatestVersion from the release manifest the operator provides (RUNNER_RELEASES_FILE): per
// release channel a version, an optional hotfix flag and download URLs, and per provider the
// artifacts (the manifest oneof of GetLatestVersionResponse, in its proto JSON form), each
// provider entry also able to override the version. docs/operations.md has the format and an
// example (docs/examples/runner-releases.json). Without a manifest, a runner's current version
// is its latest. The file is read again when it changes; a broken edit keeps the last good one.
import { readFileSync, statSync } from "node:fs";
import { fromJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { RunnerReleaseChannel } from "../../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider } from "../../gen/gitpod/v1/runner_configuration_pb.js";
import {
  GetLatestVersionResponse_AwsEc2ManifestSchema,
  GetLatestVersionResponse_GcpManifestSchema,
  GetLatestVersionResponse_LinuxHostManifestSchema,
  type GetLatestVersionResponseSchema,
} from "../../gen/gitpod/v1/runner_interaction_pb.js";

type Response = MessageInitShape<typeof GetLatestVersionResponseSchema>;
type Manifest = Response["manifest"];

/** What a channel (or one provider within it) says. */
interface Release {
  version: string;
  hotfix: boolean;
  supervisorDownloadUrl: string;
  gitpodCliDownloadUrl: string;
}

interface Channel extends Release {
  providers: Map<RunnerProvider, Release & { manifest: Manifest }>;
}

export type ReleaseManifest = Map<string, Channel>;

/** Manifest channel names: the enum's names without the prefix, in lower case. */
const CHANNELS: Record<string, RunnerReleaseChannel> = { stable: RunnerReleaseChannel.STABLE, latest: RunnerReleaseChannel.LATEST };
const PROVIDERS: Record<string, RunnerProvider> = {
  aws_ec2: RunnerProvider.AWS_EC2,
  linux_host: RunnerProvider.LINUX_HOST,
  desktop_mac: RunnerProvider.DESKTOP_MAC,
  managed: RunnerProvider.MANAGED,
  gcp: RunnerProvider.GCP,
  dev_agent: RunnerProvider.DEV_AGENT,
};
/** The manifest member each provider may carry (the others have none). */
const MANIFEST_KEYS: Partial<Record<RunnerProvider, "awsEc2" | "linuxHost" | "gcp">> = {
  [RunnerProvider.AWS_EC2]: "awsEc2",
  [RunnerProvider.LINUX_HOST]: "linuxHost",
  [RunnerProvider.GCP]: "gcp",
};
const MANIFEST_SCHEMAS = {
  awsEc2: GetLatestVersionResponse_AwsEc2ManifestSchema,
  linuxHost: GetLatestVersionResponse_LinuxHostManifestSchema,
  gcp: GetLatestVersionResponse_GcpManifestSchema,
} as const;

export class ReleaseManifestError extends Error {}

/** Parses and checks a manifest; errors name the JSON path at fault. */
export function parseReleaseManifest(text: string): ReleaseManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ReleaseManifestError(`not JSON: ${(err as Error).message}`);
  }
  const root = object(json, "$");
  only(root, "$", ["channels"]);
  const channels = object(root.channels, "$.channels");
  const manifest: ReleaseManifest = new Map();
  for (const [name, value] of Object.entries(channels)) {
    const path = `$.channels.${name}`;
    if (!(name in CHANNELS)) throw new ReleaseManifestError(`${path}: unknown release channel (use ${Object.keys(CHANNELS).join(" or ")})`);
    const entry = object(value, path);
    only(entry, path, ["version", "hotfix", "supervisorDownloadUrl", "gitpodCliDownloadUrl", "providers"]);
    const release = releaseOf(entry, path, undefined);
    const providers = new Map<RunnerProvider, Release & { manifest: Manifest }>();
    for (const [providerName, providerValue] of Object.entries(object(entry.providers ?? {}, `${path}.providers`))) {
      const providerPath = `${path}.providers.${providerName}`;
      const provider = PROVIDERS[providerName];
      if (provider === undefined) throw new ReleaseManifestError(`${providerPath}: unknown provider (use ${Object.keys(PROVIDERS).join(", ")})`);
      const providerEntry = object(providerValue, providerPath);
      const key = MANIFEST_KEYS[provider];
      only(providerEntry, providerPath, ["version", "hotfix", "supervisorDownloadUrl", "gitpodCliDownloadUrl", ...(key ? [key] : [])]);
      providers.set(provider, { ...releaseOf(providerEntry, providerPath, release), manifest: key ? manifestOf(key, providerEntry[key], `${providerPath}.${key}`) : undefined });
    }
    manifest.set(name, { ...release, providers });
  }
  return manifest;
}

function releaseOf(entry: Record<string, unknown>, path: string, inherited: Release | undefined): Release {
  const text = (field: string, required: boolean): string => {
    const value = entry[field];
    if (value === undefined) {
      if (required) throw new ReleaseManifestError(`${path}.${field}: is required`);
      return "";
    }
    if (typeof value !== "string" || (required && value === "")) throw new ReleaseManifestError(`${path}.${field}: must be a non-empty string`);
    return value;
  };
  if (entry.hotfix !== undefined && typeof entry.hotfix !== "boolean") throw new ReleaseManifestError(`${path}.hotfix: must be true or false`);
  return {
    version: inherited && entry.version === undefined ? inherited.version : text("version", true),
    hotfix: (entry.hotfix as boolean | undefined) ?? inherited?.hotfix ?? false,
    supervisorDownloadUrl: text("supervisorDownloadUrl", false) || (inherited?.supervisorDownloadUrl ?? ""),
    gitpodCliDownloadUrl: text("gitpodCliDownloadUrl", false) || (inherited?.gitpodCliDownloadUrl ?? ""),
  };
}

function manifestOf(key: keyof typeof MANIFEST_SCHEMAS, value: unknown, path: string): Manifest {
  if (value === undefined) return undefined;
  const schema = MANIFEST_SCHEMAS[key];
  let message;
  try {
    message = fromJson(schema, value as JsonValue);
  } catch (err) {
    throw new ReleaseManifestError(`${path}: ${(err as Error).message}`);
  }
  // The Linux host manifest's URLs are all required (buf.validate `required` on each).
  if (key === "linuxHost") {
    for (const field of GetLatestVersionResponse_LinuxHostManifestSchema.fields) {
      if ((message as unknown as Record<string, string>)[field.localName] === "") throw new ReleaseManifestError(`${path}.${field.jsonName}: is required`);
    }
  }
  return { case: key, value: message } as Manifest;
}

function object(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ReleaseManifestError(`${path}: must be an object`);
  return value as Record<string, unknown>;
}

function only(entry: Record<string, unknown>, path: string, allowed: string[]): void {
  const unknown = Object.keys(entry).find((key) => !allowed.includes(key));
  if (unknown !== undefined) throw new ReleaseManifestError(`${path}.${unknown}: unknown field (allowed: ${allowed.join(", ")})`);
}

/** The manifest of a file, re-read when the file changes (the last good one if an edit is broken). */
export class ReleaseSource {
  private loaded: { mtimeMs: number; size: number; manifest: ReleaseManifest } | undefined;

  constructor(
    private readonly file: string | undefined,
    private readonly onReloadFailed: (message: string) => void = () => {},
  ) {
    if (file !== undefined) this.current(); // fails at start on a missing or broken file
  }

  current(): ReleaseManifest | undefined {
    if (this.file === undefined) return undefined;
    try {
      const { mtimeMs, size } = statSync(this.file);
      if (this.loaded && this.loaded.mtimeMs === mtimeMs && this.loaded.size === size) return this.loaded.manifest;
      this.loaded = { mtimeMs, size, manifest: parseReleaseManifest(readFileSync(this.file, "utf8")) };
    } catch (err) {
      if (!this.loaded) throw err;
      this.onReloadFailed(`RUNNER_RELEASES_FILE ${this.file}: ${(err as Error).message}; still serving the last good manifest`);
    }
    return this.loaded.manifest;
  }
}

/**
 * The answer for one runner: its release channel's entry (UNSPECIFIED means stable; a channel
 * missing from the manifest falls back to stable), overridden by the entry for its provider,
 * with the runner's own auto_update. No manifest, or no entry: its current version is the latest.
 */
export function latestVersionFor(
  manifest: ReleaseManifest | undefined,
  runner: { releaseChannel: number; provider: number; autoUpdate: boolean },
  currentVersion: string,
): Response {
  const channelName = runner.releaseChannel === RunnerReleaseChannel.LATEST ? "latest" : "stable";
  const channel = manifest?.get(channelName) ?? manifest?.get("stable");
  if (!channel) return { version: currentVersion, autoUpdate: runner.autoUpdate };
  const release = channel.providers.get(runner.provider as RunnerProvider) ?? { ...channel, manifest: undefined };
  const manifestMember = release.manifest;
  return {
    version: release.version,
    autoUpdate: runner.autoUpdate,
    hotfix: release.hotfix,
    supervisorDownloadUrl: release.supervisorDownloadUrl,
    gitpodCliDownloadUrl: release.gitpodCliDownloadUrl,
    // The legacy AWS-only image, for runners that read it.
    runnerImage: manifestMember?.case === "awsEc2" ? (manifestMember.value.runnerImage ?? "") : "",
    manifest: manifestMember,
  };
}

// Server configuration, read once from the environment and validated up front so a
// typo fails the start with a message instead of surfacing as odd behaviour later.
// docs/operations.md lists every variable.
import { accessSync, constants, readFileSync } from "node:fs";
import { SecretsKeyError, SecretsKeyring } from "./domain/secrets.js";
import { DEFAULT_QUERY_TIMEOUT_MS } from "./store/db/database.js";

export interface Config {
  port: number;
  host: string;
  /** PostgreSQL connection string; when absent the embedded database in dataDir is used. */
  databaseUrl: string | undefined;
  dataDir: string;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** Largest accepted request message, in bytes (answered `resource_exhausted` above it). */
  maxRequestBytes: number;
  /** Upper bound for client deadlines (Connect-Timeout-Ms / grpc-timeout); a call that sends none has none. */
  maxTimeoutMs: number;
  /** How long in-flight requests may run after SIGTERM before they are cancelled. */
  shutdownTimeoutMs: number;
  /** A runner whose last heartbeat is older than this is reported INACTIVE. */
  livenessWindowMs: number;
  /** How long a verified credential is remembered (revocations evict it at once regardless). */
  credentialCacheTtlMs: number;
  /** Most credentials remembered; 0 turns the cache off. */
  credentialCacheSize: number;
  /** Server processes (node:cluster) sharing the port; 1 = no cluster. Needs DATABASE_URL when > 1. */
  workers: number;
  /** Size of the PostgreSQL connection pool (ignored for the embedded database). */
  databasePoolSize: number;
  /** Longest a PostgreSQL statement may take, client- and server-side, before the call fails `unavailable`; 0 = no limit. */
  databaseQueryTimeoutMs: number;
  /** Certificate chain and private key (PEM) for TLS with ALPN h2 + http/1.1; undefined = cleartext (HTTP/1.1 + h2c). */
  tls: { certFile: string; keyFile: string } | undefined;
  /** Browser origins allowed by CORS ("*" = any); empty = CORS off. */
  corsAllowedOrigins: string[];
  /** Most RPCs handled at once; more are refused with `unavailable`. 0 = no limit. */
  maxInFlight: number;
  /** Serve plain unary Connect and gRPC calls on the short path (src/rpc/unary-fast-path.ts); off = all through Connect's handler. */
  unaryFastPath: boolean;
  // --- reliability (issue 5): slow-loris guards and brute-force limits ---
  /** Time to receive a request's headers, and to send the first bytes after connecting. */
  headersTimeoutMs: number;
  /** Time to receive a whole HTTP/1.1 request, body included. */
  requestTimeoutMs: number;
  /** Idle keep-alive connection / HTTP/2 session lifetime. */
  idleTimeoutMs: number;
  /** Failed authentications per client address and window before `resource_exhausted`; 0 = off (src/ops/rate-limit.ts). */
  authFailureLimit: number;
  authFailureWindowMs: number;
  // --- end reliability ---
  // --- OIDC issuer and server secrets key (issue 17) ---
  /** PUBLIC_URL without a trailing slash: the OIDC issuer; undefined = the server issues no tokens. */
  publicUrl: string | undefined;
  /** The server secrets key (SECRETS_KEY or SECRETS_KEY_FILE); undefined = not configured (see src/bootstrap.ts for the embedded default). */
  secretsKey: { origin: string; keyring: SecretsKeyring } | undefined;
  // --- end OIDC ---
  // --- runner channel (issue 13) ---
  /** How long a delegated RPC waits for the runner's answer when its caller sent no deadline. */
  runnerCallTimeoutMs: number;
  /** A WatchRequests stream quiet for this long gets a CallPing (keeps proxies from closing it). */
  runnerKeepaliveMs: number;
  /** Release manifest for GetLatestVersion (JSON; src/domain/releases.ts); undefined = a runner's current version is the latest. */
  runnerReleasesFile: string | undefined;
  /** Prometheus remote-write endpoint runner metrics are forwarded to; undefined = ReportRunnerMetrics is refused. */
  metricsRemoteWriteUrl: string | undefined;
  // --- end runner channel ---
  // --- events and audit log (issue 16) ---
  /** Audit log entries older than this many days are deleted by the sweeper. */
  auditRetentionDays: number;
  /** Record the client address in audit log entries (AUDIT_CLIENT_ADDRESS=true). */
  auditClientAddress: boolean;
  /** An idle WatchEvents stream gets an empty WatchEventsResponse after this long. */
  eventsKeepaliveMs: number;
  /** How often the elected sweeper looks for silent runners; its lease lasts three times as long. */
  sweepIntervalMs: number;
  // --- end events and audit log ---
}

export class ConfigError extends Error {}

function boolean(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (raw === "true" || raw === "1") return true;
  if (raw === "false" || raw === "0") return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name} must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${value}`);
  return value;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const logLevel = env.LOG_LEVEL || "info";
  if (!(logLevels as readonly string[]).includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${logLevels.join(", ")}, got "${logLevel}"`);
  }
  const databaseUrl = env.DATABASE_URL || undefined;
  if (databaseUrl !== undefined) {
    let url: URL;
    try {
      url = new URL(databaseUrl);
    } catch {
      throw new ConfigError("DATABASE_URL must be a URL such as postgres://user@host:5432/db");
    }
    if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
      throw new ConfigError(`DATABASE_URL must use postgres:// or postgresql://, got "${url.protocol}"`);
    }
  }
  return {
    port: integer(env, "PORT", 8080, 0, 65535),
    // Loopback unless told otherwise: a laptop running the quick start does not serve its LAN (the Dockerfile sets 0.0.0.0).
    host: env.HOST || "127.0.0.1",
    databaseUrl,
    dataDir: env.DATA_DIR || "./data",
    logLevel: logLevel as Config["logLevel"],
    maxRequestBytes: integer(env, "MAX_REQUEST_BYTES", 4 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    maxTimeoutMs: integer(env, "MAX_TIMEOUT_MS", 30_000, 100, 600_000),
    shutdownTimeoutMs: integer(env, "SHUTDOWN_TIMEOUT_MS", 10_000, 0, 600_000),
    livenessWindowMs: integer(env, "RUNNER_LIVENESS_WINDOW_SECONDS", 90, 1, 86_400) * 1000,
    databasePoolSize: integer(env, "DATABASE_POOL_SIZE", 16, 1, 1000),
    databaseQueryTimeoutMs: integer(env, "DATABASE_QUERY_TIMEOUT_MS", DEFAULT_QUERY_TIMEOUT_MS, 0, 600_000),
    workers: workersOf(env, databaseUrl),
    credentialCacheTtlMs: integer(env, "CREDENTIAL_CACHE_TTL_SECONDS", 600, 0, 86_400) * 1000,
    credentialCacheSize: integer(env, "CREDENTIAL_CACHE_SIZE", 100_000, 0, 10_000_000),
    tls: tlsFiles(env),
    corsAllowedOrigins: origins(env),
    maxInFlight: integer(env, "MAX_IN_FLIGHT", 1024, 0, 1_000_000),
    unaryFastPath: boolean(env, "UNARY_FAST_PATH", true),
    ...reliability(env),
    ...issuer(env, databaseUrl),
    ...runnerChannel(env),
    ...eventsAndAudit(env),
  };
}

// --- OIDC issuer and server secrets key (issue 17) ---
function issuer(env: NodeJS.ProcessEnv, databaseUrl: string | undefined): Pick<Config, "publicUrl" | "secretsKey"> {
  const publicUrl = publicUrlOf(env.PUBLIC_URL || undefined);
  const secretsKey = secretsKeyOf(env);
  if (publicUrl !== undefined && databaseUrl !== undefined && secretsKey === undefined) {
    throw new ConfigError(
      "PUBLIC_URL makes the server an OIDC issuer, whose signing keys are encrypted with the server secrets key: " +
        "set SECRETS_KEY_FILE (or SECRETS_KEY) to the same key on every replica (generate one with: openssl rand -base64 32)",
    );
  }
  return { publicUrl, secretsKey };
}

function publicUrlOf(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    // reported below
  }
  if (!url || (url.protocol !== "https:" && url.protocol !== "http:") || url.username || url.password || url.search || url.hash || /[?#]/.test(raw)) {
    throw new ConfigError(`PUBLIC_URL must be the absolute https:// URL clients reach the server at, without query or fragment (e.g. https://rcp.example.com), got "${raw}"`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

function secretsKeyOf(env: NodeJS.ProcessEnv): Config["secretsKey"] {
  const value = env.SECRETS_KEY || undefined;
  const file = env.SECRETS_KEY_FILE || undefined;
  if (value !== undefined && file !== undefined) throw new ConfigError("set SECRETS_KEY or SECRETS_KEY_FILE, not both");
  let text: string;
  let origin: string;
  if (value !== undefined) {
    [text, origin] = [value.replace(/[,;]/g, "\n"), "SECRETS_KEY"];
  } else if (file !== undefined) {
    origin = `SECRETS_KEY_FILE (${file})`;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new ConfigError(`SECRETS_KEY_FILE is not a readable file: ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  } else {
    return undefined;
  }
  try {
    return { origin, keyring: SecretsKeyring.parse(text, origin) };
  } catch (err) {
    if (err instanceof SecretsKeyError) throw new ConfigError(err.message);
    throw err;
  }
}
// --- end OIDC ---

// --- events and audit log (issue 16) ---
function eventsAndAudit(env: NodeJS.ProcessEnv) {
  const address = (env.AUDIT_CLIENT_ADDRESS ?? "false").toLowerCase();
  if (address !== "true" && address !== "false") throw new ConfigError(`AUDIT_CLIENT_ADDRESS must be true or false, got "${env.AUDIT_CLIENT_ADDRESS}"`);
  return {
    auditRetentionDays: integer(env, "AUDIT_RETENTION_DAYS", 90, 1, 36_500),
    auditClientAddress: address === "true",
    eventsKeepaliveMs: integer(env, "EVENTS_KEEPALIVE_SECONDS", 30, 1, 3_600) * 1000,
    sweepIntervalMs: integer(env, "EVENTS_SWEEP_INTERVAL_MS", 1_000, 50, 60_000),
  };
}
// --- end events and audit log ---

// --- runner channel (issue 13) ---
function runnerChannel(env: NodeJS.ProcessEnv) {
  return {
    runnerCallTimeoutMs: integer(env, "RUNNER_CALL_TIMEOUT_SECONDS", 15, 1, 600) * 1000,
    runnerKeepaliveMs: integer(env, "RUNNER_KEEPALIVE_SECONDS", 20, 1, 300) * 1000,
    runnerReleasesFile: releasesFile(env),
    metricsRemoteWriteUrl: remoteWriteUrl(env),
  };
}

function releasesFile(env: NodeJS.ProcessEnv): string | undefined {
  const file = env.RUNNER_RELEASES_FILE || undefined;
  if (file === undefined) return undefined;
  // Its content is checked when the server starts (src/server.ts), which loads the protobuf code
  // it needs; the CLI reads this configuration too and should start fast.
  try {
    accessSync(file, constants.R_OK);
  } catch {
    throw new ConfigError(`RUNNER_RELEASES_FILE is not a readable file: ${file}`);
  }
  return file;
}

function remoteWriteUrl(env: NodeJS.ProcessEnv): string | undefined {
  const raw = env.METRICS_REMOTE_WRITE_URL || undefined;
  if (raw === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new ConfigError("METRICS_REMOTE_WRITE_URL must be an http:// or https:// URL such as http://prometheus:9090/api/v1/write");
  }
  return raw;
}
// --- end runner channel ---

// --- reliability (issue 5) ---
function reliability(env: NodeJS.ProcessEnv) {
  const headersTimeoutMs = integer(env, "HEADERS_TIMEOUT_MS", 10_000, 100, 600_000);
  const requestTimeoutMs = integer(env, "REQUEST_TIMEOUT_MS", 60_000, 100, 3_600_000);
  if (headersTimeoutMs > requestTimeoutMs) {
    throw new ConfigError(`HEADERS_TIMEOUT_MS (${headersTimeoutMs}) must not be larger than REQUEST_TIMEOUT_MS (${requestTimeoutMs})`);
  }
  return {
    headersTimeoutMs,
    requestTimeoutMs,
    idleTimeoutMs: integer(env, "IDLE_TIMEOUT_MS", 65_000, 100, 3_600_000),
    authFailureLimit: integer(env, "AUTH_FAILURE_LIMIT", 20, 0, 1_000_000),
    authFailureWindowMs: integer(env, "AUTH_FAILURE_WINDOW_SECONDS", 60, 1, 86_400) * 1000,
  };
}
// --- end reliability ---

function workersOf(env: NodeJS.ProcessEnv, databaseUrl: string | undefined): number {
  const workers = integer(env, "WORKERS", 1, 1, 64);
  if (workers > 1 && !databaseUrl) {
    throw new ConfigError("WORKERS > 1 needs DATABASE_URL: the embedded database can only be opened by one process");
  }
  return workers;
}

function tlsFiles(env: NodeJS.ProcessEnv): Config["tls"] {
  const certFile = env.TLS_CERT_FILE || undefined;
  const keyFile = env.TLS_KEY_FILE || undefined;
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) {
    throw new ConfigError("TLS_CERT_FILE and TLS_KEY_FILE must be set together (or neither, for cleartext)");
  }
  for (const [name, file] of [["TLS_CERT_FILE", certFile], ["TLS_KEY_FILE", keyFile]] as const) {
    try {
      accessSync(file, constants.R_OK);
    } catch {
      throw new ConfigError(`${name} is not a readable file: ${file}`);
    }
  }
  return { certFile, keyFile };
}

function origins(env: NodeJS.ProcessEnv): string[] {
  const raw = env.CORS_ALLOWED_ORIGINS ?? "";
  const list = raw.split(",").map((origin) => origin.trim()).filter(Boolean);
  for (const origin of list) {
    if (origin === "*") continue;
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch {
      // reported below
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:") || url.origin !== origin) {
      throw new ConfigError(`CORS_ALLOWED_ORIGINS entries must be origins such as https://app.example.com (scheme, host, optional port; no path or trailing slash), or *; got "${origin}"`);
    }
  }
  return list;
}

// Server configuration, read once from the environment and validated up front so a
// typo fails the start with a message instead of surfacing as odd behaviour later.

export interface Config {
  port: number;
  host: string;
  /** PostgreSQL connection string; when absent the embedded database in dataDir is used. */
  databaseUrl: string | undefined;
  dataDir: string;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** Largest accepted request message, in bytes (answered `resource_exhausted` above it). */
  maxRequestBytes: number;
  /** Upper bound for client deadlines (Connect-Timeout-Ms / grpc-timeout), and default when none is sent. */
  maxTimeoutMs: number;
  /** How long in-flight requests may run after SIGTERM before they are cancelled. */
  shutdownTimeoutMs: number;
  /** A runner whose last heartbeat is older than this is reported INACTIVE. */
  livenessWindowMs: number;
  /** Size of the PostgreSQL connection pool (ignored for the embedded database). */
  databasePoolSize: number;
}

export class ConfigError extends Error {}

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
    host: env.HOST || "0.0.0.0",
    databaseUrl,
    dataDir: env.DATA_DIR || "./data",
    logLevel: logLevel as Config["logLevel"],
    maxRequestBytes: integer(env, "MAX_REQUEST_BYTES", 4 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    maxTimeoutMs: integer(env, "MAX_TIMEOUT_MS", 30_000, 100, 600_000),
    shutdownTimeoutMs: integer(env, "SHUTDOWN_TIMEOUT_MS", 10_000, 0, 600_000),
    livenessWindowMs: integer(env, "RUNNER_LIVENESS_WINDOW_SECONDS", 90, 1, 86_400) * 1000,
    databasePoolSize: integer(env, "DATABASE_POOL_SIZE", 16, 1, 1000),
  };
}

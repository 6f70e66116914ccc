// Entry point: configuration, database, migrations, then serve until SIGTERM/SIGINT.
import "./rpc/abort-reason.js";
import cluster from "node:cluster";
import { pino, type Logger } from "pino";
import { ConfigError, loadConfig } from "./config.js";
import { systemClock } from "./domain/clock.js";
import { openConfiguredDatabase, openDatabase } from "./store/db/database.js";
import { migrate } from "./store/db/migrate.js";
import { bootstrapEmptyDatabase, embeddedSecretsKeyring } from "./bootstrap.js";
import { SecretsKeyError } from "./domain/secrets.js";
import { build } from "./server.js";
import type { FastifyBaseLogger } from "fastify";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`configuration error: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  // Startup and supervisor lines are few: write them synchronously, in order.
  const log = pino({ level: config.logLevel }, pino.destination({ dest: 1, sync: true }));
  if (config.workers > 1 && cluster.isPrimary) return supervise(config.workers, config.databaseUrl!, log);
  const db = await openConfiguredDatabase(config, config.databasePoolSize);
  const applied = await migrate(db);
  if (applied.length > 0) log.info({ applied }, "migrations applied");
  if (db.kind === "embedded") {
    const keyFile = await bootstrapEmptyDatabase(db, config.dataDir, systemClock);
    if (keyFile) log.info({ file: keyFile }, "created organization 'default' with user admin@localhost; its API key is in this file");
  }

  // The server secrets key: configured, else (embedded database only) DATA_DIR/secrets-key.
  let secrets = config.secretsKey;
  if (!secrets && db.kind === "embedded") {
    try {
      const embedded = embeddedSecretsKeyring(config.dataDir);
      if (embedded.created) log.info({ file: embedded.path }, "created the server secrets key; back it up together with the database");
      secrets = embedded;
    } catch (err) {
      if (!(err instanceof SecretsKeyError)) throw err;
      console.error(`configuration error: ${err.message}`);
      process.exit(2);
    }
  }
  if (secrets) log.info({ secretsKey: secrets.keyring.currentKeyId, olderKeys: secrets.keyring.keyIds.length - 1, from: secrets.origin }, "server secrets key loaded");
  if (config.publicUrl?.startsWith("http:")) log.warn({ publicUrl: config.publicUrl }, "PUBLIC_URL is http://: cloud providers accept only https:// issuers");

  let app;
  try {
    app = await build({ config, db, secretsKeyring: secrets?.keyring });
  } catch (err) {
    // A configuration that is only checked while building (e.g. RUNNER_RELEASES_FILE's content).
    if (err instanceof ConfigError) {
      console.error(`configuration error: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      app.log.warn({ signal }, "second signal: exiting without draining");
      process.exit(1);
    }
    stopping = true;
    app.log.info({ signal }, "shutting down: draining in-flight requests");
    app.close().then(
      () => process.exit(0),
      (err) => {
        app.log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));

  await app.listen({ port: config.port, host: config.host });
  app.log.info(
    {
      database: db.kind,
      dataDir: db.kind === "embedded" ? config.dataDir : undefined,
      tls: config.tls !== undefined,
      corsAllowedOrigins: config.corsAllowedOrigins.length > 0 ? config.corsAllowedOrigins : undefined,
      maxInFlight: config.maxInFlight,
      issuer: config.publicUrl,
    },
    "ready",
  );
  (app.log as FastifyBaseLogger & { flush(): void }).flush(); // logs are buffered; whoever waits for "ready" should see it now
}

/**
 * WORKERS > 1: this process applies the migrations, then runs that many server processes
 * sharing the port (node:cluster), replaces any that die, and forwards SIGTERM/SIGINT.
 */
async function supervise(workers: number, databaseUrl: string, log: Logger): Promise<void> {
  const db = await openDatabase({ databaseUrl, dataDir: undefined, poolSize: 1 });
  const applied = await migrate(db);
  if (applied.length > 0) log.info({ applied }, "migrations applied");
  await db.close();
  let stopping = false;
  cluster.on("exit", (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    log.error({ pid: worker.process.pid, code, signal }, "worker died; starting a new one");
    cluster.fork();
  });
  for (let i = 0; i < workers; i++) cluster.fork();
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, workers }, "shutting down workers");
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((err) => {
  console.error("fatal:", err instanceof Error ? err.message : err);
  process.exit(1);
});

// Entry point: configuration, database, migrations, then serve until SIGTERM/SIGINT.
import "./rpc/abort-reason.js";
import cluster from "node:cluster";
import { pino, type Logger } from "pino";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import { ConfigError, loadConfig, type Config } from "./config.js";
import { systemClock } from "./domain/clock.js";
import { isConnectionError, openConfiguredDatabase, openDatabase, type Database } from "./store/db/database.js";
import { EmbeddedDatabaseInUse } from "./store/db/embedded-lock.js";
import { migrate } from "./store/db/migrate.js";
import { bootstrapEmptyDatabase, embeddedSecretsKeyring, INITIAL_API_KEY_FILE } from "./bootstrap.js";
import { IdentityStore } from "./store/identity-store.js";
import { SecretsKeyError, type SecretsKeyring } from "./domain/secrets.js";
import { parseCommand, reportFailure, runCommand } from "./cli-commands.js";
import { controlSocketPath, serveControlSocket, type ControlReply } from "./control-socket.js";
import { build } from "./server.js";
import type { FastifyBaseLogger } from "fastify";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
    checkTlsFiles(config); // before any database work: a broken key is found in a second, not after the migrations
  } catch (err) {
    if (err instanceof ConfigError) configurationError(err);
    throw err;
  }
  // Startup and supervisor lines are few: write them synchronously, in order.
  const log = pino({ level: config.logLevel }, pino.destination({ dest: 1, sync: true }));
  if (config.workers > 1 && cluster.isPrimary) return supervise(config.workers, config.databaseUrl!, log);
  let db;
  try {
    db = await openConfiguredDatabase(config, config.databasePoolSize);
  } catch (err) {
    if (!(err instanceof EmbeddedDatabaseInUse)) throw err;
    // A second server on the same DATA_DIR would serve writes the first one later overwrites.
    log.fatal({ ownerPid: err.pid, lockFile: err.lockFile, dataDir: config.dataDir }, err.message);
    process.exit(1);
  }
  const applied = await migrateWhenReachable(db, log);
  if (applied.length > 0) log.info({ applied }, "migrations applied");
  if (db.kind === "embedded") {
    const keyFile = await bootstrapEmptyDatabase(db, config.dataDir, systemClock);
    if (keyFile) log.info({ file: keyFile }, "created organization 'default' with user admin@localhost; its API key is in this file");
    else if (!existsSync(join(config.dataDir, INITIAL_API_KEY_FILE))) {
      log.info({ file: join(config.dataDir, INITIAL_API_KEY_FILE) }, `no initial API key file (it is written on the first start only): ${FIRST_KEY_HINT}`);
    }
  } else if (!(await new IdentityStore(db).hasOrganizations())) {
    log.warn(`the database has no organization and no API key yet: ${FIRST_KEY_HINT}`);
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
      configurationError(err);
    }
  }
  if (secrets) log.info({ secretsKey: secrets.keyring.currentKeyId, olderKeys: secrets.keyring.keyIds.length - 1, from: secrets.origin }, "server secrets key loaded");
  if (config.publicUrl?.startsWith("http:")) log.warn({ publicUrl: config.publicUrl }, "PUBLIC_URL is http://: cloud providers accept only https:// issuers");

  let app;
  try {
    app = await build({ config, db, secretsKeyring: secrets?.keyring });
  } catch (err) {
    // A configuration that is only checked while building (e.g. RUNNER_RELEASES_FILE's content).
    if (err instanceof ConfigError) configurationError(err);
    throw err;
  }
  if (db.kind === "embedded") {
    // The CLI's commands on this embedded database come through here (src/control-socket.ts).
    const path = controlSocketPath(config.dataDir);
    const keyring = secrets?.keyring;
    try {
      const stopServing = await serveControlSocket(path, async (argv) => {
        const reply = await runControlCommand(db, keyring, argv);
        log.info({ command: argv.filter((arg) => !arg.startsWith("-")).slice(0, 2).join(" "), exitCode: reply.code }, "cli command carried out");
        return reply;
      });
      app.addHook("preClose", stopServing);
      log.info({ socket: path }, "CLI commands on the embedded database are carried out by this server");
    } catch (err) {
      log.warn({ err, socket: path }, "cannot open the control socket: CLI commands on the embedded database refuse while this server runs");
    }
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
      () => {
        log.info({ signal }, "stopped");
        process.exit(0);
      },
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

const FIRST_KEY_HINT =
  "create an API key with `npm run --silent cli -- api-key create --org <slug> --user <email>` (in the container image: node dist/src/cli.js api-key create …)";

/** A startup error as a structured line on stderr (before the configured logger exists), then exit 2. */
function configurationError(err: Error): never {
  pino({ level: "info" }, pino.destination({ dest: 2, sync: true })).fatal(`configuration error: ${err.message}`);
  process.exit(2);
}

/** TLS_CERT_FILE and TLS_KEY_FILE hold a certificate and its key (they are read again when the server is built). */
function checkTlsFiles(config: Config): void {
  if (!config.tls) return;
  try {
    createSecureContext({ cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) });
  } catch (err) {
    const reason = (err as Error).message;
    const variable = /key|PRIVATE|bad decrypt|KEY_VALUES_MISMATCH/i.test(reason) && !/certificate/i.test(reason) ? "TLS_KEY_FILE" : "TLS_CERT_FILE";
    throw new ConfigError(
      `${variable} (${variable === "TLS_KEY_FILE" ? config.tls.keyFile : config.tls.certFile}): TLS_CERT_FILE and TLS_KEY_FILE must be a PEM certificate chain and its PEM private key (${reason})`,
    );
  }
}

/** How long a server waits for DATABASE_URL's PostgreSQL to accept connections at startup (it may start after us). */
const DATABASE_STARTUP_WAIT_MS = 60_000;

/** Migrations, retried with backoff while PostgreSQL is not reachable yet; then fatal, naming DATABASE_URL. */
async function migrateWhenReachable(db: Database, log: Logger): Promise<string[]> {
  const deadline = Date.now() + DATABASE_STARTUP_WAIT_MS;
  for (let delayMs = 250; ; delayMs = Math.min(delayMs * 2, 5_000)) {
    try {
      return await migrate(db);
    } catch (err) {
      if (db.kind !== "postgres" || !isConnectionError(err)) throw err;
      if (Date.now() + delayMs > deadline) {
        log.fatal({ variable: "DATABASE_URL", reason: (err as Error).message }, `cannot reach the database at DATABASE_URL after ${DATABASE_STARTUP_WAIT_MS / 1000} s: check that PostgreSQL runs and DATABASE_URL names it`);
        process.exit(1);
      }
      log.warn({ variable: "DATABASE_URL", reason: (err as Error).message, retryInMs: delayMs }, "the database at DATABASE_URL is not reachable yet; retrying");
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

/** One CLI command, sent over the control socket, run on this server's database. */
async function runControlCommand(db: Database, keyring: SecretsKeyring | undefined, argv: string[]): Promise<ControlReply> {
  const reply: ControlReply = { code: 0, stdout: [], stderr: [] };
  const io = { out: (line: string) => reply.stdout.push(line), err: (line: string) => reply.stderr.push(line) };
  try {
    const parsed = parseCommand(argv);
    if (parsed.kind === "help") io.out(parsed.text);
    else {
      reply.code = await runCommand(parsed, {
        ...io,
        db,
        clock: systemClock,
        secretsKeyring: () => {
          if (!keyring) throw new ConfigError("the server has no server secrets key");
          return keyring;
        },
      });
    }
  } catch (err) {
    reply.code = reportFailure(err, io);
  }
  return reply;
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
    // workerPid: every line already carries the supervisor's own pid.
    log.error({ workerPid: worker.process.pid, code, signal }, "worker died; starting a new one");
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
  pino({ level: "info" }, pino.destination({ dest: 2, sync: true })).fatal({ err }, `fatal: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});

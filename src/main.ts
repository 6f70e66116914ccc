// Entry point: configuration, database, migrations, then serve until SIGTERM/SIGINT.
import "./rpc/abort-reason.js";
import cluster from "node:cluster";
import { pino, type Logger } from "pino";
import { ConfigError, loadConfig } from "./config.js";
import { systemClock } from "./domain/clock.js";
import { openConfiguredDatabase, openDatabase, type Database } from "./store/db/database.js";
import { EmbeddedDatabaseInUse } from "./store/db/embedded-lock.js";
import { migrate } from "./store/db/migrate.js";
import { bootstrapEmptyDatabase, embeddedSecretsKeyring } from "./bootstrap.js";
import { SecretsKeyError, type SecretsKeyring } from "./domain/secrets.js";
import { parseCommand, reportFailure, runCommand } from "./cli-commands.js";
import { controlSocketPath, serveControlSocket, type ControlReply } from "./control-socket.js";
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
  let db;
  try {
    db = await openConfiguredDatabase(config, config.databasePoolSize);
  } catch (err) {
    if (!(err instanceof EmbeddedDatabaseInUse)) throw err;
    // A second server on the same DATA_DIR would serve writes the first one later overwrites.
    log.fatal({ ownerPid: err.pid, lockFile: err.lockFile, dataDir: config.dataDir }, err.message);
    process.exit(1);
  }
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

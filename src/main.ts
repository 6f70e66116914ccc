// Entry point: configuration, database, migrations, then serve until SIGTERM/SIGINT.
import { join } from "node:path";
import { pino } from "pino";
import { ConfigError, loadConfig } from "./config.js";
import { systemClock } from "./clock.js";
import { openDatabase } from "./db/database.js";
import { migrate } from "./db/migrate.js";
import { bootstrapEmptyDatabase } from "./bootstrap.js";
import { build } from "./server.js";

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
  const log = pino({ level: config.logLevel });
  const db = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.databaseUrl ? undefined : join(config.dataDir, "pgdata"),
    poolSize: config.databasePoolSize,
  });
  const applied = await migrate(db);
  if (applied.length > 0) log.info({ applied }, "migrations applied");
  if (db.kind === "embedded") {
    const keyFile = await bootstrapEmptyDatabase(db, config.dataDir, systemClock);
    if (keyFile) log.info({ file: keyFile }, "created organization 'default' with user admin@localhost; its API key is in this file");
  }

  const app = await build({ config, db });
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
  app.log.info({ database: db.kind, dataDir: db.kind === "embedded" ? config.dataDir : undefined }, "ready");
}

main().catch((err) => {
  console.error("fatal:", err instanceof Error ? err.message : err);
  process.exit(1);
});

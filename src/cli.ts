// Operator CLI: migrations and API keys. Works against DATABASE_URL (also while servers
// run) or the embedded database in DATA_DIR (stop the server first: PGlite is one process).
// Output meant for scripts goes to stdout (the new key is always the last line); messages
// go to stderr. Exit codes: 0 ok, 1 failure, 2 usage error, 3 not found.
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "./config.js";
import { systemClock } from "./clock.js";
import { openDatabase, type Database } from "./db/database.js";
import { migrate } from "./db/migrate.js";
import { AccountError, issueApiKey } from "./domain/accounts.js";
import { IdentityStore } from "./store/identity-store.js";

const HELP: Record<string, string> = {
  main: `usage: cli <command> [options]

commands:
  migrate                                   apply pending database migrations
  api-key create --org <slug> --user <email> [--description <text>]
                                            create an API key (org and user are created if absent);
                                            prints the key as the last line of stdout
  api-key list [--org <slug>]               list API keys (ids and metadata, never secrets)
  api-key revoke <id>                       revoke an API key at once

The database is DATABASE_URL when set, else the embedded database in DATA_DIR (default ./data).
Run any command with --help for its options.`,
  migrate: "usage: cli migrate\n\nApplies pending migrations from migrations/ (safe to run while other replicas start).",
  "api-key create": "usage: cli api-key create --org <slug> --user <email> [--description <text>]",
  "api-key list": "usage: cli api-key list [--org <slug>]\n\nTab-separated: id, organization, user, created, revoked, description.",
  "api-key revoke": "usage: cli api-key revoke <id>",
};

class UsageError extends Error {}

async function withDatabase<T>(fn: (db: Database) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const db = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.databaseUrl ? undefined : join(config.dataDir, "pgdata"),
    poolSize: 2,
  });
  try {
    await migrate(db);
    return await fn(db);
  } finally {
    await db.close();
  }
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      help: { type: "boolean", short: "h" },
      org: { type: "string" },
      user: { type: "string" },
      description: { type: "string" },
    },
  });
  const command = positionals[0] === "api-key" && positionals[1] ? `api-key ${positionals[1]}` : (positionals[0] ?? "");
  if (values.help || command === "" || command === "help") {
    console.log(HELP[command] ?? HELP.main);
    return 0;
  }
  switch (command) {
    case "migrate": {
      const applied = await withDatabase((db) => migrate(db));
      console.error(applied.length ? `applied: ${applied.join(", ")}` : "schema is up to date");
      return 0;
    }
    case "api-key create": {
      if (!values.org || !values.user) throw new UsageError("api-key create needs --org <slug> and --user <email>");
      const issued = await withDatabase((db) =>
        issueApiKey(new IdentityStore(db), systemClock, {
          organizationSlug: values.org!,
          userEmail: values.user!,
          description: values.description,
        }),
      );
      console.error(`created API key ${issued.id} for ${issued.user.email} in organization ${issued.organization.slug}`);
      console.log(issued.apiKey);
      return 0;
    }
    case "api-key list": {
      const keys = await withDatabase((db) => new IdentityStore(db).listApiKeys(values.org));
      for (const key of keys) {
        console.log(
          [key.id, key.organizationSlug, key.userEmail, key.createdAt.toISOString(), key.revokedAt?.toISOString() ?? "-", key.description].join("\t"),
        );
      }
      return 0;
    }
    case "api-key revoke": {
      const id = positionals[2];
      if (!id || !/^[0-9a-f-]{36}$/i.test(id)) throw new UsageError("api-key revoke needs the key id (a UUID, see api-key list)");
      const revoked = await withDatabase((db) => new IdentityStore(db).revokeApiKey(id, systemClock.now()));
      if (!revoked) {
        console.error(`no API key with id ${id}`);
        return 3;
      }
      console.error(`revoked API key ${id}`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${positionals.join(" ")}"`);
  }
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`${(err as Error).message}\n\n${HELP.main}`);
      process.exit(2);
    }
    if (err instanceof ConfigError || err instanceof AccountError) {
      console.error((err as Error).message);
      process.exit(2);
    }
    console.error(`failed: ${(err as Error).message}`);
    process.exit(1);
  },
);

// Operator CLI: migrations, users and their roles, API keys. Works against DATABASE_URL (also while servers
// run) or the embedded database in DATA_DIR (stop the server first: PGlite is one process).
// Output meant for scripts goes to stdout (the new key is always the last line); messages
// go to stderr. Exit codes: 0 ok, 1 failure, 2 usage error, 3 not found.
import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "./config.js";
import { systemClock } from "./domain/clock.js";
import { openConfiguredDatabase, type Database } from "./store/db/database.js";
import { migrate } from "./store/db/migrate.js";
import { AccountError, createUser, issueApiKey, listUsers, NoSuchUser, parseRole, roleName, setUserRole } from "./domain/accounts.js";
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
  user create --org <slug> --email <email> [--role admin|member]
                                            create a user (the organization is created if absent)
  user set-role --org <slug> --email <email> --role admin|member
                                            change a user's organization role, at once on every server
  user list [--org <slug>]                  list users with their roles and groups

The database is DATABASE_URL when set, else the embedded database in DATA_DIR (default ./data).
Run any command with --help (or: cli help <command>) for its options.

exit codes: 0 ok, 1 failure (e.g. database unreachable), 2 usage or configuration error, 3 not found`,
  migrate: `usage: cli migrate

Applies pending migrations from migrations/ and prints what it applied to stderr.
Safe while servers run: an advisory lock serializes replicas that migrate at once.`,
  "api-key": `usage: cli api-key <create|list|revoke> [options]

  create --org <slug> --user <email> [--description <text>]
  list [--org <slug>]
  revoke <id>

Run cli api-key <subcommand> --help for details.`,
  "api-key create": `usage: cli api-key create --org <slug> --user <email> [--description <text>]

Creates an API key for the user. The organization (slug: lowercase letters, digits, "-") and
the user are created when they do not exist. stdout's last line is the key; it is shown only
once and stored only as a hash. A message with the key's id goes to stderr.`,
  "api-key list": `usage: cli api-key list [--org <slug>]

One line per key, tab-separated: id, organization, user, created, revoked ("-" if not),
description. Never prints secrets.`,
  "api-key revoke": `usage: cli api-key revoke <id>

Revokes the key with this id (see api-key list) at once, also for running servers.
Exit code 3 when no key has this id.`,
  user: `usage: cli user <create|set-role|list> [options]

  create --org <slug> --email <email> [--role admin|member]
  set-role --org <slug> --email <email> --role admin|member
  list [--org <slug>]

Run cli user <subcommand> --help for details.`,
  "user create": `usage: cli user create --org <slug> --email <email> [--role admin|member]

Creates a user in the organization (created when it does not exist). Without --role, the first
user of an organization is its admin and every later one a member. An admin may do everything in
the organization; a member uses the runners available to them (README: "Who may do what").
Give the user an API key with: cli api-key create --org <slug> --user <email>.
Prints the user's id on stdout. Exit code 2 when the user already exists.`,
  "user set-role": `usage: cli user set-role --org <slug> --email <email> --role admin|member

Changes the user's organization role. Running servers apply it to the user's next call (their
cached credentials are dropped through PostgreSQL NOTIFY). The last admin of an organization
cannot be made a member (exit code 2). Exit code 3 when there is no such user.`,
  "user list": `usage: cli user list [--org <slug>]

One line per user, tab-separated: id, organization, email, role (admin or member), created,
groups (comma-separated names, "-" if none).`,
};

/** Options and positional arguments (after the command words) each command accepts. */
const ARGS: Record<string, { options: string[]; positionals: number }> = {
  migrate: { options: [], positionals: 0 },
  "api-key create": { options: ["org", "user", "description"], positionals: 0 },
  "api-key list": { options: ["org"], positionals: 0 },
  "api-key revoke": { options: [], positionals: 1 },
  "user create": { options: ["org", "email", "role"], positionals: 0 },
  "user set-role": { options: ["org", "email", "role"], positionals: 0 },
  "user list": { options: ["org"], positionals: 0 },
};

/** Commands with subcommands, and what to say when the subcommand is missing. */
const GROUPS: Record<string, string> = {
  "api-key": "api-key needs a subcommand: create, list or revoke",
  user: "user needs a subcommand: create, set-role or list",
};

class UsageError extends Error {
  constructor(
    message: string,
    /** The help to show after the message (default: the main help). */
    readonly help = HELP.main,
  ) {
    super(message);
  }
}

async function withDatabase<T>(fn: (db: Database) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const db = await openConfiguredDatabase(config, 2);
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
      email: { type: "string" },
      role: { type: "string" },
    },
  });
  // `cli help <command…>` is the same as `cli <command…> --help`.
  const words = positionals[0] === "help" ? positionals.slice(1) : positionals;
  const command = words[0] !== undefined && words[0] in GROUPS && words[1] ? `${words[0]} ${words[1]}` : (words[0] ?? "");
  if (values.help || positionals[0] === "help" || command === "") {
    const help = HELP[command === "" ? "main" : command];
    if (help === undefined) throw new UsageError(`unknown command "${words.join(" ")}"`);
    console.log(help);
    return 0;
  }
  if (command in GROUPS) throw new UsageError(GROUPS[command]!, HELP[command]);
  const accepted = ARGS[command];
  if (accepted === undefined) throw new UsageError(`unknown command "${positionals.join(" ")}"`);
  const extraOption = Object.keys(values).find((name) => !accepted.options.includes(name));
  if (extraOption) throw new UsageError(`${command} does not take --${extraOption}`, HELP[command]);
  const commandWords = command.split(" ").length;
  if (positionals.length - commandWords > accepted.positionals) {
    throw new UsageError(`unexpected argument "${positionals[commandWords + accepted.positionals]}"`, HELP[command]);
  }
  switch (command) {
    case "migrate": {
      const applied = await withDatabase((db) => migrate(db));
      console.error(applied.length ? `applied: ${applied.join(", ")}` : "schema is up to date");
      return 0;
    }
    case "api-key create": {
      if (!values.org || !values.user) throw new UsageError("api-key create needs --org <slug> and --user <email>", HELP["api-key create"]);
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
      if (!id || !/^[0-9a-f-]{36}$/i.test(id)) {
        throw new UsageError("api-key revoke needs the key id (a UUID, see api-key list)", HELP["api-key revoke"]);
      }
      const revoked = await withDatabase((db) => new IdentityStore(db).revokeApiKey(id, systemClock.now()));
      if (!revoked) {
        console.error(`no API key with id ${id}`);
        return 3;
      }
      console.error(`revoked API key ${id}`);
      return 0;
    }
    case "user create":
      return userCreate(values);
    case "user set-role":
      return userSetRole(values);
    case "user list":
      return userList(values);
    default:
      throw new UsageError(`unknown command "${positionals.join(" ")}"`);
  }
}

type Options = { org?: string; email?: string; role?: string };

async function userCreate(values: Options): Promise<number> {
  if (!values.org || !values.email) throw new UsageError("user create needs --org <slug> and --email <email>", HELP["user create"]);
  const role = values.role === undefined ? undefined : parseRole(values.role);
  const { organization, user } = await withDatabase((db) =>
    createUser(new IdentityStore(db), systemClock, { organizationSlug: values.org!, email: values.email!, role }),
  );
  console.error(`created user ${user.email} (${roleName(user.role)}) in organization ${organization.slug}`);
  console.log(user.id);
  return 0;
}

async function userSetRole(values: Options): Promise<number> {
  if (!values.org || !values.email || !values.role) {
    throw new UsageError("user set-role needs --org <slug>, --email <email> and --role admin|member", HELP["user set-role"]);
  }
  const role = parseRole(values.role);
  try {
    const user = await withDatabase((db) => setUserRole(new IdentityStore(db), { organizationSlug: values.org!, email: values.email!, role }));
    console.error(`${user.email} is now ${roleName(user.role)} of ${values.org}`);
    return 0;
  } catch (err) {
    if (!(err instanceof NoSuchUser)) throw err;
    console.error(err.message);
    return 3;
  }
}

async function userList(values: Options): Promise<number> {
  const users = await withDatabase((db) => listUsers(new IdentityStore(db), values.org));
  for (const user of users) {
    console.log(
      [user.id, user.organizationSlug, user.email, roleName(user.role), user.createdAt.toISOString(), user.groups.join(",") || "-"].join("\t"),
    );
  }
  return 0;
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`${(err as Error).message}\n\n${err instanceof UsageError ? err.help : HELP.main}`);
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

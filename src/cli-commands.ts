// The operator CLI's commands (src/cli.ts parses the command line and runs them): one table that
// serves both the CLI's own process and a running server that owns the embedded database, to
// which the CLI sends its command (src/control-socket.ts). A command writes its output through
// `CommandIo` and returns its exit code: 0 ok, 1 failure, 2 usage or configuration error, 3 not found.
import { parseArgs } from "node:util";
import { ConfigError } from "./config.js";
import type { Clock } from "./domain/clock.js";
import type { Database } from "./store/db/database.js";
import { migrate, pendingMigrations } from "./store/db/migrate.js";
import { AccountError, createUser, issueApiKey, listUsers, NoSuchUser, parseRole, roleName, setUserRole } from "./domain/accounts.js";
import { IdentityStore } from "./store/identity-store.js";
import { resealAll, SecretsKeyError, SecretsKeyring, sealedKeyId, sealedKeyUsage, type SealedColumn } from "./domain/secrets.js";
import { SigningKeyStore } from "./store/signing-key-store.js";

// Loaded by the commands that need them: the other commands start faster without jose.
const signingKeys = () => import("./domain/signing-keys.js");

export interface CommandIo {
  /** A line for scripts (stdout). */
  out(line: string): void;
  /** A message for people (stderr). */
  err(line: string): void;
}

export interface CommandContext extends CommandIo {
  db: Database;
  clock: Clock;
  /** The server secrets key; throws ConfigError when none is configured. */
  secretsKeyring(): SecretsKeyring;
}

export const HELP: Record<string, string> = {
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
  keys list                                 the token signing keys and their states
  keys rotate [--now]                       new signing key; the old one keeps verifying its tokens
  keys revoke <kid>                         take a signing key out of the JWKS at once
  secrets-key generate                      print a new server secrets key
  secrets-key status                        configured secrets keys and what each one seals
  secrets-key reseal                        seal every stored secret with the current secrets key

The database is DATABASE_URL when set, else the embedded database in DATA_DIR (default ./data).
While a server runs on the embedded database, it carries out the command (DATA_DIR/control.sock);
while another process has it open without taking commands (another cli command, a server that is
starting), the command waits for it up to CLI_WAIT_MS (default 60000), then fails with exit code 1.
Only migrate changes the schema; other commands fail when migrations are pending.
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
  keys: `usage: cli keys <list|rotate|revoke> [options]

  list
  rotate [--now]
  revoke <kid>

The keys that sign ID tokens and runner logs tokens (docs/oidc.md). Needs the server secrets key
(SECRETS_KEY_FILE or SECRETS_KEY; on the embedded database DATA_DIR/secrets-key).`,
  "keys list": `usage: cli keys list

One line per key, tab-separated: kid, state (pending, signing, verifying, retired, revoked), until
(pending: when it starts signing; verifying: when it leaves the JWKS; else "-"), created, secrets key id.`,
  "keys rotate": `usage: cli keys rotate [--now]

Creates a new signing key. It is published in the JWKS at once and signs from 10 minutes later, after
every relying party that caches the JWKS (for up to 5 minutes) has seen it. The key it replaces keeps
verifying the tokens it signed until they have expired (1 hour and 5 minutes of leeway after the
switch). Retired and revoked keys are deleted. Every server picks the change up within a second.
--now: the new key signs at once (after a leak; then revoke the old one with keys revoke).
stdout's last line is the new key's kid.`,
  "keys revoke": `usage: cli keys revoke <kid>

Takes the key out of the JWKS at once: tokens it signed no longer verify. The key that signs now
cannot be revoked; run keys rotate --now first. Exit code 3 when no such key.`,
  "secrets-key": `usage: cli secrets-key <generate|status|reseal>

The server secrets key (SECRETS_KEY_FILE or SECRETS_KEY) encrypts secrets stored in the database.
Rotating it: docs/operations.md#the-server-secrets-key.`,
  "secrets-key generate": `usage: cli secrets-key generate

Prints a new random key (base64 of 32 bytes) for a line of SECRETS_KEY_FILE. Touches no database.`,
  "secrets-key status": `usage: cli secrets-key status

One line per configured key (the sealing key first), tab-separated: key id, role (current or old),
how many stored secrets it seals. Then one line for each key id that seals secrets but is not
configured (role: missing).`,
  "secrets-key reseal": `usage: cli secrets-key reseal

Seals every stored secret that is sealed with an older key again with the current (first) key, so
the older key can then be removed from SECRETS_KEY_FILE. Safe while servers run.`,
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

export class UsageError extends Error {
  constructor(
    message: string,
    /** The help to show after the message (default: the main help). */
    readonly help = HELP.main,
  ) {
    super(message);
  }
}

type Values = { org?: string; user?: string; description?: string; email?: string; role?: string; now?: boolean };
interface Args {
  values: Values;
  /** The arguments after the command words. */
  positionals: string[];
}

interface Command {
  options: (keyof Values)[];
  positionals: number;
  /** false: runs without a database (and never through a server). */
  database?: false;
  /** Usage checks that need no database: run while parsing, so a mistake never waits for one. */
  check?(args: Args): void;
  run(args: Args, ctx: CommandContext): Promise<number>;
}

const tabs = (...cells: (string | number)[]) => cells.join("\t");

/** Exit code 3 and a message when an --org names no organization (instead of an empty list). */
async function organizationExists(ctx: CommandContext, slug: string | undefined): Promise<boolean> {
  if (slug === undefined || (await new IdentityStore(ctx.db).organizationBySlug(slug))) return true;
  ctx.err(`no organization with slug "${slug}"`);
  return false;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Every column holding sealed secrets (new ones are added here). */
async function sealedColumns(db: Database): Promise<SealedColumn[]> {
  const { sealedPrivateKeys } = await signingKeys();
  const { sealedTokenColumns } = await import("./domain/scm-credentials.js");
  const { ScmCredentialStore } = await import("./store/scm-credential-store.js");
  const { sealedRunnerColumns } = await import("./domain/runner-secrets.js");
  const { RunnerStore } = await import("./store/runner-store.js");
  return [
    sealedPrivateKeys(new SigningKeyStore(db)),
    ...sealedTokenColumns(new ScmCredentialStore(db)),
    ...sealedRunnerColumns(new RunnerStore(db)),
  ];
}

/** The commands, by their words. */
export const COMMANDS: Record<string, Command> = {
  migrate: {
    options: [],
    positionals: 0,
    async run(_args, ctx) {
      const applied = await migrate(ctx.db);
      ctx.err(applied.length ? `applied: ${applied.join(", ")}` : "schema is up to date");
      return 0;
    },
  },
  "api-key create": {
    options: ["org", "user", "description"],
    positionals: 0,
    check({ values }) {
      if (!values.org || !values.user) throw new UsageError("api-key create needs --org <slug> and --user <email>", HELP["api-key create"]);
    },
    async run({ values }, ctx) {
      const issued = await issueApiKey(new IdentityStore(ctx.db), ctx.clock, {
        organizationSlug: values.org!,
        userEmail: values.user!,
        description: values.description,
      });
      ctx.err(`created API key ${issued.id} for ${issued.user.email} in organization ${issued.organization.slug}`);
      ctx.out(issued.apiKey);
      return 0;
    },
  },
  "api-key list": {
    options: ["org"],
    positionals: 0,
    async run({ values }, ctx) {
      if (!(await organizationExists(ctx, values.org))) return 3;
      const keys = await new IdentityStore(ctx.db).listApiKeys(values.org);
      ctx.out(tabs("id", "organization", "user", "created", "revoked", "description"));
      for (const key of keys) {
        ctx.out(tabs(key.id, key.organizationSlug, key.userEmail, key.createdAt.toISOString(), key.revokedAt?.toISOString() ?? "-", key.description));
      }
      return 0;
    },
  },
  "api-key revoke": {
    options: [],
    positionals: 1,
    check({ positionals: [id] }) {
      if (!id) throw new UsageError("api-key revoke needs the key id (a UUID, see api-key list)", HELP["api-key revoke"]);
      if (!UUID.test(id)) throw new UsageError(`"${id}" is not an API key id: ids are UUIDs (the first column of api-key list)`, HELP["api-key revoke"]);
    },
    async run({ positionals: [id] }, ctx) {
      if (!(await new IdentityStore(ctx.db).revokeApiKey(id!, ctx.clock.now()))) {
        ctx.err(`no API key with id ${id}`);
        return 3;
      }
      ctx.err(`revoked API key ${id}`);
      return 0;
    },
  },
  "user create": {
    options: ["org", "email", "role"],
    positionals: 0,
    check({ values }) {
      if (!values.org || !values.email) throw new UsageError("user create needs --org <slug> and --email <email>", HELP["user create"]);
      if (values.role !== undefined) parseRole(values.role);
    },
    async run({ values }, ctx) {
      const role = values.role === undefined ? undefined : parseRole(values.role);
      const { organization, user } = await createUser(new IdentityStore(ctx.db), ctx.clock, { organizationSlug: values.org!, email: values.email!, role });
      ctx.err(`created user ${user.email} (${roleName(user.role)}) in organization ${organization.slug}`);
      ctx.out(user.id);
      return 0;
    },
  },
  "user set-role": {
    options: ["org", "email", "role"],
    positionals: 0,
    check({ values }) {
      if (!values.org || !values.email || !values.role) {
        throw new UsageError("user set-role needs --org <slug>, --email <email> and --role admin|member", HELP["user set-role"]);
      }
      parseRole(values.role);
    },
    async run({ values }, ctx) {
      const role = parseRole(values.role!);
      try {
        const user = await setUserRole(new IdentityStore(ctx.db), { organizationSlug: values.org!, email: values.email!, role });
        ctx.err(`${user.email} is now ${roleName(user.role)} of ${values.org}`);
        return 0;
      } catch (err) {
        if (!(err instanceof NoSuchUser)) throw err;
        ctx.err(err.message);
        return 3;
      }
    },
  },
  "user list": {
    options: ["org"],
    positionals: 0,
    async run({ values }, ctx) {
      if (!(await organizationExists(ctx, values.org))) return 3;
      const users = await listUsers(new IdentityStore(ctx.db), values.org);
      ctx.out(tabs("id", "organization", "email", "role", "created", "groups"));
      for (const user of users) {
        ctx.out(tabs(user.id, user.organizationSlug, user.email, roleName(user.role), user.createdAt.toISOString(), user.groups.join(",") || "-"));
      }
      return 0;
    },
  },
  "keys list": {
    options: [],
    positionals: 0,
    async run(_args, ctx) {
      const { keySchedule } = await signingKeys();
      ctx.out(tabs("kid", "state", "until", "created", "secrets key"));
      for (const { row, state, until } of keySchedule(await new SigningKeyStore(ctx.db).all(), ctx.clock.now())) {
        ctx.out(tabs(row.kid, state, until?.toISOString() ?? "-", row.createdAt.toISOString(), sealedKeyId(row.privateKeySealed)));
      }
      return 0;
    },
  },
  "keys rotate": {
    options: ["now"],
    positionals: 0,
    async run({ values }, ctx) {
      const { rotateSigningKey } = await signingKeys();
      const rotation = await rotateSigningKey(new SigningKeyStore(ctx.db), ctx.secretsKeyring(), ctx.clock, { immediately: values.now });
      ctx.err(`created signing key ${rotation.kid}: published now, signs from ${rotation.signsFrom.toISOString()}`);
      if (rotation.previous) ctx.err(`key ${rotation.previous.kid} keeps verifying its tokens until ${rotation.previous.publishedUntil.toISOString()}`);
      if (rotation.deleted.length > 0) ctx.err(`deleted retired keys: ${rotation.deleted.join(", ")}`);
      ctx.out(rotation.kid);
      return 0;
    },
  },
  "keys revoke": {
    options: [],
    positionals: 1,
    check({ positionals: [kid] }) {
      if (!kid) throw new UsageError("keys revoke needs the key's kid (see keys list)", HELP["keys revoke"]);
    },
    async run({ positionals: [kid] }, ctx) {
      const { revokeSigningKey } = await signingKeys();
      if (!(await revokeSigningKey(new SigningKeyStore(ctx.db), ctx.clock, kid!))) {
        ctx.err(`no usable signing key with kid ${kid}`);
        return 3;
      }
      ctx.err(`revoked signing key ${kid}: it is out of the JWKS, its tokens no longer verify`);
      return 0;
    },
  },
  "secrets-key generate": {
    options: [],
    positionals: 0,
    database: false,
    async run(_args, ctx) {
      ctx.out(SecretsKeyring.generateKey());
      return 0;
    },
  },
  "secrets-key status": {
    options: [],
    positionals: 0,
    async run(_args, ctx) {
      const keyring = ctx.secretsKeyring();
      const usage = await sealedKeyUsage(keyring, await sealedColumns(ctx.db));
      keyring.keyIds.forEach((id, index) => ctx.out(tabs(id, index === 0 ? "current" : "old", usage.get(id) ?? 0)));
      for (const [id, count] of usage) if (!keyring.keyIds.includes(id)) ctx.out(tabs(id, "missing", count));
      return 0;
    },
  },
  "secrets-key reseal": {
    options: [],
    positionals: 0,
    async run(_args, ctx) {
      for (const report of await resealAll(ctx.secretsKeyring(), await sealedColumns(ctx.db))) {
        ctx.err(`${report.column}: ${report.resealed} sealed again, ${report.current} already current`);
      }
      return 0;
    },
  },
};

/** Commands with subcommands, and what to say when the subcommand is missing. */
const GROUPS: Record<string, string> = {
  "api-key": "api-key needs a subcommand: create, list or revoke",
  user: "user needs a subcommand: create, set-role or list",
  keys: "keys needs a subcommand: list, rotate or revoke",
  "secrets-key": "secrets-key needs a subcommand: generate, status or reseal",
};

const OPTION_TYPES = {
  help: { type: "boolean", short: "h" },
  org: { type: "string" },
  user: { type: "string" },
  description: { type: "string" },
  email: { type: "string" },
  role: { type: "string" },
  now: { type: "boolean" },
} as const;

export type Parsed = { kind: "help"; text: string } | { kind: "command"; name: string; needsDatabase: boolean; args: Args };

/** Reads a command line; throws UsageError. */
export function parseCommand(argv: string[]): Parsed {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: false, options: OPTION_TYPES });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  // `cli help <command…>` is the same as `cli <command…> --help`.
  const words = positionals[0] === "help" ? positionals.slice(1) : positionals;
  const name = words[0] !== undefined && words[0] in GROUPS && words[1] ? `${words[0]} ${words[1]}` : (words[0] ?? "");
  const commandHelp = (command: string) => (HELP[command] ? `run: cli ${command} --help` : HELP.main);
  if (values.help || positionals[0] === "help" || name === "") {
    const text = HELP[name === "" ? "main" : name];
    if (text === undefined) throw new UsageError(`unknown command "${words.join(" ")}"`, "run: cli --help");
    return { kind: "help", text };
  }
  if (name in GROUPS) throw new UsageError(GROUPS[name]!, HELP[name]);
  const command = COMMANDS[name];
  if (command === undefined) throw new UsageError(`unknown command "${positionals.join(" ")}"`, "run: cli --help");
  for (const [option, value] of Object.entries(values)) {
    const known = option in OPTION_TYPES;
    if (!known || !command.options.includes(option as keyof Values)) {
      throw new UsageError(known ? `${name} does not take --${option}` : `unknown option --${option}`, commandHelp(name));
    }
    const type = OPTION_TYPES[option as keyof typeof OPTION_TYPES].type;
    if (type === "string" && typeof value !== "string") throw new UsageError(`--${option} needs a value`, commandHelp(name));
    if (type === "boolean" && typeof value !== "boolean") throw new UsageError(`--${option} takes no value`, commandHelp(name));
  }
  const rest = positionals.slice(name.split(" ").length);
  if (rest.length > command.positionals) throw new UsageError(`unexpected argument "${rest[command.positionals]}"`, HELP[name]);
  const args = { values: values as Values, positionals: rest };
  command.check?.(args);
  return { kind: "command", name, needsDatabase: command.database !== false, args };
}

/** The exit code for an error a command threw, after saying what went wrong. */
export function reportFailure(err: unknown, io: CommandIo): number {
  if (err instanceof UsageError) {
    io.err(`${err.message}\n\n${err.help}`);
    return 2;
  }
  if (err instanceof ConfigError || err instanceof AccountError || err instanceof SecretsKeyError) {
    io.err(err.message);
    return 2;
  }
  io.err(`failed: ${(err as Error).message}`);
  return 1;
}

/**
 * Runs a parsed command to its exit code. Commands other than `migrate` never migrate: on a
 * schema that is behind they say so and fail.
 */
export async function runCommand(parsed: Extract<Parsed, { kind: "command" }>, ctx: CommandContext): Promise<number> {
  try {
    if (parsed.needsDatabase && parsed.name !== "migrate") {
      const pending = await pendingMigrations(ctx.db);
      if (pending.length > 0) {
        ctx.err(`the database schema is behind: ${pending.length} migration(s) not applied (${pending.join(", ")}); run \`cli migrate\` first`);
        return 1;
      }
    }
    return await COMMANDS[parsed.name]!.run(parsed.args, ctx);
  } catch (err) {
    return reportFailure(err, ctx);
  }
}

// Operator CLI: migrations, users and their roles, API keys, token signing keys and the server secrets key. Works against DATABASE_URL (also while servers
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
import { embeddedSecretsKeyring } from "./bootstrap.js";
import { resealAll, SecretsKeyError, SecretsKeyring, sealedKeyId, sealedKeyUsage, type SealedColumn } from "./domain/secrets.js";
import { SigningKeyStore } from "./store/signing-key-store.js";

// Loaded by the commands that need them: the other commands start faster without jose.
const signingKeys = () => import("./domain/signing-keys.js");

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
  keys list                                 the token signing keys and their states
  keys rotate [--now]                       new signing key; the old one keeps verifying its tokens
  keys revoke <kid>                         take a signing key out of the JWKS at once
  secrets-key generate                      print a new server secrets key
  secrets-key status                        configured secrets keys and what each one seals
  secrets-key reseal                        seal every stored secret with the current secrets key

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

/** Options and positional arguments (after the command words) each command accepts. */
const ARGS: Record<string, { options: string[]; positionals: number }> = {
  migrate: { options: [], positionals: 0 },
  "api-key create": { options: ["org", "user", "description"], positionals: 0 },
  "api-key list": { options: ["org"], positionals: 0 },
  "api-key revoke": { options: [], positionals: 1 },
  "user create": { options: ["org", "email", "role"], positionals: 0 },
  "user set-role": { options: ["org", "email", "role"], positionals: 0 },
  "user list": { options: ["org"], positionals: 0 },
  "keys list": { options: [], positionals: 0 },
  "keys rotate": { options: ["now"], positionals: 0 },
  "keys revoke": { options: [], positionals: 1 },
  "secrets-key generate": { options: [], positionals: 0 },
  "secrets-key status": { options: [], positionals: 0 },
  "secrets-key reseal": { options: [], positionals: 0 },
};

/** Commands with subcommands, and what to say when the subcommand is missing. */
const GROUPS: Record<string, string> = {
  "api-key": "api-key needs a subcommand: create, list or revoke",
  user: "user needs a subcommand: create, set-role or list",
  keys: "keys needs a subcommand: list, rotate or revoke",
  "secrets-key": "secrets-key needs a subcommand: generate, status or reseal",
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

/** The server secrets key: configured, else the embedded database's key file (as the server does). */
function secretsKeyring(db: Database): SecretsKeyring {
  const config = loadConfig();
  if (config.secretsKey) return config.secretsKey.keyring;
  if (db.kind === "embedded") return embeddedSecretsKeyring(config.dataDir).keyring;
  throw new ConfigError("the server secrets key is not configured: set SECRETS_KEY_FILE (or SECRETS_KEY) as for the servers");
}

/** Every column holding sealed secrets (new ones are added here). */
async function sealedColumns(): Promise<(db: Database) => SealedColumn[]> {
  const { sealedPrivateKeys } = await signingKeys();
  const { sealedTokenColumns } = await import("./domain/scm-credentials.js");
  const { ScmCredentialStore } = await import("./store/scm-credential-store.js");
  const { sealedRunnerColumns } = await import("./domain/runner-secrets.js");
  const { RunnerStore } = await import("./store/runner-store.js");
  return (db) => [
    sealedPrivateKeys(new SigningKeyStore(db)),
    ...sealedTokenColumns(new ScmCredentialStore(db)),
    ...sealedRunnerColumns(new RunnerStore(db)),
  ];
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
      now: { type: "boolean" },
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
    case "keys list": {
      const { keySchedule } = await signingKeys();
      const rows = await withDatabase(async (db) =>
        keySchedule(await new SigningKeyStore(db).all(), systemClock.now()).map(({ row, state, until }) =>
          [row.kid, state, until?.toISOString() ?? "-", row.createdAt.toISOString(), sealedKeyId(row.privateKeySealed)].join("\t"),
        ),
      );
      for (const row of rows) console.log(row);
      return 0;
    }
    case "keys rotate": {
      const { rotateSigningKey } = await signingKeys();
      const rotation = await withDatabase((db) => rotateSigningKey(new SigningKeyStore(db), secretsKeyring(db), systemClock, { immediately: values.now }));
      console.error(`created signing key ${rotation.kid}: published now, signs from ${rotation.signsFrom.toISOString()}`);
      if (rotation.previous) console.error(`key ${rotation.previous.kid} keeps verifying its tokens until ${rotation.previous.publishedUntil.toISOString()}`);
      if (rotation.deleted.length > 0) console.error(`deleted retired keys: ${rotation.deleted.join(", ")}`);
      console.log(rotation.kid);
      return 0;
    }
    case "keys revoke": {
      const kid = positionals[2];
      if (!kid) throw new UsageError("keys revoke needs the key's kid (see keys list)", HELP["keys revoke"]);
      const { revokeSigningKey } = await signingKeys();
      const revoked = await withDatabase((db) => revokeSigningKey(new SigningKeyStore(db), systemClock, kid));
      if (!revoked) {
        console.error(`no usable signing key with kid ${kid}`);
        return 3;
      }
      console.error(`revoked signing key ${kid}: it is out of the JWKS, its tokens no longer verify`);
      return 0;
    }
    case "secrets-key generate":
      console.log(SecretsKeyring.generateKey());
      return 0;
    case "secrets-key status": {
      const columns = await sealedColumns();
      const lines = await withDatabase(async (db) => {
        const keyring = secretsKeyring(db);
        const usage = await sealedKeyUsage(keyring, columns(db));
        const configured = keyring.keyIds.map((id, index) => [id, index === 0 ? "current" : "old", usage.get(id) ?? 0].join("\t"));
        const missing = [...usage].filter(([id]) => !keyring.keyIds.includes(id)).map(([id, count]) => [id, "missing", count].join("\t"));
        return [...configured, ...missing];
      });
      for (const line of lines) console.log(line);
      return 0;
    }
    case "secrets-key reseal": {
      const columns = await sealedColumns();
      const reports = await withDatabase((db) => resealAll(secretsKeyring(db), columns(db)));
      for (const report of reports) console.error(`${report.column}: ${report.resealed} sealed again, ${report.current} already current`);
      return 0;
    }
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
    if (err instanceof ConfigError || err instanceof AccountError || err instanceof SecretsKeyError) {
      console.error((err as Error).message);
      process.exit(2);
    }
    console.error(`failed: ${(err as Error).message}`);
    process.exit(1);
  },
);

// Operator CLI: migrations, users and their roles, API keys, token signing keys and the server
// secrets key (the commands: src/cli-commands.ts). Works against DATABASE_URL (also while servers
// run) or the embedded database in DATA_DIR: while a server owns that one, the command is carried
// out by that server (src/control-socket.ts), so its effect is immediate and nothing is lost.
// Output meant for scripts goes to stdout (the new key is always the last line); messages
// go to stderr. Exit codes: 0 ok, 1 failure, 2 usage error, 3 not found.
import { ConfigError, loadConfig, type Config } from "./config.js";
import { systemClock } from "./domain/clock.js";
import { openConfiguredDatabase, type Database } from "./store/db/database.js";
import { EmbeddedDatabaseInUse } from "./store/db/embedded-lock.js";
import { embeddedSecretsKeyring } from "./bootstrap.js";
import { parseCommand, reportFailure, runCommand, type CommandContext, type CommandIo, type Parsed } from "./cli-commands.js";
import { callControlSocket, controlSocketPath, NoControlSocket } from "./control-socket.js";
import type { SecretsKeyring } from "./domain/secrets.js";

const console_: CommandIo = { out: (line) => console.log(line), err: (line) => console.error(line) };

/** The server secrets key: configured, else the embedded database's key file (as the server does). */
function secretsKeyring(db: Database | undefined): SecretsKeyring {
  const config = loadConfig();
  if (config.secretsKey) return config.secretsKey.keyring;
  if (db?.kind === "embedded") return embeddedSecretsKeyring(config.dataDir).keyring;
  throw new ConfigError("the server secrets key is not configured: set SECRETS_KEY_FILE (or SECRETS_KEY) as for the servers");
}

async function run(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv);
  if (parsed.kind === "help") {
    console.log(parsed.text);
    return 0;
  }
  if (!parsed.needsDatabase) return runCommand(parsed, { ...console_, db: undefined as never, clock: systemClock, secretsKeyring: () => secretsKeyring(undefined) });
  const config = loadConfig();
  const db = await openOrDelegate(config, argv, parsed);
  if (typeof db === "number") return db;
  try {
    const ctx: CommandContext = { ...console_, db, clock: systemClock, secretsKeyring: () => secretsKeyring(db) };
    return await runCommand(parsed, ctx);
  } finally {
    await db.close();
  }
}

/** How long a command waits for an owner of the embedded database that takes no commands (another cli command, a server starting). */
const DEFAULT_WAIT_MS = 60_000;

/**
 * The database, or (embedded, owned by a running server) the exit code of the command that
 * server carried out. While the owner takes no commands, waits up to CLI_WAIT_MS for it to finish.
 */
async function openOrDelegate(config: Config, argv: string[], parsed: Extract<Parsed, { kind: "command" }>): Promise<Database | number> {
  const waitMs = process.env.CLI_WAIT_MS ? Number(process.env.CLI_WAIT_MS) : DEFAULT_WAIT_MS;
  const deadline = Date.now() + (Number.isFinite(waitMs) ? waitMs : DEFAULT_WAIT_MS);
  let said = false;
  for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 1_000)) {
    let pid: number;
    try {
      return await openConfiguredDatabase(config, 2);
    } catch (err) {
      if (!(err instanceof EmbeddedDatabaseInUse)) throw err;
      pid = err.pid;
    }
    const code = await throughServer(config.dataDir, pid, argv, parsed);
    if (code !== undefined) return code;
    if (Date.now() >= deadline) {
      console.error(
        `the embedded database in ${config.dataDir} is in use by process ${pid}, which does not take commands (no ${controlSocketPath(config.dataDir)}): ` +
          `stop the server first (or wait until it logged "ready"), then run this again`,
      );
      return 1;
    }
    if (!said) console.error(`waiting for process ${pid}, which has the embedded database in ${config.dataDir} open…`);
    said = true;
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

/** The embedded database belongs to a running server: the exit code of the command it carried out; undefined when nobody listens. */
async function throughServer(dataDir: string, pid: number, argv: string[], parsed: Extract<Parsed, { kind: "command" }>): Promise<number | undefined> {
  try {
    const reply = await callControlSocket(controlSocketPath(dataDir), argv);
    for (const line of reply.stderr) console.error(line);
    for (const line of reply.stdout) console.log(line);
    return reply.code;
  } catch (err) {
    if (err instanceof NoControlSocket) return undefined;
    console.error(
      `lost the connection to the server (process ${pid}) before it answered: "${parsed.name}" may or may not have been carried out; ` +
        `check the server's log (and e.g. cli api-key list) before running it again (${(err as Error).message})`,
    );
    return 1;
  }
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => process.exit(reportFailure(err, console_)),
);

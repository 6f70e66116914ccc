// First start on an empty embedded database: create a default organization and its admin and
// leave one API key in a file only the owner can read, so `npm start` is usable at once; and
// the embedded database's server secrets key, when none is configured.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Clock } from "./domain/clock.js";
import type { Database } from "./store/db/database.js";
import { issueApiKey } from "./domain/accounts.js";
import { IdentityStore, ROLE_ADMIN } from "./store/identity-store.js";
import { SecretsKeyring } from "./domain/secrets.js";

export const INITIAL_API_KEY_FILE = "initial-api-key";

/** Returns the path of the key file it wrote, or undefined when the database already had organizations. */
export async function bootstrapEmptyDatabase(db: Database, dataDir: string, clock: Clock): Promise<string | undefined> {
  const identities = new IdentityStore(db);
  if (await identities.hasOrganizations()) return undefined;
  const issued = await issueApiKey(identities, clock, {
    organizationSlug: "default",
    userEmail: "admin@localhost",
    description: "initial key",
    role: ROLE_ADMIN,
  });
  const path = join(dataDir, INITIAL_API_KEY_FILE);
  writeFileSync(path, `${issued.apiKey}\n`, { mode: 0o600 });
  return path;
}

export const SECRETS_KEY_FILE = "secrets-key";

/**
 * The embedded database's server secrets key when none is configured: DATA_DIR/secrets-key,
 * created on first use (mode 0600) with one new key. It protects sealed values in a copy of
 * pgdata/ alone, not in a copy of the whole DATA_DIR (docs/operations.md#the-server-secrets-key).
 */
export function embeddedSecretsKeyring(dataDir: string): { origin: string; path: string; keyring: SecretsKeyring; created: boolean } {
  const path = join(dataDir, SECRETS_KEY_FILE);
  const origin = `the embedded database's key file ${path}`;
  let created = false;
  mkdirSync(dataDir, { recursive: true });
  try {
    // "wx": never overwrite a key that already seals something, even when two processes race.
    writeFileSync(path, `# runner-control-plane server secrets key (see docs/operations.md); back it up with the data\n${SecretsKeyring.generateKey()}\n`, {
      mode: 0o600,
      flag: "wx",
    });
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  return { origin, path, keyring: SecretsKeyring.parse(readFileSync(path, "utf8"), origin), created };
}

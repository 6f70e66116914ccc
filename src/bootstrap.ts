// First start on an empty embedded database: create a default organization and its admin and
// leave one API key in a file only the owner can read, so `npm start` is usable at once.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Clock } from "./domain/clock.js";
import type { Database } from "./store/db/database.js";
import { issueApiKey } from "./domain/accounts.js";
import { IdentityStore, ROLE_ADMIN } from "./store/identity-store.js";

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

// The NOTIFY channel on which revoked credentials and stale callers are announced, and its
// payload format. The statements that change them (identity-store.ts, runner-store.ts,
// group-store.ts) publish on it in the same statement as the change, so the notification is
// delivered on commit; the credential cache (src/domain/credential-cache.ts) listens. Kept
// here, next to the SQL that writes it.

export const CREDENTIALS_CHANNEL = "rcp_credentials";

/**
 * Which cached callers stopped being valid: an API key or a runner's credentials (revoked),
 * a user (organization role or group memberships changed), a group (deleted: its members'
 * memberships went with it).
 */
export type Revocation = { apiKeyId: string } | { runnerId: string } | { userId: string } | { groupId: string };

/** SQL expressions of the payloads, for `pg_notify(CREDENTIALS_CHANNEL, …)`. */
export const revocationPayloadSql = {
  apiKey: (idColumn: string) => `'api_key:' || ${idColumn}`,
  runner: (idColumn: string) => `'runner:' || ${idColumn}`,
  user: (idColumn: string) => `'user:' || ${idColumn}`,
  group: (idColumn: string) => `'group:' || ${idColumn}`,
};

/** The revocation a payload announces, or undefined when it is not one of ours. */
export function parseRevocation(payload: string): Revocation | undefined {
  const [kind, id] = payload.split(":");
  if (!id) return undefined;
  if (kind === "api_key") return { apiKeyId: id };
  if (kind === "runner") return { runnerId: id };
  if (kind === "user") return { userId: id };
  if (kind === "group") return { groupId: id };
  return undefined;
}

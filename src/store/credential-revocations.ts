// The NOTIFY channel on which revoked credentials are announced, and its payload format.
// The statements that revoke (identity-store.ts, runner-store.ts) publish on it in the same
// statement as the change, so the notification is delivered on commit; the credential cache
// (src/domain/credential-cache.ts) listens. Kept here, next to the SQL that writes it.

export const CREDENTIALS_CHANNEL = "rcp_credentials";

/** Which credentials stopped being valid. */
export type Revocation = { apiKeyId: string } | { runnerId: string };

/** SQL expressions of the payloads, for `pg_notify(CREDENTIALS_CHANNEL, …)`. */
export const revocationPayloadSql = {
  apiKey: (idColumn: string) => `'api_key:' || ${idColumn}`,
  runner: (idColumn: string) => `'runner:' || ${idColumn}`,
};

/** The revocation a payload announces, or undefined when it is not one of ours. */
export function parseRevocation(payload: string): Revocation | undefined {
  const [kind, id] = payload.split(":");
  if (!id) return undefined;
  if (kind === "api_key") return { apiKeyId: id };
  if (kind === "runner") return { runnerId: id };
  return undefined;
}

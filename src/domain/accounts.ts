// Organizations, users and API keys as an operator manages them (CLI, first start).
import type { Clock } from "./clock.js";
import type { IdentityStore, Organization, User } from "../store/identity-store.js";
import { generateToken, hashToken } from "./tokens.js";

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const EMAIL = /^[^\s@]+@[^\s@]+$/;

export class AccountError extends Error {}

export interface IssuedApiKey {
  id: string;
  /** The secret itself: shown once, never stored. */
  apiKey: string;
  organization: Organization;
  user: User;
}

/** Creates the organization and user when absent, then a new API key for that user. */
export async function issueApiKey(
  identities: IdentityStore,
  clock: Clock,
  request: { organizationSlug: string; userEmail: string; description?: string },
): Promise<IssuedApiKey> {
  if (!SLUG.test(request.organizationSlug)) {
    throw new AccountError(`organization slug "${request.organizationSlug}" must be 1-63 lowercase letters, digits or dashes`);
  }
  if (!EMAIL.test(request.userEmail)) throw new AccountError(`"${request.userEmail}" is not an email address`);
  const now = clock.now();
  const organization = await identities.ensureOrganization(request.organizationSlug, request.organizationSlug, now);
  const user = await identities.ensureUser(organization.id, request.userEmail.toLowerCase(), now);
  const apiKey = generateToken("apiKey");
  const id = await identities.insertApiKey(user, hashToken(apiKey), request.description ?? "", now);
  return { id, apiKey, organization, user };
}

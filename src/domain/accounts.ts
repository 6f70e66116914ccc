// Organizations, users, their roles and API keys as an operator manages them (CLI, first start).
import type { Clock } from "./clock.js";
import { ROLE_ADMIN, ROLE_MEMBER, type IdentityStore, type Organization, type User, type UserInfo } from "../store/identity-store.js";
import { generateToken, hashToken } from "./tokens.js";

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const EMAIL = /^[^\s@]+@[^\s@]+$/;

export class AccountError extends Error {}

/** The operator's spelling of the organization roles (gitpod.v1.OrganizationRole numbers). */
export const ROLE_NAMES: Record<string, number> = { admin: ROLE_ADMIN, member: ROLE_MEMBER };

export function roleName(role: number): string {
  return Object.keys(ROLE_NAMES).find((name) => ROLE_NAMES[name] === role) ?? `role ${role}`;
}

export function parseRole(name: string): number {
  const role = ROLE_NAMES[name];
  if (role === undefined) throw new AccountError(`role "${name}" must be admin or member`);
  return role;
}

export interface IssuedApiKey {
  id: string;
  /** The secret itself: shown once, never stored. */
  apiKey: string;
  organization: Organization;
  user: User;
}

function checkSlug(slug: string): void {
  if (!SLUG.test(slug)) throw new AccountError(`organization slug "${slug}" must be 1-63 lowercase letters, digits or dashes`);
}

function normalEmail(email: string): string {
  if (!EMAIL.test(email)) throw new AccountError(`"${email}" is not an email address`);
  return email.toLowerCase();
}

/**
 * Creates the organization and user when absent, then a new API key for that user. A new user
 * is the organization's admin when it is its first user, else a member (or `role` when given).
 */
export async function issueApiKey(
  identities: IdentityStore,
  clock: Clock,
  request: { organizationSlug: string; userEmail: string; description?: string; role?: number },
): Promise<IssuedApiKey> {
  checkSlug(request.organizationSlug);
  const email = normalEmail(request.userEmail);
  const now = clock.now();
  const organization = await identities.ensureOrganization(request.organizationSlug, request.organizationSlug, now);
  const { user } = await identities.ensureUser(organization.id, email, now, request.role);
  const apiKey = generateToken("apiKey");
  const id = await identities.insertApiKey(user, hashToken(apiKey), request.description ?? "", now);
  return { id, apiKey, organization, user };
}

/**
 * Creates a user (and the organization when absent). Without a role, the first user of an
 * organization is its admin and everyone after is a member.
 */
export async function createUser(
  identities: IdentityStore,
  clock: Clock,
  request: { organizationSlug: string; email: string; role?: number },
): Promise<{ organization: Organization; user: User }> {
  checkSlug(request.organizationSlug);
  const email = normalEmail(request.email);
  const now = clock.now();
  const organization = await identities.ensureOrganization(request.organizationSlug, request.organizationSlug, now);
  const { user, created } = await identities.ensureUser(organization.id, email, now, request.role);
  if (!created) {
    throw new AccountError(`user ${email} already exists in organization ${organization.slug} (${roleName(user.role)}); change its role with user set-role`);
  }
  return { organization, user };
}

export class NoSuchUser extends AccountError {}

/**
 * Changes a user's organization role; it applies to their next call on every server. An
 * organization always keeps at least one admin: demoting the last one is refused.
 */
export async function setUserRole(
  identities: IdentityStore,
  request: { organizationSlug: string; email: string; role: number },
): Promise<User> {
  checkSlug(request.organizationSlug);
  const email = normalEmail(request.email);
  const result = await identities.setRole(request.organizationSlug, email, request.role);
  if (result.outcome === "no-such-user") throw new NoSuchUser(`no user ${email} in organization ${request.organizationSlug}`);
  if (result.outcome === "last-admin") {
    throw new AccountError(`${email} is the last admin of ${request.organizationSlug}: make another user admin first`);
  }
  return result.user;
}

export function listUsers(identities: IdentityStore, organizationSlug?: string): Promise<UserInfo[]> {
  if (organizationSlug !== undefined) checkSlug(organizationSlug);
  return identities.listUsers(organizationSlug);
}

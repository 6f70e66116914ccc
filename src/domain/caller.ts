// Who is calling: a user (API key) or a runner process (runner access token).
import type { OrganizationRole } from "../../gen/gitpod/v1/organization_pb.js";

export type Caller =
  | {
      kind: "user";
      userId: string;
      organizationId: string;
      organizationTier: string;
      /** ORGANIZATION_ROLE_ADMIN or _MEMBER, as of authentication (cached callers are evicted when it changes). */
      role: OrganizationRole;
      /** The groups the user is a member of (lowercase UUIDs), as of authentication. */
      groupIds: readonly string[];
    }
  | { kind: "runner"; runnerId: string; organizationId: string };

export type UserCaller = Extract<Caller, { kind: "user" }>;

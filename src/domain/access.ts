// Who may do what: one function per decision, pure (no SQL, no I/O), called by every use case
// that touches a runner or a group. The README's "Who may do what" table is this file.
//
// - An organization admin may do everything to every runner and group of the organization.
// - A runner without policies is available to the whole organization: every member may read
//   and use it; only admins manage it.
// - A runner with policies may be read and used only by members of a group that holds a role
//   on it (RUNNER_ROLE_USER or RUNNER_ROLE_ADMIN), and managed (update, delete, new exchange
//   token, policies, SCM integrations, logs) only by members of its RUNNER_ROLE_ADMIN groups and
//   organization admins.
// - A runner the caller may not read is `not_found`, word for word like a missing one (and like
//   another organization's); a forbidden action on one they may read is `permission_denied`.
// - Only admins create runners and manage groups and memberships; every user of the
//   organization may read groups and memberships (the reference's "transparency model").
//
// The caller's role and groups come from authentication (cached, and evicted on every replica
// when they change: src/domain/credential-cache.ts); a runner's policies are read with the
// runner on every call, so a policy change applies to the very next call everywhere.
import { OrganizationRole } from "../../gen/gitpod/v1/organization_pb.js";
import { RunnerRole } from "../../gen/gitpod/v1/runner_pb.js";
import type { UserCaller } from "./caller.js";
import { notFound, permissionDenied } from "./errors.js";

/** A group's role on a runner, as stored. */
export interface RunnerGrant {
  groupId: string;
  role: RunnerRole;
}

/** What the rules need to know about a runner. */
export interface GuardedRunner {
  organizationId: string;
  /** Undefined when they were not read: enough for an admin (managesEveryRunner), never for a member. */
  policies?: readonly RunnerGrant[] | undefined;
}

/** What a caller may do with a runner; each level includes the ones before it. */
export type RunnerAccess = "none" | "use" | "manage";

/** The level an action needs: reading the runner is "use". */
export type RunnerAction = Exclude<RunnerAccess, "none">;

export function isOrganizationAdmin(caller: UserCaller): boolean {
  return caller.role === OrganizationRole.ADMIN;
}

export function runnerAccess(caller: UserCaller, runner: GuardedRunner): RunnerAccess {
  if (runner.organizationId !== caller.organizationId) return "none";
  if (isOrganizationAdmin(caller)) return "manage";
  // A runner read without its policies must never look like one without policies.
  if (runner.policies === undefined) throw new Error("runner policies were not read: cannot decide for a member");
  if (runner.policies.length === 0) return "use";
  let access: RunnerAccess = "none";
  for (const policy of runner.policies) {
    if (!caller.groupIds.includes(policy.groupId)) continue;
    if (policy.role === RunnerRole.ADMIN) return "manage";
    if (policy.role === RunnerRole.USER) access = "use";
  }
  return access;
}

/** May read the runner (GetRunner, ListRunners) and use it (the SCM calls through it). */
export function mayUseRunner(caller: UserCaller, runner: GuardedRunner): boolean {
  return runnerAccess(caller, runner) !== "none";
}

/** May update and delete the runner, issue its exchange tokens, see and change its policies. */
export function mayManageRunner(caller: UserCaller, runner: GuardedRunner): boolean {
  return runnerAccess(caller, runner) === "manage";
}

/**
 * Throws unless the caller may do `action` with the runner (undefined: there is no such live
 * runner). `not_found` carries the same message for a runner that is missing, deleted, of
 * another organization or invisible to the caller.
 */
export function requireRunnerAccess(caller: UserCaller, runner: GuardedRunner | undefined, runnerId: string, action: RunnerAction): void {
  const access = runner ? runnerAccess(caller, runner) : "none";
  if (access === "none") throw notFound(`runner ${runnerId}`);
  if (action === "manage" && access !== "manage") {
    throw permissionDenied(`runner ${runnerId}: managing it needs an organization admin or a group with RUNNER_ROLE_ADMIN on it`);
  }
}

/**
 * True when the caller may manage every runner of its organization, so a use case may act on
 * a runner without reading its policies (or the runner) first.
 */
export function managesEveryRunner(caller: UserCaller): boolean {
  return isOrganizationAdmin(caller);
}

/**
 * What a list shows this caller: everything of the organization (undefined, for admins), or
 * what the caller's groups grant. The stores apply it in SQL, as the same rules as above:
 * - ListRunners: the runners without policies, plus those on which one of the groups holds a role
 *   (mayUseRunner);
 * - ListRoleAssignments: the assignments of the caller's own groups, plus every assignment on a
 *   runner one of the groups manages (RUNNER_ROLE_ADMIN).
 */
export function listingScope(caller: UserCaller): { groupIds: readonly string[] } | undefined {
  return isOrganizationAdmin(caller) ? undefined : { groupIds: caller.groupIds };
}

/**
 * What the caller may do with a role assignment (a group's runner policy), given their access
 * to its runner: see it when it is one of their groups' (on a runner they may use), change it
 * when they manage the runner. Matches ListRoleAssignments' scope (listingScope).
 */
export function roleAssignmentAccess(caller: UserCaller, assignment: { groupId: string }, runner: RunnerAccess): "none" | "read" | "manage" {
  if (runner === "manage") return "manage";
  return runner === "use" && caller.groupIds.includes(assignment.groupId) ? "read" : "none";
}

export function requireMayCreateRunners(caller: UserCaller): void {
  if (!isOrganizationAdmin(caller)) throw permissionDenied("only organization admins may create runners");
}

/** Create, rename and delete groups; add and remove members. */
export function requireMayManageGroups(caller: UserCaller): void {
  if (!isOrganizationAdmin(caller)) throw permissionDenied("only organization admins may change groups and their members");
}

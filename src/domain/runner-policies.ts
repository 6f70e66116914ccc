// Runner policies (RunnerService) and the same data as role assignments (GroupService): a
// group's role on one runner. Managing a runner includes its policies (src/domain/access.ts).
import { create } from "@bufbuild/protobuf";
import { ResourceType } from "../../gen/gitpod/v1/event_pb.js";
import {
  ResourceRole,
  RoleAssignmentSchema,
  type CreateRoleAssignmentRequest,
  type ListRoleAssignmentsRequest,
  type RoleAssignment,
} from "../../gen/gitpod/v1/group_pb.js";
import type { PaginationRequest } from "../../gen/gitpod/v1/pagination_pb.js";
import { RunnerPolicySchema, RunnerRole, type RunnerPolicy } from "../../gen/gitpod/v1/runner_pb.js";
import type { GroupStore } from "../store/group-store.js";
import type { PolicyRow, RunnerPolicyStore } from "../store/runner-policy-store.js";
import { listingScope, roleAssignmentAccess } from "./access.js";
import type { UserCaller } from "./caller.js";
import type { Clock } from "./clock.js";
import { alreadyExists, invalidArgument, notFound, permissionDenied, unimplemented } from "./errors.js";
import { scopeDigest, type PageTokenCodec } from "./page-token.js";
import type { RunnerRegistry } from "./runner-registry.js";
import { UUID } from "./runners.js";

/** RunnerRole ↔ ResourceRole on RESOURCE_TYPE_RUNNER (docs/reference/gitpod-v1-runner-channel.md 7.5). */
const RESOURCE_ROLE_OF = new Map<RunnerRole, ResourceRole>([
  [RunnerRole.ADMIN, ResourceRole.RUNNER_ADMIN],
  [RunnerRole.USER, ResourceRole.RUNNER_USER],
]);
const RUNNER_ROLE_OF = new Map([...RESOURCE_ROLE_OF].map(([runnerRole, resourceRole]) => [resourceRole, runnerRole]));

const SUPPORTED_ASSIGNMENTS = "this server keeps role assignments on runners only: RESOURCE_TYPE_RUNNER with RESOURCE_ROLE_RUNNER_ADMIN or RESOURCE_ROLE_RUNNER_USER";

function requireRunnerRole(role: RunnerRole): void {
  if (!RESOURCE_ROLE_OF.has(role)) throw invalidArgument("role", "must be RUNNER_ROLE_ADMIN or RUNNER_ROLE_USER", "enum.in");
}

/** "" means "no filter"; anything else must be a UUID (the reference has no rule for these fields). */
function optionalUuid(value: string, field: string): string | undefined {
  if (value === "") return undefined;
  if (!UUID.test(value)) throw invalidArgument(field, "must be a UUID", "string.uuid");
  return value.toLowerCase();
}

function policyMessage(row: PolicyRow): RunnerPolicy {
  return create(RunnerPolicySchema, { groupId: row.groupId, role: row.role });
}

function assignmentMessage(row: PolicyRow): RoleAssignment {
  return create(RoleAssignmentSchema, {
    id: row.id,
    groupId: row.groupId,
    organizationId: row.organizationId,
    resourceId: row.runnerId,
    resourceType: ResourceType.RUNNER,
    resourceRole: RESOURCE_ROLE_OF.get(row.role),
  });
}

const cursorOf = (row: PolicyRow) => ({ createdAt: row.createdAt, id: row.id });

export class RunnerPolicies {
  constructor(
    private readonly store: RunnerPolicyStore,
    private readonly groups: GroupStore,
    private readonly runners: RunnerRegistry,
    private readonly clock: Clock,
    private readonly pageTokens: PageTokenCodec,
  ) {}

  async list(user: UserCaller, runnerId: string, pagination: PaginationRequest | undefined): Promise<{ policies: RunnerPolicy[]; nextToken: string }> {
    const runner = await this.runners.authorize(user, runnerId, "manage");
    const { rows, nextToken } = await this.pageTokens.page(
      pagination,
      scopeDigest(["ListRunnerPolicies", user.organizationId, runner.id]),
      "ListRunnerPolicies",
      (after, limit) => this.store.listForRunner(runner.id, after, limit),
      cursorOf,
    );
    return { policies: rows.map(policyMessage), nextToken };
  }

  async create(user: UserCaller, request: { runnerId: string; groupId: string; role: RunnerRole }): Promise<PolicyRow> {
    requireRunnerRole(request.role);
    const runner = await this.runners.authorize(user, request.runnerId, "manage");
    const row = await this.store.insert(user.organizationId, runner.id, request.groupId, request.role, this.clock.now());
    if (row) return row;
    // Another organization's group is indistinguishable from a missing one.
    if (!(await this.groups.groupById(user.organizationId, request.groupId))) throw notFound(`group ${request.groupId}`);
    throw alreadyExists(`group ${request.groupId} already has a policy on runner ${request.runnerId}: change its role with UpdateRunnerPolicy`);
  }

  async createPolicy(user: UserCaller, request: { runnerId: string; groupId: string; role: RunnerRole }): Promise<RunnerPolicy> {
    return policyMessage(await this.create(user, request));
  }

  async update(user: UserCaller, request: { runnerId: string; groupId: string; role: RunnerRole }): Promise<RunnerPolicy> {
    requireRunnerRole(request.role);
    const runner = await this.runners.authorize(user, request.runnerId, "manage");
    const row = await this.store.update(user.organizationId, runner.id, request.groupId, request.role);
    if (!row) throw this.noPolicy(request);
    return policyMessage(row);
  }

  async delete(user: UserCaller, request: { runnerId: string; groupId: string }): Promise<void> {
    const runner = await this.runners.authorize(user, request.runnerId, "manage");
    if (!(await this.store.delete(user.organizationId, runner.id, request.groupId))) throw this.noPolicy(request);
  }

  private noPolicy(request: { runnerId: string; groupId: string }) {
    return notFound(`policy of group ${request.groupId} on runner ${request.runnerId}`);
  }

  // --- GroupService: the same policies as role assignments ---

  async createAssignment(user: UserCaller, request: CreateRoleAssignmentRequest): Promise<RoleAssignment> {
    if (request.resourceType === ResourceType.UNSPECIFIED) throw invalidArgument("resource_type", "is required", "required");
    if (request.resourceRole === ResourceRole.UNSPECIFIED) throw invalidArgument("resource_role", "is required", "required");
    const role = RUNNER_ROLE_OF.get(request.resourceRole);
    if (request.resourceType !== ResourceType.RUNNER || role === undefined) throw unimplemented(`CreateRoleAssignment: ${SUPPORTED_ASSIGNMENTS}`);
    return assignmentMessage(await this.create(user, { runnerId: request.resourceId, groupId: request.groupId, role }));
  }

  async listAssignments(user: UserCaller, request: ListRoleAssignmentsRequest): Promise<{ assignments: RoleAssignment[]; nextToken: string }> {
    const filter = request.filter;
    const groupId = optionalUuid(filter?.groupId ?? "", "filter.group_id");
    const userId = optionalUuid(filter?.userId ?? "", "filter.user_id");
    const resourceId = optionalUuid(filter?.resourceId ?? "", "filter.resource_id");
    const runnerIds = [...new Set([...(resourceId ? [resourceId] : []), ...(filter?.resourceIds ?? []).map((id) => id.toLowerCase())])].sort();
    const types = filter?.resourceTypes ?? [];
    const resourceRoles = filter?.resourceRoles ?? [];
    const roles = resourceRoles.flatMap((role) => RUNNER_ROLE_OF.get(role) ?? []).sort();
    // Every assignment here is on a runner: a filter that rules runners or their roles out matches nothing.
    const nothing = (types.length > 0 && !types.includes(ResourceType.RUNNER)) || (resourceRoles.length > 0 && roles.length === 0);
    const scope = listingScope(user);
    const { rows, nextToken } = await this.pageTokens.page(
      request.pagination,
      scopeDigest(["ListRoleAssignments", user.organizationId, groupId ?? "", userId ?? "", runnerIds.join(","), roles.join(","), String(nothing)]),
      "ListRoleAssignments",
      (after, limit) =>
        nothing ? Promise.resolve([]) : this.store.listAssignments(user.organizationId, { groupId, userId, runnerIds, roles }, scope, after, limit),
      cursorOf,
    );
    return { assignments: rows.map(assignmentMessage), nextToken };
  }

  async deleteAssignment(user: UserCaller, assignmentId: string): Promise<void> {
    const row = await this.store.byId(user.organizationId, assignmentId);
    const access = row ? roleAssignmentAccess(user, row, await this.runners.accessTo(user, row.runnerId)) : "none";
    // An assignment the caller may not see is missing to them (it would name a runner they may not see).
    if (!row || access === "none") throw notFound(`role assignment ${assignmentId}`);
    if (access !== "manage") {
      throw permissionDenied(`role assignment ${assignmentId}: changing it needs an organization admin or a group with RUNNER_ROLE_ADMIN on its runner`);
    }
    if (!(await this.store.delete(user.organizationId, row.runnerId, row.groupId))) throw notFound(`role assignment ${assignmentId}`);
  }
}

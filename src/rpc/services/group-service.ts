// gitpod.v1.GroupService: thin handlers; the use cases apply the access rules
// (src/domain/access.ts): every user of the organization reads, admins change.
import type { ServiceImpl } from "@connectrpc/connect";
import type { GroupService } from "../../../gen/gitpod/v1/group_pb.js";
import { requireUser } from "../../domain/auth.js";
import type { GroupDirectory } from "../../domain/groups.js";
import type { RunnerPolicies } from "../../domain/runner-policies.js";
import { notImplemented } from "./not-implemented.js";

const noDirectShares =
  "resources are not shared with single principals here; put the user in a group and give the group a role (CreateRoleAssignment or RunnerService.CreateRunnerPolicy)";

export function groupService(groups: GroupDirectory, policies: RunnerPolicies): ServiceImpl<typeof GroupService> {
  return {
    async createGroup(request, ctx) {
      return { group: await groups.create(requireUser(ctx), request) };
    },

    async getGroup(request, ctx) {
      return { group: await groups.get(requireUser(ctx), request) };
    },

    async listGroups(request, ctx) {
      const { groups: page, nextToken } = await groups.list(requireUser(ctx), request);
      return { groups: page, pagination: { nextToken } };
    },

    async updateGroup(request, ctx) {
      return { group: await groups.update(requireUser(ctx), request) };
    },

    async deleteGroup(request, ctx) {
      await groups.delete(requireUser(ctx), request.groupId);
      return {};
    },

    async createMembership(request, ctx) {
      return { member: await groups.createMembership(requireUser(ctx), request) };
    },

    async deleteMembership(request, ctx) {
      await groups.deleteMembership(requireUser(ctx), request.membershipId);
      return {};
    },

    async getMembership(request, ctx) {
      return { member: await groups.getMembership(requireUser(ctx), request) };
    },

    async listMemberships(request, ctx) {
      const { members, nextToken } = await groups.listMemberships(requireUser(ctx), request);
      return { members, pagination: { nextToken } };
    },

    async createRoleAssignment(request, ctx) {
      return { assignment: await policies.createAssignment(requireUser(ctx), request) };
    },

    async listRoleAssignments(request, ctx) {
      const { assignments, nextToken } = await policies.listAssignments(requireUser(ctx), request);
      return { assignments, pagination: { nextToken } };
    },

    async deleteRoleAssignment(request, ctx) {
      await policies.deleteAssignment(requireUser(ctx), request.assignmentId);
      return {};
    },

    shareResourceWithPrincipal: notImplemented("ShareResourceWithPrincipal", noDirectShares),
    unshareResourceWithPrincipal: notImplemented("UnshareResourceWithPrincipal", noDirectShares),
  };
}

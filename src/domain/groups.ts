// The groups of an organization and their members: what each GroupService RPC does. Every
// user of the organization may read them; only admins change them (src/domain/access.ts).
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ResourceType } from "../../gen/gitpod/v1/event_pb.js";
import {
  GroupMembershipSchema,
  GroupSchema,
  type CreateGroupRequest,
  type CreateMembershipRequest,
  type GetGroupRequest,
  type GetMembershipRequest,
  type Group,
  type GroupMembership,
  type ListGroupsRequest,
  type ListMembershipsRequest,
  type UpdateGroupRequest,
} from "../../gen/gitpod/v1/group_pb.js";
import { Principal, type Subject } from "../../gen/gitpod/v1/identity_pb.js";
import type { Revocation } from "../store/credential-revocations.js";
import type { GroupRow, GroupStore, MembershipRow } from "../store/group-store.js";
import { requireMayManageGroups } from "./access.js";
import type { UserCaller } from "./caller.js";
import type { Clock } from "./clock.js";
import { alreadyExists, invalidArgument, notFound, permissionDenied } from "./errors.js";
import { scopeDigest, type PageTokenCodec } from "./page-token.js";
import { UUID } from "./runners.js";

function groupMessage(row: GroupRow): Group {
  return create(GroupSchema, {
    id: row.id,
    organizationId: row.organizationId,
    name: row.name,
    description: row.description,
    createdAt: timestampFromDate(row.createdAt),
    updatedAt: timestampFromDate(row.updatedAt),
    memberCount: row.memberCount,
    // Every group here is made by a user, and direct shares are not supported.
    systemManaged: false,
    directShare: false,
  });
}

/** A member's name is their email: users have no display name here. */
function membershipMessage(row: MembershipRow): GroupMembership {
  return create(GroupMembershipSchema, {
    id: row.id,
    subject: { id: row.userId, principal: Principal.USER },
    groupId: row.groupId,
    name: row.email,
  });
}

const cursorOf = (row: { createdAt: Date; id: string }) => ({ createdAt: row.createdAt, id: row.id });

/** The user a membership request names: only users can be members. */
function memberId(subject: Subject | undefined): string {
  if (!subject) throw invalidArgument("subject", "is required", "required");
  if (subject.principal !== Principal.USER) {
    throw invalidArgument("subject.principal", "must be PRINCIPAL_USER: only users can be members of a group here", "enum.in");
  }
  if (subject.id === "") throw invalidArgument("subject.id", "is required", "required");
  return subject.id.toLowerCase();
}

export class GroupDirectory {
  constructor(
    private readonly store: GroupStore,
    private readonly clock: Clock,
    private readonly pageTokens: PageTokenCodec,
    /** Called after a change of who is in which group, so this replica's cache drops the callers at once. */
    private readonly onRevoked: (revocation: Revocation) => void = () => {},
  ) {}

  private async group(user: UserCaller, groupId: string): Promise<GroupRow> {
    // Another organization's group is indistinguishable from a missing one.
    const row = await this.store.groupById(user.organizationId, groupId);
    if (!row) throw notFound(`group ${groupId}`);
    return row;
  }

  async create(user: UserCaller, request: CreateGroupRequest): Promise<Group> {
    requireMayManageGroups(user);
    if (request.organizationId.toLowerCase() !== user.organizationId) {
      throw permissionDenied(`organization_id: groups can only be created in your own organization (${user.organizationId})`);
    }
    const row = await this.store.insertGroup(user.organizationId, request.name, request.description, this.clock.now());
    if (!row) throw this.nameTaken(request.name);
    return groupMessage(row);
  }

  private nameTaken(name: string) {
    return alreadyExists(`the organization already has a group named "${name}"`);
  }

  /** By `id`, by `name`, or by the deprecated `group_id`. */
  async get(user: UserCaller, request: GetGroupRequest): Promise<Group> {
    if (request.group.case === "name") {
      const row = await this.store.groupByName(user.organizationId, request.group.value);
      if (!row) throw notFound(`group named "${request.group.value}"`);
      return groupMessage(row);
    }
    const id = request.group.case === "id" ? request.group.value : request.groupId;
    if (id === "") throw invalidArgument("id", "name the group by id or name", "required");
    if (!UUID.test(id)) throw invalidArgument("group_id", "must be a UUID", "string.uuid");
    return groupMessage(await this.group(user, id));
  }

  async list(user: UserCaller, request: ListGroupsRequest): Promise<{ groups: Group[]; nextToken: string }> {
    const filter = request.filter;
    const exclude = filter?.excludeAssignedToResource;
    // Only runners carry role assignments here; nothing else has groups to exclude.
    const excludeAssignedToRunner = exclude?.resourceType === ResourceType.RUNNER ? exclude.resourceId.toLowerCase() : undefined;
    const groupIds = [...new Set((filter?.groupIds ?? []).map((id) => id.toLowerCase()))].sort();
    const search = filter?.search ?? "";
    // Every group here has system_managed and direct_share false: asking for true matches nothing.
    const nothing = filter?.systemManaged === true || filter?.directShare === true;
    const { rows, nextToken } = await this.pageTokens.page(
      request.pagination,
      scopeDigest(["ListGroups", user.organizationId, search, groupIds.join(","), excludeAssignedToRunner ?? "", String(nothing)]),
      "ListGroups",
      (after, limit) =>
        nothing ? Promise.resolve([]) : this.store.listGroups(user.organizationId, { search, groupIds, excludeAssignedToRunner }, after, limit),
      cursorOf,
    );
    return { groups: rows.map(groupMessage), nextToken };
  }

  /** Replaces name and description (both are plain fields: an empty description clears it). */
  async update(user: UserCaller, request: UpdateGroupRequest): Promise<Group> {
    requireMayManageGroups(user);
    const result = await this.store.updateGroup(user.organizationId, request.groupId, request.name, request.description, this.clock.now());
    if (result === "missing") throw notFound(`group ${request.groupId}`);
    if (result === "name-taken") throw this.nameTaken(request.name);
    return groupMessage(result);
  }

  /** Its memberships and runner policies go with it. */
  async delete(user: UserCaller, groupId: string): Promise<void> {
    requireMayManageGroups(user);
    if (!(await this.store.deleteGroup(user.organizationId, groupId))) throw notFound(`group ${groupId}`);
    this.onRevoked({ groupId: groupId.toLowerCase() });
  }

  async createMembership(user: UserCaller, request: CreateMembershipRequest): Promise<GroupMembership> {
    requireMayManageGroups(user);
    const userId = memberId(request.subject);
    const result = await this.store.insertMembership(user.organizationId, request.groupId, userId, this.clock.now());
    if (result === "no-group") throw notFound(`group ${request.groupId}`);
    if (result === "no-user") throw notFound(`user ${userId}`);
    if (result === "exists") throw alreadyExists(`user ${userId} is already a member of group ${request.groupId}`);
    this.onRevoked({ userId });
    return membershipMessage(result);
  }

  async deleteMembership(user: UserCaller, membershipId: string): Promise<void> {
    requireMayManageGroups(user);
    const userId = await this.store.deleteMembership(user.organizationId, membershipId);
    if (userId === undefined) throw notFound(`membership ${membershipId}`);
    this.onRevoked({ userId });
  }

  /** `member` is unset when the subject is not a member (not an error). */
  async getMembership(user: UserCaller, request: GetMembershipRequest): Promise<GroupMembership | undefined> {
    const group = await this.group(user, request.groupId);
    const subject = request.subject!; // required by the request's rules
    if (subject.principal !== Principal.USER || subject.id === "") return undefined;
    const row = await this.store.membership(group.id, subject.id);
    return row && membershipMessage(row);
  }

  async listMemberships(user: UserCaller, request: ListMembershipsRequest): Promise<{ members: GroupMembership[]; nextToken: string }> {
    const group = await this.group(user, request.groupId);
    const search = request.filter?.search ?? "";
    const { rows, nextToken } = await this.pageTokens.page(
      request.pagination,
      scopeDigest(["ListMemberships", user.organizationId, group.id, search]),
      "ListMemberships",
      (after, limit) => this.store.listMemberships(group.id, search, after, limit),
      cursorOf,
    );
    return { members: rows.map(membershipMessage), nextToken };
  }
}

// Tenant isolation and who may do what, as a matrix: every RPC of RunnerService (16),
// IdentityService (3), RunnerInteractionService (8), GroupService (14) and EventService (3), called by each kind of
// caller, gets the code in the table below. The requests aim at runner A (organization A) wherever
// they name a runner, and at group U wherever they name a group. Runner A has two policies: group U
// (memberUser is in it) holds RUNNER_ROLE_USER, group M (memberAdmin) RUNNER_ROLE_ADMIN. Protocols
// rotate from cell to cell, so the matrix covers Connect JSON/binary, gRPC and gRPC-Web.
// Afterwards: nothing another caller attempted changed runner A or group U, and "not found" for
// another organization's runner, or for one the caller may not use, is byte for byte the answer
// for a runner that does not exist.
// (test/lifecycle.test.ts and test/access.test.ts check the individual rules in depth; this is the full grid.)
//
//   npx vitest run test/isolation.test.ts
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { create, toBinary, type DescService } from "@bufbuild/protobuf";
import { RunnerRole, RunnerService, type Runner } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { IdentityService, Principal } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerInteractionService } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { GroupService, ResourceRole, type Group, type RoleAssignment } from "../gen/gitpod/v1/group_pb.js";
import { EventService, ResourceType, type ListAuditLogsResponse_AuditLogEntry } from "../gen/gitpod/v1/event_pb.js";
import { issueApiKey } from "../src/domain/accounts.js";
import { IdentityStore } from "../src/store/identity-store.js";
import { frame, outcomeOf, RawClient } from "./raw-rpc.js";
import { postJson, protocols, startServer, type TestServer, type TestUser } from "./harness.js";

// --- The matrix ---------------------------------------------------------------------------------
const callers = [
  "admin", "memberUser", "memberAdmin", "memberNone", "userB", "runnerA", "runnerB", "runnerOrgB", "noToken", "revokedKey", "deletedRunner",
] as const;
type Caller = (typeof callers)[number];

const OK = "OK";
const NF = "NotFound";
const PD = "PermissionDenied";
const UA = "Unauthenticated";
const UI = "Unimplemented";
const UV = "Unavailable";
const FP = "FailedPrecondition";
type Expected = typeof OK | typeof NF | typeof PD | typeof UA | typeof UI | typeof UV | typeof FP;
// Who may use runner A gets what the relayed SCM calls answer for it: runner A has no open stream
// (unavailable) and advertises no capability (unimplemented). One who may manage it gets a logs token.
const LOGS: Expected = OK;

// admin: the admin of organization A. memberUser, memberAdmin, memberNone: members of
// organization A, in group U, in group M, in no group. userB: the admin of organization B.
// runnerA, runnerB: runners of organization A (runner A is the target). runnerOrgB: a runner of
// organization B. revokedKey: an API key of organization A, revoked. deletedRunner: the access
// token of a deleted runner of organization A.
//
//                                                   admin memberUser memberAdmin memberNone userB runnerA runnerB runnerOrgB noToken revokedKey deletedRunner
const matrix: Record<string, Expected[]> = {
  "RunnerService.CreateRunner":                      [OK,   PD,        PD,         PD,        OK,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.GetRunner":                         [OK,   OK,        OK,         NF,        NF,   OK,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.ListRunners":                       [OK,   OK,        OK,         OK,        OK,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.UpdateRunner":                      [OK,   PD,        OK,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.DeleteRunner":                      [OK,   PD,        OK,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.CreateRunnerToken":                 [OK,   PD,        OK,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.CreateRunnerLogsToken":             [LOGS, PD,        LOGS,       NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  // Relayed to runner A, which has no open stream (unavailable) and advertises no capability (unimplemented).
  "RunnerService.ParseContextURL":                   [UV,   UV,        UV,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.SearchRepositories":                [UV,   UV,        UV,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.ListSCMOrganizations":              [UI,   UI,        UI,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.CheckAuthenticationForHost":        [UV,   UV,        UV,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.CheckRepositoryAccess":             [UI,   UI,        UI,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.ListRunnerPolicies":                [OK,   PD,        OK,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.CreateRunnerPolicy":                [OK,   PD,        OK,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.UpdateRunnerPolicy":                [OK,   PD,        OK,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.DeleteRunnerPolicy":                [OK,   PD,        OK,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  // ExchangeToken authenticates by the exchange token in its body; the Authorization header is ignored.
  "IdentityService.ExchangeToken":                   [OK,   OK,        OK,         OK,        OK,   OK,     OK,     OK,        OK,     OK,        OK],
  "IdentityService.GetAuthenticatedIdentity":        [OK,   OK,        OK,         OK,        OK,   OK,     OK,     OK,        UA,     UA,        UA],
  "IdentityService.GetIDToken":                      [OK,   OK,        OK,         OK,        OK,   OK,     OK,     OK,        UA,     UA,        UA],
  "RunnerInteractionService.Signup":                 [PD,   PD,        PD,         PD,        PD,   OK,     OK,     OK,        UA,     UA,        UA],
  "RunnerInteractionService.MarkRunnerActive":       [PD,   PD,        PD,         PD,        PD,   OK,     PD,     PD,        UA,     UA,        UA],
  "RunnerInteractionService.UpdateRunnerStatus":     [PD,   PD,        PD,         PD,        PD,   OK,     PD,     PD,        UA,     UA,        UA],
  "RunnerInteractionService.WatchRequests":          [PD,   PD,        PD,         PD,        PD,   OK,     PD,     PD,        UA,     UA,        UA],
  // A request id no call of runner A has.
  "RunnerInteractionService.SendResponse":           [PD,   PD,        PD,         PD,        PD,   NF,     PD,     PD,        UA,     UA,        UA],
  "RunnerInteractionService.GetLatestVersion":       [PD,   PD,        PD,         PD,        PD,   OK,     PD,     PD,        UA,     UA,        UA],
  "RunnerInteractionService.GetRunnerConfiguration": [PD,   PD,        PD,         PD,        PD,   OK,     PD,     PD,        UA,     UA,        UA],
  // Runner A has no managed metrics.
  "RunnerInteractionService.ReportRunnerMetrics":    [PD,   PD,        PD,         PD,        PD,   FP,     PD,     PD,        UA,     UA,        UA],
  // Groups and memberships are visible to the whole organization; only its admin changes them.
  // Another organization's group is not found, also to that organization's admin.
  "GroupService.CreateGroup":                        [OK,   PD,        PD,         PD,        PD,   PD,     PD,     PD,        UA,     UA,        UA],
  "GroupService.GetGroup":                           [OK,   OK,        OK,         OK,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "GroupService.ListGroups":                         [OK,   OK,        OK,         OK,        OK,   PD,     PD,     PD,        UA,     UA,        UA],
  "GroupService.UpdateGroup":                        [OK,   PD,        PD,         PD,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "GroupService.DeleteGroup":                        [OK,   PD,        PD,         PD,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "GroupService.CreateMembership":                   [OK,   PD,        PD,         PD,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "GroupService.DeleteMembership":                   [OK,   PD,        PD,         PD,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "GroupService.GetMembership":                      [OK,   OK,        OK,         OK,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "GroupService.ListMemberships":                    [OK,   OK,        OK,         OK,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  // Role assignments are runner policies: changed by whoever manages the runner.
  "GroupService.CreateRoleAssignment":               [OK,   PD,        OK,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "GroupService.ListRoleAssignments":                [OK,   OK,        OK,         OK,        OK,   PD,     PD,     PD,        UA,     UA,        UA],
  "GroupService.DeleteRoleAssignment":               [OK,   NF,        OK,         NF,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "GroupService.ShareResourceWithPrincipal":         [UI,   UI,        UI,         UI,        UI,   UI,     UI,     UI,        UA,     UA,        UA],
  "GroupService.UnshareResourceWithPrincipal":       [UI,   UI,        UI,         UI,        UI,   UI,     UI,     UI,        UA,     UA,        UA],
  // Everyone of an organization watches it (seeing what they may see); its audit log is for its admins.
  "EventService.WatchEvents":                        [OK,   OK,        OK,         OK,        OK,   PD,     PD,     PD,        UA,     UA,        UA],
  "EventService.ListAuditLogs":                      [OK,   PD,        PD,         PD,        OK,   PD,     PD,     PD,        UA,     UA,        UA],
  "EventService.GetAuditLog":                        [OK,   PD,        PD,         PD,        NF,   PD,     PD,     PD,        UA,     UA,        UA],
};

// --- Fixtures -------------------------------------------------------------------------------------
let server: TestServer;
let userA: TestUser;
let userB: TestUser;
let runnerA: { runnerId: string; accessToken: string };
let groupU: string;
let groupM: string;
/** A user of organization A that only the admin's CreateMembership adds to group U. */
let joiner: TestUser;
const users = {} as Record<"memberUser" | "memberAdmin" | "memberNone", TestUser>;
const tokens = {} as Record<Caller, string | undefined>;
/** Runners created to be deleted by one cell each, and what that cell got. */
const victims: { runnerId: string; caller: Caller; code: string }[] = [];

const PUBLIC_KEY = new Uint8Array(32).fill(9);

const adminRunners = () => server.runners("connect-json", userA.apiKey);
const adminGroups = () => server.groups("connect-json", userA.apiKey);

/** A runner of organization A (signed up), with runner A's policies unless `open`. */
async function newRunner(user: TestUser, options: { open?: boolean } = {}) {
  const { runner, exchangeToken } = await server.runners("connect-json", user.apiKey).createRunner({ name: "isolation runner", provider: RunnerProvider.AWS_EC2 });
  const { accessToken } = await server.identity("connect-json").exchangeToken({ exchangeToken });
  await server.interaction("connect-json", accessToken).signup({ publicKey: PUBLIC_KEY });
  const runnerId = runner!.runnerId;
  if (user === userA && !options.open) {
    await adminRunners().createRunnerPolicy({ runnerId, groupId: groupU, role: RunnerRole.USER });
    await adminRunners().createRunnerPolicy({ runnerId, groupId: groupM, role: RunnerRole.ADMIN });
  }
  return { runnerId, accessToken };
}

/** A group of organization A with no role on anything, made for one cell. */
async function freshGroup(): Promise<string> {
  return (await adminGroups().createGroup({ organizationId: userA.organizationId, name: `cell ${randomUUID()}` })).group!.id;
}

beforeAll(async () => {
  // A watch stream opens with its first message: a keepalive after a second here.
  server = await startServer({ env: { PUBLIC_URL: "https://rcp.example.com", EVENTS_KEEPALIVE_SECONDS: "1" } }); // an OIDC issuer: GetIDToken, CreateRunnerLogsToken
  userA = await server.newUser();
  userB = await server.newUser();
  for (const name of ["memberUser", "memberAdmin", "memberNone"] as const) users[name] = await server.newUser(userA.organizationSlug);
  joiner = await server.newUser(userA.organizationSlug);
  const group = async (name: string, member: TestUser) => {
    const { group: made } = await adminGroups().createGroup({ organizationId: userA.organizationId, name });
    await adminGroups().createMembership({ groupId: made!.id, subject: { id: member.userId, principal: Principal.USER } });
    return made!.id;
  };
  groupU = await group("group U", users.memberUser);
  groupM = await group("group M", users.memberAdmin);
  runnerA = await newRunner(userA);
  const runnerB = await newRunner(userA);
  const runnerOrgB = await newRunner(userB);
  const deleted = await newRunner(userA);
  await server.identity("grpc", deleted.accessToken).getAuthenticatedIdentity({}); // known (and cached) before the delete
  await adminRunners().deleteRunner({ runnerId: deleted.runnerId });
  const identities = new IdentityStore(server.db);
  const revoked = await issueApiKey(identities, server.clock, { organizationSlug: userA.organizationSlug, userEmail: "revoked@example.com" });
  await server.identity("grpc", revoked.apiKey).getAuthenticatedIdentity({});
  await identities.revokeApiKey(revoked.id, server.clock.now());
  Object.assign(tokens, {
    admin: userA.apiKey,
    memberUser: users.memberUser.apiKey,
    memberAdmin: users.memberAdmin.apiKey,
    memberNone: users.memberNone.apiKey,
    userB: userB.apiKey,
    runnerA: runnerA.accessToken,
    runnerB: runnerB.accessToken,
    runnerOrgB: runnerOrgB.accessToken,
    noToken: undefined,
    revokedKey: revoked.apiKey,
    deletedRunner: deleted.accessToken,
  });
});
afterAll(() => server?.close());

/**
 * The request each RPC gets; it names runner A wherever a runner is named and group U wherever a
 * group is, and passes validation. What one successful cell would change for the next (deleting,
 * creating a unique pair) gets a fixture of its own per cell.
 */
const requests: Record<string, (caller: Caller) => Promise<object> | object> = {
  "RunnerService.CreateRunner": (caller) => ({ name: `created by ${caller}`, provider: RunnerProvider.GCP }),
  "RunnerService.GetRunner": () => ({ runnerId: runnerA.runnerId }),
  "RunnerService.ListRunners": () => ({}),
  "RunnerService.UpdateRunner": (caller) => ({ runnerId: runnerA.runnerId, name: `renamed by ${caller}` }),
  // Each cell deletes its own runner of organization A (with runner A's policies).
  "RunnerService.DeleteRunner": async () => ({ runnerId: (await newRunner(userA)).runnerId }),
  "RunnerService.CreateRunnerToken": () => ({ runnerId: runnerA.runnerId }),
  "RunnerService.CreateRunnerLogsToken": () => ({ runnerId: runnerA.runnerId }),
  "RunnerService.ParseContextURL": () => ({ runnerId: runnerA.runnerId, contextUrl: "https://github.com/gitpod-io/gitpod" }),
  "RunnerService.SearchRepositories": () => ({ runnerId: runnerA.runnerId, searchString: "x" }),
  "RunnerService.ListSCMOrganizations": () => ({ runnerId: runnerA.runnerId, scmHost: "github.com" }),
  "RunnerService.CheckAuthenticationForHost": () => ({ runnerId: runnerA.runnerId, host: "github.com" }),
  "RunnerService.CheckRepositoryAccess": () => ({ runnerId: runnerA.runnerId, repositoryUrl: "https://github.com/gitpod-io/gitpod" }),
  "RunnerService.ListRunnerPolicies": () => ({ runnerId: runnerA.runnerId }),
  "RunnerService.CreateRunnerPolicy": async () => ({ runnerId: runnerA.runnerId, groupId: await freshGroup(), role: RunnerRole.USER }),
  "RunnerService.UpdateRunnerPolicy": () => ({ runnerId: runnerA.runnerId, groupId: groupU, role: RunnerRole.USER }),
  "RunnerService.DeleteRunnerPolicy": async () => {
    const groupId = await freshGroup();
    await adminRunners().createRunnerPolicy({ runnerId: runnerA.runnerId, groupId, role: RunnerRole.USER });
    return { runnerId: runnerA.runnerId, groupId };
  },
  // A fresh exchange token of runner A per cell.
  "IdentityService.ExchangeToken": async () => ({
    exchangeToken: (await adminRunners().createRunnerToken({ runnerId: runnerA.runnerId })).exchangeToken,
  }),
  "IdentityService.GetAuthenticatedIdentity": () => ({}),
  "IdentityService.GetIDToken": () => ({ audience: ["https://example.com"] }),
  "RunnerInteractionService.Signup": () => ({ publicKey: PUBLIC_KEY }),
  "RunnerInteractionService.MarkRunnerActive": () => ({ runnerId: runnerA.runnerId }),
  "RunnerInteractionService.UpdateRunnerStatus": (caller) => ({ runnerId: runnerA.runnerId, version: `reported by ${caller}` }),
  "RunnerInteractionService.WatchRequests": () => ({ runnerId: runnerA.runnerId }),
  "RunnerInteractionService.SendResponse": () => ({ runnerId: runnerA.runnerId, requestId: randomUUID(), response: { case: "callPing", value: {} } }),
  "RunnerInteractionService.GetLatestVersion": () => ({ runnerId: runnerA.runnerId }),
  "RunnerInteractionService.GetRunnerConfiguration": () => ({ runnerId: runnerA.runnerId }),
  "RunnerInteractionService.ReportRunnerMetrics": () => ({ runnerId: runnerA.runnerId, compressedMetrics: new Uint8Array([1]) }),
  // Into organization A, whoever asks.
  "GroupService.CreateGroup": (caller) => ({ organizationId: userA.organizationId, name: `created by ${caller}` }),
  "GroupService.GetGroup": () => ({ group: { case: "id", value: groupU } }),
  "GroupService.ListGroups": () => ({}),
  "GroupService.UpdateGroup": (caller) => ({ groupId: groupU, name: `group U, renamed by ${caller}` }),
  "GroupService.DeleteGroup": async () => ({ groupId: await freshGroup() }),
  "GroupService.CreateMembership": () => ({ groupId: groupU, subject: { id: joiner.userId, principal: Principal.USER } }),
  "GroupService.DeleteMembership": async () => {
    const leaver = await server.newUser(userA.organizationSlug);
    const { member } = await adminGroups().createMembership({ groupId: await freshGroup(), subject: { id: leaver.userId, principal: Principal.USER } });
    return { membershipId: member!.id };
  },
  "GroupService.GetMembership": () => ({ groupId: groupU, subject: { id: users.memberUser.userId, principal: Principal.USER } }),
  "GroupService.ListMemberships": () => ({ groupId: groupU }),
  "GroupService.CreateRoleAssignment": async () => ({
    groupId: await freshGroup(),
    resourceType: ResourceType.RUNNER,
    resourceId: runnerA.runnerId,
    resourceRole: ResourceRole.RUNNER_USER,
  }),
  "GroupService.ListRoleAssignments": () => ({ filter: { resourceId: runnerA.runnerId }, pagination: { pageSize: 100 } }),
  // An assignment on runner A of a group the caller is not in.
  "GroupService.DeleteRoleAssignment": async () => {
    const groupId = await freshGroup();
    await adminRunners().createRunnerPolicy({ runnerId: runnerA.runnerId, groupId, role: RunnerRole.USER });
    const { assignments } = await adminGroups().listRoleAssignments({ filter: { groupId } });
    return { assignmentId: assignments[0]!.id };
  },
  "GroupService.ShareResourceWithPrincipal": () => ({
    resourceType: ResourceType.RUNNER,
    resourceId: runnerA.runnerId,
    principal: Principal.USER,
    principalId: users.memberNone.userId,
    role: ResourceRole.RUNNER_USER,
  }),
  "GroupService.UnshareResourceWithPrincipal": () => ({
    resourceType: ResourceType.RUNNER,
    resourceId: runnerA.runnerId,
    principal: Principal.USER,
    principalId: users.memberNone.userId,
  }),
  "EventService.WatchEvents": () => ({}),
  "EventService.ListAuditLogs": () => ({ filter: { subjectIds: [runnerA.runnerId] } }),
  // An entry of organization A's audit log (runner A's creation).
  "EventService.GetAuditLog": async () => {
    const { entries } = await createClient(EventService, server.transport("connect-json", userA.apiKey)).listAuditLogs({ filter: { subjectIds: [runnerA.runnerId] } });
    return { auditLogEntryId: entries[0]!.id };
  },
};

const services: DescService[] = [RunnerService, IdentityService, RunnerInteractionService, GroupService, EventService];
const rpcs = services.flatMap((service) => service.methods.map((method) => ({ name: `${service.name}.${method.name}`, service, method })));
const organizationA: Caller[] = ["admin", "memberUser", "memberAdmin", "memberNone"];
const isRunner = (caller: Caller) => caller.startsWith("runner") || caller === "deletedRunner";

describe("the matrix", () => {
  it("lists every RPC of the five services, each with a request", () => {
    expect(rpcs).toHaveLength(16 + 3 + 8 + 14 + 3);
    expect(Object.keys(matrix).sort()).toEqual(rpcs.map((rpc) => rpc.name).sort());
    expect(Object.keys(requests).sort()).toEqual(rpcs.map((rpc) => rpc.name).sort());
    for (const row of Object.values(matrix)) expect(row).toHaveLength(callers.length);
  });

  describe.each(rpcs.map((rpc, row) => [rpc.name, rpc, row] as const))("%s", (name, rpc, row) => {
    it.each(callers.map((caller, column) => [caller, column] as const))("as %s", async (caller, column) => {
      const protocol = protocols[(row * callers.length + column) % protocols.length]!;
      const client = createClient(rpc.service, server.transport(protocol, tokens[caller])) as unknown as Record<
        string,
        (request: object) => Promise<Record<string, unknown>>
      >;
      const request = await requests[name]!(caller);
      let code: string = OK;
      let response: Record<string, unknown> | undefined;
      try {
        if (rpc.method.methodKind === "server_streaming") {
          // A stream that opens (its first message arrives) is OK; stop reading then.
          const stream = client[rpc.method.localName]!(request) as unknown as AsyncIterable<Record<string, unknown>>;
          for await (const message of stream) {
            response = message;
            break;
          }
        } else {
          response = await client[rpc.method.localName]!(request);
        }
      } catch (err) {
        code = Code[ConnectError.from(err).code];
      }
      if (name === "RunnerService.DeleteRunner") victims.push({ runnerId: (request as { runnerId: string }).runnerId, caller, code });
      expect({ caller, protocol, code }).toEqual({ caller, protocol, code: matrix[name]![column] });

      // What a successful call returned belongs to the caller.
      if (name === "IdentityService.GetAuthenticatedIdentity" && response) {
        const expectedSubject = { admin: userA.userId, memberNone: users.memberNone.userId, userB: userB.userId, runnerA: runnerA.runnerId }[caller as string];
        if (expectedSubject) expect((response.subject as { id: string }).id).toBe(expectedSubject);
        const organization = caller === "userB" || caller === "runnerOrgB" ? userB.organizationId : userA.organizationId;
        expect(response.organizationId).toBe(organization);
        expect((response.subject as { principal: Principal }).principal).toBe(isRunner(caller) ? Principal.RUNNER : Principal.USER);
      }
      // Lists show exactly what the caller may see.
      if (name === "RunnerService.ListRunners" && response) {
        const ids = (response.runners as Runner[]).map((runner) => runner.runnerId);
        expect(ids.includes(runnerA.runnerId)).toBe(["admin", "memberUser", "memberAdmin"].includes(caller));
      }
      if (name === "GroupService.ListGroups" && response) {
        expect((response.groups as Group[]).some((group) => group.id === groupU)).toBe(organizationA.includes(caller));
      }
      // Organization B's audit log knows nothing of runner A; A's admin sees who created it.
      if (name === "EventService.ListAuditLogs" && response) {
        const entries = response.entries as ListAuditLogsResponse_AuditLogEntry[];
        expect(entries.map((entry) => entry.action)).toEqual(caller === "admin" ? expect.arrayContaining(["CreateRunner"]) : []);
      }
      if (name === "GroupService.ListRoleAssignments" && response) {
        const onRunnerA = (response.assignments as RoleAssignment[]).filter((a) => a.resourceId === runnerA.runnerId).map((a) => a.groupId);
        if (caller === "admin" || caller === "memberAdmin") expect(onRunnerA).toEqual(expect.arrayContaining([groupU, groupM]));
        if (caller === "memberUser") expect(onRunnerA).toEqual([groupU]);
        if (caller === "memberNone" || caller === "userB") expect(onRunnerA).toEqual([]);
      }
    });
  });
});

describe("after the matrix", () => {
  it("runner A carries only the changes of those who manage it (the last one: memberAdmin) and of itself", async () => {
    const { runner } = await adminRunners().getRunner({ runnerId: runnerA.runnerId });
    expect(runner?.name).toBe("renamed by memberAdmin");
    expect(runner?.status?.version).toBe("reported by runnerA");
    const { policies } = await adminRunners().listRunnerPolicies({ runnerId: runnerA.runnerId, pagination: { pageSize: 100 } });
    expect(policies.find((policy) => policy.groupId === groupU)?.role).toBe(RunnerRole.USER);
    expect(policies.find((policy) => policy.groupId === groupM)?.role).toBe(RunnerRole.ADMIN);
  });

  it("group U carries only the admin's changes", async () => {
    const { group } = await adminGroups().getGroup({ group: { case: "id", value: groupU } });
    expect(group?.name).toBe("group U, renamed by admin");
    const { members } = await adminGroups().listMemberships({ groupId: groupU });
    expect(members.map((member) => member.subject?.id).sort()).toEqual([users.memberUser.userId, joiner.userId].sort());
    const { groups } = await adminGroups().listGroups({ filter: { search: "created by" } });
    expect(groups.map((made) => made.name)).toEqual(["created by admin"]);
  });

  it("every runner whose deletion was refused still exists, and the deleted one is gone", async () => {
    expect(victims).toHaveLength(callers.length);
    for (const victim of victims) {
      const found = await server.runners("connect-json", userA.apiKey).getRunner({ runnerId: victim.runnerId }).then(
        () => true,
        () => false,
      );
      expect({ caller: victim.caller, exists: found }).toEqual({ caller: victim.caller, exists: victim.code !== OK });
    }
  });
});

describe("not found", () => {
  let deletedRunnerId: string;
  beforeAll(async () => {
    deletedRunnerId = (await newRunner(userA)).runnerId;
    await server.runners("connect-json", userA.apiKey).deleteRunner({ runnerId: deletedRunnerId });
  });

  // Another organization's runner, a deleted runner, a runner the caller may not use and an id
  // that never existed: one answer. (Deleting a deleted runner again is OK for its owner, by
  // design: DeleteRunner is idempotent.)
  const targets = (procedure: string) =>
    [
      { what: "another organization's runner", runnerId: runnerA.runnerId, token: userB.apiKey },
      { what: "a deleted runner", runnerId: deletedRunnerId, token: userA.apiKey },
      { what: "a runner the member may not use", runnerId: runnerA.runnerId, token: users.memberNone.apiKey },
      { what: "a runner that never existed", runnerId: randomUUID(), token: userA.apiKey },
      { what: "a runner that never existed, asked by a member", runnerId: randomUUID(), token: users.memberNone.apiKey },
    ].filter((target) => procedure !== "DeleteRunner" || target.what !== "a deleted runner");
  const procedures = ["GetRunner", "UpdateRunner", "DeleteRunner", "CreateRunnerToken", "ListRunnerPolicies", "CheckRepositoryAccess"];
  const bodyOf = (procedure: string, runnerId: string) =>
    procedure === "UpdateRunner"
      ? { runnerId, name: "probe" }
      : procedure === "CheckRepositoryAccess"
        ? { runnerId, repositoryUrl: "https://github.com/a/b" }
        : { runnerId };

  it.each(procedures)("%s answers byte for byte the same over Connect JSON, modulo the id", async (procedure) => {
    const answers = await Promise.all(
      targets(procedure).map(async ({ runnerId, token }) => {
        const body = bodyOf(procedure, runnerId);
        const response = await postJson(server, `gitpod.v1.RunnerService/${procedure}`, body, { authorization: `Bearer ${token}` });
        return { status: response.status, body: JSON.stringify(response.body).replaceAll(runnerId, "<id>") };
      }),
    );
    expect(answers[0]).toEqual({ status: 404, body: expect.stringContaining('"code":"not_found"') });
    for (const answer of answers) expect(answer).toEqual(answers[0]);
  });

  it.each(procedures)("%s answers the same grpc-status, grpc-message and trailers over gRPC, modulo the id", async (procedure) => {
    const raw = new RawClient("127.0.0.1", server.port);
    try {
      const method = RunnerService.methods.find((m) => m.name === procedure)!;
      const answers = await Promise.all(
        targets(procedure).map(async ({ runnerId, token }) => {
          const message = create(method.input, bodyOf(procedure, runnerId));
          const response = await raw.send({
            method: "POST",
            path: `/gitpod.v1.RunnerService/${procedure}`,
            http: "2",
            headers: [["content-type", "application/grpc"], ["te", "trailers"], ["authorization", `Bearer ${token}`]],
            body: frame(toBinary(method.input, message)),
          });
          const { code, message: text } = outcomeOf(response);
          const metadata = { ...response.headers, ...response.trailers };
          for (const name of ["date", "x-request-id", "grpc-message"]) delete metadata[name];
          return { code, message: text.replaceAll(runnerId, "<id>"), metadata, body: response.body.toString("hex") };
        }),
      );
      expect(answers[0]!.code).toBe("not_found");
      for (const answer of answers) expect(answer).toEqual(answers[0]);
    } finally {
      raw.close();
    }
  });
});

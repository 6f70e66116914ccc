// Who may do what, rule by rule (src/domain/access.ts; the README's "Who may do what"):
// organization roles, runners with and without policies, the runner policy RPCs, groups,
// memberships and role assignments, and that every change applies to the very next call.
// (test/isolation.test.ts is the full grid of callers × RPCs × protocols.)
//
//   npx vitest run test/access.test.ts
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Gitpod from "@gitpod/sdk";
import { Code, type ConnectError } from "@connectrpc/connect";
import { OrganizationRole } from "../gen/gitpod/v1/organization_pb.js";
import { requireRunnerAccess, runnerAccess } from "../src/domain/access.js";
import type { UserCaller } from "../src/domain/caller.js";
import { ResourceType } from "../gen/gitpod/v1/event_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ResourceRole, type ListGroupsRequest_FilterSchema } from "../gen/gitpod/v1/group_pb.js";
import { Principal } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { RunnerRole } from "../gen/gitpod/v1/runner_pb.js";
import { IdentityStore, ROLE_ADMIN, ROLE_MEMBER } from "../src/store/identity-store.js";
import { codeOf, failure, startServer, type Protocol, type TestServer, type TestUser } from "./harness.js";

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server?.close());

const runners = (user: TestUser, protocol: Protocol = "connect-json") => server.runners(protocol, user.apiKey);
const groups = (user: TestUser, protocol: Protocol = "connect-json") => server.groups(protocol, user.apiKey);
const subject = (user: TestUser) => ({ id: user.userId, principal: Principal.USER });

async function newRunner(admin: TestUser, name = "team runner"): Promise<string> {
  const { runner } = await runners(admin).createRunner({ name, provider: RunnerProvider.GCP });
  return runner!.runnerId;
}

async function newGroup(admin: TestUser, name: string, members: TestUser[] = []): Promise<string> {
  const { group } = await groups(admin).createGroup({ organizationId: admin.organizationId, name });
  for (const member of members) await groups(admin).createMembership({ groupId: group!.id, subject: subject(member) });
  return group!.id;
}

const listed = async (user: TestUser) => (await runners(user).listRunners({ pagination: { pageSize: 100 } })).runners.map((r) => r.runnerId);

/** An organization: its admin and three members. */
async function newOrganization() {
  const admin = await server.newUser();
  const [alice, bob, carol] = await Promise.all([1, 2, 3].map(() => server.newUser(admin.organizationSlug)));
  return { admin: admin, alice: alice!, bob: bob!, carol: carol! };
}

describe("the rules, as functions", () => {
  const org = randomUUID();
  const [u, m] = [randomUUID(), randomUUID()];
  const caller = (role: OrganizationRole, groupIds: string[] = []): UserCaller => ({
    kind: "user", userId: randomUUID(), organizationId: org, organizationTier: "", role, groupIds,
  });
  const runner = { organizationId: org, policies: [{ groupId: u, role: RunnerRole.USER }, { groupId: m, role: RunnerRole.ADMIN }] };

  it("decide what a caller may do with a runner", () => {
    const admin = caller(OrganizationRole.ADMIN);
    expect(runnerAccess(admin, runner)).toBe("manage");
    expect(runnerAccess(admin, { organizationId: randomUUID(), policies: [] })).toBe("none");
    expect(runnerAccess(caller(OrganizationRole.MEMBER), { organizationId: org, policies: [] })).toBe("use");
    expect(runnerAccess(caller(OrganizationRole.MEMBER), runner)).toBe("none");
    expect(runnerAccess(caller(OrganizationRole.MEMBER, [u]), runner)).toBe("use");
    expect(runnerAccess(caller(OrganizationRole.MEMBER, [u, m]), runner)).toBe("manage");
    expect(runnerAccess(caller(OrganizationRole.MEMBER, [m]), { ...runner, organizationId: randomUUID() })).toBe("none");
    // Admins need no policies; for a member, a runner read without them is an error, never "no policies".
    expect(runnerAccess(admin, { organizationId: org })).toBe("manage");
    expect(() => runnerAccess(caller(OrganizationRole.MEMBER), { organizationId: org })).toThrow(/policies were not read/);
  });

  it("answer not_found for what the caller may not see and permission_denied for what they may only use", () => {
    const member = caller(OrganizationRole.MEMBER, [u]);
    const denied = (call: () => void) => {
      try {
        call();
      } catch (err) {
        return [Code[(err as ConnectError).code], (err as ConnectError).rawMessage.split(":")[0]];
      }
      return ["OK"];
    };
    expect(denied(() => requireRunnerAccess(member, runner, "r1", "use"))).toEqual(["OK"]);
    expect(denied(() => requireRunnerAccess(member, runner, "r1", "manage"))).toEqual(["PermissionDenied", "runner r1"]);
    expect(denied(() => requireRunnerAccess(caller(OrganizationRole.MEMBER), runner, "r1", "use"))).toEqual(["NotFound", "runner r1 not found"]);
    expect(denied(() => requireRunnerAccess(member, undefined, "r1", "use"))).toEqual(["NotFound", "runner r1 not found"]);
  });
});

describe("organization roles", () => {
  it("makes the first user of an organization its admin and later ones members, who may not create runners", async () => {
    const { admin, alice } = await newOrganization();
    const users = await new IdentityStore(server.db).listUsers(admin.organizationSlug);
    expect(Object.fromEntries(users.map((user) => [user.id, user.role]))).toMatchObject({ [admin.userId]: ROLE_ADMIN, [alice.userId]: ROLE_MEMBER });
    await newRunner(admin);
    const err = await failure(runners(alice).createRunner({ name: "not mine to make", provider: RunnerProvider.GCP }));
    expect([err.code, err.rawMessage]).toEqual([Code.PermissionDenied, "only organization admins may create runners"]);
  });
});

describe("a runner without policies", () => {
  let org: Awaited<ReturnType<typeof newOrganization>>;
  let runnerId: string;
  beforeAll(async () => {
    org = await newOrganization();
    runnerId = await newRunner(org.admin, "open runner");
  });

  it("is read, listed and used by every member", async () => {
    expect((await runners(org.alice).getRunner({ runnerId })).runner?.name).toBe("open runner");
    expect(await listed(org.alice)).toContain(runnerId);
    // Use: the SCM calls get past the access check to the runner (which has no open stream).
    expect(await codeOf(runners(org.alice).parseContextURL({ runnerId, contextUrl: "https://github.com/a/b" }))).toBe("Unavailable");
  });

  it("is managed by organization admins only", async () => {
    const alice = runners(org.alice, "grpc");
    const denied = await Promise.all([
      codeOf(alice.updateRunner({ runnerId, name: "renamed" })),
      codeOf(alice.deleteRunner({ runnerId })),
      codeOf(alice.createRunnerToken({ runnerId })),
      codeOf(alice.listRunnerPolicies({ runnerId })),
      codeOf(alice.createRunnerPolicy({ runnerId, groupId: randomUUID(), role: RunnerRole.USER })),
      codeOf(alice.createRunnerLogsToken({ runnerId })),
    ]);
    expect(denied).toEqual(Array(6).fill("PermissionDenied"));
    await runners(org.admin).updateRunner({ runnerId, name: "renamed by the admin" });
    expect((await runners(org.alice).getRunner({ runnerId })).runner?.name).toBe("renamed by the admin");
  });
});

describe("handing a runner to one team, managed by another", () => {
  // alice is in "builders" (RUNNER_ROLE_USER on the runner), bob in "fleet" (RUNNER_ROLE_ADMIN), carol in no group.
  let org: Awaited<ReturnType<typeof newOrganization>>;
  let runnerId: string;
  let openRunnerId: string;
  let builders: string;
  let fleet: string;
  beforeAll(async () => {
    org = await newOrganization();
    runnerId = await newRunner(org.admin, "builders' runner");
    openRunnerId = await newRunner(org.admin, "everyone's runner");
    builders = await newGroup(org.admin, "builders", [org.alice]);
    fleet = await newGroup(org.admin, "fleet", [org.bob]);
    await runners(org.admin).createRunnerPolicy({ runnerId, groupId: builders, role: RunnerRole.USER });
    await runners(org.admin).createRunnerPolicy({ runnerId, groupId: fleet, role: RunnerRole.ADMIN });
  });

  it("lets the team read, list and use it, but not manage it", async () => {
    expect((await runners(org.alice).getRunner({ runnerId })).runner?.runnerId).toBe(runnerId);
    expect(await listed(org.alice)).toEqual(expect.arrayContaining([runnerId, openRunnerId]));
    expect(await codeOf(runners(org.alice).searchRepositories({ runnerId, searchString: "x" }))).toBe("Unavailable");
    expect(await codeOf(runners(org.alice).updateRunner({ runnerId, name: "mine now" }))).toBe("PermissionDenied");
    expect(await codeOf(runners(org.alice).listRunnerPolicies({ runnerId }))).toBe("PermissionDenied");
  });

  it("hides it from everyone else, exactly like a runner that does not exist", async () => {
    const missing = randomUUID();
    for (const protocol of ["connect-json", "grpc"] as const) {
      const carol = runners(org.carol, protocol);
      const hidden = await failure(carol.getRunner({ runnerId }));
      const absent = await failure(carol.getRunner({ runnerId: missing }));
      expect([hidden.code, hidden.rawMessage.replace(runnerId, "<id>")]).toEqual([absent.code, absent.rawMessage.replace(missing, "<id>")]);
      expect(hidden.code).toBe(Code.NotFound);
      for (const call of [
        () => carol.updateRunner({ runnerId, name: "x-x-x" }),
        () => carol.createRunnerToken({ runnerId }),
        () => carol.listRunnerPolicies({ runnerId }),
        () => carol.checkRepositoryAccess({ runnerId, repositoryUrl: "https://github.com/a/b" }),
      ]) {
        expect(await codeOf(call)).toBe("NotFound");
      }
    }
    const visible = await listed(org.carol);
    expect(visible).toContain(openRunnerId);
    expect(visible).not.toContain(runnerId);
  });

  it("lets the managing team manage it without being organization admins", async () => {
    const bob = runners(org.bob, "grpc-web");
    await bob.updateRunner({ runnerId, name: "managed by fleet" });
    expect((await bob.createRunnerToken({ runnerId })).exchangeToken).toMatch(/^rcpx_/);
    const { policies } = await bob.listRunnerPolicies({ runnerId });
    expect(policies.map((p) => [p.groupId, p.role]).sort()).toEqual([[builders, RunnerRole.USER], [fleet, RunnerRole.ADMIN]].sort());
    // It may hand the runner to one more group, and take it back.
    const extra = await newGroup(org.admin, "visitors", [org.carol]);
    await bob.createRunnerPolicy({ runnerId, groupId: extra, role: RunnerRole.USER });
    expect((await runners(org.carol).getRunner({ runnerId })).runner?.name).toBe("managed by fleet");
    await bob.deleteRunnerPolicy({ runnerId, groupId: extra });
    expect(await codeOf(runners(org.carol).getRunner({ runnerId }))).toBe("NotFound");
    // But it manages only this runner, and creates none.
    expect(await codeOf(bob.updateRunner({ runnerId: openRunnerId, name: "not ours" }))).toBe("PermissionDenied");
    expect(await codeOf(bob.createRunner({ name: "fleet's own", provider: RunnerProvider.GCP }))).toBe("PermissionDenied");
  });

  it("lets the managing team delete it", async () => {
    const doomed = await newRunner(org.admin, "to be deleted by fleet");
    await runners(org.admin).createRunnerPolicy({ runnerId: doomed, groupId: fleet, role: RunnerRole.ADMIN });
    expect(await codeOf(runners(org.alice).deleteRunner({ runnerId: doomed }))).toBe("NotFound");
    await runners(org.bob).deleteRunner({ runnerId: doomed });
    expect(await codeOf(runners(org.admin).getRunner({ runnerId: doomed }))).toBe("NotFound");
  });

  it("keeps the organization admin in charge of everything", async () => {
    expect(await listed(org.admin)).toEqual(expect.arrayContaining([runnerId, openRunnerId]));
    expect((await runners(org.admin).listRunnerPolicies({ runnerId })).policies).toHaveLength(2);
    await runners(org.admin).updateRunner({ runnerId, name: "admin was here" });
  });
});

describe("the runner policy RPCs", () => {
  let org: Awaited<ReturnType<typeof newOrganization>>;
  let runnerId: string;
  let team: string;
  beforeAll(async () => {
    org = await newOrganization();
    runnerId = await newRunner(org.admin);
    team = await newGroup(org.admin, "team", [org.alice]);
  });

  it("keep one policy per runner and group, and answer already_exists and not_found", async () => {
    const admin = runners(org.admin, "connect-binary");
    const { policy } = await admin.createRunnerPolicy({ runnerId, groupId: team, role: RunnerRole.USER });
    expect([policy?.groupId, policy?.role]).toEqual([team, RunnerRole.USER]);
    const twice = await failure(admin.createRunnerPolicy({ runnerId, groupId: team, role: RunnerRole.ADMIN }));
    expect(twice.code).toBe(Code.AlreadyExists);
    const other = await newGroup(org.admin, "not on the runner");
    expect(await codeOf(admin.updateRunnerPolicy({ runnerId, groupId: other, role: RunnerRole.ADMIN }))).toBe("NotFound");
    expect(await codeOf(admin.deleteRunnerPolicy({ runnerId, groupId: other }))).toBe("NotFound");
    expect((await admin.updateRunnerPolicy({ runnerId, groupId: team, role: RunnerRole.ADMIN })).policy?.role).toBe(RunnerRole.ADMIN);
    // The new role applies to the next call: alice now manages the runner.
    await runners(org.alice).updateRunner({ runnerId, name: "alice manages this" });
    await admin.deleteRunnerPolicy({ runnerId, groupId: team });
    expect(await codeOf(admin.deleteRunnerPolicy({ runnerId, groupId: team }))).toBe("NotFound");
  });

  it("take only groups of the caller's organization, and only the two runner roles", async () => {
    const stranger = await server.newUser();
    const foreign = await newGroup(stranger, "someone else's");
    const admin = runners(org.admin);
    const missing = randomUUID();
    const [foreignErr, missingErr] = await Promise.all([
      failure(admin.createRunnerPolicy({ runnerId, groupId: foreign, role: RunnerRole.USER })),
      failure(admin.createRunnerPolicy({ runnerId, groupId: missing, role: RunnerRole.USER })),
    ]);
    expect(foreignErr.code).toBe(Code.NotFound);
    expect(foreignErr.rawMessage.replace(foreign, "<id>")).toBe(missingErr.rawMessage.replace(missing, "<id>"));
    expect(foreignErr.rawMessage).toContain("group");
    for (const role of [RunnerRole.UNSPECIFIED, 7 as RunnerRole]) {
      const invalid = await failure(admin.createRunnerPolicy({ runnerId, groupId: team, role }));
      expect([invalid.code, invalid.rawMessage]).toEqual([Code.InvalidArgument, "role: must be RUNNER_ROLE_ADMIN or RUNNER_ROLE_USER [enum.in]"]);
    }
    expect(await codeOf(admin.updateRunnerPolicy({ runnerId, groupId: team, role: RunnerRole.UNSPECIFIED }))).toBe("InvalidArgument");
    // Another organization's runner is not found, also to its admin.
    expect(await codeOf(runners(stranger).createRunnerPolicy({ runnerId, groupId: foreign, role: RunnerRole.USER }))).toBe("NotFound");
  });

  it("list page by page", async () => {
    const runner = await newRunner(org.admin, "many policies");
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
      server.clock.advance(1);
      const groupId = await newGroup(org.admin, `paged ${i}`);
      await runners(org.admin).createRunnerPolicy({ runnerId: runner, groupId, role: i % 2 ? RunnerRole.ADMIN : RunnerRole.USER });
      made.push(groupId);
    }
    const seen: string[] = [];
    let token = "";
    do {
      const { policies, pagination } = await runners(org.admin, "grpc").listRunnerPolicies({ runnerId: runner, pagination: { pageSize: 2, token } });
      expect(policies.length).toBeLessThanOrEqual(2);
      seen.push(...policies.map((p) => p.groupId));
      token = pagination?.nextToken ?? "";
    } while (token !== "");
    expect(seen).toEqual(made);
    // A token of one runner's list is not valid for another's.
    const first = await runners(org.admin).listRunnerPolicies({ runnerId: runner, pagination: { pageSize: 2 } });
    expect(await codeOf(runners(org.admin).listRunnerPolicies({ runnerId, pagination: { token: first.pagination!.nextToken } }))).toBe("InvalidArgument");
  });

  it("go with a deleted group: the runner falls back to the whole organization", async () => {
    const runner = await newRunner(org.admin, "team only, for now");
    const only = await newGroup(org.admin, "the only team", [org.alice]);
    await runners(org.admin).createRunnerPolicy({ runnerId: runner, groupId: only, role: RunnerRole.ADMIN });
    expect(await codeOf(runners(org.bob).getRunner({ runnerId: runner }))).toBe("NotFound");
    await groups(org.admin).deleteGroup({ groupId: only });
    expect((await runners(org.admin).listRunnerPolicies({ runnerId: runner })).policies).toEqual([]);
    expect((await runners(org.bob).getRunner({ runnerId: runner })).runner?.runnerId).toBe(runner);
    // alice's cached credentials named the group; she is an ordinary member again, at once.
    expect(await codeOf(runners(org.alice).updateRunner({ runnerId: runner, name: "still mine?" }))).toBe("PermissionDenied");
  });

  it("are not_found for a deleted runner", async () => {
    const runner = await newRunner(org.admin, "short-lived");
    await runners(org.admin).deleteRunner({ runnerId: runner });
    expect(await codeOf(runners(org.admin).listRunnerPolicies({ runnerId: runner }))).toBe("NotFound");
    expect(await codeOf(runners(org.admin).createRunnerPolicy({ runnerId: runner, groupId: team, role: RunnerRole.USER }))).toBe("NotFound");
  });
});

describe("changes apply to the next call", () => {
  it("of memberships and policies, on the server that made them, with the caller's key cached", async () => {
    const org = await newOrganization();
    const runnerId = await newRunner(org.admin);
    const team = await newGroup(org.admin, "team", [org.alice]);
    expect((await runners(org.carol).getRunner({ runnerId })).runner).toBeDefined(); // carol's key is cached now
    await runners(org.admin).createRunnerPolicy({ runnerId, groupId: team, role: RunnerRole.USER });
    expect(await codeOf(runners(org.carol).getRunner({ runnerId }))).toBe("NotFound");
    const { member } = await groups(org.admin).createMembership({ groupId: team, subject: subject(org.carol) });
    expect((await runners(org.carol).getRunner({ runnerId })).runner).toBeDefined();
    await groups(org.admin).deleteMembership({ membershipId: member!.id });
    expect(await codeOf(runners(org.carol).getRunner({ runnerId }))).toBe("NotFound");
    await runners(org.admin).updateRunnerPolicy({ runnerId, groupId: team, role: RunnerRole.ADMIN });
    await runners(org.alice).updateRunner({ runnerId, name: "alice manages it now" });
  });

  it("of an organization role changed by the operator (CLI), through NOTIFY, within milliseconds", async () => {
    const org = await newOrganization();
    expect(await codeOf(runners(org.alice).createRunner({ name: "not yet", provider: RunnerProvider.GCP }))).toBe("PermissionDenied");
    const identities = new IdentityStore(server.db); // what `cli user set-role` runs, from outside the server
    expect((await identities.setRole(org.admin.organizationSlug, (await emailOf(org.alice)), ROLE_ADMIN)).outcome).toBe("set");
    const promotedAt = performance.now();
    await eventually(async () => (await runners(org.alice).createRunner({ name: "now I may", provider: RunnerProvider.GCP })).runner);
    expect((await identities.setRole(org.admin.organizationSlug, await emailOf(org.alice), ROLE_MEMBER)).outcome).toBe("set");
    await eventually(async () => (await codeOf(runners(org.alice).createRunner({ name: "not any more", provider: RunnerProvider.GCP }))) === "PermissionDenied");
    console.log(`organization role change applied by the server after ${Math.round(performance.now() - promotedAt)} ms (promotion and demotion)`);
  });
});

async function emailOf(user: TestUser): Promise<string> {
  const users = await new IdentityStore(server.db).listUsers(user.organizationSlug);
  return users.find((candidate) => candidate.id === user.userId)!.email;
}

/** Polls `check` until it returns something truthy, within 2 s (a NOTIFY round trip). */
async function eventually(check: () => Promise<unknown>): Promise<void> {
  const deadline = performance.now() + 2_000;
  for (;;) {
    const ok = await check().catch(() => false);
    if (ok) return;
    if (performance.now() > deadline) throw new Error("not within 2 s");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("groups", () => {
  let org: Awaited<ReturnType<typeof newOrganization>>;
  beforeAll(async () => {
    org = await newOrganization();
  });

  it("are created, found by id, name and the deprecated group_id, renamed and deleted by admins", async () => {
    const admin = groups(org.admin, "grpc");
    const { group } = await admin.createGroup({ organizationId: org.admin.organizationId, name: "Platform", description: "runs the fleet" });
    expect(group).toMatchObject({ organizationId: org.admin.organizationId, name: "Platform", description: "runs the fleet", memberCount: 0 });
    expect(group?.createdAt).toEqual(group?.updatedAt);
    const id = group!.id;
    for (const lookup of [{ group: { case: "id", value: id } }, { group: { case: "name", value: "Platform" } }, { groupId: id }] as const) {
      expect((await admin.getGroup(lookup)).group?.id).toBe(id);
    }
    expect(await codeOf(admin.getGroup({}))).toBe("InvalidArgument");
    expect(await codeOf(admin.getGroup({ groupId: "not-a-uuid" }))).toBe("InvalidArgument");
    expect(await codeOf(admin.createGroup({ organizationId: org.admin.organizationId, name: "Platform" }))).toBe("AlreadyExists");
    await admin.createGroup({ organizationId: org.admin.organizationId, name: "Taken" });
    expect(await codeOf(admin.updateGroup({ groupId: id, name: "Taken" }))).toBe("AlreadyExists");
    const { group: renamed } = await admin.updateGroup({ groupId: id, name: "Platform team" });
    expect([renamed?.name, renamed?.description]).toEqual(["Platform team", ""]); // both fields are replaced
    await admin.deleteGroup({ groupId: id });
    expect(await codeOf(admin.getGroup({ group: { case: "id", value: id } }))).toBe("NotFound");
    expect(await codeOf(admin.deleteGroup({ groupId: id }))).toBe("NotFound");
    expect(await codeOf(admin.updateGroup({ groupId: id, name: "ghost" }))).toBe("NotFound");
  });

  it("are changed by organization admins only, in their own organization, and read by every member", async () => {
    const id = await newGroup(org.admin, "readable", [org.bob]);
    const alice = groups(org.alice, "grpc-web");
    expect((await alice.getGroup({ group: { case: "id", value: id } })).group?.memberCount).toBe(1);
    expect((await alice.listGroups({})).groups.map((g) => g.id)).toContain(id);
    expect((await alice.listMemberships({ groupId: id })).members.map((m) => m.subject?.id)).toEqual([org.bob.userId]);
    expect((await alice.getMembership({ groupId: id, subject: subject(org.bob) })).member?.subject?.id).toBe(org.bob.userId);
    const denied = await Promise.all([
      codeOf(alice.createGroup({ organizationId: org.alice.organizationId, name: "mine" })),
      codeOf(alice.updateGroup({ groupId: id, name: "renamed" })),
      codeOf(alice.deleteGroup({ groupId: id })),
      codeOf(alice.createMembership({ groupId: id, subject: subject(org.alice) })),
    ]);
    expect(denied).toEqual(Array(4).fill("PermissionDenied"));
    const stranger = await server.newUser();
    const foreign = await failure(groups(stranger).createGroup({ organizationId: org.admin.organizationId, name: "intruders" }));
    expect(foreign.code).toBe(Code.PermissionDenied);
    expect(await codeOf(groups(stranger).getGroup({ group: { case: "id", value: id } }))).toBe("NotFound");
    expect(await codeOf(groups(stranger).listMemberships({ groupId: id }))).toBe("NotFound");
    expect((await groups(stranger).listGroups({})).groups.map((g) => g.id)).not.toContain(id);
  });

  it("are listed page by page, oldest first, with filters", async () => {
    const fresh = await newOrganization();
    const made: string[] = [];
    for (const name of ["Alpha", "Beta", "Gamma", "Delta", "Epsilon"]) {
      server.clock.advance(1);
      made.push(await newGroup(fresh.admin, name));
    }
    const walk = async (filter?: MessageInitShape<typeof ListGroupsRequest_FilterSchema>) => {
      const ids: string[] = [];
      let token = "";
      do {
        const { groups: page, pagination } = await groups(fresh.alice, "connect-binary").listGroups({ filter, pagination: { pageSize: 2, token } });
        ids.push(...page.map((g) => g.id));
        token = pagination?.nextToken ?? "";
      } while (token);
      return ids;
    };
    expect(await walk()).toEqual(made);
    expect(await walk({ search: "TA" })).toEqual([made[1], made[3]]); // Beta, Delta
    expect(await walk({ groupIds: [made[4]!, made[0]!] })).toEqual([made[0], made[4]]);
    expect(await walk({ systemManaged: true })).toEqual([]);
    expect(await walk({ systemManaged: false, directShare: false })).toEqual(made);
    const runnerId = await newRunner(fresh.admin);
    await runners(fresh.admin).createRunnerPolicy({ runnerId, groupId: made[2]!, role: RunnerRole.USER });
    const unassigned = await walk({ excludeAssignedToResource: { resourceType: ResourceType.RUNNER, resourceId: runnerId } });
    expect(unassigned).toEqual(made.filter((_, i) => i !== 2));
    // A page token is bound to its list and filter.
    const first = await groups(fresh.alice).listGroups({ pagination: { pageSize: 2 } });
    const token = first.pagination!.nextToken;
    expect(await codeOf(groups(fresh.alice).listGroups({ pagination: { token }, filter: { search: "a" } }))).toBe("InvalidArgument");
    expect(await codeOf(groups(fresh.alice).listMemberships({ groupId: made[0]!, pagination: { token } }))).toBe("InvalidArgument");
  });
});

describe("memberships", () => {
  let org: Awaited<ReturnType<typeof newOrganization>>;
  let team: string;
  beforeAll(async () => {
    org = await newOrganization();
    team = await newGroup(org.admin, "members test");
  });

  it("are made of users of the organization, once each", async () => {
    const admin = groups(org.admin, "grpc");
    const { member } = await admin.createMembership({ groupId: team, subject: subject(org.alice) });
    expect(member).toMatchObject({ groupId: team, subject: { id: org.alice.userId, principal: Principal.USER }, name: await emailOf(org.alice) });
    expect(await codeOf(admin.createMembership({ groupId: team, subject: subject(org.alice) }))).toBe("AlreadyExists");
    const stranger = await server.newUser();
    expect(await codeOf(admin.createMembership({ groupId: team, subject: subject(stranger) }))).toBe("NotFound");
    expect(await codeOf(admin.createMembership({ groupId: randomUUID(), subject: subject(org.bob) }))).toBe("NotFound");
    const invalid = await Promise.all([
      failure(admin.createMembership({ groupId: team })),
      failure(admin.createMembership({ groupId: team, subject: { id: org.bob.userId, principal: Principal.RUNNER } })),
      failure(admin.createMembership({ groupId: team, subject: { principal: Principal.USER } })),
    ]);
    expect(invalid.map((err) => [err.code, err.rawMessage.split(":")[0]])).toEqual([
      [Code.InvalidArgument, "subject"],
      [Code.InvalidArgument, "subject.principal"],
      [Code.InvalidArgument, "subject.id"],
    ]);
    expect((await admin.getGroup({ group: { case: "id", value: team } })).group?.memberCount).toBe(1);
  });

  it("are found, searched and removed", async () => {
    const admin = groups(org.admin);
    const { member: bobs } = await admin.createMembership({ groupId: team, subject: subject(org.bob) });
    expect((await admin.getMembership({ groupId: team, subject: subject(org.bob) })).member?.id).toBe(bobs!.id);
    expect((await admin.getMembership({ groupId: team, subject: subject(org.carol) })).member).toBeUndefined();
    expect(await codeOf(admin.getMembership({ groupId: team }))).toBe("InvalidArgument"); // subject is required
    const bobEmail = await emailOf(org.bob);
    expect((await admin.listMemberships({ groupId: team, filter: { search: bobEmail.slice(0, 5).toUpperCase() } })).members.map((m) => m.id)).toEqual([bobs!.id]);
    expect((await admin.listMemberships({ groupId: team, filter: { search: org.bob.userId.slice(0, 8) } })).members.map((m) => m.id)).toEqual([bobs!.id]);
    expect((await admin.listMemberships({ groupId: team })).members).toHaveLength(2);
    expect(await codeOf(groups(org.alice).deleteMembership({ membershipId: bobs!.id }))).toBe("PermissionDenied");
    await admin.deleteMembership({ membershipId: bobs!.id });
    expect(await codeOf(admin.deleteMembership({ membershipId: bobs!.id }))).toBe("NotFound");
    expect((await admin.getMembership({ groupId: team, subject: subject(org.bob) })).member).toBeUndefined();
  });
});

describe("role assignments", () => {
  // On runner R: "users" (alice) has RUNNER_USER, "admins" (bob) RUNNER_ADMIN; on runner S: "others" (carol) RUNNER_USER.
  let org: Awaited<ReturnType<typeof newOrganization>>;
  let r: string;
  let s: string;
  let users: string;
  let admins: string;
  let others: string;
  beforeAll(async () => {
    org = await newOrganization();
    [r, s] = [await newRunner(org.admin, "runner R"), await newRunner(org.admin, "runner S")];
    users = await newGroup(org.admin, "users", [org.alice]);
    admins = await newGroup(org.admin, "admins", [org.bob]);
    others = await newGroup(org.admin, "others", [org.carol]);
    await runners(org.admin).createRunnerPolicy({ runnerId: r, groupId: users, role: RunnerRole.USER });
    await runners(org.admin).createRunnerPolicy({ runnerId: r, groupId: admins, role: RunnerRole.ADMIN });
    await runners(org.admin).createRunnerPolicy({ runnerId: s, groupId: others, role: RunnerRole.USER });
  });

  const seen = async (user: TestUser, filter = {}) =>
    (await groups(user).listRoleAssignments({ filter })).assignments.map((a) => `${a.groupId === users ? "users" : a.groupId === admins ? "admins" : "others"}@${a.resourceId === r ? "R" : "S"}`).sort();

  it("are the runner policies, each visible to its group's members and to the runner's managers", async () => {
    const { assignments } = await groups(org.admin).listRoleAssignments({});
    expect(assignments.find((a) => a.groupId === admins)).toMatchObject({
      organizationId: org.admin.organizationId,
      resourceId: r,
      resourceType: ResourceType.RUNNER,
      resourceRole: ResourceRole.RUNNER_ADMIN,
    });
    expect(assignments.every((a) => a.derivedFromOrgRole === undefined)).toBe(true); // direct, not derived
    expect(await seen(org.admin)).toEqual(["admins@R", "others@S", "users@R"]);
    expect(await seen(org.alice)).toEqual(["users@R"]);
    expect(await seen(org.bob)).toEqual(["admins@R", "users@R"]);
    expect(await seen(org.carol)).toEqual(["others@S"]);
  });

  it("filter by resource type and role, group, user and resource", async () => {
    expect(await seen(org.admin, { resourceTypes: [ResourceType.PROJECT] })).toEqual([]);
    expect(await seen(org.admin, { resourceTypes: [ResourceType.RUNNER, ResourceType.PROJECT] })).toHaveLength(3);
    expect(await seen(org.admin, { resourceRoles: [ResourceRole.RUNNER_USER] })).toEqual(["others@S", "users@R"]);
    expect(await seen(org.admin, { resourceRoles: [ResourceRole.PROJECT_ADMIN] })).toEqual([]);
    expect(await seen(org.admin, { groupId: admins })).toEqual(["admins@R"]);
    expect(await seen(org.admin, { userId: org.carol.userId })).toEqual(["others@S"]);
    expect(await seen(org.admin, { resourceId: s })).toEqual(["others@S"]);
    expect(await seen(org.admin, { resourceIds: [r] })).toEqual(["admins@R", "users@R"]);
    expect(await codeOf(groups(org.admin).listRoleAssignments({ filter: { groupId: "admins" } }))).toBe("InvalidArgument");
  });

  it("are created and deleted as runner policies, by those who manage the runner", async () => {
    const extra = await newGroup(org.admin, "extra");
    const { assignment } = await groups(org.bob, "grpc").createRoleAssignment({
      groupId: extra,
      resourceType: ResourceType.RUNNER,
      resourceId: r,
      resourceRole: ResourceRole.RUNNER_USER,
    });
    expect((await runners(org.admin).listRunnerPolicies({ runnerId: r })).policies.map((p) => p.groupId)).toContain(extra);
    const usersAssignment = (await groups(org.alice).listRoleAssignments({})).assignments[0]!;
    expect(await codeOf(groups(org.alice).deleteRoleAssignment({ assignmentId: usersAssignment.id }))).toBe("PermissionDenied");
    expect(await codeOf(groups(org.carol).deleteRoleAssignment({ assignmentId: assignment!.id }))).toBe("NotFound");
    await groups(org.bob).deleteRoleAssignment({ assignmentId: assignment!.id });
    expect(await codeOf(groups(org.bob).deleteRoleAssignment({ assignmentId: assignment!.id }))).toBe("NotFound");
    expect((await runners(org.admin).listRunnerPolicies({ runnerId: r })).policies.map((p) => p.groupId)).not.toContain(extra);
  });

  it("answer unimplemented for what is not a runner role, and direct shares", async () => {
    const admin = groups(org.admin);
    const unsupported = [
      admin.createRoleAssignment({ groupId: users, resourceType: ResourceType.PROJECT, resourceId: r, resourceRole: ResourceRole.PROJECT_USER }),
      admin.createRoleAssignment({ groupId: users, resourceType: ResourceType.RUNNER, resourceId: r, resourceRole: ResourceRole.RUNNER_CONFIGURATION_READER }),
      admin.shareResourceWithPrincipal({ resourceType: ResourceType.RUNNER, resourceId: r, principal: Principal.USER, principalId: org.carol.userId, role: ResourceRole.RUNNER_USER }),
      admin.unshareResourceWithPrincipal({ resourceType: ResourceType.RUNNER, resourceId: r, principal: Principal.USER, principalId: org.carol.userId }),
    ];
    for (const call of unsupported) {
      const err = await failure(call);
      expect(err.code).toBe(Code.Unimplemented);
      expect(err.rawMessage).toMatch(/not implemented by this server|runners only/);
    }
    expect(await codeOf(admin.createRoleAssignment({ groupId: users, resourceId: r, resourceRole: ResourceRole.RUNNER_USER }))).toBe("InvalidArgument");
  });
});

describe("the official SDK", () => {
  it("manages runner policies and lists groups", async () => {
    const org = await newOrganization();
    const runnerId = await newRunner(org.admin);
    const team = await newGroup(org.admin, "sdk team", [org.alice]);
    const client = new Gitpod({ bearerToken: org.admin.apiKey, baseURL: server.baseUrl, maxRetries: 0 });
    const created = await client.runners.policies.create({ runnerId, groupId: team, role: "RUNNER_ROLE_USER" });
    expect(created.policy).toEqual({ groupId: team, role: "RUNNER_ROLE_USER" });
    await client.runners.policies.update({ runnerId, groupId: team, role: "RUNNER_ROLE_ADMIN" });
    const policies = [];
    for await (const policy of client.runners.policies.list({ runnerId })) policies.push(policy);
    expect(policies).toEqual([{ groupId: team, role: "RUNNER_ROLE_ADMIN" }]);
    const names = [];
    for await (const group of client.groups.list({ pagination: { pageSize: 1 } })) names.push(group.name);
    expect(names).toEqual(["sdk team"]);
    await client.runners.policies.delete({ runnerId, groupId: team });
    expect((await runners(org.admin).listRunnerPolicies({ runnerId })).policies).toEqual([]);
  });
});

// EventService (docs/events.md): WatchEvents on every protocol and in the SDK's JSON Lines mode,
// runner events (create, update, delete, sign-up, degraded and back, silence and resume), groups,
// memberships and role assignments, organization isolation and member visibility, and the
// audit log (ListAuditLogs with the official SDK's paging, GetAuditLog, admins only).
//
//   npx vitest run test/events.test.ts
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Gitpod from "@gitpod/sdk";
import { createClient, type Client } from "@connectrpc/connect";
import { EventService, ResourceOperation, ResourceType, type WatchEventsResponse } from "../gen/gitpod/v1/event_pb.js";
import { Principal } from "../gen/gitpod/v1/identity_pb.js";
import { HostAuthenticationTokenSource, RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { RunnerPhase, RunnerRole } from "../gen/gitpod/v1/runner_pb.js";
import { SortOrder } from "../gen/gitpod/v1/pagination_pb.js";
import { codeOf, protocols, startServer, type Protocol, type TestServer, type TestUser } from "./harness.js";
import { eventually } from "./runner-client.js";
import { isolatedDatabase, type IsolatedDatabase } from "./isolated-database.js";

// A database of its own: the sweeper is one per database, and it must be this server's (its clock).
let server: TestServer;
let isolated: IsolatedDatabase;
beforeAll(async () => {
  isolated = await isolatedDatabase();
  server = await startServer({ db: await isolated.open(), env: { EVENTS_SWEEP_INTERVAL_MS: "100", EVENTS_KEEPALIVE_SECONDS: "1" } });
});
afterAll(async () => {
  await server?.close();
  await isolated?.drop();
});

const events = (user: TestUser, protocol: Protocol = "connect-json"): Client<typeof EventService> =>
  createClient(EventService, server.transport(protocol, user.apiKey));
const PUBLIC_KEY = new Uint8Array(32).fill(7);
const OP = ResourceOperation;

type Seen = { operation: number; resourceType: number; resourceId: string };

/** A watch that collects every event (keepalives left out) until stopped. */
function watch(user: TestUser, protocol: Protocol, request: Parameters<Client<typeof EventService>["watchEvents"]>[0] = {}) {
  const abort = new AbortController();
  const seen: Seen[] = [];
  let keepalives = 0;
  let opened!: () => void;
  const open = new Promise<void>((resolve) => (opened = resolve));
  const done = (async () => {
    try {
      const stream = events(user, protocol).watchEvents(request, { signal: abort.signal, onHeader: () => opened() });
      for await (const event of stream as AsyncIterable<WatchEventsResponse>) {
        if (event.operation === OP.UNSPECIFIED) keepalives++;
        else seen.push({ operation: event.operation, resourceType: event.resourceType, resourceId: event.resourceId });
      }
    } catch (err) {
      if (!abort.signal.aborted) throw err;
    }
  })();
  return { seen, open, keepalives: () => keepalives, stop: async () => (abort.abort(), await done.catch(() => {})), done };
}

const has = (seen: Seen[], operation: number, resourceType: number, resourceId: string) =>
  seen.filter((e) => e.operation === operation && e.resourceType === resourceType && e.resourceId === resourceId).length;

async function signedUp(admin: TestUser, name = "events runner") {
  const { runner, exchangeToken } = await server.runners("connect-json", admin.apiKey).createRunner({ name, provider: RunnerProvider.GCP });
  const { accessToken } = await server.identity("connect-json").exchangeToken({ exchangeToken });
  await server.interaction("connect-json", accessToken).signup({ publicKey: PUBLIC_KEY, environmentClasses: [] });
  return { runnerId: runner!.runnerId, interaction: server.interaction("connect-json", accessToken) };
}

describe("WatchEvents on every protocol", () => {
  for (const protocol of protocols) {
    it(`${protocol}: create, update, delete of a runner, once each, and nothing of another organization`, async () => {
      const admin = await server.newUser();
      const other = await server.newUser();
      const w = watch(admin, protocol);
      await w.open;
      const { runner } = await server.runners("connect-json", admin.apiKey).createRunner({ name: "one", provider: RunnerProvider.GCP });
      const id = runner!.runnerId;
      const { runner: foreign } = await server.runners("connect-json", other.apiKey).createRunner({ name: "theirs", provider: RunnerProvider.GCP });
      await server.runners("connect-json", admin.apiKey).updateRunner({ runnerId: id, name: "renamed" });
      await server.runners("connect-json", admin.apiKey).deleteRunner({ runnerId: id });
      await eventually(() => (has(w.seen, OP.DELETE, ResourceType.RUNNER, id) ? true : undefined), 5_000, "the DELETE event");
      await w.stop();
      expect(w.seen.filter((e) => e.resourceId === id)).toEqual([
        { operation: OP.CREATE, resourceType: ResourceType.RUNNER, resourceId: id },
        { operation: OP.UPDATE, resourceType: ResourceType.RUNNER, resourceId: id },
        { operation: OP.DELETE, resourceType: ResourceType.RUNNER, resourceId: id },
      ]);
      expect(w.seen.some((e) => e.resourceId === foreign!.runnerId)).toBe(false);
    });
  }
});

describe("runner status events", () => {
  it("sign-up, degraded and back, silence (INACTIVE) and resume, and nothing for heartbeats that change nothing", async () => {
    const admin = await server.newUser();
    const w = watch(admin, "grpc");
    await w.open;
    const { runnerId, interaction } = await signedUp(admin);
    await eventually(() => (has(w.seen, OP.UPDATE_STATUS, ResourceType.RUNNER, runnerId) === 1 ? true : undefined), 5_000, "sign-up");
    await interaction.markRunnerActive({ runnerId });
    await interaction.updateRunnerStatus({ runnerId, version: "1.0" });
    await interaction.updateRunnerStatus({ runnerId, version: "1.0" }); // nothing new
    await interaction.updateRunnerStatus({ runnerId, degredationMessage: "disk full" });
    await interaction.updateRunnerStatus({ runnerId, degredationMessage: "" });
    await eventually(() => (has(w.seen, OP.UPDATE_STATUS, ResourceType.RUNNER, runnerId) === 4 ? true : undefined), 5_000, "status changes");
    // Silence: the liveness window passes on the server's clock; the sweeper notices.
    server.clock.advance(server.config.livenessWindowMs + 1_000);
    await eventually(() => (has(w.seen, OP.UPDATE_STATUS, ResourceType.RUNNER, runnerId) === 5 ? true : undefined), 5_000, "INACTIVE");
    expect((await server.runners("connect-json", admin.apiKey).getRunner({ runnerId })).runner!.status!.phase).toBe(RunnerPhase.INACTIVE);
    await interaction.markRunnerActive({ runnerId });
    await eventually(() => (has(w.seen, OP.UPDATE_STATUS, ResourceType.RUNNER, runnerId) === 6 ? true : undefined), 5_000, "ACTIVE again");
    await interaction.markRunnerActive({ runnerId });
    // A keepalive comes on an idle stream (EVENTS_KEEPALIVE_SECONDS=1), and no further event.
    const before = w.keepalives();
    await eventually(() => (w.keepalives() > before ? true : undefined), 5_000, "a keepalive");
    await w.stop();
    expect(has(w.seen, OP.UPDATE_STATUS, ResourceType.RUNNER, runnerId)).toBe(6);
    expect(w.seen.filter((e) => e.resourceId === runnerId).map((e) => e.operation)).toEqual([OP.CREATE, ...Array(6).fill(OP.UPDATE_STATUS)]);
  });

  it("resource_type_filters: ids and creators, OR-ed; environment scope is refused", async () => {
    const admin = await server.newUser();
    const { runner: a } = await server.runners("connect-json", admin.apiKey).createRunner({ name: "runner a", provider: RunnerProvider.GCP });
    const byId = watch(admin, "connect-binary", { resourceTypeFilters: [{ resourceType: ResourceType.RUNNER, resourceIds: [a!.runnerId] }] });
    const byCreator = watch(admin, "connect-json", { resourceTypeFilters: [{ resourceType: ResourceType.RUNNER, creatorIds: [admin.userId] }] });
    const groupsOnly = watch(admin, "grpc-web", { resourceTypeFilters: [{ resourceType: ResourceType.GROUP }] });
    await Promise.all([byId.open, byCreator.open, groupsOnly.open]);
    const { runner: b } = await server.runners("connect-json", admin.apiKey).createRunner({ name: "runner b", provider: RunnerProvider.GCP });
    await server.runners("connect-json", admin.apiKey).updateRunner({ runnerId: a!.runnerId, name: "runner a2" });
    const { group } = await server.groups("connect-json", admin.apiKey).createGroup({ organizationId: admin.organizationId, name: "group g" });
    await eventually(() => (groupsOnly.seen.length === 1 && byCreator.seen.length === 2 && byId.seen.length === 1 ? true : undefined), 5_000, "filtered events");
    await Promise.all([byId.stop(), byCreator.stop(), groupsOnly.stop()]);
    expect(byId.seen).toEqual([{ operation: OP.UPDATE, resourceType: ResourceType.RUNNER, resourceId: a!.runnerId }]);
    expect(byCreator.seen.map((e) => e.resourceId)).toEqual([b!.runnerId, a!.runnerId]);
    expect(groupsOnly.seen).toEqual([{ operation: OP.CREATE, resourceType: ResourceType.GROUP, resourceId: group!.id }]);
    const stream = events(admin).watchEvents({ scope: { case: "environmentId", value: "d2c94c27-3b76-4a42-b88c-95a85e392c68" } });
    expect(await codeOf((async () => { for await (const _ of stream) break; })())).toBe("InvalidArgument");
  });
});

describe("who sees what", () => {
  it("a member sees the runners they may use, groups, and their own groups' role assignments", async () => {
    const admin = await server.newUser();
    const member = await server.newUser(admin.organizationSlug);
    const w = watch(member, "connect-json");
    await w.open;
    const runners = server.runners("connect-json", admin.apiKey);
    const { runner: open } = await runners.createRunner({ name: "open", provider: RunnerProvider.GCP });
    const { runner: closed } = await runners.createRunner({ name: "closed", provider: RunnerProvider.GCP });
    const { group } = await server.groups("connect-json", admin.apiKey).createGroup({ organizationId: admin.organizationId, name: "others" });
    const { policy } = await runners.createRunnerPolicy({ runnerId: closed!.runnerId, groupId: group!.id, role: RunnerRole.USER });
    await runners.updateRunner({ runnerId: closed!.runnerId, name: "closed, renamed" });
    await runners.updateRunner({ runnerId: open!.runnerId, name: "open, renamed" });
    await eventually(() => (has(w.seen, OP.UPDATE, ResourceType.RUNNER, open!.runnerId) ? true : undefined), 5_000, "the open runner's update");
    await w.stop();
    expect(has(w.seen, OP.CREATE, ResourceType.GROUP, group!.id)).toBe(1);
    expect(w.seen.some((e) => e.resourceId === closed!.runnerId && e.operation === OP.UPDATE)).toBe(false);
    expect(w.seen.some((e) => e.resourceType === ResourceType.ROLE_ASSIGNMENT)).toBe(false);
    expect(policy).toBeDefined();
  });
});

describe("the official SDK", () => {
  it("client.events.watch() gets JSON Lines: create, update, delete, and a runner falling silent", async () => {
    const admin = await server.newUser();
    const client = new Gitpod({ bearerToken: admin.apiKey, baseURL: server.baseUrl, maxRetries: 0 });
    const stream = await client.events.watch({ organization: true });
    const seen: Seen[] = [];
    const reading = (async () => {
      for await (const event of stream) {
        if (!event.operation) continue; // keepalive
        seen.push(event as unknown as Seen);
      }
    })();
    const { runnerId } = await signedUp(admin, "sdk runner");
    await server.runners("connect-json", admin.apiKey).updateRunner({ runnerId, name: "sdk runner 2" });
    server.clock.advance(server.config.livenessWindowMs + 1_000);
    await eventually(() => (seen.filter((e) => e.operation === ("RESOURCE_OPERATION_UPDATE_STATUS" as never)).length === 2 ? true : undefined), 5_000, "sign-up and INACTIVE");
    await server.runners("connect-json", admin.apiKey).deleteRunner({ runnerId });
    await eventually(() => (seen.some((e) => e.operation === ("RESOURCE_OPERATION_DELETE" as never)) ? true : undefined), 5_000, "DELETE");
    stream.controller.abort();
    await reading.catch(() => {});
    expect(seen.map((e) => e.operation)).toEqual([
      "RESOURCE_OPERATION_CREATE", "RESOURCE_OPERATION_UPDATE_STATUS", "RESOURCE_OPERATION_UPDATE", "RESOURCE_OPERATION_UPDATE_STATUS", "RESOURCE_OPERATION_DELETE",
    ]);
    expect(new Set(seen.map((e) => e.resourceId))).toEqual(new Set([runnerId]));
    expect(seen[0]!.resourceType).toBe("RESOURCE_TYPE_RUNNER");
  });

  it("watch() with no body works, and a bad key is an APIError before any stream", async () => {
    const admin = await server.newUser();
    const response = await fetch(`${server.baseUrl}/api/gitpod.v1.EventService/WatchEvents`, {
      method: "POST",
      headers: { "content-type": "application/jsonl", accept: "application/jsonl", authorization: `Bearer ${admin.apiKey}` },
    });
    expect([response.status, response.headers.get("content-type")]).toEqual([200, "application/jsonl"]);
    await response.body!.cancel();
    const bad = new Gitpod({ bearerToken: "nope", baseURL: server.baseUrl, maxRetries: 0 });
    await expect(bad.events.watch({})).rejects.toMatchObject({ status: 401 });
  });

  it("for await over client.events.list() walks the audit log exactly once; GetAuditLog; admins only", async () => {
    const admin = await server.newUser();
    const member = await server.newUser(admin.organizationSlug);
    const runners = server.runners("connect-json", admin.apiKey);
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      server.clock.advance(1); // entries are stamped with the server's clock
      ids.push((await runners.createRunner({ name: `audited ${i}`, provider: RunnerProvider.GCP })).runner!.runnerId);
    }
    server.clock.advance(1);
    await runners.deleteRunner({ runnerId: ids[0]! });
    const client = new Gitpod({ bearerToken: admin.apiKey, baseURL: server.baseUrl, maxRetries: 0 });
    const walked: { id?: string; action?: string; subjectId?: string; actorId?: string }[] = [];
    for await (const entry of client.events.list({ pageSize: 3, filter: { subjectTypes: ["RESOURCE_TYPE_RUNNER"] } })) walked.push(entry);
    expect(walked).toHaveLength(8);
    expect(new Set(walked.map((e) => e.id)).size).toBe(8);
    expect(walked[0]).toMatchObject({ action: "DeleteRunner", subjectId: ids[0], actorId: admin.userId, actorPrincipal: "PRINCIPAL_USER" });
    expect(walked.filter((e) => e.action === "CreateRunner").map((e) => e.subjectId).sort()).toEqual([...ids].sort());
    // Who deleted runner X?
    const who = await events(admin, "grpc").listAuditLogs({ filter: { subjectIds: [ids[0]!] }, sort: { field: "createdAt", order: SortOrder.ASC } });
    expect(who.entries.map((e) => [e.action, e.actorId, e.actorPrincipal])).toEqual([
      ["CreateRunner", admin.userId, Principal.USER], ["DeleteRunner", admin.userId, Principal.USER],
    ]);
    const { entry } = await events(admin, "connect-binary").getAuditLog({ auditLogEntryId: who.entries[1]!.id });
    expect(entry!.action).toBe("DeleteRunner");
    expect(await codeOf(events(member).listAuditLogs({}))).toBe("PermissionDenied");
    expect(await codeOf(events(member).getAuditLog({ auditLogEntryId: who.entries[1]!.id }))).toBe("PermissionDenied");
    const other = await server.newUser();
    expect(await codeOf(events(other).getAuditLog({ auditLogEntryId: who.entries[1]!.id }))).toBe("NotFound");
    expect(await codeOf(events(admin).listAuditLogs({ sort: { field: "action" } }))).toBe("InvalidArgument");
    // No secrets: an entry holds ids, the action and the request id only.
    const { rows } = await server.db.query<Record<string, unknown>>("SELECT * FROM audit_log WHERE subject_id = $1", [ids[1]]);
    expect(Object.keys(rows[0]!).sort()).toEqual(
      ["action", "actor_id", "actor_principal", "client_address", "created_at", "id", "kind", "organization_id", "request_id", "subject_id", "subject_type"],
    );
    expect(rows[0]!.client_address).toBeNull();
    expect(String(rows[0]!.request_id)).not.toBe("");
  });
});

describe("groups, memberships and role assignments", () => {
  it("emit their events and audit entries", async () => {
    const admin = await server.newUser();
    const member = await server.newUser(admin.organizationSlug);
    const w = watch(admin, "connect-json");
    await w.open;
    const groups = server.groups("connect-json", admin.apiKey);
    const tick = () => server.clock.advance(1); // entries are stamped with the server's clock
    const { group } = await groups.createGroup({ organizationId: admin.organizationId, name: "team" });
    tick();
    await groups.updateGroup({ groupId: group!.id, name: "team 2" });
    tick();
    const { member: m } = await groups.createMembership({ groupId: group!.id, subject: { id: member.userId, principal: Principal.USER } });
    tick();
    const { runner } = await server.runners("connect-json", admin.apiKey).createRunner({ name: "runner r", provider: RunnerProvider.GCP });
    tick();
    const { assignment } = await groups.createRoleAssignment({ groupId: group!.id, resourceType: ResourceType.RUNNER, resourceId: runner!.runnerId, resourceRole: 17 }); // RESOURCE_ROLE_RUNNER_USER
    tick();
    await groups.deleteMembership({ membershipId: m!.id });
    tick();
    await groups.deleteGroup({ groupId: group!.id });
    await eventually(() => (has(w.seen, OP.DELETE, ResourceType.GROUP, group!.id) ? true : undefined), 5_000, "the group's DELETE");
    await w.stop();
    const gid = group!.id;
    expect(w.seen.filter((e) => e.resourceType !== ResourceType.RUNNER)).toEqual([
      { operation: OP.CREATE, resourceType: ResourceType.GROUP, resourceId: gid },
      { operation: OP.UPDATE, resourceType: ResourceType.GROUP, resourceId: gid },
      { operation: OP.UPDATE, resourceType: ResourceType.GROUP_MEMBERSHIP_CHANGED, resourceId: gid },
      { operation: OP.CREATE, resourceType: ResourceType.ROLE_ASSIGNMENT, resourceId: assignment!.id },
      { operation: OP.UPDATE, resourceType: ResourceType.GROUP_MEMBERSHIP_CHANGED, resourceId: gid },
      // The group's own trigger fires before the cascade removes its role assignments.
      { operation: OP.DELETE, resourceType: ResourceType.GROUP, resourceId: gid },
      { operation: OP.DELETE, resourceType: ResourceType.ROLE_ASSIGNMENT, resourceId: assignment!.id },
    ]);
    const { entries } = await events(admin).listAuditLogs({ sort: { field: "createdAt", order: SortOrder.ASC }, pagination: { pageSize: 100 } });
    expect(entries.map((e) => e.action)).toEqual([
      "CreateGroup", "UpdateGroup", "CreateMembership", "CreateRunner", "CreateRoleAssignment", "DeleteMembership", "DeleteGroup",
    ]);
  });
});

describe("runner configuration: SCM integrations, host tokens, environment classes", () => {
  it("are events for whoever may see them, and audit entries naming the RPC, without their secrets", async () => {
    const admin = await server.newUser();
    const member = await server.newUser(admin.organizationSlug);
    const { runnerId } = await signedUp(admin, "configured runner");
    const wAdmin = watch(admin, "grpc");
    const wMember = watch(member, "connect-json");
    await Promise.all([wAdmin.open, wMember.open]);
    const asAdmin = server.configuration("connect-json", admin.apiKey);
    const { id: integrationId } = await asAdmin.createSCMIntegration({ runnerId, scmId: "github", host: "github.com", pat: true });
    await asAdmin.updateSCMIntegration({ id: integrationId, issuerUrl: "https://github.com" });
    const { id: classId } = await asAdmin.createEnvironmentClass({ runnerId, displayName: "Large", description: "16 cores" });
    const { token: adminToken } = await asAdmin.createHostAuthenticationToken({ runnerId, host: "github.com", token: "ghp_admin_secret", source: HostAuthenticationTokenSource.PAT });
    const { token: memberToken } = await server.configuration("grpc", member.apiKey)
      .createHostAuthenticationToken({ runnerId, host: "github.com", token: "ghp_member_secret", source: HostAuthenticationTokenSource.PAT });
    await asAdmin.deleteHostAuthenticationToken({ id: adminToken!.id });
    await asAdmin.deleteSCMIntegration({ id: integrationId });
    // The last change: the member's token, deleted with the integration (its event comes after the integration's).
    for (const [w, who] of [[wAdmin, "admin"], [wMember, "member"]] as const) {
      await eventually(() => (has(w.seen, OP.DELETE, ResourceType.HOST_AUTHENTICATION_TOKEN, memberToken!.id) ? true : undefined), 5_000, `the ${who}'s last DELETE`);
    }
    await Promise.all([wAdmin.stop(), wMember.stop()]);
    const of = (seen: Seen[], type: ResourceType) => seen.filter((e) => e.resourceType === type).map((e) => [e.operation, e.resourceId]);
    expect(of(wAdmin.seen, ResourceType.RUNNER_SCM_INTEGRATION)).toEqual([[OP.CREATE, integrationId], [OP.UPDATE, integrationId], [OP.DELETE, integrationId]]);
    expect(of(wAdmin.seen, ResourceType.ENVIRONMENT_CLASS)).toEqual([[OP.CREATE, classId]]);
    // Deleting the PAT integration deleted the PAT tokens of that host with it (the member's).
    expect(of(wAdmin.seen, ResourceType.HOST_AUTHENTICATION_TOKEN)).toEqual([
      [OP.CREATE, adminToken!.id], [OP.CREATE, memberToken!.id], [OP.DELETE, adminToken!.id], [OP.DELETE, memberToken!.id],
    ]);
    // The runner has no policies: the member may use it, and sees its integrations and classes, but only their own token.
    expect(of(wMember.seen, ResourceType.RUNNER_SCM_INTEGRATION)).toEqual(of(wAdmin.seen, ResourceType.RUNNER_SCM_INTEGRATION));
    expect(of(wMember.seen, ResourceType.ENVIRONMENT_CLASS)).toEqual([[OP.CREATE, classId]]);
    expect(of(wMember.seen, ResourceType.HOST_AUTHENTICATION_TOKEN)).toEqual([[OP.CREATE, memberToken!.id], [OP.DELETE, memberToken!.id]]);

    const { entries } = await events(admin, "connect-binary").listAuditLogs({ sort: { field: "createdAt", order: SortOrder.ASC } });
    const audited = entries.filter((e) => [integrationId, classId, adminToken!.id, memberToken!.id].includes(e.subjectId)).map((e) => [e.action, e.subjectId, e.actorId]);
    // One entry per call (the calls share the server clock's instant, so compare them as a set).
    expect(audited.sort()).toEqual([
      ["CreateSCMIntegration", integrationId, admin.userId],
      ["UpdateSCMIntegration", integrationId, admin.userId],
      ["CreateEnvironmentClass", classId, admin.userId],
      ["CreateHostAuthenticationToken", adminToken!.id, admin.userId],
      ["CreateHostAuthenticationToken", memberToken!.id, member.userId],
      ["DeleteHostAuthenticationToken", adminToken!.id, admin.userId],
      ["DeleteSCMIntegration", integrationId, admin.userId],
    ].sort());
    expect(JSON.stringify(entries, (_key, value: unknown) => (typeof value === "bigint" ? String(value) : value))).not.toMatch(/ghp_/);
  });
});

describe("server shutdown", () => {
  it("ends every watch stream: Connect and gRPC cleanly, JSON Lines with a clean end of body", async () => {
    const own = await startServer();
    const admin = await own.newUser();
    const ends = protocols.map(async (protocol) => {
      const stream = createClient(EventService, own.transport(protocol, admin.apiKey)).watchEvents({});
      let n = 0;
      for await (const _ of stream) n++;
      return n;
    });
    const response = await fetch(`${own.baseUrl}/gitpod.v1.EventService/WatchEvents`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/jsonl", authorization: `Bearer ${admin.apiKey}` },
      body: "{}",
    });
    expect(response.status).toBe(200);
    const body = response.text();
    await eventually(() => ((own.app as unknown as { eventHub: { watchers: number } }).eventHub.watchers === 5 ? true : undefined), 5_000, "five watchers");
    const started = performance.now();
    await own.close();
    expect(await Promise.all(ends)).toEqual([1, 1, 1, 1]); // the opening message, then a clean end
    expect(await body).toBe("");
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

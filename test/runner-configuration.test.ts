// RunnerConfigurationService (SCM integrations, host authentication tokens, environment
// classes) and the runner-side reads, over all four protocols against the real server and
// database: the secrets reach only the runner (sealed boxes that open with its private key and
// nothing else), the implicit deletions and their channel events, and no plaintext secret in
// any log line or any table column.
//
//   npx vitest run test/runner-configuration.test.ts
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import sodium from "libsodium-wrappers";
import { Code, ConnectError } from "@connectrpc/connect";
import { HostAuthenticationTokenSource, RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { RunnerRole } from "../gen/gitpod/v1/runner_pb.js";
import { Principal } from "../gen/gitpod/v1/identity_pb.js";
import { protocols, startServer, TEST_SECRETS_KEY, type Protocol, type TestServer, type TestUser } from "./harness.js";
import { SecretsKeyring } from "../src/domain/secrets.js";
import { RunnerSecrets } from "../src/domain/runner-secrets.js";
import { RunnerStore } from "../src/store/runner-store.js";
import { TestRunner } from "./runner-client.js";

let server: TestServer;
let admin: TestUser;
let member: TestUser;
let outsider: TestUser;

interface KeyedRunner {
  runner: TestRunner;
  keys: { publicKey: Uint8Array; privateKey: Uint8Array };
}

async function keyedRunner(user: TestUser, signup = true): Promise<KeyedRunner> {
  await sodium.ready;
  const keys = sodium.crypto_box_keypair();
  const runner = await TestRunner.register(server, user.apiKey, { signup: false, provider: RunnerProvider.LINUX_HOST });
  if (signup) await runner.client(server.transport("connect-binary", runner.accessToken)).signup({ publicKey: keys.publicKey });
  return { runner, keys };
}

const open = (box: Uint8Array, keys: { publicKey: Uint8Array; privateKey: Uint8Array }) =>
  sodium.to_string(sodium.crypto_box_seal_open(box, keys.publicKey, keys.privateKey));

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "OK";
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
}

/** Every text and bytea value of every table, as text (what a database dump shows). */
async function dumpOfAllTables(): Promise<string> {
  const { rows: tables } = await server.db.query<{ table_name: string }>(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
  );
  let dump = "";
  for (const { table_name } of tables) {
    const { rows } = await server.db.query<{ row: string }>(`SELECT t::text AS row FROM "${table_name}" t`);
    for (const { row } of rows) dump += `${table_name}: ${row}\n`;
    const { rows: bytes } = await server.db.query<Record<string, unknown>>(`SELECT * FROM "${table_name}"`);
    for (const row of bytes) {
      for (const value of Object.values(row)) {
        if (value instanceof Uint8Array) dump += Buffer.from(value).toString("latin1") + "\n";
      }
    }
  }
  return dump;
}

beforeAll(async () => {
  await sodium.ready;
  server = await startServer();
  admin = await server.newUser();
  member = await server.newUser(admin.organizationSlug);
  outsider = await server.newUser();
});
afterAll(() => server?.close());

describe.each(protocols)("over %s", (protocol: Protocol) => {
  const SECRET_PAT = `ghp_${protocol.replace("-", "")}SecretPersonalAccessToken0123456789`;
  const SECRET_REFRESH = `ghr_${protocol.replace("-", "")}SecretRefreshToken9876543210`;
  const SECRET_CLIENT = `oauth-${protocol}-client-secret-value-42`;

  it("SCM integrations: create, get, list, update, delete; the OAuth secret only as the runner's sealed box", async () => {
    const { runner, keys } = await keyedRunner(admin);
    const config = server.configuration(protocol, admin.apiKey);
    const { id } = await config.createSCMIntegration({
      runnerId: runner.runnerId, scmId: "github", host: "GitHub.com", pat: true, oauthClientId: "client-1", oauthPlaintextClientSecret: SECRET_CLIENT,
    });
    const { integration } = await config.getSCMIntegration({ id });
    expect(integration).toMatchObject({ id, scmId: "github", host: "github.com", pat: true, runnerId: runner.runnerId, oauth: { clientId: "client-1" } });
    expect(open(integration!.oauth!.encryptedClientSecret, keys)).toBe(SECRET_CLIENT);
    const other = sodium.crypto_box_keypair();
    expect(() => open(integration!.oauth!.encryptedClientSecret, other)).toThrow();

    // One per runner and host.
    expect(await codeOf(config.createSCMIntegration({ runnerId: runner.runnerId, scmId: "github", host: "github.com", pat: true }))).toBe("AlreadyExists");
    // A member may read (the runner has no policies), not change.
    const asMember = server.configuration(protocol, member.apiKey);
    expect((await asMember.listSCMIntegrations({ filter: { runnerIds: [runner.runnerId] } })).integrations.map((i) => i.id)).toEqual([id]);
    expect(await codeOf(asMember.updateSCMIntegration({ id, pat: false }))).toBe("PermissionDenied");
    // Another organization sees nothing.
    const asOutsider = server.configuration(protocol, outsider.apiKey);
    expect(await codeOf(asOutsider.getSCMIntegration({ id }))).toBe("NotFound");
    expect((await asOutsider.listSCMIntegrations({ filter: { runnerIds: [runner.runnerId] } })).integrations).toEqual([]);

    // The runner reads its own integrations.
    const runnerSide = runner.client(server.transport(protocol, runner.accessToken));
    const { scmIntegrations } = await runnerSide.listRunnerSCMIntegrations({ runnerId: runner.runnerId });
    expect(scmIntegrations.map((i) => i.host)).toEqual(["github.com"]);
    expect(open(scmIntegrations[0]!.oauth!.encryptedClientSecret, keys)).toBe(SECRET_CLIENT);

    await config.updateSCMIntegration({ id, virtualDirectory: "/tfs", issuerUrl: "https://login.example.com" });
    expect((await config.getSCMIntegration({ id })).integration).toMatchObject({ virtualDirectory: "/tfs", oauth: { issuerUrl: "https://login.example.com" } });
    await config.updateSCMIntegration({ id, oauthClientId: "" });
    expect((await config.getSCMIntegration({ id })).integration?.oauth).toBeUndefined();
    await config.deleteSCMIntegration({ id });
    expect(await codeOf(config.getSCMIntegration({ id }))).toBe("NotFound");
  });

  it("OAuth on a runner that has not signed up is failed_precondition; a PAT-only integration is fine", async () => {
    const { runner } = await keyedRunner(admin, false);
    const config = server.configuration(protocol, admin.apiKey);
    expect(await codeOf(config.createSCMIntegration({ runnerId: runner.runnerId, scmId: "gitlab", host: "gitlab.com", oauthClientId: "c", oauthPlaintextClientSecret: "s" }))).toBe("FailedPrecondition");
    expect(await codeOf(config.createSCMIntegration({ runnerId: runner.runnerId, scmId: "gitlab", host: "gitlab.com", pat: true }))).toBe("OK");
    expect(await codeOf(config.createSCMIntegration({ runnerId: runner.runnerId, scmId: "gitlab", host: "https://gitlab.com/x", pat: true }))).toBe("InvalidArgument");
  });

  it("host tokens: the user's own, write-only, sealed to the runner on read; the implicit deletions tell the runner", async () => {
    const { runner, keys } = await keyedRunner(admin);
    const config = server.configuration(protocol, admin.apiKey);
    const { id: integrationId } = await config.createSCMIntegration({ runnerId: runner.runnerId, scmId: "github", host: "github.com", pat: true });
    const watch = runner.watch({ transport: server.transport(protocol, runner.accessToken) });
    await watch.opened;

    const asMember = server.configuration(protocol, member.apiKey);
    const { token } = await asMember.createHostAuthenticationToken({
      runnerId: runner.runnerId, host: "github.com", token: SECRET_PAT, refreshToken: SECRET_REFRESH,
      source: HostAuthenticationTokenSource.PAT, scopes: ["repo"], integrationId,
    });
    expect(token).toMatchObject({ runnerId: runner.runnerId, host: "github.com", source: HostAuthenticationTokenSource.PAT, scopes: ["repo"], subject: { id: member.userId, principal: Principal.USER } });
    expect(JSON.stringify(token)).not.toContain(SECRET_PAT);
    // Someone else's token: refused.
    expect(await codeOf(asMember.createHostAuthenticationToken({ runnerId: runner.runnerId, host: "github.com", token: "x", source: HostAuthenticationTokenSource.PAT, subject: { id: admin.userId, principal: Principal.USER } }))).toBe("PermissionDenied");

    // The runner gets it sealed to its key; nobody else's key opens it.
    const runnerSide = runner.client(server.transport(protocol, runner.accessToken));
    const value = await runnerSide.getHostAuthenticationTokenValue({ runnerId: runner.runnerId, principalId: member.userId, host: "GitHub.com" });
    expect(value).toMatchObject({ tokenId: token!.id, source: HostAuthenticationTokenSource.PAT, integrationId });
    expect(open(value.value, keys)).toBe(SECRET_PAT);
    expect(open(value.refreshToken, keys)).toBe(SECRET_REFRESH);
    expect(() => open(value.value, sodium.crypto_box_keypair())).toThrow();
    expect(await codeOf(runnerSide.getHostAuthenticationTokenValue({ runnerId: runner.runnerId, principalId: admin.userId, host: "github.com" }))).toBe("NotFound");
    // Another runner (even of the same organization) cannot read it.
    const { runner: second } = await keyedRunner(admin);
    expect(await codeOf(second.client(server.transport(protocol, second.accessToken)).getHostAuthenticationTokenValue({ runnerId: runner.runnerId, principalId: member.userId, host: "github.com" }))).toBe("PermissionDenied");

    // The admin sees metadata, may not replace the secret; the owner may.
    expect((await config.getHostAuthenticationToken({ id: token!.id })).token?.id).toBe(token!.id);
    expect((await config.listHostAuthenticationTokens({ filter: { runnerId: runner.runnerId } })).tokens.map((t) => t.id)).toEqual([token!.id]);
    expect(await codeOf(config.updateHostAuthenticationToken({ id: token!.id, token: "replaced" }))).toBe("PermissionDenied");
    expect(await codeOf(server.configuration(protocol, outsider.apiKey).getHostAuthenticationToken({ id: token!.id }))).toBe("NotFound");
    await asMember.updateHostAuthenticationToken({ id: token!.id, token: `${SECRET_PAT}-2`, scopes: ["repo", "read:org"] });
    const replaced = await runnerSide.getHostAuthenticationTokenValue({ runnerId: runner.runnerId, principalId: member.userId, host: "github.com" });
    expect(open(replaced.value, keys)).toBe(`${SECRET_PAT}-2`);
    expect((await asMember.getHostAuthenticationToken({ id: token!.id })).token?.scopes).toEqual(["repo", "read:org"]);

    // pat=false deletes the PAT tokens for the host; the runner hears of both.
    await config.updateSCMIntegration({ id: integrationId, pat: false });
    const changed = await watch.waitFor("eventScmIntegrationChange");
    expect(changed.request.value).toMatchObject({ scmIntegrationId: integrationId });
    const deleted = await watch.waitFor("eventHostAuthenticationTokenDeleted");
    expect(deleted.request.value).toMatchObject({ host: "github.com", principalId: member.userId });
    expect(await codeOf(asMember.getHostAuthenticationToken({ id: token!.id }))).toBe("NotFound");

    // An explicit delete by the runner's admin tells the runner too.
    const { token: again } = await asMember.createHostAuthenticationToken({ runnerId: runner.runnerId, host: "github.com", token: SECRET_PAT, source: HostAuthenticationTokenSource.PAT });
    await config.deleteHostAuthenticationToken({ id: again!.id });
    await watch.waitFor("eventHostAuthenticationTokenDeleted", 2);
    await watch.close();
  });

  it("removing OAuth deletes only the OAuth tokens of the host; deleting the integration deletes the rest", async () => {
    const { runner } = await keyedRunner(admin);
    const config = server.configuration(protocol, admin.apiKey);
    const { id } = await config.createSCMIntegration({ runnerId: runner.runnerId, scmId: "gitlab", host: "gitlab.example.com", pat: true, oauthClientId: "c", oauthPlaintextClientSecret: SECRET_CLIENT });
    const watch = runner.watch({ transport: server.transport(protocol, runner.accessToken) });
    await watch.opened;
    const store = (user: TestUser, source: HostAuthenticationTokenSource) =>
      server.configuration(protocol, user.apiKey).createHostAuthenticationToken({ runnerId: runner.runnerId, host: "gitlab.example.com", token: `t-${source}`, source });
    const { token: oauth } = await store(member, HostAuthenticationTokenSource.OAUTH);
    const { token: pat } = await store(admin, HostAuthenticationTokenSource.PAT);
    await config.updateSCMIntegration({ id, oauthClientId: "" });
    const gone = await watch.waitFor("eventHostAuthenticationTokenDeleted");
    expect(gone.request.value).toMatchObject({ host: "gitlab.example.com", principalId: member.userId });
    expect(await codeOf(config.getHostAuthenticationToken({ id: oauth!.id }))).toBe("NotFound");
    expect(await codeOf(config.getHostAuthenticationToken({ id: pat!.id }))).toBe("OK");
    await config.deleteSCMIntegration({ id });
    const second = await watch.waitFor("eventHostAuthenticationTokenDeleted", 2);
    expect(second.request.value).toMatchObject({ host: "gitlab.example.com", principalId: admin.userId });
    expect(await codeOf(config.getHostAuthenticationToken({ id: pat!.id }))).toBe("NotFound");
    expect(watch.of("eventScmIntegrationChange").length).toBeGreaterThanOrEqual(2);
    await watch.close();
  });

  it("environment classes: offered at Signup, created by admins, listed with filters, enabled switch", async () => {
    await sodium.ready;
    const runner = await TestRunner.register(server, admin.apiKey, { signup: false });
    const runnerSide = runner.client(server.transport(protocol, runner.accessToken));
    await runnerSide.signup({ publicKey: sodium.crypto_box_keypair().publicKey, environmentClasses: [{ id: "small", displayName: "Small machine", description: "2 cores", configuration: [{ key: "cpu", value: "2" }], enabled: true }] });
    // Signup again (a restart) updates the same class.
    await runnerSide.signup({ publicKey: sodium.crypto_box_keypair().publicKey, environmentClasses: [{ id: "small", displayName: "Small machine", description: "2 cores, 4 GiB", configuration: [{ key: "cpu", value: "2" }], enabled: true }] });
    const config = server.configuration(protocol, admin.apiKey);
    const { id } = await config.createEnvironmentClass({ runnerId: runner.runnerId, displayName: "Large machine", description: "16 cores", configuration: [{ key: "cpu", value: "16" }] });
    const listed = await config.listEnvironmentClasses({ filter: { runnerIds: [runner.runnerId] } });
    expect(listed.environmentClasses.map((c) => c.displayName).sort()).toEqual(["Large machine", "Small machine"]);
    expect(listed.environmentClasses.find((c) => c.displayName === "Small machine")?.description).toBe("2 cores, 4 GiB");
    await config.updateEnvironmentClass({ environmentClassId: id, enabled: false, description: "16 cores, 64 GiB" });
    expect((await config.getEnvironmentClass({ environmentClassId: id })).environmentClass).toMatchObject({ enabled: false, description: "16 cores, 64 GiB", runnerId: runner.runnerId });
    const enabled = await config.listEnvironmentClasses({ filter: { runnerIds: [runner.runnerId], enabled: true } });
    expect(enabled.environmentClasses.map((c) => c.displayName)).toEqual(["Small machine"]);
    const usable = await server.configuration(protocol, member.apiKey).listEnvironmentClasses({ filter: { runnerIds: [runner.runnerId], canCreateEnvironments: true } });
    expect(usable.environmentClasses.map((c) => c.displayName)).toEqual(["Small machine"]);
    expect(await codeOf(server.configuration(protocol, member.apiKey).createEnvironmentClass({ runnerId: runner.runnerId, displayName: "Nope", description: "nope" }))).toBe("PermissionDenied");
    expect(await codeOf(server.configuration(protocol, outsider.apiKey).getEnvironmentClass({ environmentClassId: id }))).toBe("NotFound");
    const own = await runnerSide.listRunnerEnvironmentClasses({ runnerId: runner.runnerId, pagination: { pageSize: 1 } });
    expect(own.environmentClasses).toHaveLength(1);
    const rest = await runnerSide.listRunnerEnvironmentClasses({ runnerId: runner.runnerId, pagination: { pageSize: 1, token: own.pagination!.nextToken } });
    expect([...own.environmentClasses, ...rest.environmentClasses].map((c) => c.displayName).sort()).toEqual(["Large machine", "Small machine"]);
  });

  it("schema, validation and LLM integrations answer unimplemented with the reason", async () => {
    const config = server.configuration(protocol, admin.apiKey);
    const err = await config.listLLMIntegrations({}).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.Unimplemented);
    expect(err?.rawMessage).toContain("LLM integrations");
  });

  it("no secret appears in any log line or any table column", async () => {
    const dump = await dumpOfAllTables();
    const logs = server.logs.join("\n");
    for (const secret of [SECRET_PAT, SECRET_REFRESH, SECRET_CLIENT, `${SECRET_PAT}-2`]) {
      expect(dump.includes(secret), `${secret} in the database`).toBe(false);
      expect(logs.includes(secret), `${secret} in the logs`).toBe(false);
    }
    expect(dump).toContain("github.com"); // the dump does see the tables
  });
});

describe("the runner secrets of CreateRunner/UpdateRunner (metrics password, Honeycomb key)", () => {
  const METRICS_PASSWORD = "metrics-pw-SealedAtRest-31337";
  const HONEYCOMB_KEY = "hcaik_SealedAtRestHoneycombKey-4242";

  it("are sealed at rest, and reach the runner sealed to its key", async () => {
    const { runner, keys } = await keyedRunner(admin);
    await server.runners("grpc", admin.apiKey).updateRunner({
      runnerId: runner.runnerId,
      spec: { configuration: { metrics: { enabled: true, url: "https://metrics.example.com", username: "u", password: METRICS_PASSWORD }, honeycombApiKey: HONEYCOMB_KEY } },
    });
    const { configuration } = await runner.client(server.transport("grpc-web", runner.accessToken)).getRunnerConfiguration({ runnerId: runner.runnerId });
    expect(open(configuration!.metrics!.encryptedPassword, keys)).toBe(METRICS_PASSWORD);
    expect(open(configuration!.encryptedHoneycombApiKey, keys)).toBe(HONEYCOMB_KEY);
    const dump = await dumpOfAllTables();
    expect(dump.includes(METRICS_PASSWORD)).toBe(false);
    expect(dump.includes(HONEYCOMB_KEY)).toBe(false);
  });

  it("stored in plaintext by an earlier version are sealed at start and still delivered", async () => {
    const { runner, keys } = await keyedRunner(admin);
    await server.db.query("UPDATE runners SET metrics_password = $2, honeycomb_api_key = $3 WHERE id = $1", [runner.runnerId, `legacy-${METRICS_PASSWORD}`, `legacy-${HONEYCOMB_KEY}`]);
    // What every server runs at start (src/server.ts), with the same key.
    const sealed = await new RunnerSecrets(SecretsKeyring.parse(TEST_SECRETS_KEY, "test")).sealPlaintext(new RunnerStore(server.db));
    expect(sealed).toBeGreaterThanOrEqual(1);
    const dump = await dumpOfAllTables();
    expect(dump.includes(`legacy-${METRICS_PASSWORD}`)).toBe(false);
    expect(dump.includes(`legacy-${HONEYCOMB_KEY}`)).toBe(false);
    const { configuration } = await runner.client(server.transport("connect-json", runner.accessToken)).getRunnerConfiguration({ runnerId: runner.runnerId });
    expect(open(configuration!.metrics!.encryptedPassword, keys)).toBe(`legacy-${METRICS_PASSWORD}`);
    expect(open(configuration!.encryptedHoneycombApiKey, keys)).toBe(`legacy-${HONEYCOMB_KEY}`);
  });
});

describe("without a server secrets key", () => {
  let bare: TestServer;
  beforeAll(async () => {
    bare = await startServer({ env: { SECRETS_KEY: "" } });
  });
  afterAll(() => bare?.close());

  it("storing a token is failed_precondition naming SECRETS_KEY_FILE; integrations still work", async () => {
    const user = await bare.newUser();
    const runner = await TestRunner.register(bare, user.apiKey);
    const config = bare.configuration("connect-json", user.apiKey);
    await config.createSCMIntegration({ runnerId: runner.runnerId, scmId: "github", host: "github.com", pat: true });
    const err = await config
      .createHostAuthenticationToken({ runnerId: runner.runnerId, host: "github.com", token: "ghp_x", source: HostAuthenticationTokenSource.PAT })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.FailedPrecondition);
    expect(err?.rawMessage).toContain("SECRETS_KEY_FILE");
  });

  it("setting a runner's metrics password is failed_precondition naming SECRETS_KEY_FILE", async () => {
    const user = await bare.newUser();
    const err = await bare.runners("grpc", user.apiKey)
      .createRunner({ name: "no key", provider: RunnerProvider.AWS_EC2, spec: { configuration: { metrics: { password: "pw" } } } })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.FailedPrecondition);
    expect(err?.rawMessage).toContain("SECRETS_KEY_FILE");
  });
});

describe("runner policies apply", () => {
  it("a member outside the runner's groups does not see its integrations, classes or tokens", async () => {
    const { runner } = await keyedRunner(admin);
    const { group } = await server.groups("connect-json", admin.apiKey).createGroup({ organizationId: admin.organizationId, name: `only admins ${Date.now()}` });
    await server.runners("connect-json", admin.apiKey).createRunnerPolicy({ runnerId: runner.runnerId, groupId: group!.id, role: RunnerRole.USER });
    const config = server.configuration("grpc", admin.apiKey);
    const { id } = await config.createSCMIntegration({ runnerId: runner.runnerId, scmId: "github", host: "github.com", pat: true });
    const asMember = server.configuration("grpc", member.apiKey);
    expect(await codeOf(asMember.getSCMIntegration({ id }))).toBe("NotFound");
    expect((await asMember.listSCMIntegrations({})).integrations.some((i) => i.id === id)).toBe(false);
    expect(await codeOf(asMember.createHostAuthenticationToken({ runnerId: runner.runnerId, host: "github.com", token: "t", source: HostAuthenticationTokenSource.PAT }))).toBe("NotFound");
  });
});

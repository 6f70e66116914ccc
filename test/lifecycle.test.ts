// The runner lifecycle over real transports: what a user does with a runner (get, patch,
// delete, renew credentials), what the runner process does about itself (exchange, signup,
// heartbeat, status), who may do what, and how the observed phase follows the heartbeats.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import { fromJson, toJson, type JsonObject } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  LogLevel,
  RunnerCapability,
  RunnerPhase,
  RunnerReleaseChannel,
  RunnerSpecSchema,
  UpdateRunnerRequestSchema,
  type Runner,
} from "../gen/gitpod/v1/runner_pb.js";
import { RunnerKind, RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { Principal } from "../gen/gitpod/v1/identity_pb.js";
import { ManualClock } from "../src/domain/clock.js";
import { codeOf, failure, postJson, protocols, startServer, type Protocol, type TestServer, type TestUser } from "./harness.js";

let server: TestServer;
let alice: TestUser; // organization A
let bob: TestUser; // organization B

beforeAll(async () => {
  server = await startServer();
  alice = await server.newUser();
  bob = await server.newUser();
});
afterAll(() => server?.close());

const NO_SUCH_RUNNER = "3f0c2a9e-7d41-4b8e-9c1a-5e6f7a8b9c0d";
const PUBLIC_KEY = new Uint8Array(32).fill(7);
const ENVIRONMENT_CLASS = {
  displayName: "Small",
  description: "2 vCPU, 8 GiB",
  configuration: [{ key: "instanceType", value: "t3.large" }],
  enabled: true,
};


const ms = (timestamp: Timestamp | undefined) => timestampDate(timestamp!).getTime();

async function createRunner(user: TestUser, name = "lifecycle runner", provider = RunnerProvider.AWS_EC2) {
  const response = await server.runners("connect-json", user.apiKey).createRunner({ name, provider });
  return { runnerId: response.runner!.runnerId, exchangeToken: response.exchangeToken };
}

async function exchange(exchangeToken: string): Promise<string> {
  return (await server.identity("connect-json").exchangeToken({ exchangeToken })).accessToken;
}

/** A runner that has exchanged its token and signed up (phase ACTIVE from now). */
async function signedUpRunner(user: TestUser) {
  const { runnerId, exchangeToken } = await createRunner(user);
  const accessToken = await exchange(exchangeToken);
  await server.interaction("connect-json", accessToken).signup({ publicKey: PUBLIC_KEY, environmentClasses: [ENVIRONMENT_CLASS] });
  return { runnerId, accessToken };
}

async function getRunner(user: TestUser, runnerId: string, protocol: Protocol = "connect-json"): Promise<Runner> {
  return (await server.runners(protocol, user.apiKey).getRunner({ runnerId })).runner!;
}

async function localConfigurationRunner(user: TestUser): Promise<Runner[]> {
  const { runners } = await server.runners("connect-json", user.apiKey).listRunners({
    filter: { kinds: [RunnerKind.LOCAL_CONFIGURATION] },
  });
  return runners;
}

describe("GetRunner", () => {
  it("returns the caller's own runner", async () => {
    const { runnerId } = await createRunner(alice, "get me");
    const runner = await getRunner(alice, runnerId);
    expect(runner).toMatchObject({ runnerId, name: "get me", kind: RunnerKind.REMOTE, provider: RunnerProvider.AWS_EC2 });
    expect(runner.creator).toMatchObject({ id: alice.userId, principal: Principal.USER });
  });

  it("answers another organization's runner exactly like a runner that does not exist", async () => {
    const { runnerId } = await createRunner(alice, "private");
    const missing = await failure(getRunner(bob, NO_SUCH_RUNNER));
    const foreign = await failure(getRunner(bob, runnerId));
    expect(missing.code).toBe(Code.NotFound);
    expect(foreign.code).toBe(Code.NotFound);
    expect(foreign.rawMessage.replace(runnerId, "<id>")).toBe(missing.rawMessage.replace(NO_SUCH_RUNNER, "<id>"));
    for (const secret of [alice.organizationId, alice.organizationSlug, bob.organizationId, bob.organizationSlug]) {
      expect(foreign.rawMessage).not.toContain(secret);
    }
    expect(foreign.rawMessage.toLowerCase()).not.toContain("organization");
  });

  it("rejects a malformed runner id with invalid_argument", async () => {
    expect(await codeOf(getRunner(alice, "not-a-uuid"))).toBe("InvalidArgument");
    expect(await codeOf(getRunner(alice, ""))).toBe("InvalidArgument");
  });
});

// UpdateRunner is a presence-based patch. The steps are written as Connect JSON (what an SDK
// sends) and applied in order to one runner; each lists what it changes in the JSON form of
// the spec (default values included), everything else must stay as it was.
type SpecJson = { desiredPhase: string; configuration: Record<string, any> } & Record<string, any>;
type Step = [description: string, body: JsonObject, change: (expected: { name: string; spec: SpecJson }) => void];
const noChange = () => {};
const steps: Step[] = [
  ["autoUpdate false after true", { spec: { configuration: { autoUpdate: false } } }, (e) => void (e.spec.configuration.autoUpdate = false)],
  ["a name change alone", { name: "renamed runner" }, (e) => void (e.name = "renamed runner")],
  [
    "release channel and log level",
    { spec: { configuration: { releaseChannel: "RUNNER_RELEASE_CHANNEL_LATEST", logLevel: "LOG_LEVEL_DEBUG" } } },
    (e) => Object.assign(e.spec.configuration, { releaseChannel: "RUNNER_RELEASE_CHANNEL_LATEST", logLevel: "LOG_LEVEL_DEBUG" }),
  ],
  ["metrics enabled false keeps the url", { spec: { configuration: { metrics: { enabled: false } } } }, (e) => void (e.spec.configuration.metrics.enabled = false)],
  ["metrics url \"\" clears only the url", { spec: { configuration: { metrics: { url: "" } } } }, (e) => void (e.spec.configuration.metrics.url = "")],
  ["metrics username and verbose flag", { spec: { configuration: { metrics: { username: "writer", includeVerboseMetrics: true } } } },
    (e) => Object.assign(e.spec.configuration.metrics, { username: "writer", includeVerboseMetrics: true })],
  ["a window with only a start ends two hours later", { spec: { configuration: { updateWindow: { startHour: 3 } } } },
    (e) => void (e.spec.configuration.updateWindow = { startHour: 3, endHour: 5 })],
  ["an overnight window", { spec: { configuration: { updateWindow: { startHour: 23, endHour: 1 } } } },
    (e) => void (e.spec.configuration.updateWindow = { startHour: 23, endHour: 1 })],
  ["an empty window clears it", { spec: { configuration: { updateWindow: {} } } }, (e) => void delete e.spec.configuration.updateWindow],
  ["devcontainer image cache off", { spec: { configuration: { devcontainerImageCacheEnabled: false } } },
    (e) => void (e.spec.configuration.devcontainerImageCacheEnabled = false)],
  ["an empty spec", { spec: {} }, noChange],
  ["an empty configuration", { spec: { configuration: {} } }, noChange],
  ["an empty metrics message", { spec: { configuration: { metrics: {} } } }, noChange],
  ["nothing but the id", {}, noChange],
  ["autoUpdate back on", { spec: { configuration: { autoUpdate: true } } }, (e) => void (e.spec.configuration.autoUpdate = true)],
];

const specJson = (runner: Runner) => toJson(RunnerSpecSchema, runner.spec!, { alwaysEmitImplicit: true }) as SpecJson;

const updateVia = {
  "connect-json": async (user: TestUser, body: JsonObject) => {
    await server.runners("connect-json", user.apiKey).updateRunner(fromJson(UpdateRunnerRequestSchema, body));
  },
  "connect-binary": async (user: TestUser, body: JsonObject) => {
    await server.runners("connect-binary", user.apiKey).updateRunner(fromJson(UpdateRunnerRequestSchema, body));
  },
  "raw JSON": async (user: TestUser, body: JsonObject) => {
    const response = await postJson(server, "gitpod.v1.RunnerService/UpdateRunner", body, { authorization: `Bearer ${user.apiKey}` });
    if (response.status !== 200) throw new ConnectError(response.body.message, codeFromString(response.body.code) ?? Code.Unknown);
    expect(response.body).toEqual({});
  },
};

describe.each(Object.keys(updateVia) as (keyof typeof updateVia)[])("UpdateRunner over %s", (via) => {
  const update = (user: TestUser, body: JsonObject) => updateVia[via](user, body);

  async function patchable() {
    const { runner } = await server.runners("connect-json", alice.apiKey).createRunner({
      name: "patchable",
      provider: RunnerProvider.AWS_EC2,
      spec: {
        configuration: {
          region: "us-west",
          releaseChannel: RunnerReleaseChannel.STABLE,
          autoUpdate: true,
          logLevel: LogLevel.INFO,
          devcontainerImageCacheEnabled: true,
          updateWindow: { startHour: 22 },
          metrics: { enabled: true, url: "https://metrics.example.com/write", username: "u", password: "p" },
        },
      },
    });
    return runner!;
  }

  it("changes exactly the fields that are present, stamping updated_at", async () => {
    const created = await patchable();
    const runnerId = created.runnerId;
    const expected = { name: created.name, spec: specJson(created) };
    expect(expected.spec.configuration).toMatchObject({ autoUpdate: true, devcontainerImageCacheEnabled: true, updateWindow: { startHour: 22, endHour: 0 } });
    for (const [description, body, change] of steps) {
      server.clock.advance(1_000);
      await update(alice, { runnerId, ...body });
      change(expected);
      const runner = await getRunner(alice, runnerId);
      expect({ name: runner.name, spec: specJson(runner) }, description).toEqual(expected);
      expect(ms(runner.createdAt), description).toBe(ms(created.createdAt));
      if (change !== noChange) expect(ms(runner.updatedAt), description).toBe(server.clock.now().getTime());
    }
  });

  it.each<[string, JsonObject]>([
    ["a name of 2 characters", { name: "ab" }],
    ["a one-hour window", { spec: { configuration: { updateWindow: { startHour: 3, endHour: 4 } } } }],
    ["a window ending without a start", { spec: { configuration: { updateWindow: { endHour: 4 } } } }],
    ["a metrics url that is not a URL", { spec: { configuration: { metrics: { url: "metrics.example.com/write" } } } }],
    ["an ftp metrics url", { spec: { configuration: { metrics: { url: "ftp://metrics.example.com" } } } }],
    ["a valid name next to an invalid window", { name: "valid name", spec: { configuration: { updateWindow: { startHour: 0, endHour: 1 } } } }],
  ])("rejects %s with invalid_argument and changes nothing", async (_description, body) => {
    const created = await patchable();
    server.clock.advance(1_000);
    expect(await codeOf(update(alice, { runnerId: created.runnerId, ...body }))).toBe("InvalidArgument");
    expect(await getRunner(alice, created.runnerId)).toEqual(created);
  });

  it("refuses desired_phase on a remote runner with failed_precondition, applying nothing else", async () => {
    const created = await patchable();
    const body = { runnerId: created.runnerId, name: "must not apply", spec: { desiredPhase: "RUNNER_PHASE_INACTIVE" } };
    expect(await codeOf(update(alice, body))).toBe("FailedPrecondition");
    expect(await getRunner(alice, created.runnerId)).toEqual(created);
  });

  it("answers another organization's runner with not_found and leaves it alone", async () => {
    const created = await patchable();
    expect(await codeOf(update(bob, { runnerId: created.runnerId, name: "hijacked" }))).toBe("NotFound");
    expect(await codeOf(update(bob, { runnerId: NO_SUCH_RUNNER, name: "nobody" }))).toBe("NotFound");
    expect((await getRunner(alice, created.runnerId)).name).toBe("patchable");
  });
});

describe("UpdateRunner without any field", () => {
  it("changes nothing, not even updated_at, and still answers not_found for a missing runner", async () => {
    const user = await server.newUser();
    const { runnerId } = await createRunner(user);
    const before = await getRunner(user, runnerId);
    server.clock.advance(5_000);
    await server.runners("connect-json", user.apiKey).updateRunner({ runnerId, spec: { configuration: {} } });
    expect(await getRunner(user, runnerId)).toEqual(before);
    expect(await codeOf(server.runners("connect-json", user.apiKey).updateRunner({ runnerId: NO_SUCH_RUNNER }))).toBe("NotFound");
  });
});

describe("UpdateRunner on the LOCAL_CONFIGURATION runner", () => {
  it("switches the desired phase between INACTIVE and ACTIVE, reflected in status.phase", async () => {
    const admin = await server.newUser();
    const [local] = await localConfigurationRunner(admin);
    const runnerId = local!.runnerId;
    for (const phase of [RunnerPhase.INACTIVE, RunnerPhase.ACTIVE]) {
      server.clock.advance(1_000);
      await server.runners("connect-binary", admin.apiKey).updateRunner({ runnerId, spec: { desiredPhase: phase } });
      const runner = await getRunner(admin, runnerId);
      expect([RunnerPhase[runner.spec!.desiredPhase], RunnerPhase[runner.status!.phase]]).toEqual([RunnerPhase[phase], RunnerPhase[phase]]);
      expect(ms(runner.updatedAt)).toBe(server.clock.now().getTime());
    }
  });

  it("rejects desired phases other than ACTIVE/INACTIVE with invalid_argument", async () => {
    const admin = await server.newUser();
    const [local] = await localConfigurationRunner(admin);
    for (const desiredPhase of [RunnerPhase.DELETED, RunnerPhase.DEGRADED, RunnerPhase.CREATED, 42 as RunnerPhase]) {
      const call = server.runners("connect-json", admin.apiKey).updateRunner({ runnerId: local!.runnerId, spec: { desiredPhase } });
      expect([RunnerPhase[desiredPhase] ?? desiredPhase, await codeOf(call)]).toEqual([RunnerPhase[desiredPhase] ?? desiredPhase, "InvalidArgument"]);
    }
    expect((await getRunner(admin, local!.runnerId)).status?.phase).toBe(RunnerPhase.ACTIVE);
  });

  it("is not visible to, nor switchable by, another organization", async () => {
    const admin = await server.newUser();
    const [local] = await localConfigurationRunner(admin);
    const call = server.runners("connect-json", bob.apiKey).updateRunner({ runnerId: local!.runnerId, spec: { desiredPhase: RunnerPhase.INACTIVE } });
    expect(await codeOf(call)).toBe("NotFound");
    expect((await getRunner(admin, local!.runnerId)).status?.phase).toBe(RunnerPhase.ACTIVE);
  });
});

describe("concurrent UpdateRunner calls on different fields", () => {
  it("keeps both changes, every time", async () => {
    const { runnerId } = await createRunner(alice, "contended");
    const names = server.runners("connect-json", alice.apiKey);
    const settings = server.runners("connect-binary", alice.apiKey);
    for (let round = 0; round < 20; round++) {
      const autoUpdate = round % 2 === 0;
      const logLevel = round % 2 === 0 ? LogLevel.WARN : LogLevel.ERROR;
      await Promise.all([
        names.updateRunner({ runnerId, name: `round ${round}` }),
        settings.updateRunner({ runnerId, spec: { configuration: { autoUpdate, logLevel } } }),
      ]);
      const runner = await getRunner(alice, runnerId);
      expect([runner.name, runner.spec?.configuration?.autoUpdate, runner.spec?.configuration?.logLevel]).toEqual([
        `round ${round}`,
        autoUpdate,
        logLevel,
      ]);
    }
  });
});

describe("DeleteRunner", () => {
  it("removes the runner everywhere and stops its credentials at once", async () => {
    const owner = await server.newUser();
    const { runnerId, exchangeToken: unused } = await createRunner(owner, "doomed");
    const renewed = await server.runners("connect-json", owner.apiKey).createRunnerToken({ runnerId });
    const accessToken = await exchange(renewed.exchangeToken);
    await server.interaction("connect-json", accessToken).signup({ publicKey: PUBLIC_KEY, environmentClasses: [] });
    // The credentials work right up to the delete.
    await server.interaction("connect-json", accessToken).markRunnerActive({ runnerId });
    const spare = (await server.runners("connect-json", owner.apiKey).createRunnerToken({ runnerId })).exchangeToken;

    await server.runners("connect-json", owner.apiKey).deleteRunner({ runnerId });

    expect(await codeOf(getRunner(owner, runnerId))).toBe("NotFound");
    const { runners } = await server.runners("connect-json", owner.apiKey).listRunners({});
    expect(runners.map((runner) => runner.runnerId)).not.toContain(runnerId);
    expect(runners).toHaveLength(1); // only the organization's LOCAL_CONFIGURATION runner is left
    for (const token of [unused, spare]) expect(await codeOf(exchange(token))).toBe("Unauthenticated");
    expect(await codeOf(server.identity("connect-json", accessToken).getAuthenticatedIdentity({}))).toBe("Unauthenticated");
    expect(await codeOf(server.interaction("connect-json", accessToken).markRunnerActive({ runnerId }))).toBe("Unauthenticated");
    expect(await codeOf(server.interaction("grpc", accessToken).updateRunnerStatus({ runnerId, version: "1.0.0" }))).toBe("Unauthenticated");
  });

  it("is idempotent for the owner and not_found for a runner that never existed", async () => {
    const { runnerId } = await createRunner(alice, "deleted twice");
    await server.runners("connect-json", alice.apiKey).deleteRunner({ runnerId });
    await expect(server.runners("connect-binary", alice.apiKey).deleteRunner({ runnerId })).resolves.toBeDefined();
    expect(await codeOf(server.runners("connect-json", alice.apiKey).deleteRunner({ runnerId: NO_SUCH_RUNNER }))).toBe("NotFound");
  });

  it("answers another organization with not_found and keeps the runner for its owner", async () => {
    const { runnerId } = await createRunner(alice, "not yours");
    expect(await codeOf(server.runners("connect-json", bob.apiKey).deleteRunner({ runnerId }))).toBe("NotFound");
    expect((await getRunner(alice, runnerId)).name).toBe("not yours");
  });

  it("refuses the LOCAL_CONFIGURATION runner with failed_precondition", async () => {
    const [local] = await localConfigurationRunner(alice);
    expect(await codeOf(server.runners("connect-json", alice.apiKey).deleteRunner({ runnerId: local!.runnerId }))).toBe("FailedPrecondition");
    expect(await codeOf(server.runners("connect-json", alice.apiKey).deleteRunner({ runnerId: local!.runnerId, force: true }))).toBe(
      "FailedPrecondition",
    );
    expect(await localConfigurationRunner(alice)).toHaveLength(1);
  });

  it("accepts force: true", async () => {
    const { runnerId } = await createRunner(alice, "forced");
    await server.runners("grpc", alice.apiKey).deleteRunner({ runnerId, force: true });
    expect(await codeOf(getRunner(alice, runnerId))).toBe("NotFound");
  });
});

describe("CreateRunnerToken", () => {
  it("issues a one-time exchange token and keeps earlier access tokens working", async () => {
    const { runnerId, exchangeToken } = await createRunner(alice, "renewed");
    const first = await exchange(exchangeToken);
    const { exchangeToken: renewal, accessToken } = await server.runners("connect-json", alice.apiKey).createRunnerToken({ runnerId });
    expect(renewal).toMatch(/^rcpx_[0-9A-Za-z]{49}$/);
    expect(renewal).not.toBe(exchangeToken);
    expect(accessToken).toBe("");
    const second = await exchange(renewal);
    expect(second).toMatch(/^rcpr_[0-9A-Za-z]{49}$/);
    expect(second).not.toBe(first);
    expect(await codeOf(exchange(renewal))).toBe("Unauthenticated");
    for (const token of [first, second]) {
      const identity = await server.identity("connect-json", token).getAuthenticatedIdentity({});
      expect(identity.subject).toMatchObject({ id: runnerId, principal: Principal.RUNNER });
    }
  });

  it("answers another organization's runner and a deleted runner with not_found", async () => {
    const { runnerId } = await createRunner(alice, "token target");
    expect(await codeOf(server.runners("connect-json", bob.apiKey).createRunnerToken({ runnerId }))).toBe("NotFound");
    await server.runners("connect-json", alice.apiKey).deleteRunner({ runnerId });
    expect(await codeOf(server.runners("connect-json", alice.apiKey).createRunnerToken({ runnerId }))).toBe("NotFound");
  });

  it("refuses the LOCAL_CONFIGURATION runner with failed_precondition", async () => {
    const [local] = await localConfigurationRunner(alice);
    const call = server.runners("connect-json", alice.apiKey).createRunnerToken({ runnerId: local!.runnerId });
    expect(await codeOf(call)).toBe("FailedPrecondition");
  });
});

describe("the LOCAL_CONFIGURATION runner", () => {
  it("exists exactly once in every new organization", async () => {
    for (const user of [await server.newUser(), await server.newUser()]) {
      const local = await localConfigurationRunner(user);
      expect(local).toHaveLength(1);
      expect(local[0]).toMatchObject({ name: "Local configuration", kind: RunnerKind.LOCAL_CONFIGURATION });
      expect(local[0]!.creator).toBeUndefined();
      expect(local[0]!.status?.phase).toBe(RunnerPhase.ACTIVE);
      expect(local[0]!.spec?.desiredPhase).toBe(RunnerPhase.ACTIVE);
      const { runners } = await server.runners("connect-json", user.apiKey).listRunners({});
      expect(runners.map((runner) => runner.runnerId)).toEqual([local[0]!.runnerId]);
    }
  });
});

describe.each(["connect-json", "grpc"] as const)("the runner side over %s", (protocol) => {
  it("exchanges, signs up, and shows up ACTIVE with its public key", async () => {
    const { runnerId, exchangeToken } = await createRunner(alice, "signing up");
    const accessToken = (await server.identity(protocol).exchangeToken({ exchangeToken })).accessToken;
    expect(accessToken).toMatch(/^rcpr_[0-9A-Za-z]{49}$/);
    expect((await getRunner(alice, runnerId)).status?.phase).toBe(RunnerPhase.CREATED);
    const runnerSide = server.interaction(protocol, accessToken);
    expect(await codeOf(runnerSide.markRunnerActive({ runnerId }))).toBe("FailedPrecondition");
    expect(await codeOf(runnerSide.updateRunnerStatus({ runnerId, version: "1.0.0" }))).toBe("FailedPrecondition");

    server.clock.advance(1_000);
    const signup = await runnerSide.signup({ publicKey: PUBLIC_KEY, environmentClasses: [ENVIRONMENT_CLASS] });
    expect(signup.runnerId).toBe(runnerId);
    const runner = await getRunner(alice, runnerId, protocol);
    expect(runner.status?.phase).toBe(RunnerPhase.ACTIVE);
    expect(runner.status?.publicKey).toEqual(PUBLIC_KEY);
    expect(ms(runner.status?.updatedAt)).toBe(server.clock.now().getTime());
    await runnerSide.markRunnerActive({ runnerId });
  });

  it("rejects public keys that are not exactly 32 bytes, and short environment class names", async () => {
    const { runnerId, exchangeToken } = await createRunner(alice, "bad signup");
    const runnerSide = server.interaction(protocol, await exchange(exchangeToken));
    for (const length of [0, 31, 33]) {
      const call = runnerSide.signup({ publicKey: new Uint8Array(length), environmentClasses: [ENVIRONMENT_CLASS] });
      expect([length, await codeOf(call)]).toEqual([length, "InvalidArgument"]);
    }
    const shortName = runnerSide.signup({ publicKey: PUBLIC_KEY, environmentClasses: [{ ...ENVIRONMENT_CLASS, displayName: "XS" }] });
    expect(await codeOf(shortName)).toBe("InvalidArgument");
    // None of the rejected attempts counted as a signup.
    expect((await getRunner(alice, runnerId)).status?.phase).toBe(RunnerPhase.CREATED);
    expect(await codeOf(runnerSide.markRunnerActive({ runnerId }))).toBe("FailedPrecondition");
  });

  it("patches the reported status field by field", async () => {
    const { runnerId, accessToken } = await signedUpRunner(alice);
    const report = server.interaction(protocol, accessToken);
    const status = async () => (await getRunner(alice, runnerId)).status!;

    await report.updateRunnerStatus({
      runnerId,
      version: "1.2.3",
      region: "eu-central-1",
      systemDetails: "linux/amd64",
      logUrl: "https://logs.example.com/runner",
    });
    expect(await status()).toMatchObject({ version: "1.2.3", region: "eu-central-1", systemDetails: "linux/amd64", logUrl: "https://logs.example.com/runner" });

    await report.updateRunnerStatus({ runnerId, version: "1.2.4" });
    expect(await status()).toMatchObject({ version: "1.2.4", region: "eu-central-1", systemDetails: "linux/amd64", logUrl: "https://logs.example.com/runner" });

    await report.updateRunnerStatus({ runnerId, region: "" });
    expect(await status()).toMatchObject({ version: "1.2.4", region: "", systemDetails: "linux/amd64" });

    const two = [RunnerCapability.SECRET_CONTAINER_REGISTRY, RunnerCapability.WARM_POOL];
    await report.updateRunnerStatus({ runnerId, capabilities: two });
    expect((await status()).capabilities).toEqual(two);
    await report.updateRunnerStatus({ runnerId, capabilities: [], version: "1.2.5" });
    expect((await status()).capabilities).toEqual(two);
    await report.updateRunnerStatus({ runnerId, capabilities: [RunnerCapability.UNSPECIFIED] });
    expect((await status()).capabilities).toEqual([]);

    const info = async () => (await status()).additionalInfo.map(({ key, value }) => [key, value]);
    await report.updateRunnerStatus({ runnerId, additionalInfo: [{ key: "k1", value: "v1" }, { key: "k2", value: "v2" }] });
    expect(await info()).toEqual([["k1", "v1"], ["k2", "v2"]]);
    await report.updateRunnerStatus({ runnerId, additionalInfo: [{ key: "k1", value: "" }] });
    expect(await info()).toEqual([["k2", "v2"]]);
    await report.updateRunnerStatus({ runnerId, additionalInfo: [{ key: "k2", value: "v3" }] });
    expect(await info()).toEqual([["k2", "v3"]]);
    await report.updateRunnerStatus({ runnerId, version: "1.2.6" });
    expect(await info()).toEqual([["k2", "v3"]]);
    await report.updateRunnerStatus({ runnerId, additionalInfo: [{ key: "k2" }] });
    expect(await info()).toEqual([]);

    await report.updateRunnerStatus({ runnerId, degredationMessage: "disk full" });
    expect(await status()).toMatchObject({ phase: RunnerPhase.DEGRADED, message: "disk full" });
    await report.updateRunnerStatus({ runnerId, version: "1.2.7" });
    expect(await status()).toMatchObject({ phase: RunnerPhase.DEGRADED, message: "disk full" });
    await report.updateRunnerStatus({ runnerId, degredationMessage: "" });
    expect(await status()).toMatchObject({ phase: RunnerPhase.ACTIVE, message: "" });

    await report.updateRunnerStatus({
      runnerId,
      gatewayInfo: {
        gateway: { name: "gw-eu", url: "https://gw-eu.example.com", region: "eu-central-1" },
        latency: { seconds: 0n, nanos: 12_000_000 },
      },
    });
    const gatewayInfo = (await status()).gatewayInfo;
    expect(gatewayInfo?.gateway).toMatchObject({ name: "gw-eu", url: "https://gw-eu.example.com", region: "eu-central-1" });
    expect(gatewayInfo?.latency).toMatchObject({ seconds: 0n, nanos: 12_000_000 });
    await report.updateRunnerStatus({ runnerId, version: "1.2.8" });
    expect((await status()).gatewayInfo?.gateway?.name).toBe("gw-eu");
  });

  it("rejects a relative log url with invalid_argument", async () => {
    const { runnerId, accessToken } = await signedUpRunner(alice);
    expect(await codeOf(server.interaction(protocol, accessToken).updateRunnerStatus({ runnerId, logUrl: "logs/runner" }))).toBe(
      "InvalidArgument",
    );
  });
});

describe.each(protocols)("who may call what, over %s", (protocol) => {
  let runnerA: { runnerId: string; accessToken: string };
  let runnerB: { runnerId: string; accessToken: string };
  let foreign: { runnerId: string; accessToken: string };

  beforeAll(async () => {
    runnerA = await signedUpRunner(alice);
    runnerB = await signedUpRunner(alice);
    foreign = await signedUpRunner(bob);
  });

  it("lets a runner act on and read only itself", async () => {
    const a = server.interaction(protocol, runnerA.accessToken);
    for (const other of [runnerB.runnerId, foreign.runnerId]) {
      expect(await codeOf(a.markRunnerActive({ runnerId: other }))).toBe("PermissionDenied");
      expect(await codeOf(a.updateRunnerStatus({ runnerId: other, version: "evil" }))).toBe("PermissionDenied");
      expect(await codeOf(server.runners(protocol, runnerA.accessToken).getRunner({ runnerId: other }))).toBe("PermissionDenied");
    }
    expect((await getRunner(alice, runnerB.runnerId)).status?.version).toBe("");
    const self = await server.runners(protocol, runnerA.accessToken).getRunner({ runnerId: runnerA.runnerId });
    expect(self.runner?.runnerId).toBe(runnerA.runnerId);
    await a.markRunnerActive({ runnerId: runnerA.runnerId });
  });

  it("denies a runner token every user method of RunnerService", async () => {
    const asRunner = server.runners(protocol, runnerA.accessToken);
    const runnerId = runnerA.runnerId;
    const calls: [string, () => Promise<unknown>][] = [
      ["CreateRunner", () => asRunner.createRunner({ name: "spawned", provider: RunnerProvider.AWS_EC2 })],
      ["ListRunners", () => asRunner.listRunners({})],
      ["UpdateRunner", () => asRunner.updateRunner({ runnerId, name: "self renamed" })],
      ["DeleteRunner", () => asRunner.deleteRunner({ runnerId })],
      ["CreateRunnerToken", () => asRunner.createRunnerToken({ runnerId })],
    ];
    for (const [method, call] of calls) expect([method, await codeOf(call())]).toEqual([method, "PermissionDenied"]);
    const runner = await getRunner(alice, runnerId);
    expect(runner.name).toBe("lifecycle runner");
  });

  it("denies a user key the runner-side methods", async () => {
    const asUser = server.interaction(protocol, alice.apiKey);
    const runnerId = runnerA.runnerId;
    expect(await codeOf(asUser.signup({ publicKey: PUBLIC_KEY }))).toBe("PermissionDenied");
    expect(await codeOf(asUser.markRunnerActive({ runnerId }))).toBe("PermissionDenied");
    expect(await codeOf(asUser.updateRunnerStatus({ runnerId, version: "x" }))).toBe("PermissionDenied");
  });

  it("hides one organization's runners from another organization's user", async () => {
    const asBob = server.runners(protocol, bob.apiKey);
    const runnerId = runnerA.runnerId;
    const calls: [string, () => Promise<unknown>][] = [
      ["GetRunner", () => asBob.getRunner({ runnerId })],
      ["UpdateRunner", () => asBob.updateRunner({ runnerId, name: "taken over" })],
      ["DeleteRunner", () => asBob.deleteRunner({ runnerId })],
      ["CreateRunnerToken", () => asBob.createRunnerToken({ runnerId })],
    ];
    for (const [method, call] of calls) expect([method, await codeOf(call())]).toEqual([method, "NotFound"]);
    expect((await getRunner(alice, runnerId)).name).toBe("lifecycle runner");
  });
});

describe("liveness (injected clock)", () => {
  const WINDOW = 90_000;

  async function phaseOf(user: TestUser, runnerId: string) {
    const runner = await getRunner(user, runnerId);
    // ListRunners derives the phase the same way as GetRunner.
    const { runners } = await server.runners("connect-json", user.apiKey).listRunners({ pagination: { pageSize: 100 } });
    const listed = runners.find((r) => r.runnerId === runnerId);
    expect(listed?.status).toEqual(runner.status);
    return { phase: RunnerPhase[runner.status!.phase], updatedAt: ms(runner.status!.updatedAt), message: runner.status!.message };
  }

  it("turns INACTIVE exactly 90 s after the last heartbeat and ACTIVE again on the next", async () => {
    const owner = await server.newUser();
    const { runnerId, accessToken } = await signedUpRunner(owner);
    const signedUpAt = server.clock.now().getTime();
    expect(await phaseOf(owner, runnerId)).toEqual({ phase: "ACTIVE", updatedAt: signedUpAt, message: "" });

    server.clock.advance(WINDOW - 1_000);
    expect((await phaseOf(owner, runnerId)).phase).toBe("ACTIVE");
    server.clock.advance(999);
    expect((await phaseOf(owner, runnerId)).phase).toBe("ACTIVE");
    server.clock.advance(1);
    const inactive = await phaseOf(owner, runnerId);
    expect(inactive).toMatchObject({ phase: "INACTIVE", updatedAt: signedUpAt + WINDOW });
    expect(inactive.message).toContain("no heartbeat since");
    server.clock.advance(60_000);
    expect(await phaseOf(owner, runnerId)).toEqual(inactive); // the moment it went inactive does not move

    await server.interaction("connect-json", accessToken).markRunnerActive({ runnerId });
    const heartbeat = server.clock.now().getTime();
    expect(await phaseOf(owner, runnerId)).toEqual({ phase: "ACTIVE", updatedAt: heartbeat, message: "" });
    server.clock.advance(WINDOW);
    expect(await phaseOf(owner, runnerId)).toMatchObject({ phase: "INACTIVE", updatedAt: heartbeat + WINDOW });
  });

  it("counts status reports as liveness", async () => {
    const owner = await server.newUser();
    const { runnerId, accessToken } = await signedUpRunner(owner);
    server.clock.advance(80_000);
    await server.interaction("connect-json", accessToken).updateRunnerStatus({ runnerId, version: "2.0.0" });
    const reported = server.clock.now().getTime();
    server.clock.advance(80_000);
    expect(await phaseOf(owner, runnerId)).toEqual({ phase: "ACTIVE", updatedAt: reported, message: "" });
    server.clock.advance(10_000);
    expect((await phaseOf(owner, runnerId)).phase).toBe("INACTIVE");
  });

  it("reports a degraded runner that stops heartbeating as INACTIVE", async () => {
    const owner = await server.newUser();
    const { runnerId, accessToken } = await signedUpRunner(owner);
    await server.interaction("connect-json", accessToken).updateRunnerStatus({ runnerId, degredationMessage: "disk full" });
    expect(await phaseOf(owner, runnerId)).toMatchObject({ phase: "DEGRADED", message: "disk full" });
    server.clock.advance(WINDOW);
    const inactive = await phaseOf(owner, runnerId);
    expect(inactive.phase).toBe("INACTIVE");
    expect(inactive.message).toContain("no heartbeat since");
    // Back in touch, it is still degraded until it reports otherwise.
    await server.interaction("connect-json", accessToken).markRunnerActive({ runnerId });
    expect(await phaseOf(owner, runnerId)).toMatchObject({ phase: "DEGRADED", message: "disk full" });
  });

  it("keeps a runner that never signed up CREATED however long it waits", async () => {
    const owner = await server.newUser();
    const { runnerId } = await createRunner(owner, "never started");
    const createdAt = server.clock.now().getTime();
    server.clock.advance(10 * WINDOW);
    expect(await phaseOf(owner, runnerId)).toEqual({ phase: "CREATED", updatedAt: createdAt, message: "" });
  });

  it("takes the window from RUNNER_LIVENESS_WINDOW_SECONDS", async () => {
    const other = await startServer({ env: { RUNNER_LIVENESS_WINDOW_SECONDS: "30" }, clock: new ManualClock(Date.now()) });
    try {
      const owner = await other.newUser();
      const { runner, exchangeToken } = await other.runners("connect-json", owner.apiKey).createRunner({ name: "short window", provider: RunnerProvider.GCP });
      const accessToken = (await other.identity("connect-json").exchangeToken({ exchangeToken })).accessToken;
      await other.interaction("connect-json", accessToken).signup({ publicKey: PUBLIC_KEY });
      const signedUpAt = other.clock.now().getTime();
      const status = async () => (await other.runners("connect-json", owner.apiKey).getRunner({ runnerId: runner!.runnerId })).runner!.status!;
      other.clock.advance(29_999);
      expect((await status()).phase).toBe(RunnerPhase.ACTIVE);
      other.clock.advance(1);
      const inactive = await status();
      expect(inactive.phase).toBe(RunnerPhase.INACTIVE);
      expect(ms(inactive.updatedAt)).toBe(signedUpAt + 30_000);
    } finally {
      await other.close();
    }
  });
});

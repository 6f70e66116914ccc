// CreateRunner over every protocol: validation at and beyond each boundary, the response
// shape, and what is stored.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ViolationsSchema } from "../gen/buf/validate/validate_pb.js";
import { LogLevel, RunnerPhase, RunnerReleaseChannel, RunnerVariant } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerKind, RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { Principal } from "../gen/gitpod/v1/identity_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CreateRunnerRequestSchema } from "../gen/gitpod/v1/runner_pb.js";
import { protocols, startServer, type TestServer, type TestUser } from "./harness.js";

type CreateInit = MessageInitShape<typeof CreateRunnerRequestSchema>;

let server: TestServer;
let user: TestUser;

beforeAll(async () => {
  server = await startServer();
  user = await server.newUser();
});
afterAll(() => server?.close());

async function createError(protocol: (typeof protocols)[number], request: CreateInit): Promise<ConnectError> {
  try {
    await server.runners(protocol, user.apiKey).createRunner(request);
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error(`expected CreateRunner to fail for ${JSON.stringify(request)}`);
}

const MANAGER_ID = "7b3f7c1e-2f0a-4d7e-9a55-0d7a0f3b6c11";

// [description, request, field the error message must name]
const invalid: [string, CreateInit, string][] = [
  ["name of 2 characters", { name: "ab", provider: RunnerProvider.AWS_EC2 }, "name"],
  ["empty name", { name: "", provider: RunnerProvider.AWS_EC2 }, "name"],
  ["name of 128 characters", { name: "x".repeat(128), provider: RunnerProvider.AWS_EC2 }, "name"],
  ["name of 128 code points (emoji)", { name: "😀".repeat(128), provider: RunnerProvider.AWS_EC2 }, "name"],
  ["both kind and provider", { name: "runner", kind: RunnerKind.REMOTE, provider: RunnerProvider.AWS_EC2 }, "kind"],
  ["neither kind nor provider", { name: "runner" }, "provider"],
  ["unknown provider number", { name: "runner", provider: 99 as RunnerProvider }, "provider"],
  ["unknown kind number", { name: "runner", kind: 42 as RunnerKind }, "kind"],
  ["LOCAL_CONFIGURATION kind", { name: "runner", kind: RunnerKind.LOCAL_CONFIGURATION }, "kind"],
  ["MANAGED without manager id", { name: "runner", provider: RunnerProvider.MANAGED }, "runner_manager_id"],
  ["MANAGED with a non-UUID manager id", { name: "runner", provider: RunnerProvider.MANAGED, runnerManagerId: "not-a-uuid" }, "runner_manager_id"],
  ["manager id on AWS_EC2", { name: "runner", provider: RunnerProvider.AWS_EC2, runnerManagerId: MANAGER_ID }, "runner_manager_id"],
  ["desired phase DELETED", { name: "runner", provider: RunnerProvider.GCP, spec: { desiredPhase: RunnerPhase.DELETED } }, "spec.desired_phase"],
  ["desired phase CREATED", { name: "runner", provider: RunnerProvider.GCP, spec: { desiredPhase: RunnerPhase.CREATED } }, "spec.desired_phase"],
  ["undefined desired phase", { name: "runner", provider: RunnerProvider.GCP, spec: { desiredPhase: 77 as RunnerPhase } }, "spec.desired_phase"],
  ["undefined variant", { name: "runner", provider: RunnerProvider.GCP, spec: { variant: 9 as RunnerVariant } }, "spec.variant"],
  [
    "undefined release channel",
    { name: "runner", provider: RunnerProvider.GCP, spec: { configuration: { releaseChannel: 5 as RunnerReleaseChannel } } },
    "spec.configuration.release_channel",
  ],
  [
    "undefined log level",
    { name: "runner", provider: RunnerProvider.GCP, spec: { configuration: { logLevel: 12 as LogLevel } } },
    "spec.configuration.log_level",
  ],
  [
    "update window start hour 24",
    { name: "runner", provider: RunnerProvider.GCP, spec: { configuration: { updateWindow: { startHour: 24 } } } },
    "spec.configuration.update_window.start_hour",
  ],
  [
    "update window end hour 24",
    { name: "runner", provider: RunnerProvider.GCP, spec: { configuration: { updateWindow: { startHour: 1, endHour: 24 } } } },
    "spec.configuration.update_window.end_hour",
  ],
  [
    "update window end without start",
    { name: "runner", provider: RunnerProvider.GCP, spec: { configuration: { updateWindow: { endHour: 4 } } } },
    "spec.configuration.update_window.start_hour",
  ],
  [
    "update window of one hour",
    { name: "runner", provider: RunnerProvider.GCP, spec: { configuration: { updateWindow: { startHour: 3, endHour: 4 } } } },
    "spec.configuration.update_window",
  ],
  [
    "metrics url without scheme",
    { name: "runner", provider: RunnerProvider.GCP, spec: { configuration: { metrics: { url: "metrics.example.com/write" } } } },
    "spec.configuration.metrics.url",
  ],
  [
    "metrics url with ftp scheme",
    { name: "runner", provider: RunnerProvider.GCP, spec: { configuration: { metrics: { url: "ftp://metrics.example.com" } } } },
    "spec.configuration.metrics.url",
  ],
];

describe.each(protocols)("CreateRunner over %s", (protocol) => {
  it.each(invalid)("rejects %s with invalid_argument naming the field", async (_description, request, field) => {
    const err = await createError(protocol, request);
    expect(err.code).toBe(Code.InvalidArgument);
    // JSON requests read JSON names (spec.desiredPhase), the others protobuf names; the detail keeps protobuf's.
    const named = protocol === "connect-json" ? field.replace(/_([a-z0-9])/g, (_, letter: string) => letter.toUpperCase()) : field;
    expect(err.rawMessage.startsWith(`${named}:`), err.rawMessage).toBe(true);
    const violations = err.findDetails(ViolationsSchema);
    expect(violations).toHaveLength(1);
    const path = violations[0]!.violations[0]!.field!.elements.map((element) => element.fieldName).join(".");
    expect(path).toBe(field);
  });

  it("accepts names at the boundaries (3 and 127 code points)", async () => {
    const client = server.runners(protocol, user.apiKey);
    const short = await client.createRunner({ name: "abc", provider: RunnerProvider.AWS_EC2 });
    expect(short.runner?.name).toBe("abc");
    const long = await client.createRunner({ name: "😀".repeat(127), provider: RunnerProvider.AWS_EC2 });
    expect(long.runner?.name).toBe("😀".repeat(127));
  });

  it("returns the stored runner with a one-time exchange token", async () => {
    const before = server.clock.now();
    const response = await server.runners(protocol, user.apiKey).createRunner({
      name: "us-west runner",
      provider: RunnerProvider.AWS_EC2,
      spec: {
        desiredPhase: RunnerPhase.ACTIVE,
        variant: RunnerVariant.STANDARD,
        configuration: {
          region: "us-west",
          releaseChannel: RunnerReleaseChannel.STABLE,
          autoUpdate: true,
          logLevel: LogLevel.INFO,
          updateWindow: { startHour: 22 },
          metrics: { enabled: true, url: "https://metrics.example.com/api/v1/write", username: "u", password: "secret" },
        },
      },
    });
    const runner = response.runner!;
    expect(runner.runnerId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(runner.kind).toBe(RunnerKind.REMOTE);
    expect(runner.provider).toBe(RunnerProvider.AWS_EC2);
    expect(runner.runnerManagerId).toBe("");
    expect(runner.creator).toMatchObject({ id: user.userId, principal: Principal.USER });
    expect(timestampDate(runner.createdAt!).getTime()).toBe(before.getTime());
    expect(runner.updatedAt).toEqual(runner.createdAt);
    expect(runner.status?.phase).toBe(RunnerPhase.CREATED);
    expect(runner.spec?.desiredPhase).toBe(RunnerPhase.ACTIVE);
    expect(runner.spec?.variant).toBe(RunnerVariant.STANDARD);
    const configuration = runner.spec?.configuration;
    expect(configuration).toMatchObject({ region: "us-west", releaseChannel: RunnerReleaseChannel.STABLE, autoUpdate: true, logLevel: LogLevel.INFO });
    // The end of the window defaults to two hours after its start, wrapping past midnight.
    expect(configuration?.updateWindow).toMatchObject({ startHour: 22, endHour: 0 });
    expect(configuration?.metrics).toMatchObject({ enabled: true, url: "https://metrics.example.com/api/v1/write", username: "u" });
    expect(configuration?.metrics?.password).toBe("");
    expect(response.exchangeToken).toMatch(/^rcpx_[0-9A-Za-z]{49}$/);
    expect(response.accessToken).toBe("");

    const stored = await server.runners(protocol, user.apiKey).getRunner({ runnerId: runner.runnerId });
    expect(stored.runner).toEqual(runner);
  });

  it("derives kind from provider", async () => {
    const table: [RunnerProvider, RunnerKind][] = [
      [RunnerProvider.AWS_EC2, RunnerKind.REMOTE],
      [RunnerProvider.GCP, RunnerKind.REMOTE],
      [RunnerProvider.LINUX_HOST, RunnerKind.LOCAL],
      [RunnerProvider.DESKTOP_MAC, RunnerKind.LOCAL],
      [RunnerProvider.DEV_AGENT, RunnerKind.LOCAL],
    ];
    const client = server.runners(protocol, user.apiKey);
    for (const [provider, kind] of table) {
      const { runner } = await client.createRunner({ name: "derived", provider });
      expect([RunnerProvider[provider], RunnerKind[runner!.kind]]).toEqual([RunnerProvider[provider], RunnerKind[kind]]);
    }
    const managed = await client.createRunner({ name: "managed", provider: RunnerProvider.MANAGED, runnerManagerId: MANAGER_ID });
    expect(managed.runner).toMatchObject({ kind: RunnerKind.REMOTE, runnerManagerId: MANAGER_ID });
  });

  it("accepts the deprecated kind alone and defaults the desired phase to ACTIVE", async () => {
    const { runner } = await server.runners(protocol, user.apiKey).createRunner({ name: "by kind", kind: RunnerKind.REMOTE });
    expect(runner).toMatchObject({ kind: RunnerKind.REMOTE, provider: RunnerProvider.UNSPECIFIED });
    expect(runner?.spec?.desiredPhase).toBe(RunnerPhase.ACTIVE);
  });

  it("accepts INACTIVE as the desired phase, and an empty update window as no window", async () => {
    const { runner } = await server.runners(protocol, user.apiKey).createRunner({
      name: "inactive",
      provider: RunnerProvider.GCP,
      spec: { desiredPhase: RunnerPhase.INACTIVE, configuration: { updateWindow: {} } },
    });
    expect(runner?.spec?.desiredPhase).toBe(RunnerPhase.INACTIVE);
    expect(runner?.spec?.configuration?.updateWindow).toBeUndefined();
  });
});

describe("CreateRunner storage", () => {
  it("stores the runner and only a hash of its exchange token", async () => {
    const { runner, exchangeToken } = await server.runners("connect-json", user.apiKey).createRunner({
      name: "stored",
      provider: RunnerProvider.GCP,
      spec: { configuration: { region: "us-central1" } },
    });
    const { rows } = await server.db.query<{ organization_id: string; creator_id: string; kind: number; provider: number; region: string }>(
      "SELECT organization_id, creator_id, kind, provider, region FROM runners WHERE id = $1",
      [runner!.runnerId],
    );
    expect(rows).toEqual([
      { organization_id: user.organizationId, creator_id: user.userId, kind: RunnerKind.REMOTE, provider: RunnerProvider.GCP, region: "us-central1" },
    ]);
    const tokens = await server.db.query<{ token_hash: Uint8Array; expires_at: Date; created_at: Date }>(
      "SELECT token_hash, expires_at, created_at FROM runner_exchange_tokens WHERE runner_id = $1",
      [runner!.runnerId],
    );
    expect(tokens.rows).toHaveLength(1);
    expect(Buffer.from(tokens.rows[0]!.token_hash).toString("latin1")).not.toContain(exchangeToken);
    expect(tokens.rows[0]!.expires_at.getTime() - tokens.rows[0]!.created_at.getTime()).toBe(24 * 60 * 60 * 1000);
  });

  it("ignores JSON fields it does not know (newer SDKs)", async () => {
    const response = await fetch(`${server.baseUrl}/gitpod.v1.RunnerService/CreateRunner`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${user.apiKey}` },
      body: JSON.stringify({ name: "future sdk", provider: "RUNNER_PROVIDER_GCP", someNewField: { nested: true }, spec: { futureFlag: 1 } }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { runner: { name: string; kind: string } };
    expect(body.runner).toMatchObject({ name: "future sdk", kind: "RUNNER_KIND_REMOTE" });
  });

  it("accepts numeric enum values in JSON", async () => {
    const response = await fetch(`${server.baseUrl}/gitpod.v1.RunnerService/CreateRunner`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${user.apiKey}` },
      body: JSON.stringify({ name: "numeric enums", provider: 5 }),
    });
    expect(response.status).toBe(200);
    expect(((await response.json()) as { runner: { provider: string } }).runner.provider).toBe("RUNNER_PROVIDER_GCP");
  });
});

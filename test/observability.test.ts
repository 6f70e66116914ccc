// What an operator observes: Prometheus metrics at /metrics (RPCs by method and code,
// exchange-token outcomes, runners by phase, database pool, process) and request ids that
// tie a client's x-request-id or W3C traceparent to the response and the log.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { Code, ConnectError } from "@connectrpc/connect";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { openDatabase, type Database } from "../src/store/db/database.js";
import { migrate } from "../src/store/db/migrate.js";
import { traceIdOf } from "../src/ops/request-id.js";
import { openTestDatabase, postJson, protocols, startServer, testDatabaseUrl, type TestServer, type TestUser } from "./harness.js";

let server: TestServer;
let user: TestUser;
let dropDatabase = async () => {};

/**
 * Runner counts cover every organization in the database. On PostgreSQL the other test
 * files share this run's database, so this file gets a schema of its own.
 */
async function privateDatabase(): Promise<Database> {
  const url = testDatabaseUrl();
  if (!url) return openTestDatabase();
  const schema = `observability_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  dropDatabase = async () => {
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  };
  const scoped = new URL(url);
  scoped.searchParams.set("options", `-c search_path=${schema}`);
  const db = await openDatabase({ databaseUrl: scoped.toString(), dataDir: undefined, poolSize: 4 });
  await migrate(db);
  return db;
}

beforeAll(async () => {
  server = await startServer({ db: await privateDatabase() });
  user = await server.newUser();
});
afterAll(async () => {
  await server?.close();
  await dropDatabase();
});

interface Scrape {
  text: string;
  /** The value of the one sample named `name` whose labels include `labels`; 0 when absent. */
  value(name: string, labels?: Record<string, string>): number;
}

async function scrape(): Promise<Scrape> {
  const response = await fetch(`${server.baseUrl}/metrics`);
  expect(response.status).toBe(200);
  const text = await response.text();
  const samples = text
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!match) throw new Error(`not a Prometheus sample line: ${line}`);
      const labels = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
      return { name: match[1]!, labels, value: Number(match[3]) };
    });
  return {
    text,
    value(name, labels = {}) {
      const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      if (found.length > 1) throw new Error(`${found.length} samples match ${name} ${JSON.stringify(labels)}`);
      return found[0]?.value ?? 0;
    },
  };
}

const listRunners = { grpc_service: "gitpod.v1.RunnerService", grpc_method: "ListRunners" };
const PUBLIC_KEY = new Uint8Array(32).fill(7);

describe("GET /metrics", () => {
  it("serves the Prometheus text format with process metrics", async () => {
    const response = await fetch(`${server.baseUrl}/metrics`);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const { text } = await scrape();
    expect(text).toContain("# TYPE grpc_server_handled_total counter");
    expect(text).toContain("# TYPE grpc_server_handling_seconds histogram");
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
  });

  it("counts and times RPCs per method and status code, whatever the protocol", async () => {
    const before = await scrape();
    for (const protocol of protocols) await server.runners(protocol, user.apiKey).listRunners({});
    const err = await server.runners("grpc").listRunners({}).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.Unauthenticated);

    const after = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}) =>
      after.value(name, { ...listRunners, ...labels }) - before.value(name, { ...listRunners, ...labels });
    expect(delta("grpc_server_started_total", { grpc_type: "unary" })).toBe(5);
    expect(delta("grpc_server_handled_total", { grpc_code: "OK" })).toBe(4);
    expect(delta("grpc_server_handled_total", { grpc_code: "Unauthenticated" })).toBe(1);
    expect(delta("grpc_server_handling_seconds_count")).toBe(5);
    expect(after.value("grpc_server_handling_seconds_bucket", { ...listRunners, le: "+Inf" })).toBe(
      after.value("grpc_server_handling_seconds_count", listRunners),
    );
    expect(after.value("grpc_server_handling_seconds_sum", listRunners)).toBeGreaterThan(0);
  });

  it("counts exchange-token outcomes", async () => {
    const before = await scrape();
    const { exchangeToken } = await server.runners("connect-json", user.apiKey).createRunner({ name: "metrics runner", provider: RunnerProvider.GCP });
    await server.identity("connect-json").exchangeToken({ exchangeToken });
    await expect(server.identity("connect-json").exchangeToken({ exchangeToken })).rejects.toThrow(); // used
    await expect(server.identity("grpc").exchangeToken({ exchangeToken: "rcpx_nonsense" })).rejects.toThrow();
    const after = await scrape();
    const delta = (outcome: string) => after.value("rcp_exchange_token_total", { outcome }) - before.value("rcp_exchange_token_total", { outcome });
    expect(delta("success")).toBe(1);
    expect(delta("rejected")).toBe(2);
  });

  it("reports live runners by phase across organizations, recounted at most every 10 s", async () => {
    const phases = ["CREATED", "ACTIVE", "DEGRADED", "INACTIVE"] as const;
    const counts = async () => {
      const s = await scrape();
      const byPhase = Object.fromEntries(phases.map((phase) => [phase, s.value("rcp_runners", { phase })])) as Record<(typeof phases)[number], number>;
      return { ...byPhase, orgs: s.value("rcp_organizations") };
    };
    server.clock.advance(10_000);
    const base = await counts();
    const owner = await server.newUser(); // a new organization with its LOCAL_CONFIGURATION runner (not counted)
    const admin = server.runners("connect-json", owner.apiKey);
    const { runner, exchangeToken } = await admin.createRunner({ name: "phase runner", provider: RunnerProvider.LINUX_HOST });
    const runnerId = runner!.runnerId;
    expect(await counts()).toEqual(base); // cached

    server.clock.advance(10_000);
    expect(await counts()).toEqual({ ...base, CREATED: base.CREATED + 1, orgs: base.orgs + 1 });

    const { accessToken } = await server.identity("connect-json").exchangeToken({ exchangeToken });
    const runnerSide = server.interaction("connect-json", accessToken);
    await runnerSide.signup({ publicKey: PUBLIC_KEY });
    await runnerSide.updateRunnerStatus({ runnerId, degredationMessage: "disk full" });
    server.clock.advance(10_000);
    expect(await counts()).toMatchObject({ CREATED: base.CREATED, ACTIVE: base.ACTIVE, DEGRADED: base.DEGRADED + 1 });

    server.clock.advance(server.config.livenessWindowMs);
    const silent = await counts();
    expect(silent.INACTIVE - base.INACTIVE).toBeGreaterThanOrEqual(1);
    expect(silent.DEGRADED).toBe(base.DEGRADED);

    await admin.deleteRunner({ runnerId });
    server.clock.advance(10_000);
    expect((await counts()).INACTIVE).toBe(silent.INACTIVE - 1);
  });

  it("reports the database pool and the in-flight limit", async () => {
    const s = await scrape();
    expect(s.value("rcp_db_pool_connections", { state: "idle" }) + s.value("rcp_db_pool_connections", { state: "in_use" })).toBeGreaterThanOrEqual(1);
    expect(s.text).toMatch(/^rcp_db_pool_waiting_requests \d+$/m);
    expect(s.value("rcp_in_flight_limit")).toBe(1024);
    expect(s.value("rcp_in_flight_requests")).toBe(0);
    expect(s.text).toMatch(/^rcp_shed_requests_total 0$/m);
  });
});

describe("request ids", () => {
  const auth = () => ({ authorization: `Bearer ${user.apiKey}` });
  const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
  const traceparent = `00-${TRACE_ID}-00f067aa0ba902b7-01`;
  const rpcLines = (reqId: string) =>
    server.logs.map((line) => JSON.parse(line)).filter((entry) => entry.reqId === reqId && entry.msg === "rpc");

  it("echoes the client's x-request-id and logs the call under it", async () => {
    const response = await postJson(server, "gitpod.v1.IdentityService/GetAuthenticatedIdentity", {}, { ...auth(), "x-request-id": "client-req-42" });
    expect(response.headers.get("x-request-id")).toBe("client-req-42");
    expect(rpcLines("client-req-42")).toMatchObject([{ procedure: "gitpod.v1.IdentityService/GetAuthenticatedIdentity", code: "ok" }]);
  });

  it("uses the traceparent's trace id as the request id when there is no x-request-id", async () => {
    const response = await postJson(server, "gitpod.v1.IdentityService/GetAuthenticatedIdentity", {}, { ...auth(), traceparent });
    expect(response.headers.get("x-request-id")).toBe(TRACE_ID);
    expect(rpcLines(TRACE_ID)).toHaveLength(1);
  });

  it("logs the trace id next to the client's x-request-id when both are sent", async () => {
    await postJson(server, "gitpod.v1.IdentityService/GetAuthenticatedIdentity", {}, { ...auth(), traceparent, "x-request-id": "both-1" });
    expect(rpcLines("both-1")).toMatchObject([{ traceId: TRACE_ID }]);
  });

  it("generates a UUID when neither header is usable", async () => {
    const response = await postJson(server, "gitpod.v1.IdentityService/GetAuthenticatedIdentity", {}, {
      ...auth(),
      "x-request-id": "has spaces",
      traceparent: `00-${"0".repeat(32)}-00f067aa0ba902b7-01`,
    });
    expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it.each([
    [traceparent, TRACE_ID],
    [`01-${TRACE_ID}-00f067aa0ba902b7-01-future-field`, TRACE_ID], // later versions may add fields
    [`00-${TRACE_ID}-00f067aa0ba902b7-01-extra`, undefined], // version 00 has exactly four
    [`ff-${TRACE_ID}-00f067aa0ba902b7-01`, undefined], // version ff is invalid
    [`00-${TRACE_ID.toUpperCase()}-00f067aa0ba902b7-01`, undefined], // lowercase hex only
    [`00-${TRACE_ID}-${"0".repeat(16)}-01`, undefined], // zero parent id
    [`00-${TRACE_ID.slice(1)}-00f067aa0ba902b7-01`, undefined],
    ["", undefined],
  ])("parses traceparent %j", (header, expected) => {
    expect(traceIdOf(header)).toBe(expected);
  });
});

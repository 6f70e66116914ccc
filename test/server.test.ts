// The server as an operator and a client see it: one port for HTTP/1.1 and h2c, health
// endpoints, limits, error hygiene, database outages and graceful shutdown.
import * as http2 from "node:http2";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { ConfigError, loadConfig } from "../src/config.js";
import { FaultyDatabase } from "./faulty-database.js";
import { openTestDatabase, postJson, startServer, type TestServer, type TestUser } from "./harness.js";

const execFileAsync = promisify(execFile);

let server: TestServer;
let db: FaultyDatabase;
let user: TestUser;

beforeAll(async () => {
  db = new FaultyDatabase(await openTestDatabase());
  server = await startServer({ db, env: { MAX_REQUEST_BYTES: String(64 * 1024), MAX_TIMEOUT_MS: "5000" } });
  user = await server.newUser();
});
afterAll(() => server?.close());

function h2Post(port: number, path: string, body: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/json", ...headers });
    let status = 0;
    let data = "";
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.setEncoding("utf8");
    stream.on("data", (chunk) => (data += chunk));
    stream.on("end", () => {
      session.close();
      resolve({ status, body: data });
    });
    stream.on("error", reject);
    stream.end(body);
  });
}

describe("one port", () => {
  it("serves HTTP/1.1 and HTTP/2 with prior knowledge on the same port", async () => {
    const body = JSON.stringify({ name: "h2c runner", provider: "RUNNER_PROVIDER_GCP" });
    const h2 = await h2Post(server.port, "/gitpod.v1.RunnerService/CreateRunner", body, { authorization: `Bearer ${user.apiKey}` });
    expect(h2.status).toBe(200);
    expect(JSON.parse(h2.body).runner.name).toBe("h2c runner");
    const h1 = await postJson(server, "gitpod.v1.RunnerService/CreateRunner", body, { authorization: `Bearer ${user.apiKey}` });
    expect(h1.status).toBe(200);
  });

  it("also serves every procedure under /api (the public base URL's path)", async () => {
    const response = await postJson(server, "api/gitpod.v1.IdentityService/GetAuthenticatedIdentity", {}, { authorization: `Bearer ${user.apiKey}` });
    expect(response.status).toBe(200);
    expect(response.body.organizationId).toBe(user.organizationId);
  });

  it("answers Connect GET for NO_SIDE_EFFECTS methods and refuses it for others", async () => {
    const { runner } = await server.runners("connect-json", user.apiKey).createRunner({ name: "get me", provider: RunnerProvider.GCP });
    const message = encodeURIComponent(JSON.stringify({ runnerId: runner!.runnerId }));
    const auth = { authorization: `Bearer ${user.apiKey}` };
    const get = await fetch(`${server.baseUrl}/gitpod.v1.RunnerService/GetRunner?connect=v1&encoding=json&message=${message}`, { headers: auth });
    expect(get.status).toBe(200);
    expect(((await get.json()) as { runner: { name: string } }).runner.name).toBe("get me");
    const create = await fetch(`${server.baseUrl}/gitpod.v1.RunnerService/CreateRunner?connect=v1&encoding=json&message=%7B%7D`, { headers: auth });
    expect(create.status).toBe(405);
  });
});

describe("health", () => {
  it("reports liveness and readiness", async () => {
    expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);
    const ready = await fetch(`${server.baseUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: "ok" });
  });
});

describe("limits", () => {
  it("answers resource_exhausted for a request above the body limit", async () => {
    const huge = JSON.stringify({ name: "x".repeat(100 * 1024), provider: "RUNNER_PROVIDER_GCP" });
    const response = await postJson(server, "gitpod.v1.RunnerService/CreateRunner", huge, { authorization: `Bearer ${user.apiKey}` });
    expect(response.body.code).toBe("resource_exhausted");
    expect(response.status).toBe(429);
  });

  it("refuses deadlines above the configured maximum", async () => {
    const response = await postJson(server, "gitpod.v1.IdentityService/GetAuthenticatedIdentity", {}, {
      authorization: `Bearer ${user.apiKey}`,
      "connect-timeout-ms": "600000",
    });
    expect(response.body.code).toBe("invalid_argument");
  });

  it("answers a malformed JSON body with invalid_argument", async () => {
    const response = await postJson(server, "gitpod.v1.RunnerService/CreateRunner", "{not json", { authorization: `Bearer ${user.apiKey}` });
    expect(response.body.code).toBe("invalid_argument");
  });
});

describe("database faults", () => {
  it("answers unavailable and /readyz 503 while the database is unreachable, and recovers", async () => {
    db.mode = "down";
    try {
      const err = await server.runners("grpc", user.apiKey).listRunners({}).catch((e: unknown) => ConnectError.from(e));
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Unavailable);
      expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(503);
    } finally {
      db.mode = "ok";
    }
    expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(200);
    await expect(server.runners("grpc", user.apiKey).listRunners({})).resolves.toBeDefined();
  });

  it("answers an unexpected error with a bare internal error and logs it once with the request id", async () => {
    db.mode = "broken";
    let response;
    try {
      response = await postJson(server, "gitpod.v1.RunnerService/ListRunners", {}, {
        authorization: `Bearer ${user.apiKey}`,
        "x-request-id": "req-broken-1",
      });
    } finally {
      db.mode = "ok";
    }
    expect(response.status).toBe(500);
    expect(response.body).toEqual({ code: "internal", message: "internal error" });
    const lines = server.logs.filter((line) => line.includes('"req-broken-1"'));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 50, procedure: "gitpod.v1.RunnerService/ListRunners", code: "internal" });
    expect(lines[0]).toContain("secret_internal_table"); // the operator sees the cause; the client does not
  });
});

describe("graceful shutdown", () => {
  it("finishes in-flight calls, then refuses new connections", async () => {
    const own = new FaultyDatabase(await openTestDatabase());
    const stopping = await startServer({ db: own });
    const owner = await stopping.newUser();
    own.delayMs = 300;
    const inFlight = stopping.runners("connect-json", owner.apiKey).createRunner({ name: "in flight", provider: RunnerProvider.GCP });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closed = stopping.close();
    await expect(inFlight).resolves.toMatchObject({ runner: { name: "in flight" } });
    await closed;
    await expect(fetch(`${stopping.baseUrl}/healthz`)).rejects.toThrow();
  });
});

describe("configuration", () => {
  it("rejects invalid values with a message naming the variable", () => {
    expect(() => loadConfig({ PORT: "eighty" })).toThrow(ConfigError);
    expect(() => loadConfig({ PORT: "70000" })).toThrow(/PORT must be between 0 and 65535/);
    expect(() => loadConfig({ LOG_LEVEL: "loud" })).toThrow(/LOG_LEVEL/);
    expect(() => loadConfig({ DATABASE_URL: "mysql://x" })).toThrow(/DATABASE_URL/);
    expect(loadConfig({})).toMatchObject({ port: 8080, dataDir: "./data", maxRequestBytes: 4 * 1024 * 1024, livenessWindowMs: 90_000 });
  });
});

describe("buf curl", () => {
  // The real buf CLI, with the local schema, over all three protocols.
  it.each([
    ["connect", []],
    ["grpcweb", []],
    ["grpc", ["--http2-prior-knowledge"]],
  ])("calls GetAuthenticatedIdentity over %s", async (protocol, extra) => {
    const { stdout } = await execFileAsync("npx", [
      "buf", "curl", "--schema", ".", "--protocol", protocol, ...extra,
      "-H", `Authorization: Bearer ${user.apiKey}`, "-d", "{}",
      `${server.baseUrl}/gitpod.v1.IdentityService/GetAuthenticatedIdentity`,
    ]);
    expect(JSON.parse(stdout)).toMatchObject({ subject: { id: user.userId, principal: "PRINCIPAL_USER" }, organizationId: user.organizationId });
  });
});

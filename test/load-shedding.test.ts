// Load shedding: with MAX_IN_FLIGHT calls in progress, further calls are refused at once
// with `unavailable` on every protocol, /readyz says 503, and the server recovers when the
// load is gone. The database is slowed down so that calls stay in flight.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { ConfigError, loadConfig } from "../src/config.js";
import { FaultyDatabase } from "./faulty-database.js";
import { openTestDatabase, postJson, protocols, startServer, type TestServer, type TestUser } from "./harness.js";

let server: TestServer;
let db: FaultyDatabase;
let user: TestUser;

beforeAll(async () => {
  db = new FaultyDatabase(await openTestDatabase());
  server = await startServer({ db, env: { MAX_IN_FLIGHT: "2" } });
  user = await server.newUser();
});
afterAll(() => server?.close());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(50);
  }
}

describe("load shedding", () => {
  it("refuses calls above MAX_IN_FLIGHT quickly with unavailable on every protocol, and recovers", async () => {
    db.delayMs = 1_000;
    const slow = [1, 2].map(() => server.runners("connect-json", user.apiKey).listRunners({}));
    try {
      await sleep(150); // both are now waiting for the database

      for (const protocol of protocols) {
        const started = performance.now();
        const err = await server.runners(protocol, user.apiKey).listRunners({}).then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
        expect(err?.code, protocol).toBe(Code.Unavailable);
        expect(err?.rawMessage).toMatch(/overloaded/);
        expect(performance.now() - started, protocol).toBeLessThan(500);
      }
      const connect = await postJson(server, "gitpod.v1.RunnerService/ListRunners", {}, { authorization: `Bearer ${user.apiKey}` });
      expect(connect.status).toBe(503);
      expect(connect.body.code).toBe("unavailable");

      const ready = await fetch(`${server.baseUrl}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ status: "unavailable", reason: expect.stringMatching(/overloaded/) });
    } finally {
      db.delayMs = 0;
    }

    await expect(Promise.all(slow)).resolves.toHaveLength(2); // the admitted calls complete
    await until(async () => (await fetch(`${server.baseUrl}/readyz`)).status === 200, 5_000);
    await expect(server.runners("grpc", user.apiKey).listRunners({})).resolves.toBeDefined();

    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^rcp_shed_requests_total 5$/m);
    expect(metrics).toMatch(/^grpc_server_handled_total\{[^}]*grpc_method="ListRunners"[^}]*grpc_code="Unavailable"\} 5$/m);
    // One warning when shedding starts, not one log line per refused call.
    expect(server.logs.filter((line) => line.includes("overloaded: refusing RPCs"))).toHaveLength(1);
    expect(server.logs.filter((line) => line.includes('"code":"unavailable"') || line.includes('"code":"Unavailable"'))).toHaveLength(0);
  });

  it("is configured by MAX_IN_FLIGHT (default 1024, 0 = no limit)", () => {
    expect(loadConfig({}).maxInFlight).toBe(1024);
    expect(loadConfig({ MAX_IN_FLIGHT: "0" }).maxInFlight).toBe(0);
    expect(() => loadConfig({ MAX_IN_FLIGHT: "-1" })).toThrow(ConfigError);
  });
});

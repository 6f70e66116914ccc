// A silent network partition (real PostgreSQL only: TEST_DATABASE_URL): the TCP proxy between
// server and database keeps every connection open but lets nothing through, so no reset, no FIN.
// Calls must fail `unavailable` within the bound docs/operations.md gives (the query timeout, or
// the connect timeout for a new connection), /readyz must say 503, the credential notification
// session must notice (the cache then stays off), and after the partition heals the same
// process serves again. Before, a query on an open connection waited until TCP gave up.
//
//   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx vitest run test/db-partition.test.ts
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { openDatabase } from "../src/store/db/database.js";
import { migrate } from "../src/store/db/migrate.js";
import { TcpProxy } from "./tcp-proxy.js";
import { startServer, testDatabaseUrl, type TestServer, type TestUser } from "./harness.js";

const databaseUrl = testDatabaseUrl();
const QUERY_TIMEOUT_MS = 1_000;
const CONNECT_TIMEOUT_MS = 3_000; // the pool's, src/store/db/database.ts
/** Scheduling slack on a busy machine. */
const SLACK_MS = 2_000;

describe.runIf(databaseUrl)("a silent partition between server and PostgreSQL", () => {
  let proxy: TcpProxy;
  let server: TestServer;
  let user: TestUser;

  beforeAll(async () => {
    const target = new URL(databaseUrl!);
    proxy = new TcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const port = await proxy.start();
    const db = await openDatabase({ databaseUrl: TcpProxy.via(databaseUrl!, port), dataDir: undefined, poolSize: 4, queryTimeoutMs: QUERY_TIMEOUT_MS });
    await migrate(db);
    server = await startServer({ db });
    user = await server.newUser();
  });
  afterAll(async () => {
    proxy?.restore();
    await server?.close();
    await proxy?.close();
  });

  const createRunner = async () => {
    const started = performance.now();
    try {
      await server.runners("connect-json", user.apiKey).createRunner({ name: "partition runner", provider: RunnerProvider.AWS_EC2 });
      return { code: "OK", ms: performance.now() - started };
    } catch (err) {
      return { code: Code[ConnectError.from(err).code], ms: performance.now() - started };
    }
  };

  it("fails calls with unavailable within the timeouts, reports 503, notices on the notification session, and recovers", async () => {
    // Warm: the pool has open connections, which the partition then silences.
    const warm = await Promise.all(Array.from({ length: 4 }, createRunner));
    expect(warm.map((call) => call.code)).toEqual(["OK", "OK", "OK", "OK"]);

    proxy.blackhole();
    const partitionedAt = performance.now();
    // Open connections (query timeout) and, once they are discarded, new ones (connect timeout).
    const during = await Promise.all(Array.from({ length: 8 }, createRunner));
    for (const call of during) {
      expect(call.code).toBe("Unavailable");
      expect(call.ms).toBeLessThan(QUERY_TIMEOUT_MS + CONNECT_TIMEOUT_MS + SLACK_MS);
    }
    const again = await createRunner();
    expect(again.code).toBe("Unavailable");
    expect(again.ms).toBeLessThan(QUERY_TIMEOUT_MS + CONNECT_TIMEOUT_MS + SLACK_MS);
    expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(503);
    // The notification session's heartbeat (every QUERY_TIMEOUT_MS here) finds the partition.
    const interrupted = () => server.logs.some((line) => line.includes("credential notifications interrupted"));
    while (!interrupted() && performance.now() - partitionedAt < 2 * QUERY_TIMEOUT_MS + SLACK_MS + 5_000) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(interrupted()).toBe(true);

    proxy.restore();
    const healedAt = performance.now();
    let recovered = await createRunner();
    while (recovered.code !== "OK" && performance.now() - healedAt < 10_000) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      recovered = await createRunner();
    }
    expect(recovered.code).toBe("OK");
    expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(200);
    expect(server.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50)).toEqual([]);
    console.log(
      `db-partition: ${during.length + 1} calls during the partition, all unavailable, slowest ${Math.round(Math.max(...during.map((c) => c.ms), again.ms))} ms ` +
        `(query timeout ${QUERY_TIMEOUT_MS} ms); recovered ${Math.round(performance.now() - healedAt)} ms after it healed`,
    );
  }, 60_000);
});

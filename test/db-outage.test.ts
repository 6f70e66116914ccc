// PostgreSQL outages under load (real PostgreSQL only: TEST_DATABASE_URL). The server reaches
// the database through a TCP proxy that the test cuts twice while CreateRunner calls run in a
// loop (every connection reset, new ones refused: what a database restart looks like to the
// server), then restores. During an outage calls fail fast with `unavailable` and /readyz says
// 503; afterwards the same process serves again. Every CreateRunner answered OK is in the
// database with a working exchange token, and no runner was left without its token.
//
//   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx vitest run test/db-outage.test.ts
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { openDatabase, type Database } from "../src/store/db/database.js";
import { migrate } from "../src/store/db/migrate.js";
import { TcpProxy } from "./tcp-proxy.js";
import { openTestDatabase, startServer, testDatabaseUrl, type TestServer, type TestUser } from "./harness.js";

const databaseUrl = testDatabaseUrl();
const WORKERS = 8;
const OUTAGES = 2;
const OUTAGE_MS = 1_500;

interface Call {
  startedAt: number;
  ms: number;
  /** During which phase the call started. */
  phase: "up" | "down" | "recovering";
  code: string;
  runnerId?: string;
  exchangeToken?: string;
}

describe.runIf(databaseUrl)("PostgreSQL outages under load", () => {
  let proxy: TcpProxy;
  let server: TestServer;
  let direct: Database;
  let user: TestUser;
  const calls: Call[] = [];
  const readyzDuringOutage: number[] = [];
  let phase: Call["phase"] = "up";

  beforeAll(async () => {
    const target = new URL(databaseUrl!);
    proxy = new TcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const port = await proxy.start();
    const db = await openDatabase({ databaseUrl: TcpProxy.via(databaseUrl!, port), dataDir: undefined, poolSize: 8 });
    await migrate(db);
    server = await startServer({ db });
    direct = await openTestDatabase(); // bypasses the proxy, for checking what was written
    user = await server.newUser();
  });
  afterAll(async () => {
    await server?.close();
    await direct?.close();
    await proxy?.close();
  });

  it("fails fast with unavailable during each outage, reports 503 on /readyz, and recovers without a restart", async () => {
    const client = server.runners("connect-json", user.apiKey);
    let running = true;
    let sequence = 0;
    const worker = async () => {
      while (running) {
        const started = performance.now();
        const call: Call = { startedAt: started, ms: 0, phase, code: "OK" };
        try {
          const response = await client.createRunner({ name: `outage runner ${sequence++}`, provider: RunnerProvider.AWS_EC2 });
          call.runnerId = response.runner!.runnerId;
          call.exchangeToken = response.exchangeToken;
        } catch (err) {
          call.code = Code[ConnectError.from(err).code];
          await new Promise((resolve) => setTimeout(resolve, 20)); // a client backing off a little
        }
        call.ms = performance.now() - started;
        calls.push(call);
      }
    };
    const workers = Array.from({ length: WORKERS }, worker);
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const okSince = (since: number) => calls.filter((call) => call.code === "OK" && call.startedAt >= since).length;

    try {
      await sleep(500);
      for (let outage = 0; outage < OUTAGES; outage++) {
        phase = "down";
        proxy.cut();
        const cutAt = performance.now();
        while (performance.now() - cutAt < OUTAGE_MS) {
          readyzDuringOutage.push((await fetch(`${server.baseUrl}/readyz`)).status);
          await sleep(250);
        }
        phase = "recovering";
        proxy.restore();
        const restoredAt = performance.now();
        // Recovery: calls succeed again, and /readyz is 200, within seconds, same process.
        while (okSince(restoredAt) < 20 && performance.now() - restoredAt < 10_000) await sleep(50);
        expect(okSince(restoredAt)).toBeGreaterThanOrEqual(20);
        phase = "up";
        await sleep(500);
      }
    } finally {
      running = false;
      await Promise.all(workers);
    }
    expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(200);

    const failed = calls.filter((call) => call.code !== "OK");
    expect(failed.length).toBeGreaterThan(0);
    // Every failure is `unavailable`: nothing internal, nothing else.
    expect(new Set(failed.map((call) => call.code))).toEqual(new Set(["Unavailable"]));
    // Fast: no call waits for the database to come back (pool connect timeout is 3 s).
    expect(Math.max(...failed.map((call) => call.ms))).toBeLessThan(3_500);
    expect(readyzDuringOutage.length).toBeGreaterThan(0);
    expect(new Set(readyzDuringOutage)).toEqual(new Set([503]));
    expect(server.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50)).toEqual([]);
    expect(proxy.cutConnections).toBeGreaterThan(0);

    const byPhase = (p: Call["phase"]) => calls.filter((call) => call.phase === p);
    console.log(
      `db-outage: ${OUTAGES} outages of ${OUTAGE_MS} ms, ${proxy.cutConnections} connections cut or refused; ` +
        `${calls.length} CreateRunner calls: ${calls.length - failed.length} OK, ${failed.length} unavailable ` +
        `(slowest failure ${Math.round(Math.max(...failed.map((call) => call.ms)))} ms; ` +
        `started during outages: ${byPhase("down").length}, of which OK ${byPhase("down").filter((c) => c.code === "OK").length})`,
    );
  });

  it("lost no acknowledged runner and left no runner without its exchange token", async () => {
    const acknowledged = calls.filter((call) => call.code === "OK");
    expect(acknowledged.length).toBeGreaterThan(0);
    const ids = acknowledged.map((call) => call.runnerId!);
    const { rows } = await direct.query<{ runnerId: string; tokenHash: Uint8Array }>(
      `SELECT runner_id AS "runnerId", token_hash AS "tokenHash" FROM runner_exchange_tokens WHERE runner_id = ANY($1::uuid[])`,
      [ids],
    );
    const hashes = new Map(rows.map((row) => [row.runnerId, Buffer.from(row.tokenHash).toString("hex")]));
    for (const call of acknowledged) {
      expect(hashes.get(call.runnerId!)).toBe(createHash("sha256").update(call.exchangeToken!).digest("hex"));
    }
    // Runners whose call failed may exist too (committed, answer lost), but never half-written.
    const orphans = await direct.query<{ id: string }>(
      `SELECT r.id FROM runners r JOIN organizations o ON o.id = r.organization_id
        WHERE o.slug = $1 AND r.kind <> 3 AND NOT EXISTS (SELECT 1 FROM runner_exchange_tokens t WHERE t.runner_id = r.id)`,
      [user.organizationSlug],
    );
    expect(orphans.rows).toEqual([]);
    // And each acknowledged exchange token works (once).
    const identity = server.identity("grpc");
    const queue = [...acknowledged];
    const exchanged: string[] = [];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let call = queue.pop(); call; call = queue.pop()) {
          const { accessToken } = await identity.exchangeToken({ exchangeToken: call.exchangeToken! });
          exchanged.push(accessToken);
        }
      }),
    );
    expect(exchanged).toHaveLength(acknowledged.length);
    console.log(`db-outage: all ${acknowledged.length} acknowledged runners found with their token, and exchanged`);
  });
});

// SIGTERM under load, on the real server process (`node --import tsx src/main.ts`) against this
// run's PostgreSQL database, or the embedded one in a temporary DATA_DIR: calls in flight when
// the signal arrives complete, new connections are refused, the process exits 0 within
// SHUTDOWN_TIMEOUT_MS, and every runner whose creation was acknowledged is in the database.
//
//   npx vitest run test/sigterm.test.ts          (add TEST_DATABASE_URL=… for PostgreSQL)
import { createHash, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { openDatabase, type Database } from "../src/store/db/database.js";
import { issueApiKey } from "../src/domain/accounts.js";
import { IdentityStore } from "../src/store/identity-store.js";
import { systemClock } from "../src/domain/clock.js";
import { openTestDatabase, testDatabaseUrl, uniqueSlug } from "./harness.js";
import { startServerProcess } from "./server-process.js";

const SHUTDOWN_TIMEOUT_MS = 3_000;
const EXIT_MARGIN_MS = 3_000;
const WORKERS = 24;

const dataDir = mkdtempSync(join(tmpdir(), "rcp-sigterm-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

interface Call {
  requestId: string;
  startedAt: number;
  endedAt: number;
  code: string;
  /** The call failed below HTTP (refused, reset, broken pipe, refused HTTP/2 stream): no answer from the server. */
  transport?: string;
  runnerId?: string;
  exchangeToken?: string;
}

/** Whether a fresh TCP connection to the port is refused. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED"));
  });
}

describe("SIGTERM under load", () => {
  it("completes in-flight calls, refuses new connections, exits 0 in time and keeps every acknowledged runner", async () => {
    const databaseUrl = testDatabaseUrl();
    let apiKey: string;
    if (databaseUrl) {
      const db = await openTestDatabase();
      apiKey = (await issueApiKey(new IdentityStore(db), systemClock, { organizationSlug: uniqueSlug("sigterm"), userEmail: "ops@example.com" })).apiKey;
      await db.close();
    }
    const { child, port, output } = await startServerProcess({ SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS), ...(databaseUrl ? { DATABASE_URL: databaseUrl } : { DATA_DIR: dataDir }) });
    if (!databaseUrl) apiKey = readFileSync(join(dataDir, "initial-api-key"), "utf8").trim();
    const exited = new Promise<{ code: number | null; at: number }>((resolve) => child.on("exit", (code) => resolve({ code, at: performance.now() })));

    // Half the workers over Connect (HTTP/1.1 keep-alive), half over gRPC (one HTTP/2 connection).
    const headers: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${apiKey}`);
      return next(req);
    };
    const baseUrl = `http://127.0.0.1:${port}`;
    const clients = [
      createClient(RunnerService, createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [headers] })),
      createClient(RunnerService, createGrpcTransport({ baseUrl, interceptors: [headers] })),
    ];
    const calls: Call[] = [];
    let running = true;
    const worker = async (i: number) => {
      while (running) {
        const call: Call = { requestId: randomUUID(), startedAt: performance.now(), endedAt: 0, code: "OK" };
        try {
          const response = await clients[i % 2]!.createRunner(
            { name: `sigterm ${call.requestId}`, provider: RunnerProvider.AWS_EC2 },
            { headers: { "x-request-id": call.requestId } },
          );
          call.runnerId = response.runner!.runnerId;
          call.exchangeToken = response.exchangeToken;
        } catch (err) {
          const error = ConnectError.from(err);
          call.code = Code[error.code];
          const cause = error.cause as { code?: unknown } | undefined;
          if (typeof cause?.code === "string") call.transport = cause.code;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        call.endedAt = performance.now();
        calls.push(call);
      }
    };
    const workers = Array.from({ length: WORKERS }, (_, i) => worker(i));
    exited.then(() => (running = false));

    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const sigtermAt = performance.now();
    child.kill("SIGTERM");

    // New connections are refused soon after the signal (the listener closes first).
    let refusedAfterMs: number | undefined;
    while (refusedAfterMs === undefined && performance.now() - sigtermAt < 2_000) {
      if (await refused(port)) refusedAfterMs = performance.now() - sigtermAt;
      else await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const exit = await exited;
    running = false;
    await Promise.all(workers);

    expect(refusedAfterMs).toBeDefined();
    expect(exit.code).toBe(0);
    expect(exit.at - sigtermAt).toBeLessThan(SHUTDOWN_TIMEOUT_MS + EXIT_MARGIN_MS);

    // The server's own account: one "rpc" log line per call it handled, under our request id.
    const handled = new Map<string, string>();
    for (const line of output().split("\n")) {
      if (!line.startsWith("{")) continue;
      const entry = JSON.parse(line) as { msg?: string; reqId?: string; code?: string };
      if (entry.msg === "rpc" && entry.reqId) handled.set(entry.reqId, entry.code!);
    }
    const inFlight = calls.filter((call) => call.startedAt < sigtermAt && call.endedAt > sigtermAt);
    // Calls were in flight when the signal came, and they completed, as did every call sent before it.
    expect(inFlight.length).toBeGreaterThan(0);
    expect(calls.filter((call) => call.startedAt < sigtermAt && call.code !== "OK")).toEqual([]);
    // Every call the server handled got its answer: nothing it completed was lost on the way.
    for (const call of calls) {
      const serverCode = handled.get(call.requestId);
      if (serverCode === "ok") expect({ id: call.requestId, code: call.code }).toEqual({ id: call.requestId, code: "OK" });
      if (call.code === "OK") expect(serverCode).toBe("ok");
    }
    // Calls sent after the signal are refused: answered `unavailable` (HTTP 503 / "shutting
    // down"), or not answered at all (connection refused or reset, broken pipe, HTTP/2 stream
    // refused by the GOAWAY), which clients retry. Either way the server did not handle them.
    const refusedCalls = calls.filter((call) => call.code !== "OK");
    const answered = refusedCalls.filter((call) => call.transport === undefined);
    expect(new Set(answered.map((call) => call.code))).toEqual(new Set(answered.length > 0 ? ["Unavailable"] : []));
    for (const call of refusedCalls) expect(handled.get(call.requestId) ?? "not handled").not.toBe("ok");
    const failures = new Set(refusedCalls.map((call) => call.transport ?? call.code));

    // Every acknowledged runner is in the database, with its exchange token.
    const acknowledged = calls.filter((call) => call.code === "OK");
    let db: Database;
    if (databaseUrl) db = await openTestDatabase();
    else db = await openDatabase({ databaseUrl: undefined, dataDir: join(dataDir, "pgdata"), poolSize: 1 });
    try {
      const { rows } = await db.query<{ runnerId: string; tokenHash: Uint8Array }>(
        `SELECT runner_id AS "runnerId", token_hash AS "tokenHash" FROM runner_exchange_tokens WHERE runner_id = ANY($1::uuid[])`,
        [acknowledged.map((call) => call.runnerId!)],
      );
      const hashes = new Map(rows.map((row) => [row.runnerId, Buffer.from(row.tokenHash).toString("hex")]));
      for (const call of acknowledged) {
        expect(hashes.get(call.runnerId!)).toBe(createHash("sha256").update(call.exchangeToken!).digest("hex"));
      }
    } finally {
      await db.close();
    }
    console.log(
      `sigterm (${databaseUrl ? "PostgreSQL" : "embedded"}): ${calls.length} CreateRunner calls from ${WORKERS} clients, ` +
        `${acknowledged.length} OK (${inFlight.length} in flight at SIGTERM, all completed), ` +
        `${refusedCalls.length} refused (${[...failures].join(", ") || "-"}); new connections refused after ${Math.round(refusedAfterMs!)} ms; ` +
        `exit 0 after ${Math.round(exit.at - sigtermAt)} ms; all acknowledged runners in the database`,
    );
  }, 60_000);
});

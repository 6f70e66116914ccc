// Starts the real server on an ephemeral port, on the embedded database (default) or on
// the fresh PostgreSQL database this test run created (TEST_DATABASE_URL, see global-setup),
// and hands out clients for every protocol.
import { createHash, randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import type { AddressInfo } from "node:net";
import { inject } from "vitest";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import type { FastifyInstance } from "fastify";
import { loadConfig, type Config } from "../src/config.js";
import { ManualClock, type Clock } from "../src/domain/clock.js";
import { openDatabase, type Database } from "../src/store/db/database.js";
import { migrate } from "../src/store/db/migrate.js";
import { issueApiKey } from "../src/domain/accounts.js";
import { IdentityStore } from "../src/store/identity-store.js";
import { build } from "../src/server.js";
import { RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { IdentityService } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerInteractionService } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { GroupService } from "../gen/gitpod/v1/group_pb.js";
import { RunnerConfigurationService } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { ROLE_NAMES } from "../src/domain/accounts.js";

export const protocols = ["connect-json", "connect-binary", "grpc", "grpc-web"] as const;
export type Protocol = (typeof protocols)[number];

/** URL of this run's PostgreSQL database, or undefined for the embedded database. */
export function testDatabaseUrl(): string | undefined {
  return inject("databaseUrl") || undefined;
}

export async function openTestDatabase(): Promise<Database> {
  const db = await openDatabase({ databaseUrl: testDatabaseUrl(), dataDir: undefined, poolSize: 8 });
  await migrate(db);
  return db;
}

export interface TestUser {
  apiKey: string;
  userId: string;
  organizationId: string;
  organizationSlug: string;
}

export interface TestServer {
  app: FastifyInstance;
  db: Database;
  baseUrl: string;
  port: number;
  clock: ManualClock;
  config: Config;
  /** Every log line written so far. */
  logs: string[];
  transport(protocol: Protocol, token?: string): Transport;
  runners(protocol: Protocol, token?: string): Client<typeof RunnerService>;
  identity(protocol: Protocol, token?: string): Client<typeof IdentityService>;
  interaction(protocol: Protocol, token?: string): Client<typeof RunnerInteractionService>;
  groups(protocol: Protocol, token?: string): Client<typeof GroupService>;
  configuration(protocol: Protocol, token?: string): Client<typeof RunnerConfigurationService>;
  /**
   * A user with an API key: by default in a new organization, whose first user (and so its
   * admin) it is. In an existing organization a new user is a member unless `role` says otherwise.
   */
  newUser(organizationSlug?: string, options?: { role?: "admin" | "member" }): Promise<TestUser>;
  close(): Promise<void>;
}

export function bearer(token: string | undefined): Interceptor {
  return (next) => (req) => {
    if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/** The server secrets key of test servers (a fixed test value, never a real deployment's). */
export const TEST_SECRETS_KEY = createHash("sha256").update("runner-control-plane test secrets key").digest("base64");

export function uniqueSlug(prefix = "org"): string {
  return `${prefix}-${randomBytes(6).toString("hex")}`;
}

export async function startServer(
  options: { env?: Record<string, string>; clock?: Clock; db?: Database } = {},
): Promise<TestServer> {
  // Test files send many deliberate auth failures from 127.0.0.1: the brute-force limit is off
  // unless a test turns it on (test/rate-limit.test.ts, test/fuzz.test.ts). One secrets key for
  // every test server, so issuers (PUBLIC_URL) sharing this run's database open each other's keys.
  const config = loadConfig({ LOG_LEVEL: "info", AUTH_FAILURE_LIMIT: "0", SECRETS_KEY: TEST_SECRETS_KEY, ...options.env });
  const db = options.db ?? (await openTestDatabase());
  const clock = options.clock instanceof ManualClock ? options.clock : new ManualClock(Date.now());
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(...String(chunk).split("\n").filter(Boolean));
      callback();
    },
  });
  const app = await build({ config, db, clock, logStream });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  const baseUrl = `http://127.0.0.1:${port}`;

  const transport = (protocol: Protocol, token?: string): Transport => {
    const interceptors = [bearer(token)];
    switch (protocol) {
      case "connect-json":
        return createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false, interceptors }); // connect-node defaults to binary
      case "connect-binary":
        return createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors });
      case "grpc":
        return createGrpcTransport({ baseUrl, interceptors });
      case "grpc-web":
        return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true, interceptors });
    }
  };
  const client = <S extends DescService>(service: S) => (protocol: Protocol, token?: string) =>
    createClient(service, transport(protocol, token));

  return {
    app,
    db,
    baseUrl,
    port,
    clock,
    config,
    logs,
    transport,
    runners: client(RunnerService),
    identity: client(IdentityService),
    interaction: client(RunnerInteractionService),
    groups: client(GroupService),
    configuration: client(RunnerConfigurationService),
    async newUser(organizationSlug = uniqueSlug(), options = {}) {
      const issued = await issueApiKey(new IdentityStore(db), clock, {
        organizationSlug,
        userEmail: `${randomBytes(4).toString("hex")}@example.com`,
        role: options.role && ROLE_NAMES[options.role],
      });
      return { apiKey: issued.apiKey, userId: issued.user.id, organizationId: issued.organization.id, organizationSlug };
    },
    close: () => app.close(),
  };
}

/** POSTs Connect JSON with fetch, for what typed clients cannot send (raw bodies, odd headers). */
export async function postJson(
  server: TestServer,
  procedure: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const response = await fetch(`${server.baseUrl}/${procedure}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

/** The error a call (a promise, or a function returning one) fails with; throws when it succeeds. */
export async function failure(call: Promise<unknown> | (() => Promise<unknown>)): Promise<ConnectError> {
  try {
    await (typeof call === "function" ? call() : call);
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail, it succeeded");
}

/** The name of the code a call fails with ("NotFound", …). */
export async function codeOf(call: Promise<unknown> | (() => Promise<unknown>)): Promise<string> {
  return Code[(await failure(call)).code];
}

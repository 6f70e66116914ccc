// Brute-force protection (src/ops/rate-limit.ts): failed authentications and failed ExchangeToken
// calls are counted per client address; over AUTH_FAILURE_LIMIT within the window, further
// failures get resource_exhausted with a retry-after hint, while valid credentials from the
// same address keep working. The server clock is a ManualClock, so windows end on advance().
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { loadConfig } from "../src/config.js";
import { generateToken } from "../src/domain/tokens.js";
import { addressBucket, FailureLimiter } from "../src/ops/rate-limit.js";
import { postJson, protocols, startServer, type TestServer, type TestUser, failure } from "./harness.js";

const LIMIT = 5;
const WINDOW_MS = 60_000;
const IDENTITY = "gitpod.v1.IdentityService/GetAuthenticatedIdentity";
const EXCHANGE = "gitpod.v1.IdentityService/ExchangeToken";

let server: TestServer;
let user: TestUser;

beforeAll(async () => {
  server = await startServer({ env: { AUTH_FAILURE_LIMIT: String(LIMIT), AUTH_FAILURE_WINDOW_SECONDS: String(WINDOW_MS / 1000) } });
  user = await server.newUser();
});
afterAll(() => server?.close());

/** Starts every test with a fresh window for 127.0.0.1. */
const nextWindow = () => server.clock.advance(WINDOW_MS);

const badKey = () => ({ authorization: `Bearer ${generateToken("apiKey")}` });


describe("FailureLimiter", () => {
  it("allows `limit` failures per window, then reports the time left in the window", () => {
    let now = 1_000_000;
    const limiter = new FailureLimiter({ limit: 3, windowMs: 10_000, now: () => now });
    expect([1, 2, 3].map(() => limiter.recordFailure("10.0.0.1"))).toEqual([0, 0, 0]);
    now += 4_000;
    expect(limiter.recordFailure("10.0.0.1")).toBe(6_000);
    expect(limiter.recordFailure("10.0.0.2")).toBe(0); // other addresses are not affected
    now += 6_000; // the window is over
    expect(limiter.recordFailure("10.0.0.1")).toBe(0);
  });

  it("keeps memory bounded however many addresses fail", () => {
    const limiter = new FailureLimiter({ limit: 1, windowMs: 60_000, now: () => 0, capacity: 100 });
    for (let i = 0; i < 10_000; i++) limiter.recordFailure(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    expect(limiter.size).toBeLessThanOrEqual(100);
  });

  it("counts IPv4-mapped addresses as IPv4 and IPv6 addresses per /64", () => {
    expect(addressBucket("::ffff:127.0.0.1")).toBe("127.0.0.1");
    expect(addressBucket("2001:db8:1:2:aaaa::1")).toBe(addressBucket("2001:0db8:0001:0002:ffff:1:2:3"));
    expect(addressBucket("2001:db8:1:2::1")).not.toBe(addressBucket("2001:db8:1:3::1"));
    expect(addressBucket("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(addressBucket(undefined)).toBe("unknown");
  });
});

describe("configuration", () => {
  it("defaults to 20 failures per 60 s, and AUTH_FAILURE_LIMIT=0 turns the limit off", () => {
    expect(loadConfig({})).toMatchObject({ authFailureLimit: 20, authFailureWindowMs: 60_000 });
    expect(loadConfig({ AUTH_FAILURE_LIMIT: "0" }).authFailureLimit).toBe(0);
    expect(() => loadConfig({ AUTH_FAILURE_LIMIT: "-1" })).toThrow(/AUTH_FAILURE_LIMIT/);
    expect(() => loadConfig({ AUTH_FAILURE_WINDOW_SECONDS: "0" })).toThrow(/AUTH_FAILURE_WINDOW_SECONDS/);
  });
});

describe("failed authentication from one address", () => {
  it(`answers the first ${LIMIT} failures unauthenticated, then resource_exhausted with a retry-after hint`, async () => {
    nextWindow();
    for (let i = 0; i < LIMIT; i++) {
      const response = await postJson(server, IDENTITY, {}, badKey());
      expect(response.status).toBe(401);
    }
    server.clock.advance(20_000);
    const limited = await postJson(server, IDENTITY, {}, badKey());
    expect(limited.status).toBe(429);
    expect(limited.body.code).toBe("resource_exhausted");
    expect(limited.headers.get("retry-after")).toBe("40"); // the rest of the window, in seconds
    expect(limited.body.message).toMatch(/too many failed authentication attempts.*retry after 40 s/);
    // No header at all and a revoked or unknown key count the same.
    expect((await postJson(server, IDENTITY, {})).body.code).toBe("resource_exhausted");
  });

  it.each(protocols)("gives the hint as retry-after metadata over %s", async (protocol) => {
    nextWindow();
    for (let i = 0; i < LIMIT; i++) await postJson(server, IDENTITY, {}, badKey());
    const err = await failure(() => server.identity(protocol, generateToken("apiKey")).getAuthenticatedIdentity({}));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(Number(err.metadata.get("retry-after"))).toBe(WINDOW_MS / 1000);
  });

  it("never refuses valid credentials from the limited address", async () => {
    nextWindow();
    for (let i = 0; i < LIMIT + 3; i++) await postJson(server, IDENTITY, {}, badKey());
    expect((await postJson(server, IDENTITY, {}, badKey())).status).toBe(429);
    for (const protocol of protocols) {
      const identity = await server.identity(protocol, user.apiKey).getAuthenticatedIdentity({});
      expect(identity.subject?.id).toBe(user.userId);
    }
    // A runner process behind the same address can still trade its exchange token and work.
    const { runner, exchangeToken } = await server.runners("grpc", user.apiKey).createRunner({ name: "limited", provider: RunnerProvider.GCP });
    const { accessToken } = await server.identity("grpc").exchangeToken({ exchangeToken });
    expect((await server.identity("grpc", accessToken).getAuthenticatedIdentity({})).subject?.id).toBe(runner!.runnerId);
    // ...while failures stay refused.
    expect((await postJson(server, EXCHANGE, { exchangeToken })).body.code).toBe("resource_exhausted");
  });

  it("counts failed ExchangeToken calls too, and forgets them when the window ends", async () => {
    nextWindow();
    for (let i = 0; i < LIMIT; i++) {
      expect((await postJson(server, EXCHANGE, { exchangeToken: generateToken("exchange") })).body.code).toBe("unauthenticated");
    }
    expect((await postJson(server, EXCHANGE, { exchangeToken: generateToken("exchange") })).body.code).toBe("resource_exhausted");
    expect((await postJson(server, IDENTITY, {}, badKey())).body.code).toBe("resource_exhausted");
    server.clock.advance(WINDOW_MS);
    expect((await postJson(server, EXCHANGE, { exchangeToken: generateToken("exchange") })).body.code).toBe("unauthenticated");
    expect((await postJson(server, IDENTITY, {}, badKey())).body.code).toBe("unauthenticated");
  });

  it("does not count other errors (permission_denied, invalid_argument, not_found)", async () => {
    nextWindow();
    const runnerClient = server.runners("connect-json", user.apiKey);
    for (let i = 0; i < LIMIT * 2; i++) {
      const err = await failure(() => runnerClient.getRunner({ runnerId: crypto.randomUUID() }));
      expect(err.code).toBe(Code.NotFound);
    }
    expect((await postJson(server, IDENTITY, {}, badKey())).body.code).toBe("unauthenticated");
  });
});

// Tokens and authentication over real transports: the one-time ExchangeToken flow (expiry,
// reuse, races across protocols and server replicas), GetAuthenticatedIdentity, what every
// kind of bad credential gets back, what a runner token may not do, unimplemented RPCs, and
// that issued secrets never reach the database or the logs in plain text.
import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { IdentityService, Principal } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { ResourceType } from "../gen/gitpod/v1/event_pb.js";
import { ResourceRole } from "../gen/gitpod/v1/group_pb.js";
import { issueApiKey } from "../src/domain/accounts.js";
import { generateToken } from "../src/domain/tokens.js";
import { IdentityStore } from "../src/store/identity-store.js";
import { postJson, protocols, startServer, testDatabaseUrl, uniqueSlug, type Protocol, type TestServer, type TestUser, failure } from "./harness.js";

const DAY_MS = 24 * 60 * 60 * 1000;
const ACCESS_TOKEN = /^rcpr_[0-9A-Za-z]{49}$/;
const IDENTITY = "gitpod.v1.IdentityService/GetAuthenticatedIdentity";
const EXCHANGE = "gitpod.v1.IdentityService/ExchangeToken";

let server: TestServer;
let user: TestUser;

beforeAll(async () => {
  server = await startServer();
  user = await server.newUser();
});
afterAll(() => server?.close());


async function newRunner(owner: TestUser = user): Promise<{ runnerId: string; exchangeToken: string }> {
  const response = await server.runners("connect-json", owner.apiKey).createRunner({ name: "identity runner", provider: RunnerProvider.AWS_EC2 });
  return { runnerId: response.runner!.runnerId, exchangeToken: response.exchangeToken };
}

async function exchange(exchangeToken: string, protocol: Protocol = "connect-json"): Promise<string> {
  return (await server.identity(protocol).exchangeToken({ exchangeToken })).accessToken;
}

/** A runner that has already traded its exchange token for an access token. */
async function newRunnerWithAccess(owner: TestUser = user): Promise<{ runnerId: string; accessToken: string }> {
  const { runnerId, exchangeToken } = await newRunner(owner);
  return { runnerId, accessToken: await exchange(exchangeToken) };
}

/** Same token with a different (so wrong) last checksum character. */
function flipChecksum(token: string): string {
  return token.slice(0, -1) + (token.endsWith("a") ? "b" : "a");
}

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

describe.each(protocols)("ExchangeToken over %s", (protocol) => {
  let invalidMessage: string;

  beforeAll(async () => {
    // The message every invalid exchange token gets; each case below must match it exactly.
    invalidMessage = (await failure(() => exchange(generateToken("exchange"), protocol))).rawMessage;
    expect(invalidMessage).not.toBe("");
  });

  async function expectInvalid(exchangeToken: string) {
    const err = await failure(() => exchange(exchangeToken, protocol));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toBe(invalidMessage);
    if (exchangeToken !== "") expect(err.rawMessage).not.toContain(exchangeToken);
  }

  it("trades a fresh token once for a runner access token that authenticates the runner", async () => {
    const { runnerId, exchangeToken } = await newRunner();
    const accessToken = await exchange(exchangeToken, protocol);
    expect(accessToken).toMatch(ACCESS_TOKEN);
    const identity = await server.identity(protocol, accessToken).getAuthenticatedIdentity({});
    expect(identity.subject).toMatchObject({ id: runnerId, principal: Principal.RUNNER });

    await expectInvalid(exchangeToken);
    // The failed second attempt leaves the first access token working.
    await expect(server.identity(protocol, accessToken).getAuthenticatedIdentity({})).resolves.toBeDefined();
  });

  it("rejects a well-formed token it never issued", async () => {
    await expectInvalid(generateToken("exchange"));
  });

  // What is wrong with the format alone may be said (it reveals nothing stored); a well-formed
  // token that is unknown, used or expired always gets the one message above.
  it.each<[string, () => Promise<string>, string]>([
    ["a truncated token", async () => "rcpx_abc", "exchange tokens are rcpx_ followed by 49 letters and digits"],
    ["an empty token", async () => "", "exchange tokens are rcpx_ followed by 49 letters and digits"],
    ["a token with a wrong checksum", async () => flipChecksum((await newRunner()).exchangeToken), "its checksum does not match: it was truncated or mistyped"],
    ["a user API key", async () => user.apiKey, "it is not an exchange token (rcpx_…); send it as Authorization: Bearer instead"],
    ["a runner access token", async () => (await newRunnerWithAccess()).accessToken, "it is not an exchange token (rcpx_…); send it as Authorization: Bearer instead"],
  ])("rejects %s with a hint from its format", async (_description, token, hint) => {
    const sent = await token();
    const err = await failure(() => exchange(sent, protocol));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toBe(`exchange token is not valid: ${hint}`);
    if (sent !== "") expect(err.rawMessage).not.toContain(sent);
  });

  it("accepts a token 1 ms before its 24 h expiry", async () => {
    const { exchangeToken } = await newRunner();
    server.clock.advance(DAY_MS - 1);
    expect(await exchange(exchangeToken, protocol)).toMatch(ACCESS_TOKEN);
  });

  it("rejects a token exactly 24 h after it was issued", async () => {
    const { exchangeToken } = await newRunner();
    server.clock.advance(DAY_MS);
    await expectInvalid(exchangeToken);
  });

  it("rejects a token issued by CreateRunnerToken once it expires, and earlier access tokens keep working", async () => {
    const { runnerId, accessToken } = await newRunnerWithAccess();
    const renewed = await server.runners(protocol, user.apiKey).createRunnerToken({ runnerId });
    server.clock.advance(DAY_MS);
    await expectInvalid(renewed.exchangeToken);
    await expect(server.identity(protocol, accessToken).getAuthenticatedIdentity({})).resolves.toBeDefined();
  });
});

describe("ExchangeToken without credentials", () => {
  it("needs no Authorization header", async () => {
    const { runnerId, exchangeToken } = await newRunner();
    const response = await postJson(server, EXCHANGE, { exchangeToken });
    expect(response.status).toBe(200);
    expect(response.body.accessToken).toMatch(ACCESS_TOKEN);
    const identity = await server.identity("connect-json", response.body.accessToken).getAuthenticatedIdentity({});
    expect(identity.subject?.id).toBe(runnerId);
  });

  it.each(["Bearer not-a-token", `Bearer ${generateToken("apiKey")}`, "Basic dXNlcjpwYXNzd29yZA=="])(
    "ignores a bogus Authorization header (%s)",
    async (authorization) => {
      const { exchangeToken } = await newRunner();
      const response = await postJson(server, EXCHANGE, { exchangeToken }, { authorization });
      expect(response.status).toBe(200);
      expect(response.body.accessToken).toMatch(ACCESS_TOKEN);
    },
  );
});

describe("concurrent ExchangeToken for one token", () => {
  it("succeeds for exactly one of 50 callers across all protocols (and two servers on PostgreSQL)", async () => {
    // Two replicas need a shared database, which only a real PostgreSQL server offers.
    const second = testDatabaseUrl() ? await startServer({ clock: server.clock }) : undefined;
    try {
      const replicas = second ? [server, second] : [server];
      // One client per replica and protocol, connected beforehand so the 50 calls arrive together.
      const clients = replicas.flatMap((replica) => protocols.map((protocol) => replica.identity(protocol)));
      await Promise.all(clients.map((client) => failure(() => client.exchangeToken({ exchangeToken: generateToken("exchange") }))));
      const { runnerId, exchangeToken } = await newRunner();
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => clients[i % clients.length]!.exchangeToken({ exchangeToken })),
      );
      const won = results.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
      const lost = results.flatMap((result) => (result.status === "rejected" ? [ConnectError.from(result.reason)] : []));
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(49);
      expect(new Set(lost.map((err) => err.code))).toEqual(new Set([Code.Unauthenticated]));
      expect(new Set(lost.map((err) => err.rawMessage)).size).toBe(1);

      const accessToken = won[0]!.accessToken;
      expect(accessToken).toMatch(ACCESS_TOKEN);
      const { rows } = await server.db.query<{ tokenHash: Uint8Array }>(
        `SELECT token_hash AS "tokenHash" FROM runner_access_tokens WHERE runner_id = $1`,
        [runnerId],
      );
      expect(rows).toHaveLength(1);
      expect(Buffer.from(rows[0]!.tokenHash).toString("hex")).toBe(sha256(accessToken));
      for (const replica of replicas) {
        const identity = await replica.identity("grpc", accessToken).getAuthenticatedIdentity({});
        expect(identity.subject?.id).toBe(runnerId);
      }
    } finally {
      await second?.close();
    }
  });
});

describe.each(protocols)("GetAuthenticatedIdentity over %s", (protocol) => {
  it("describes a user API key as the user in their organization", async () => {
    const identity = await server.identity(protocol, user.apiKey).getAuthenticatedIdentity({});
    expect(identity.subject).toMatchObject({ id: user.userId, principal: Principal.USER });
    expect(identity.organizationId).toBe(user.organizationId);
  });

  it("describes a runner access token as the runner in its creator's organization", async () => {
    const other = await server.newUser();
    const { runnerId, accessToken } = await newRunnerWithAccess(other);
    const identity = await server.identity(protocol, accessToken).getAuthenticatedIdentity({});
    expect(identity.subject).toMatchObject({ id: runnerId, principal: Principal.RUNNER });
    expect(identity.organizationId).toBe(other.organizationId);
    expect(identity.organizationId).not.toBe(user.organizationId);
  });
});

describe("GetAuthenticatedIdentity over Connect GET", () => {
  const url = () => `${server.baseUrl}/${IDENTITY}?connect=v1&encoding=json&message=%7B%7D`;

  it("answers a GET with a bearer token", async () => {
    const response = await fetch(url(), { headers: { authorization: `Bearer ${user.apiKey}` } });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { subject?: unknown; organizationId?: unknown };
    expect(body.subject).toEqual({ id: user.userId, principal: "PRINCIPAL_USER" });
    expect(body.organizationId).toBe(user.organizationId);
  });

  it("answers a GET without a token with 401", async () => {
    const response = await fetch(url());
    expect(response.status).toBe(401);
    expect(((await response.json()) as { code?: unknown }).code).toBe("unauthenticated");
  });
});

describe("bad credentials", () => {
  let revokedKey: string;
  let exchangeToken: string;

  function withAuthorization(value: string | undefined): Interceptor {
    return (next) => (req) => {
      if (value !== undefined) req.header.set("authorization", value);
      return next(req);
    };
  }

  function grpcIdentity(authorization: string | undefined) {
    return createClient(IdentityService, createGrpcTransport({ baseUrl: server.baseUrl, interceptors: [withAuthorization(authorization)] }));
  }

  beforeAll(async () => {
    const issued = await issueApiKey(new IdentityStore(server.db), server.clock, {
      organizationSlug: user.organizationSlug,
      userEmail: "revoked@example.com",
    });
    expect((await postJson(server, IDENTITY, {}, { authorization: `Bearer ${issued.apiKey}` })).status).toBe(200);
    expect(await new IdentityStore(server.db).revokeApiKey(issued.id, server.clock.now())).toBe(true);
    revokedKey = issued.apiKey;
    exchangeToken = (await newRunner()).exchangeToken;
  });

  // The answer may depend on what was sent (its format), never on what is stored: an API key that
  // was never issued and one that was revoked get the same message.
  const SEND = "send the header Authorization: Bearer <API key or runner access token>";
  const SCHEME = "the Authorization header must be `Bearer <token>` (one space, then the token)";
  const API_KEY = "the API key is not valid: it is unknown or was revoked; create one with `cli api-key create`";
  const cases: [string, () => string | undefined, string][] = [
    ["no Authorization header", () => undefined, `no credentials: ${SEND}`],
    ["an empty bearer token", () => "Bearer ", SCHEME],
    ["a garbage bearer token", () => "Bearer garbage-that-is-no-token", "the bearer token is not an API key (rcpk_…) or a runner access token (rcpr_…)"],
    ["the Basic scheme", () => "Basic dXNlcjpwYXNzd29yZA==", SCHEME],
    ["a valid API key under another scheme", () => `Token ${user.apiKey}`, SCHEME],
    ["a valid API key without a scheme", () => user.apiKey, SCHEME],
    ["a well-formed API key that was never issued", () => `Bearer ${generateToken("apiKey")}`, API_KEY],
    ["an API key with a wrong checksum character", () => `Bearer ${flipChecksum(user.apiKey)}`, "the bearer token's checksum does not match: it was truncated or mistyped"],
    ["a well-formed runner access token that was never issued", () => `Bearer ${generateToken("runnerAccess")}`, "the runner access token is not valid: it is unknown or was revoked"],
    ["a revoked API key", () => `Bearer ${revokedKey}`, API_KEY],
    ["an exchange token used as bearer", () => `Bearer ${exchangeToken}`, "this is an exchange token: call IdentityService.ExchangeToken with it to get a runner access token"],
  ];

  it.each(cases)("answers %s with 401 and a message from what was sent alone, over Connect JSON", async (_description, authorization, message) => {
    const header = authorization();
    const response = await postJson(server, IDENTITY, {}, header === undefined ? {} : { authorization: header });
    expect(response.status).toBe(401);
    expect(response.body.code).toBe("unauthenticated");
    expect(response.body.message).toBe(message);
    if (header !== undefined) expect(JSON.stringify(response.body)).not.toContain(header.replace(/^\S+ /, "") || "\u0000");
  });

  it.each(cases)("answers %s with unauthenticated and the same message over gRPC", async (_description, authorization, message) => {
    const err = await failure(() => grpcIdentity(authorization()).getAuthenticatedIdentity({}));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toBe(message);
  });

  it("rejects a cached API key as soon as its revocation is announced (NOTIFY, milliseconds)", async () => {
    const identities = new IdentityStore(server.db);
    const issued = await issueApiKey(identities, server.clock, { organizationSlug: user.organizationSlug, userEmail: "revoke-now@example.com" });
    const client = server.identity("grpc", issued.apiKey);
    expect((await client.getAuthenticatedIdentity({})).subject?.id).toBe(issued.user.id); // now cached
    await identities.revokeApiKey(issued.id, server.clock.now());
    // The revocation reaches the server's cache through LISTEN/NOTIFY, not through this call.
    const deadline = Date.now() + 2_000;
    let code: Code | undefined;
    while (Date.now() < deadline) {
      code = await client.getAuthenticatedIdentity({}).then(() => undefined, (err: unknown) => ConnectError.from(err).code);
      if (code !== undefined) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(code).toBe(Code.Unauthenticated);
    // The user's other key is unaffected.
    const other = await server.identity("grpc", user.apiKey).getAuthenticatedIdentity({});
    expect(other.subject?.id).toBe(user.userId);
  });

  it("does not consume an exchange token presented as a bearer token", async () => {
    const runner = await newRunner();
    expect((await postJson(server, IDENTITY, {}, { authorization: `Bearer ${runner.exchangeToken}` })).status).toBe(401);
    expect(await exchange(runner.exchangeToken)).toMatch(ACCESS_TOKEN);
  });
});

describe.each(protocols)("a runner access token over %s", (protocol) => {
  it("cannot create or list runners", async () => {
    const { accessToken } = await newRunnerWithAccess();
    const runners = server.runners(protocol, accessToken);
    const create = await failure(() => runners.createRunner({ name: "sneaky runner", provider: RunnerProvider.GCP }));
    expect(create.code).toBe(Code.PermissionDenied);
    const list = await failure(() => runners.listRunners({}));
    expect(list.code).toBe(Code.PermissionDenied);
  });

  it("can read its own runner but not another runner of its organization", async () => {
    const self = await newRunnerWithAccess();
    const other = await newRunner();
    const runners = server.runners(protocol, self.accessToken);
    expect((await runners.getRunner({ runnerId: self.runnerId })).runner?.runnerId).toBe(self.runnerId);
    const err = await failure(() => runners.getRunner({ runnerId: other.runnerId }));
    expect(err.code).toBe(Code.PermissionDenied);
  });
});

describe.each(protocols)("unimplemented RPCs over %s", (protocol) => {
  let runner: { runnerId: string; accessToken: string };
  beforeAll(async () => {
    runner = await newRunnerWithAccess();
  });

  const calls: [string, "user" | "runner", (token: string | undefined) => Promise<unknown>][] = [
    // Every RunnerService and IdentityService RPC is served now; direct shares are not.
    [
      "GroupService.ShareResourceWithPrincipal",
      "user",
      (token) =>
        server.groups(protocol, token).shareResourceWithPrincipal({
          resourceType: ResourceType.RUNNER, resourceId: runner.runnerId, principal: Principal.USER,
          principalId: user.userId, role: ResourceRole.RUNNER_USER,
        }),
    ],
  ];

  it.each(calls)("%s answers unimplemented to an authenticated caller", async (method, caller, call) => {
    const err = await failure(() => call(caller === "user" ? user.apiKey : runner.accessToken));
    expect(err.code).toBe(Code.Unimplemented);
    expect(err.rawMessage).toContain("not implemented");
    expect(err.rawMessage).toContain(method.split(".")[1]);
  });

  it.each(calls)("%s answers unauthenticated to a caller without credentials", async (_method, _caller, call) => {
    expect((await failure(() => call(undefined))).code).toBe(Code.Unauthenticated);
  });

  it("authenticates before validating the request", async () => {
    const err = await failure(() => server.identity(protocol).getIDToken({ audience: [] }));
    expect(err.code).toBe(Code.Unauthenticated);
  });
});

describe("issued secrets", () => {
  // Every secret the flow below hands out or presents.
  const secrets: Record<string, string> = {};
  let apiKeyId: string;
  let runnerId: string;

  beforeAll(async () => {
    const identities = new IdentityStore(server.db);
    const owner = await issueApiKey(identities, server.clock, { organizationSlug: uniqueSlug("secrets"), userEmail: "owner@example.com" });
    apiKeyId = owner.id;
    secrets.apiKey = owner.apiKey;
    const revoked = await issueApiKey(identities, server.clock, { organizationSlug: owner.organization.slug, userEmail: "gone@example.com" });
    secrets.revokedKey = revoked.apiKey;
    secrets.badChecksumKey = flipChecksum(owner.apiKey);

    const runners = server.runners("connect-json", owner.apiKey);
    const created = await runners.createRunner({ name: "secret runner", provider: RunnerProvider.GCP });
    runnerId = created.runner!.runnerId;
    secrets.firstExchange = created.exchangeToken;
    secrets.firstAccess = await exchange(created.exchangeToken, "grpc");
    secrets.pendingExchange = (await runners.createRunnerToken({ runnerId })).exchangeToken;
    secrets.secondExchange = (await server.runners("grpc-web", owner.apiKey).createRunnerToken({ runnerId })).exchangeToken;
    secrets.secondAccess = await exchange(secrets.secondExchange, "connect-binary");
    await server.interaction("grpc", secrets.firstAccess).signup({ publicKey: randomBytes(32) });

    // Failed calls that carry secrets.
    await failure(() => exchange(secrets.firstExchange!, "connect-json"));
    await failure(() => exchange(secrets.firstExchange!, "grpc"));
    await identities.revokeApiKey(revoked.id, server.clock.now());
    await failure(() => server.identity("connect-json", secrets.revokedKey).getAuthenticatedIdentity({}));
    await failure(() => server.identity("grpc", secrets.revokedKey).getAuthenticatedIdentity({}));
    await failure(() => server.identity("grpc-web", secrets.pendingExchange).getAuthenticatedIdentity({}));
    await failure(() => server.identity("connect-binary", secrets.badChecksumKey).getAuthenticatedIdentity({}));
    await postJson(server, IDENTITY, {}, { authorization: `Basic ${Buffer.from(`user:${owner.apiKey}`).toString("base64")}` });
  });

  /**
   * Every way a secret, or a piece of its random part long enough to matter (16 characters,
   * ~95 bits), could sit in a value: as text, hex, base64 or raw bytes.
   */
  function leaks(value: unknown, secret: string): boolean {
    const raw = Buffer.from(secret, "utf8");
    const body = secret.slice(5, 48);
    const pieces = Array.from({ length: body.length - 15 }, (_, i) => body.slice(i, i + 16));
    const forms = [secret, raw.toString("hex"), raw.toString("base64").replace(/=+$/, ""), ...pieces];
    if (value === null || value === undefined) return false;
    if (value instanceof Uint8Array) {
      const bytes = Buffer.from(value);
      if (bytes.includes(raw)) return true;
      return [bytes.toString("utf8"), bytes.toString("latin1"), bytes.toString("hex")].some((text) => forms.some((form) => text.includes(form)));
    }
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return forms.some((form) => text.includes(form));
  }

  it("stores no secret in any column of any table", async () => {
    const { rows: tables } = await server.db.query<{ name: string }>(
      `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
    );
    const names = tables.map((table) => table.name);
    expect(names).toEqual(expect.arrayContaining(["api_keys", "runner_exchange_tokens", "runner_access_tokens", "runners"]));
    let scanned = 0;
    for (const table of names) {
      const { rows } = await server.db.query<Record<string, unknown>>(`SELECT * FROM ${table}`);
      for (const row of rows) {
        for (const [column, value] of Object.entries(row)) {
          scanned++;
          for (const [name, secret] of Object.entries(secrets)) {
            if (leaks(value, secret)) throw new Error(`${name} is stored in ${table}.${column}`);
          }
        }
      }
    }
    expect(scanned).toBeGreaterThan(0);
  });

  it("stores each token as the SHA-256 of the whole token", async () => {
    const hex = (value: Uint8Array) => Buffer.from(value).toString("hex");
    const apiKeys = await server.db.query<{ tokenHash: Uint8Array }>(`SELECT token_hash AS "tokenHash" FROM api_keys WHERE id = $1`, [apiKeyId]);
    expect(apiKeys.rows.map((row) => hex(row.tokenHash))).toEqual([sha256(secrets.apiKey!)]);

    const exchanges = await server.db.query<{ tokenHash: Uint8Array; used: boolean }>(
      `SELECT token_hash AS "tokenHash", used_at IS NOT NULL AS used FROM runner_exchange_tokens WHERE runner_id = $1`,
      [runnerId],
    );
    const byHash = new Map(exchanges.rows.map((row) => [hex(row.tokenHash), row.used]));
    expect(byHash).toEqual(
      new Map([
        [sha256(secrets.firstExchange!), true],
        [sha256(secrets.pendingExchange!), false],
        [sha256(secrets.secondExchange!), true],
      ]),
    );

    const access = await server.db.query<{ tokenHash: Uint8Array }>(`SELECT token_hash AS "tokenHash" FROM runner_access_tokens WHERE runner_id = $1`, [runnerId]);
    expect(new Set(access.rows.map((row) => hex(row.tokenHash)))).toEqual(new Set([sha256(secrets.firstAccess!), sha256(secrets.secondAccess!)]));
  });

  it("writes no secret and no Authorization value to the logs", () => {
    expect(server.logs.length).toBeGreaterThan(0);
    for (const line of server.logs) {
      for (const [name, secret] of Object.entries(secrets)) {
        if (leaks(line, secret)) throw new Error(`${name} appears in log line ${line}`);
      }
      expect(line).not.toMatch(/bearer\s+rcp|Basic\s+[A-Za-z0-9+/]{8}/i);
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        continue;
      }
      // Any authorization field that does get logged must be redacted.
      const walk = (node: unknown): void => {
        if (node === null || typeof node !== "object") return;
        for (const [key, value] of Object.entries(node)) {
          if (key.toLowerCase() === "authorization") expect(value).toBe("[Redacted]");
          walk(value);
        }
      };
      walk(parsed);
    }
  });

  it("logs exactly one rpc line per call, under the caller's request id", async () => {
    const rpcLines = (requestId: string) =>
      server.logs.map((line) => JSON.parse(line)).filter((entry) => entry.reqId === requestId && entry.msg === "rpc");

    const ok = await postJson(server, IDENTITY, {}, { authorization: `Bearer ${secrets.apiKey}`, "x-request-id": "test-req-123" });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("x-request-id")).toBe("test-req-123");
    const okLines = rpcLines("test-req-123");
    expect(okLines).toHaveLength(1);
    expect(okLines[0]).toMatchObject({ procedure: IDENTITY, code: "ok", ms: expect.any(Number) });

    const denied = await postJson(server, IDENTITY, {}, { authorization: `Bearer ${secrets.revokedKey}`, "x-request-id": "test-req-124" });
    expect(denied.status).toBe(401);
    expect(denied.headers.get("x-request-id")).toBe("test-req-124");
    const deniedLines = rpcLines("test-req-124");
    expect(deniedLines).toHaveLength(1);
    expect(deniedLines[0]).toMatchObject({ procedure: IDENTITY, ms: expect.any(Number) });
    expect(String(deniedLines[0].code).toLowerCase()).toBe("unauthenticated");
  });
});

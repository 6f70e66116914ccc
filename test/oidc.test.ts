// The server as an OIDC issuer: what a standard relying party (jose, as cloud providers and Vault
// do it) sees by discovery alone, on every protocol: GetIDToken for users and runners, audiences,
// versions, expiry with the injected clock, runner logs tokens, and key rotation with overlap.
// The server sits behind a TCP proxy at PUBLIC_URL, as behind a load balancer, so the issuer URL is
// known before the server starts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify } from "jose";
import { Code } from "@connectrpc/connect";
import { IDTokenVersion } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerKind, RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { LOGS_SCOPE, LOGS_TOKEN_TYPE, logsAudience } from "../src/domain/id-tokens.js";
import { ManualClock } from "../src/domain/clock.js";
import { SecretsKeyring } from "../src/domain/secrets.js";
import { PUBLICATION_DELAY_MS, revokeSigningKey, rotateSigningKey } from "../src/domain/signing-keys.js";
import { SigningKeyStore } from "../src/store/signing-key-store.js";
import { codeOf, failure, protocols, startServer, type TestServer, type TestUser } from "./harness.js";
import { TcpProxy } from "./tcp-proxy.js";
import { isolatedDatabase, type IsolatedDatabase } from "./isolated-database.js";

const MINUTE = 60_000;

/** Signing keys are deployment-wide: each issuer here has a database of its own (on PostgreSQL too). */
const databases: IsolatedDatabase[] = [];
afterAll(() => Promise.all(databases.map((database) => database.drop())));

async function startIsolated(env: Record<string, string>): Promise<TestServer> {
  const database = await isolatedDatabase();
  databases.push(database);
  return startServer({ env: { SECRETS_KEY: SecretsKeyring.generateKey(), ...env }, db: await database.open() });
}

/** A server reachable at PUBLIC_URL through a proxy, as behind a load balancer. */
async function startIssuer(): Promise<{ server: TestServer; issuer: string; proxy: TcpProxy }> {
  const target = { host: "127.0.0.1", port: 0 };
  const proxy = new TcpProxy(target);
  const issuer = `http://127.0.0.1:${await proxy.start()}`;
  const server = await startIsolated({ PUBLIC_URL: issuer });
  target.port = server.port;
  return { server, issuer, proxy };
}

/** What a relying party configured with only the issuer URL and an audience does. */
async function verifyByDiscovery(issuer: string, token: string, audience: string, currentDate: Date, typ = "JWT") {
  const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as { issuer: string; jwks_uri: string; id_token_signing_alg_values_supported: string[] };
  expect(discovery.issuer).toBe(issuer);
  const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
  return jwtVerify(token, jwks, { issuer, audience, algorithms: discovery.id_token_signing_alg_values_supported, currentDate, typ });
}

async function jwksKids(issuer: string): Promise<string[]> {
  const body = (await (await fetch(`${issuer}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
  return body.keys.map((key) => key.kid);
}

/** Polls until `check` holds (a NOTIFY arrives within milliseconds; the deadline is generous). */
async function eventually(check: () => Promise<boolean>, what: string, deadlineMs = 5_000): Promise<void> {
  const until = performance.now() + deadlineMs;
  while (!(await check())) {
    if (performance.now() > until) throw new Error(`not within ${deadlineMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("OIDC issuer", () => {
  let server: TestServer;
  let issuer: string;
  let proxy: TcpProxy;
  let user: TestUser;
  let runner: { runnerId: string; accessToken: string };

  beforeAll(async () => {
    ({ server, issuer, proxy } = await startIssuer());
    user = await server.newUser();
    const created = await server.runners("grpc", user.apiKey).createRunner({ name: "oidc runner", provider: RunnerProvider.AWS_EC2 });
    const { accessToken } = await server.identity("grpc").exchangeToken({ exchangeToken: created.exchangeToken });
    runner = { runnerId: created.runner!.runnerId, accessToken };
  });
  afterAll(async () => {
    await server?.close();
    await proxy?.close();
  });

  it("publishes discovery and JWKS without credentials, cacheable, with ETag revalidation", async () => {
    const response = await fetch(`${issuer}/.well-known/openid-configuration`);
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("public, max-age=3600");
    expect(response.headers.get("access-control-allow-origin")).toBe("*");
    expect(await response.json()).toMatchObject({
      issuer,
      jwks_uri: `${issuer}/.well-known/jwks.json`,
      id_token_signing_alg_values_supported: ["RS256"],
      subject_types_supported: ["public"],
      response_types_supported: ["id_token"],
    });

    const jwks = await fetch(`${issuer}/.well-known/jwks.json`);
    expect(jwks.status).toBe(200);
    expect(jwks.headers.get("cache-control")).toBe("public, max-age=300");
    expect(jwks.headers.get("content-type")).toMatch(/^application\/json/);
    const { keys } = (await jwks.json()) as { keys: Record<string, unknown>[] };
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ kty: "RSA", alg: "RS256", use: "sig", e: "AQAB" });
    expect(Object.keys(keys[0]).sort()).toEqual(["alg", "e", "kid", "kty", "n", "use"]); // no private parts
    const etag = jwks.headers.get("etag")!;
    const revalidated = await fetch(`${issuer}/.well-known/jwks.json`, { headers: { "if-none-match": etag } });
    expect(revalidated.status).toBe(304);
    expect(await revalidated.text()).toBe("");
    const head = await fetch(`${issuer}/.well-known/jwks.json`, { method: "HEAD" });
    expect([head.status, head.headers.get("etag")]).toEqual([200, etag]);
  });

  it("keeps private keys sealed in the database", async () => {
    const [row] = await new SigningKeyStore(server.db).all();
    expect(row!.algorithm).toBe("RS256");
    // PKCS#8 DER of an RSA key starts 30 82 .. .. 02 01 00 30 0d 06 09 2a 86 48 86 f7 0d 01 01 01.
    expect(Buffer.from(row!.privateKeySealed).includes(Buffer.from("2a864886f70d010101", "hex"))).toBe(false);
    expect(Buffer.from(row!.privateKeySealed)[0]).toBe(1); // sealed format version
  });

  for (const protocol of protocols) {
    it(`issues ID tokens a relying party verifies by discovery alone (${protocol})`, async () => {
      const now = server.clock.now();
      const { token: userToken } = await server.identity(protocol, user.apiKey).getIDToken({ audience: ["sts.amazonaws.com"] });
      const { payload, protectedHeader } = await verifyByDiscovery(issuer, userToken, "sts.amazonaws.com", now);
      expect(protectedHeader).toMatchObject({ alg: "RS256", typ: "JWT" });
      expect(payload).toMatchObject({
        iss: issuer,
        sub: `org:${user.organizationId}:user:${user.userId}`,
        aud: "sts.amazonaws.com",
        org_id: user.organizationId,
        principal: "user",
        user_id: user.userId,
      });
      expect(payload.iat).toBe(Math.floor(now.getTime() / 1000));
      expect(payload.nbf).toBe(payload.iat);
      expect(payload.exp! - payload.iat!).toBe(600);
      expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
      expect(payload).not.toHaveProperty("runner_id");

      const { token: runnerToken } = await server.identity(protocol, runner.accessToken).getIDToken({ audience: ["https://vault.example.com"] });
      const verified = await verifyByDiscovery(issuer, runnerToken, "https://vault.example.com", now);
      expect(verified.payload).toMatchObject({
        sub: `org:${user.organizationId}:runner:${runner.runnerId}`,
        org_id: user.organizationId,
        principal: "runner",
        runner_id: runner.runnerId,
        runner_provider: "RUNNER_PROVIDER_AWS_EC2",
      });
      expect(verified.payload).not.toHaveProperty("user_id");
    });
  }

  it("needs credentials for GetIDToken", async () => {
    expect(await codeOf(server.identity("connect-json").getIDToken({ audience: ["x"] }))).toBe("Unauthenticated");
  });

  it("puts every requested audience in aud, and a relying party refuses a token for another audience", async () => {
    const audiences = ["https://api.example.com", "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/rcp"];
    const { token } = await server.identity("connect-json", user.apiKey).getIDToken({ audience: audiences });
    for (const audience of audiences) expect((await verifyByDiscovery(issuer, token, audience, server.clock.now())).payload.aud).toEqual(audiences);
    const refused = await verifyByDiscovery(issuer, token, "https://other.example.com", server.clock.now()).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(errors.JWTClaimValidationFailed);
    expect((refused as errors.JWTClaimValidationFailed).claim).toBe("aud");
  });

  it("refuses audiences that are missing, malformed, repeated or reserved, naming the field", async () => {
    const client = server.identity("connect-json", user.apiKey);
    const cases: [string[], string][] = [
      [[], "audience"],
      [["has space"], "item 0 must be printable ASCII without spaces"],
      [["ok", "urn:rcp:runner:00000000-0000-0000-0000-000000000000"], 'item 1 must not start with "urn:rcp:"'],
      [["a", "a"], "item 1 repeats item 0"],
      [["http://[::1"], 'contains ":" and so must be an absolute URI'],
      [["x".repeat(513)], "item 0 must be 1 to 512 characters"],
      [Array.from({ length: 11 }, (_, i) => `aud-${i}`), "must contain at most 10 items"],
    ];
    for (const [audience, message] of cases) {
      const err = await failure(client.getIDToken({ audience }));
      expect(err.code, JSON.stringify(audience)).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain(message);
      expect(err.rawMessage).toMatch(/^audience/);
    }
  });

  it("adds descriptive claims in ID_TOKEN_VERSION_V2, and refuses unknown versions", async () => {
    const now = server.clock.now();
    const v1 = await server.identity("grpc", user.apiKey).getIDToken({ audience: ["a"], version: IDTokenVersion.ID_TOKEN_VERSION_V1 });
    expect((await verifyByDiscovery(issuer, v1.token, "a", now)).payload).not.toHaveProperty("email");
    const v2 = await server.identity("grpc", user.apiKey).getIDToken({ audience: ["a"], version: IDTokenVersion.ID_TOKEN_VERSION_V2 });
    expect((await verifyByDiscovery(issuer, v2.token, "a", now)).payload).toMatchObject({ email: expect.stringMatching(/@example\.com$/), user_id: user.userId });
    const runnerV2 = await server.identity("grpc", runner.accessToken).getIDToken({ audience: ["a"], version: IDTokenVersion.ID_TOKEN_VERSION_V2 });
    expect((await verifyByDiscovery(issuer, runnerV2.token, "a", now)).payload).toMatchObject({
      runner_name: "oidc runner",
      runner_kind: "RUNNER_KIND_REMOTE",
      runner_provider: "RUNNER_PROVIDER_AWS_EC2",
    });
    const err = await failure(server.identity("connect-json", user.apiKey).getIDToken({ audience: ["a"], version: 3 as IDTokenVersion }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^version: must be ID_TOKEN_VERSION_V1 or ID_TOKEN_VERSION_V2, got 3/);
  });

  it("signs ID tokens that expire after 10 minutes of the server's clock", async () => {
    const { token } = await server.identity("connect-binary", user.apiKey).getIDToken({ audience: ["a"] });
    const issuedAt = server.clock.now().getTime();
    await verifyByDiscovery(issuer, token, "a", new Date(issuedAt + 10 * MINUTE - 1000));
    const expired = await verifyByDiscovery(issuer, token, "a", new Date(issuedAt + 10 * MINUTE)).catch((err: unknown) => err);
    expect(expired).toBeInstanceOf(errors.JWTExpired);
    const early = await verifyByDiscovery(issuer, token, "a", new Date(issuedAt - 1000)).catch((err: unknown) => err);
    expect((early as errors.JWTClaimValidationFailed).claim).toBe("nbf");
  });

  describe("runner logs tokens", () => {
    it("are valid for one hour, for that runner's logs only, and verify offline with the JWKS", async () => {
      const now = server.clock.now();
      const { accessToken } = await server.runners("grpc-web", user.apiKey).createRunnerLogsToken({ runnerId: runner.runnerId });
      const { payload, protectedHeader } = await verifyByDiscovery(issuer, accessToken, logsAudience(runner.runnerId), now, LOGS_TOKEN_TYPE);
      expect(protectedHeader.typ).toBe("runner-logs+jwt");
      expect(payload).toMatchObject({
        iss: issuer,
        aud: `urn:rcp:runner:${runner.runnerId}`,
        sub: `org:${user.organizationId}:user:${user.userId}`,
        scope: LOGS_SCOPE,
        runner_id: runner.runnerId,
        org_id: user.organizationId,
      });
      expect(payload.exp! - payload.iat!).toBe(3600);
      await expect(verifyByDiscovery(issuer, accessToken, logsAudience(runner.runnerId), new Date(now.getTime() + 60 * MINUTE), LOGS_TOKEN_TYPE)).rejects.toThrow(errors.JWTExpired);

      // Runner B's verifier (its own audience) refuses runner A's token.
      const other = await server.runners("grpc", user.apiKey).createRunner({ name: "runner B", provider: RunnerProvider.GCP });
      await expect(verifyByDiscovery(issuer, accessToken, logsAudience(other.runner!.runnerId), now, LOGS_TOKEN_TYPE)).rejects.toThrow(/"aud" claim/);
      // An ID token never passes for a logs token (typ), and a logs token never for an ID token.
      const { token: idToken } = await server.identity("grpc", user.apiKey).getIDToken({ audience: [runner.runnerId] });
      await expect(verifyByDiscovery(issuer, idToken, logsAudience(runner.runnerId), now, LOGS_TOKEN_TYPE)).rejects.toThrow(/"typ"/);
      await expect(verifyByDiscovery(issuer, accessToken, logsAudience(runner.runnerId), now, "JWT")).rejects.toThrow(/"typ"/);
    });

    it("are refused for another organization's runner (not_found), to runners, and for the LOCAL_CONFIGURATION runner", async () => {
      const stranger = await server.newUser();
      expect(await codeOf(server.runners("connect-json", stranger.apiKey).createRunnerLogsToken({ runnerId: runner.runnerId }))).toBe("NotFound");
      expect(await codeOf(server.runners("connect-json", user.apiKey).createRunnerLogsToken({ runnerId: "00000000-0000-4000-8000-000000000000" }))).toBe("NotFound");
      expect(await codeOf(server.runners("connect-json", runner.accessToken).createRunnerLogsToken({ runnerId: runner.runnerId }))).toBe("PermissionDenied");
      const { runners } = await server.runners("connect-json", user.apiKey).listRunners({ filter: { kinds: [RunnerKind.LOCAL_CONFIGURATION] } });
      expect(await codeOf(server.runners("connect-json", user.apiKey).createRunnerLogsToken({ runnerId: runners[0]!.runnerId }))).toBe("FailedPrecondition");
      expect(await codeOf(server.runners("connect-json", user.apiKey).createRunnerLogsToken({ runnerId: "not-a-uuid" }))).toBe("InvalidArgument");
    });
  });

  describe("key rotation", () => {
    it("publishes the new key first, switches after the publication delay, and keeps the old key until its tokens expired", async () => {
      const store = new SigningKeyStore(server.db);
      const keyring = server.config.secretsKey!.keyring;
      const clock = server.clock;
      const [oldKid] = await jwksKids(issuer);
      const logsTokenBefore = (await server.runners("grpc", user.apiKey).createRunnerLogsToken({ runnerId: runner.runnerId })).accessToken;
      expect(decodeProtectedHeader(logsTokenBefore).kid).toBe(oldKid);

      const rotation = await rotateSigningKey(store, keyring, clock);
      expect(rotation.signsFrom.getTime()).toBe(clock.now().getTime() + PUBLICATION_DELAY_MS);
      // The server hears of it by NOTIFY, and publishes the new key before it signs with it.
      await eventually(async () => (await jwksKids(issuer)).length === 2, "the new key in the JWKS");
      expect(await jwksKids(issuer)).toEqual([oldKid, rotation.kid]);
      const idToken = async () => (await server.identity("grpc", user.apiKey).getIDToken({ audience: ["a"] })).token;
      expect(decodeProtectedHeader(await idToken()).kid).toBe(oldKid);

      clock.advance(PUBLICATION_DELAY_MS);
      const afterSwitch = await idToken();
      expect(decodeProtectedHeader(afterSwitch).kid).toBe(rotation.kid);
      await verifyByDiscovery(issuer, afterSwitch, "a", clock.now());
      // The old key's one-hour token still verifies against the live JWKS.
      await verifyByDiscovery(issuer, logsTokenBefore, logsAudience(runner.runnerId), clock.now(), LOGS_TOKEN_TYPE);
      expect(rotation.previous).toEqual({ kid: oldKid, publishedUntil: new Date(rotation.signsFrom.getTime() + 65 * MINUTE) });

      clock.set(rotation.previous!.publishedUntil.getTime() - 1);
      expect(await jwksKids(issuer)).toEqual([oldKid, rotation.kid]);
      clock.advance(1);
      expect(await jwksKids(issuer)).toEqual([rotation.kid]);
      // The next rotation deletes the retired key, private half included.
      const next = await rotateSigningKey(store, keyring, clock);
      expect(next.deleted).toEqual([oldKid]);
      expect((await store.all()).map((row) => row.kid)).toEqual([rotation.kid, next.kid]);
    });

    it("rotates at once and revokes a leaked key, which stops verifying at once", async () => {
      const store = new SigningKeyStore(server.db);
      const keyring = server.config.secretsKey!.keyring;
      const signing = decodeProtectedHeader((await server.identity("grpc", user.apiKey).getIDToken({ audience: ["a"] })).token).kid!;
      const leakedToken = (await server.identity("grpc", user.apiKey).getIDToken({ audience: ["a"] })).token;
      await expect(revokeSigningKey(store, server.clock, signing)).rejects.toThrow(/signs tokens now; run `keys rotate --now` first/);

      const rotation = await rotateSigningKey(store, keyring, server.clock, { immediately: true });
      await eventually(async () => decodeProtectedHeader((await server.identity("grpc", user.apiKey).getIDToken({ audience: ["a"] })).token).kid === rotation.kid, "signing with the new key");
      expect(await revokeSigningKey(store, server.clock, signing)).toBe(true);
      await eventually(async () => !(await jwksKids(issuer)).includes(signing), "the revoked key out of the JWKS");
      await expect(verifyByDiscovery(issuer, leakedToken, "a", server.clock.now())).rejects.toThrow(errors.JWKSNoMatchingKey);
      expect(await revokeSigningKey(store, server.clock, signing)).toBe(false);
    });
  });
});

describe("a server without PUBLIC_URL", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server?.close());

  it("answers the token RPCs failed_precondition naming PUBLIC_URL, and has no issuer documents", async () => {
    const user = await server.newUser();
    const err = await failure(server.identity("grpc", user.apiKey).getIDToken({ audience: ["a"] }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toMatch(/PUBLIC_URL is not set/);
    const { runner } = await server.runners("grpc", user.apiKey).createRunner({ name: "no logs", provider: RunnerProvider.GCP });
    expect(await codeOf(server.runners("grpc", user.apiKey).createRunnerLogsToken({ runnerId: runner!.runnerId }))).toBe("FailedPrecondition");
    for (const path of ["/.well-known/openid-configuration", "/.well-known/jwks.json"]) {
      const response = await fetch(`${server.baseUrl}${path}`);
      expect(response.status).toBe(404);
      expect(((await response.json()) as { message: string }).message).toMatch(/PUBLIC_URL is not set/);
    }
  });
});

// One server for two cases (each embedded server costs seconds to start): an issuer URL with a path,
// on a database whose signing key was sealed with a secrets key the server does not have.
describe("an issuer at https://example.com/rcp/", () => {
  let server: TestServer;
  let store: SigningKeyStore;
  const lost = SecretsKeyring.parse(SecretsKeyring.generateKey(), "lost");

  beforeAll(async () => {
    const database = await isolatedDatabase();
    databases.push(database);
    const db = await database.open();
    store = new SigningKeyStore(db);
    await rotateSigningKey(store, lost, new ManualClock()); // a key sealed with a secrets key that is gone now
    server = await startServer({ env: { PUBLIC_URL: "https://example.com/rcp/", SECRETS_KEY: SecretsKeyring.generateKey() }, db });
  });
  afterAll(() => server?.close());

  it("serves the documents under that path as well as at the root", async () => {
    for (const path of ["/rcp/.well-known/openid-configuration", "/.well-known/openid-configuration"]) {
      const body = (await (await fetch(`${server.baseUrl}${path}`)).json()) as Record<string, unknown>;
      expect(body).toMatchObject({ issuer: "https://example.com/rcp", jwks_uri: "https://example.com/rcp/.well-known/jwks.json" });
    }
    expect((await fetch(`${server.baseUrl}/rcp/.well-known/jwks.json`)).status).toBe(200);
  });

  it("fails the token RPCs with failed_precondition naming a lost secrets key, until `keys rotate --now` replaces the signing key", async () => {
    expect(server.logs.some((line) => line.includes("no usable signing key"))).toBe(true);
    const user = await server.newUser();
    const err = await failure(server.identity("grpc", user.apiKey).getIDToken({ audience: ["a"] }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toContain(`sealed with secrets key ${lost.currentKeyId}, which is not configured`);
    // The JWKS still serves the public key: tokens signed before keep verifying.
    expect(((await (await fetch(`${server.baseUrl}/.well-known/jwks.json`)).json()) as { keys: unknown[] }).keys).toHaveLength(1);

    await rotateSigningKey(store, server.config.secretsKey!.keyring, server.clock, { immediately: true });
    await eventually(
      () => server.identity("grpc", user.apiKey).getIDToken({ audience: ["a"] }).then(() => true, () => false),
      "signing with the replacement key",
    );
  });
});

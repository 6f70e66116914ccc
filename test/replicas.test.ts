// Several replicas on one PostgreSQL database (TEST_DATABASE_URL only): three servers, each
// with its own connection pool and credential cache. A one-time exchange token raced from all
// of them succeeds once; concurrent partial updates of different fields through different
// replicas all survive; revoking an API key (with the CLI) or deleting a runner stops the
// credential on every replica within 2 s, also where it was cached. Who may do what: a runner
// policy changed through one replica applies to the very next call on every other; a group
// membership or an organization role (CLI) changed applies on every replica within 2 s (the same
// NOTIFY as revocations), at once on the replica that made it.
// (Migrations started by three processes at once: test/operator.test.ts.)
//
//   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx vitest run test/replicas.test.ts
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { LogLevel, RunnerRole } from "../gen/gitpod/v1/runner_pb.js";
import { Principal } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { ManualClock } from "../src/domain/clock.js";
import { issueApiKey } from "../src/domain/accounts.js";
import { projectRoot } from "../src/paths.js";
import { IdentityStore } from "../src/store/identity-store.js";
import { protocols, startServer, testDatabaseUrl, type TestServer, type TestUser, failure } from "./harness.js";

const databaseUrl = testDatabaseUrl();
/** How long a revocation may take to reach every replica (LISTEN/NOTIFY). */
const PROPAGATION_MS = 2_000;

describe.runIf(databaseUrl)("three replicas on one database", () => {
  let replicas: TestServer[];
  let user: TestUser;
  const figures: string[] = [];

  beforeAll(async () => {
    const clock = new ManualClock(Date.now());
    replicas = await Promise.all([0, 1, 2].map(() => startServer({ clock })));
    user = await replicas[0]!.newUser();
  });
  afterAll(async () => {
    await Promise.all((replicas ?? []).map((replica) => replica.close()));
    if (figures.length > 0) console.log(`replicas: ${figures.join("; ")}`);
  });


  /** Runs the CLI against this database; resolves with its exit code. */
  function cli(...args: string[]): Promise<number | null> {
    return new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], {
        cwd: projectRoot,
        env: { ...process.env, DATABASE_URL: databaseUrl },
        stdio: "ignore",
      });
      child.on("error", reject);
      child.on("exit", resolve);
    });
  }

  /** Polls until `call` answers `code` (an error code, or "ok"); the only other answer allowed meanwhile is `before`. */
  async function until(call: () => Promise<unknown>, code: Code | "ok", before: Code | "ok", since: number): Promise<number> {
    for (;;) {
      const outcome = await call().then(
        () => "ok" as const,
        (err: unknown) => ConnectError.from(err).code,
      );
      if (outcome === code) return performance.now() - since;
      expect(outcome).toBe(before);
      if (performance.now() - since > PROPAGATION_MS) throw new Error(`not applied after ${PROPAGATION_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Polls until `call` fails unauthenticated; returns the ms it took. */
  async function untilUnauthenticated(call: () => Promise<unknown>, since: number): Promise<number> {
    for (;;) {
      const outcome = await call().then(
        () => "ok",
        (err: unknown) => ConnectError.from(err).code,
      );
      if (outcome === Code.Unauthenticated) return performance.now() - since;
      expect(outcome).toBe("ok"); // nothing else in between
      if (performance.now() - since > PROPAGATION_MS) throw new Error(`still accepted after ${PROPAGATION_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  it("lets exactly one of 100 concurrent ExchangeToken calls for one token succeed, spread over the replicas", async () => {
    const clients = replicas.flatMap((replica) => protocols.map((protocol) => replica.identity(protocol)));
    for (let round = 0; round < 5; round++) {
      const { exchangeToken } = await replicas[round % 3]!.runners("grpc", user.apiKey).createRunner({ name: "raced", provider: RunnerProvider.GCP });
      const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => clients[i % clients.length]!.exchangeToken({ exchangeToken })));
      const won = results.filter((result) => result.status === "fulfilled");
      const lost = results.flatMap((result) => (result.status === "rejected" ? [ConnectError.from(result.reason)] : []));
      expect(won).toHaveLength(1);
      expect(new Set(lost.map((err) => err.code))).toEqual(new Set([Code.Unauthenticated]));
      expect(new Set(lost.map((err) => err.rawMessage)).size).toBe(1);
    }
    figures.push("5 x 100 concurrent ExchangeToken over 3 replicas x 4 protocols: 1 winner each");
  });

  it("keeps concurrent updates of different fields made through different replicas", async () => {
    const { runner } = await replicas[0]!.runners("grpc", user.apiKey).createRunner({ name: "contended", provider: RunnerProvider.GCP });
    const runnerId = runner!.runnerId;
    const [a, b, c] = replicas.map((replica, i) => replica.runners(protocols[i]!, user.apiKey));
    for (let round = 0; round < 20; round++) {
      const autoUpdate = round % 2 === 0;
      const logLevel = round % 2 === 0 ? LogLevel.WARN : LogLevel.ERROR;
      await Promise.all([
        a!.updateRunner({ runnerId, name: `round ${round}` }),
        b!.updateRunner({ runnerId, spec: { configuration: { autoUpdate, logLevel } } }),
        c!.updateRunner({ runnerId, spec: { configuration: { continuousProfiling: autoUpdate, devcontainerImageCacheEnabled: !autoUpdate } } }),
      ]);
      const seen = await Promise.all(replicas.map((replica) => replica.runners("connect-json", user.apiKey).getRunner({ runnerId })));
      for (const { runner: current } of seen) {
        expect(current?.name).toBe(`round ${round}`);
        expect(current?.spec?.configuration?.autoUpdate).toBe(autoUpdate);
        expect(current?.spec?.configuration?.logLevel).toBe(logLevel);
        expect(current?.spec?.configuration?.continuousProfiling).toBe(autoUpdate);
        expect(current?.spec?.configuration?.devcontainerImageCacheEnabled).toBe(!autoUpdate);
      }
    }
    figures.push("20 rounds of 3 concurrent UpdateRunner (5 fields, 3 replicas): all changes kept");
  });

  it("rejects an API key revoked with the CLI on every replica within 2 s, also where it was cached", async () => {
    const issued = await issueApiKey(new IdentityStore(replicas[0]!.db), replicas[0]!.clock, {
      organizationSlug: user.organizationSlug,
      userEmail: "to-revoke@example.com",
    });
    const clients = replicas.map((replica) => replica.identity("grpc", issued.apiKey));
    for (const client of clients) expect((await client.getAuthenticatedIdentity({})).subject?.id).toBe(issued.user.id);

    expect(await cli("api-key", "revoke", issued.id)).toBe(0);
    const revokedAt = performance.now();
    const latencies = await Promise.all(clients.map((client) => untilUnauthenticated(() => client.getAuthenticatedIdentity({}), revokedAt)));
    figures.push(`CLI key revocation seen by all replicas after ${Math.round(Math.max(...latencies))} ms`);
    // The user's other key is unaffected everywhere.
    for (const replica of replicas) expect((await replica.identity("grpc", user.apiKey).getAuthenticatedIdentity({})).subject?.id).toBe(user.userId);
  });

  it("rejects a deleted runner's access token at once on the replica that deleted it, and within 2 s on the others", async () => {
    const [a, b, c] = replicas as [TestServer, TestServer, TestServer];
    const { runner, exchangeToken } = await a.runners("grpc", user.apiKey).createRunner({ name: "to delete", provider: RunnerProvider.GCP });
    const { accessToken } = await b.identity("grpc").exchangeToken({ exchangeToken });
    const runnerId = runner!.runnerId;
    for (const replica of [a, b, c]) {
      // Used (so cached) everywhere before the delete.
      expect((await replica.identity("connect-json", accessToken).getAuthenticatedIdentity({})).subject?.id).toBe(runnerId);
      await replica.interaction("grpc", accessToken).signup({ publicKey: new Uint8Array(32) });
    }
    await a.runners("grpc", user.apiKey).deleteRunner({ runnerId });
    const deletedAt = performance.now();
    expect((await failure(() => a.identity("grpc", accessToken).getAuthenticatedIdentity({}))).code).toBe(Code.Unauthenticated);
    const latencies = await Promise.all(
      [b, c].map((replica) => untilUnauthenticated(() => replica.interaction("grpc", accessToken).markRunnerActive({ runnerId }), deletedAt)),
    );
    figures.push(`deleted runner's token rejected by the other replicas after ${Math.round(Math.max(...latencies))} ms`);
  });

  describe("who may do what", () => {
    let member: TestUser;
    let runnerId: string;
    let team: string;
    beforeAll(async () => {
      const [a] = replicas as [TestServer];
      member = await a.newUser(user.organizationSlug); // a member of user's organization, in no group yet
      runnerId = (await a.runners("grpc", user.apiKey).createRunner({ name: "shared", provider: RunnerProvider.GCP })).runner!.runnerId;
      team = (await a.groups("grpc", user.apiKey).createGroup({ organizationId: user.organizationId, name: "replica team" })).group!.id;
    });

    it("applies a runner policy changed through one replica to the very next call on every other", async () => {
      const [a, b, c] = replicas as [TestServer, TestServer, TestServer];
      // The member's key is cached on every replica: runners without policies are open to them.
      for (const replica of replicas) expect((await replica.runners("connect-json", member.apiKey).getRunner({ runnerId })).runner).toBeDefined();
      for (let round = 0; round < 5; round++) {
        await a.runners("grpc", user.apiKey).createRunnerPolicy({ runnerId, groupId: team, role: RunnerRole.USER });
        for (const replica of [b, c]) expect((await failure(() => replica.runners("grpc", member.apiKey).getRunner({ runnerId }))).code).toBe(Code.NotFound);
        await b.runners("grpc", user.apiKey).deleteRunnerPolicy({ runnerId, groupId: team });
        for (const replica of [a, c]) expect((await replica.runners("grpc-web", member.apiKey).getRunner({ runnerId })).runner).toBeDefined();
      }
      figures.push("runner policy created/deleted through one replica: the next call on the others saw it, 5 of 5 rounds");
    });

    it("applies a membership changed through one replica at once there and within 2 s on the others, also where the key was cached", async () => {
      const [a, b, c] = replicas as [TestServer, TestServer, TestServer];
      await a.runners("grpc", user.apiKey).createRunnerPolicy({ runnerId, groupId: team, role: RunnerRole.ADMIN });
      const manage = (replica: TestServer) => () => replica.runners("connect-json", member.apiKey).createRunnerToken({ runnerId });
      for (const replica of replicas) expect((await failure(manage(replica))).code).toBe(Code.NotFound); // cached: in no group
      const { member: membership } = await a.groups("grpc", user.apiKey).createMembership({ groupId: team, subject: { id: member.userId, principal: Principal.USER } });
      const addedAt = performance.now();
      await manage(a)(); // the replica that made the change: at once
      const joined = await Promise.all([b, c].map((replica) => until(manage(replica), "ok", Code.NotFound, addedAt)));
      await b.groups("grpc", user.apiKey).deleteMembership({ membershipId: membership!.id });
      const removedAt = performance.now();
      expect((await failure(manage(b))).code).toBe(Code.NotFound);
      const left = await Promise.all([a, c].map((replica) => until(manage(replica), Code.NotFound, "ok", removedAt)));
      figures.push(`membership added/removed: seen by the other replicas after ${Math.round(Math.max(...joined))}/${Math.round(Math.max(...left))} ms`);
      await a.runners("grpc", user.apiKey).deleteRunnerPolicy({ runnerId, groupId: team });
    });

    it("applies an organization role changed with the CLI on every replica within 2 s, also where the key was cached", async () => {
      const create = (replica: TestServer) => () => replica.runners("grpc", member.apiKey).createRunner({ name: "by a new admin", provider: RunnerProvider.GCP });
      for (const replica of replicas) expect((await failure(create(replica))).code).toBe(Code.PermissionDenied);
      const email = (await new IdentityStore(replicas[0]!.db).listUsers(user.organizationSlug)).find((u) => u.id === member.userId)!.email;
      expect(await cli("user", "set-role", "--org", user.organizationSlug, "--email", email, "--role", "admin")).toBe(0);
      const promotedAt = performance.now();
      const promoted = await Promise.all(replicas.map((replica) => until(create(replica), "ok", Code.PermissionDenied, promotedAt)));
      expect(await cli("user", "set-role", "--org", user.organizationSlug, "--email", email, "--role", "member")).toBe(0);
      const demotedAt = performance.now();
      const demoted = await Promise.all(replicas.map((replica) => until(create(replica), Code.PermissionDenied, "ok", demotedAt)));
      figures.push(`organization role set with the CLI: applied by all replicas after ${Math.round(Math.max(...promoted))}/${Math.round(Math.max(...demoted))} ms (promote/demote)`);
    });
  });
});

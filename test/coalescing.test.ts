// The performance machinery must not change what a caller sees: coalesced statements keep
// per-request outcomes, and cached credentials still die with their revocation.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Batcher } from "../src/store/db/batcher.js";
import { CredentialCache } from "../src/domain/credential-cache.js";
import { OrganizationRole } from "../gen/gitpod/v1/organization_pb.js";
import type { Caller } from "../src/domain/auth.js";
import { RunnerStore, type NewRunner } from "../src/store/runner-store.js";
import { hashToken, generateToken } from "../src/domain/tokens.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { startServer, type TestServer, type TestUser } from "./harness.js";
import { FaultyDatabase } from "./faulty-database.js";
import { openTestDatabase } from "./harness.js";

describe("Batcher", () => {
  it("runs a lone call at once and coalesces calls that arrive while a batch is in flight", async () => {
    const batches: number[][] = [];
    let release: () => void = () => {};
    const batcher = new Batcher<number, number>(async (inputs) => {
      batches.push(inputs);
      if (batches.length === 1) await new Promise<void>((resolve) => (release = resolve));
      return inputs.map((n) => n * 2);
    }, { maxBatch: 100, maxInFlight: 1 });
    const first = batcher.submit(1);
    await new Promise((resolve) => setImmediate(resolve));
    const rest = [2, 3, 4, 5].map((n) => batcher.submit(n));
    release();
    expect(await Promise.all([first, ...rest])).toEqual([2, 4, 6, 8, 10]);
    expect(batches).toEqual([[1], [2, 3, 4, 5]]);
  });

  it("fails only the inputs whose result is an error", async () => {
    const batcher = new Batcher<number, number>(async (inputs) => inputs.map((n) => (n % 2 ? new Error(`odd ${n}`) : n)), {
      maxBatch: 10,
      maxInFlight: 1,
    });
    const results = await Promise.allSettled([1, 2, 3, 4].map((n) => batcher.submit(n)));
    expect(results.map((r) => r.status)).toEqual(["rejected", "fulfilled", "rejected", "fulfilled"]);
  });

  it("splits at maxBatch and rejects a whole batch when the statement throws", async () => {
    const sizes: number[] = [];
    const batcher = new Batcher<number, number>(async (inputs) => {
      sizes.push(inputs.length);
      throw new Error("connection lost");
    }, { maxBatch: 3, maxInFlight: 4 });
    const results = await Promise.allSettled(Array.from({ length: 7 }, (_, n) => batcher.submit(n)));
    expect(results.every((r) => r.status === "rejected")).toBe(true);
    expect(sizes.sort()).toEqual([1, 3, 3]);
  });
});

describe("CredentialCache", () => {
  const user: Caller = { kind: "user", userId: "u1", organizationId: "o1", organizationTier: "", role: OrganizationRole.MEMBER, groupIds: ["g1"] };
  const runner: Caller = { kind: "runner", runnerId: "r1", organizationId: "o1" };

  it("caches nothing until notifications flow, and forgets everything when they stop", () => {
    const cache = new CredentialCache({ ttlMs: 60_000, capacity: 10 });
    cache.set("k", user, "key-1", cache.currentEpoch());
    expect(cache.get("k")).toBeUndefined();
    cache.setLive(true);
    cache.set("k", user, "key-1", cache.currentEpoch());
    expect(cache.get("k")).toEqual(user);
    cache.setLive(false);
    expect(cache.get("k")).toBeUndefined();
  });

  it("evicts by API key id and by runner id, and ignores lookups that raced a revocation", () => {
    const cache = new CredentialCache({ ttlMs: 60_000, capacity: 10 });
    cache.setLive(true);
    cache.set("user", user, "key-1", cache.currentEpoch());
    cache.set("runner", runner, undefined, cache.currentEpoch());
    cache.onNotification("api_key:key-1");
    expect(cache.get("user")).toBeUndefined();
    expect(cache.get("runner")).toEqual(runner);
    const epochBeforeLookup = cache.currentEpoch();
    cache.onNotification("runner:r1");
    expect(cache.get("runner")).toBeUndefined();
    cache.set("runner", runner, undefined, epochBeforeLookup); // a slow lookup finishing after the revoke
    expect(cache.get("runner")).toBeUndefined();
  });

  it("evicts a user's callers when their role or groups change, and the members of a deleted group", () => {
    const cache = new CredentialCache({ ttlMs: 60_000, capacity: 10 });
    cache.setLive(true);
    const colleague: Caller = { ...user, userId: "u2", groupIds: ["g2"] };
    const put = () => {
      cache.set("user", user, "key-1", cache.currentEpoch());
      cache.set("user-2", user, "key-2", cache.currentEpoch()); // a second key of the same user
      cache.set("colleague", colleague, "key-3", cache.currentEpoch());
      cache.set("runner", runner, undefined, cache.currentEpoch());
    };
    put();
    cache.onNotification("user:u1");
    expect([cache.get("user"), cache.get("user-2")]).toEqual([undefined, undefined]);
    expect([cache.get("colleague"), cache.get("runner")]).toEqual([colleague, runner]);
    put();
    cache.onNotification("group:g1");
    expect([cache.get("user"), cache.get("user-2")]).toEqual([undefined, undefined]);
    expect([cache.get("colleague"), cache.get("runner")]).toEqual([colleague, runner]);
  });

  it("expires entries and stays within its capacity", () => {
    let now = 0;
    const cache = new CredentialCache({ ttlMs: 1_000, capacity: 2, now: () => now });
    cache.setLive(true);
    for (const key of ["a", "b", "c"]) cache.set(key, user, undefined, cache.currentEpoch());
    expect(cache.size).toBe(2);
    expect(cache.get("a")).toBeUndefined();
    now = 1_000;
    expect(cache.get("c")).toBeUndefined();
  });
});

describe("coalesced registrations", () => {
  let db: Awaited<ReturnType<typeof openTestDatabase>>;
  let server: TestServer;
  let user: TestUser;
  beforeAll(async () => {
    db = await openTestDatabase();
    server = await startServer({ db: new FaultyDatabase(db) });
    user = await server.newUser();
  });
  afterAll(() => server?.close());

  function newRunner(organizationId: string): NewRunner {
    return {
      id: randomUUID(), organizationId, creatorId: user.userId, creatorPrincipal: 2, name: "batched", kind: 2, provider: 1,
      runnerManagerId: null, createdAt: new Date(), desiredPhase: 3, variant: 0, region: "", releaseChannel: 0, autoUpdate: false,
      logLevel: 0, devcontainerImageCacheEnabled: false, continuousProfiling: false, updateWindowStart: null, updateWindowEnd: null,
      metricsEnabled: false, metricsUrl: "", metricsUsername: "", metricsPassword: "", metricsManagedEnabled: false, metricsIncludeVerbose: false,
    };
  }

  it("stores each runner with its token, and one bad row fails only itself", async () => {
    const store = new RunnerStore(db);
    const good = [newRunner(user.organizationId), newRunner(user.organizationId)];
    const orphan = newRunner(randomUUID()); // no such organization: violates the foreign key
    const items = [good[0]!, orphan, good[1]!].map((runner) => ({ runner, tokenHash: hashToken(generateToken("exchange")), expiresAt: new Date(Date.now() + 1000) }));
    const results = await store.insertWithExchangeTokens(items);
    expect(results[0]).toBeUndefined();
    expect(results[1]).toBeInstanceOf(Error);
    expect(results[2]).toBeUndefined();
    const { rows } = await db.query<{ id: string; tokens: number }>(
      "SELECT r.id, (SELECT count(*)::int FROM runner_exchange_tokens t WHERE t.runner_id = r.id) AS tokens FROM runners r WHERE r.id = ANY($1::uuid[])",
      [items.map((item) => item.runner.id)],
    );
    expect(rows.map((row) => [row.id, row.tokens]).sort()).toEqual(good.map((runner) => [runner.id, 1]).sort());
  });

  it("answers many concurrent CreateRunner calls, each with its own runner and working token", async () => {
    const client = server.runners("connect-json", user.apiKey);
    const created = await Promise.all(
      Array.from({ length: 40 }, (_, i) => client.createRunner({ name: `concurrent ${i}`, provider: RunnerProvider.GCP })),
    );
    expect(new Set(created.map((c) => c.runner!.runnerId)).size).toBe(40);
    const exchanged = await Promise.all(created.map((c) => server.identity("connect-json").exchangeToken({ exchangeToken: c.exchangeToken })));
    expect(exchanged.every((e) => e.accessToken.startsWith("rcpr_"))).toBe(true);
  });

  it("commits a heartbeat before acknowledging it", async () => {
    const { runner, exchangeToken } = await server.runners("connect-json", user.apiKey).createRunner({ name: "beating", provider: RunnerProvider.GCP });
    const { accessToken } = await server.identity("connect-json").exchangeToken({ exchangeToken });
    const interaction = server.interaction("connect-json", accessToken);
    await interaction.signup({ publicKey: new Uint8Array(32) });
    server.clock.advance(60_000);
    await Promise.all(Array.from({ length: 10 }, () => interaction.markRunnerActive({ runnerId: runner!.runnerId })));
    const { rows } = await db.query<{ last_active_at: Date }>("SELECT last_active_at FROM runners WHERE id = $1", [runner!.runnerId]);
    expect(rows[0]!.last_active_at.getTime()).toBe(server.clock.now().getTime());
  });
});

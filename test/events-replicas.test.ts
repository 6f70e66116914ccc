// Events across replicas on one PostgreSQL database (TEST_DATABASE_URL only): a change made on one
// replica reaches watchers on the others within a second; with three replicas exactly one sweeps
// and each silent runner yields exactly one INACTIVE event on every watcher; when the sweeper's
// process is killed (SIGKILL of a real server process), another replica takes over within seconds.
//
//   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx vitest run test/events-replicas.test.ts
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { EventService, ResourceOperation, type WatchEventsResponse } from "../gen/gitpod/v1/event_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { IdentityService } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerInteractionService } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { ManualClock } from "../src/domain/clock.js";
import type { EventSweeper } from "../src/domain/event-sweeper.js";
import { issueApiKey } from "../src/domain/accounts.js";
import { IdentityStore } from "../src/store/identity-store.js";
import { isolatedDatabase, type IsolatedDatabase } from "./isolated-database.js";
import { bearer, protocols, startServer, testDatabaseUrl, uniqueSlug, type TestServer, type TestUser } from "./harness.js";
import { startServerProcess, type ServerProcess } from "./processes.js";
import { eventually } from "./runner-client.js";

const databaseUrl = testDatabaseUrl();
const OP = ResourceOperation;

interface Watcher {
  seen: (WatchEventsResponse & { at: number })[];
  opened: Promise<void>;
  stop: () => Promise<void>;
}

function watchOn(baseUrl: string, apiKey: string, protocol: "grpc" | "connect-json" = "grpc"): Watcher {
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl, interceptors: [bearer(apiKey)] })
      : createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer(apiKey)] });
  const abort = new AbortController();
  const seen: Watcher["seen"] = [];
  let opened!: () => void;
  const open = new Promise<void>((resolve) => (opened = resolve));
  const done = (async () => {
    try {
      for await (const event of createClient(EventService, transport).watchEvents({}, { signal: abort.signal, onHeader: () => opened() })) {
        if (event.operation !== OP.UNSPECIFIED) seen.push({ ...event, at: performance.now() });
      }
    } catch {
      // stopped, or the replica went away
    }
  })();
  return { seen, opened: open, stop: async () => (abort.abort(), await done) };
}

const statusEvents = (w: Watcher, runnerId: string) => w.seen.filter((e) => e.resourceId === runnerId && e.operation === OP.UPDATE_STATUS).length;

async function signedUpRunner(baseUrl: string, apiKey: string, name: string) {
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer(apiKey)] });
  const { runner, exchangeToken } = await createClient(RunnerService, transport).createRunner({ name, provider: RunnerProvider.GCP });
  const { accessToken } = await createClient(IdentityService, createConnectTransport({ baseUrl, httpVersion: "1.1" })).exchangeToken({ exchangeToken });
  const interaction = createClient(RunnerInteractionService, createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer(accessToken)] }));
  await interaction.signup({ publicKey: new Uint8Array(32).fill(7) });
  return { runnerId: runner!.runnerId, interaction };
}

describe.runIf(databaseUrl)("events over three replicas", () => {
  let replicas: [TestServer, TestServer, TestServer];
  let user: TestUser;
  const clock = new ManualClock(Date.now());
  const sweeperOf = (replica: TestServer) => (replica.app as unknown as { eventSweeper: EventSweeper }).eventSweeper;

  let isolated: IsolatedDatabase;

  // A database of their own: one sweeper per database, and it must be one of these three.
  beforeAll(async () => {
    isolated = await isolatedDatabase();
    const env = { EVENTS_SWEEP_INTERVAL_MS: "100" };
    replicas = (await Promise.all([0, 1, 2].map(async () => startServer({ clock, env, db: await isolated.open() })))) as [TestServer, TestServer, TestServer];
    user = await replicas[0].newUser();
  });
  afterAll(async () => {
    await Promise.all((replicas ?? []).map((replica) => replica.close()));
    await isolated?.drop();
  });

  it("delivers a change made on A to watchers on B and C within a second, over every protocol", async () => {
    const [a, b, c] = replicas;
    const watchers = protocols.map((protocol, i) => {
      const client = createClient(EventService, (i % 2 ? b : c).transport(protocol, user.apiKey));
      const seen: { id: string; at: number }[] = [];
      const abort = new AbortController();
      let opened!: () => void;
      const open = new Promise<void>((resolve) => (opened = resolve));
      const done = (async () => {
        try {
          for await (const e of client.watchEvents({}, { signal: abort.signal, onHeader: () => opened() })) seen.push({ id: e.resourceId, at: performance.now() });
        } catch {
          // stopped
        }
      })();
      return { seen, open, stop: async () => (abort.abort(), await done) };
    });
    await Promise.all(watchers.map((w) => w.open));
    const started = performance.now();
    const { runner } = await a.runners("connect-json", user.apiKey).createRunner({ name: "across", provider: RunnerProvider.GCP });
    for (const w of watchers) await eventually(() => (w.seen.some((e) => e.id === runner!.runnerId) ? true : undefined), 5_000, "the event on another replica");
    await Promise.all(watchers.map((w) => w.stop()));
    for (const w of watchers) expect(w.seen.find((e) => e.id === runner!.runnerId)!.at - started).toBeLessThan(1_000);
  });

  it("one sweeper; each silent runner yields exactly one INACTIVE event on every watcher", async () => {
    const [a, b, c] = replicas;
    await eventually(() => (replicas.filter((r) => sweeperOf(r).leader).length === 1 ? true : undefined), 5_000, "one leader");
    const { rows } = await replicas[0].db.query<{ holder: string }>("SELECT holder FROM leases WHERE name = 'sweeper'");
    expect(replicas.filter((r) => sweeperOf(r).id === rows[0]?.holder)).toHaveLength(1);
    const watchers = [a, b, c].map((r) => watchOn(r.baseUrl, user.apiKey));
    await Promise.all(watchers.map((w) => w.opened));
    const runners = await Promise.all([a, b, c].map((r, i) => signedUpRunner(r.baseUrl, user.apiKey, `silent ${i}`)));
    for (const w of watchers) for (const { runnerId } of runners) await eventually(() => (statusEvents(w, runnerId) === 1 ? true : undefined), 5_000, "sign-up");
    clock.advance(replicas[0].config.livenessWindowMs + 1_000);
    for (const w of watchers) for (const { runnerId } of runners) await eventually(() => (statusEvents(w, runnerId) === 2 ? true : undefined), 5_000, "INACTIVE");
    // Several more sweeps on the leader change nothing.
    const leader = replicas.find((r) => sweeperOf(r).leader)!;
    const sweeps = sweeperOf(leader).stats.sweeps;
    await eventually(() => (sweeperOf(leader).stats.sweeps >= sweeps + 5 ? true : undefined), 5_000, "more sweeps");
    await Promise.all(watchers.map((w) => w.stop()));
    for (const w of watchers) for (const { runnerId } of runners) expect(statusEvents(w, runnerId)).toBe(2);
    expect(replicas.filter((r) => sweeperOf(r).leader).length).toBeLessThanOrEqual(1);
  });
});

describe.runIf(databaseUrl)("the sweeper's replica killed", () => {
  const children: ServerProcess[] = [];
  let isolated: IsolatedDatabase;
  beforeAll(async () => {
    isolated = await isolatedDatabase();
  });
  afterAll(async () => {
    for (const { child } of children) (child as ChildProcess).kill("SIGKILL");
    await isolated?.drop();
  });

  it("another replica takes over within seconds and the silent runner's INACTIVE event still comes, once", async () => {
    // Real processes on the real clock, with a short liveness window.
    const env = { DATABASE_URL: isolated.url!, RUNNER_LIVENESS_WINDOW_SECONDS: "2", EVENTS_SWEEP_INTERVAL_MS: "200", LOG_LEVEL: "info" };
    children.push(...(await Promise.all([0, 1, 2].map(() => startServerProcess(env)))));
    const db = await isolated.open();
    let owner: { apiKey: string };
    try {
      owner = await issueApiKey(new IdentityStore(db), { now: () => new Date() }, { organizationSlug: uniqueSlug(), userEmail: `${randomBytes(4).toString("hex")}@example.com` });
    } finally {
      await db.close();
    }
    const leads = (p: ServerProcess) => (p.output().match(/now sweeps for the deployment/g) ?? []).length > (p.output().match(/another replica sweeps now/g) ?? []).length;
    const leader = await eventually(() => children.find(leads), 10_000, "a sweeper");
    const survivors = children.filter((p) => p !== leader);
    const watcher = watchOn(`http://127.0.0.1:${survivors[0]!.port}`, owner.apiKey);
    await watcher.opened;
    const { runnerId } = await signedUpRunner(`http://127.0.0.1:${survivors[1]!.port}`, owner.apiKey, "orphan");
    await eventually(() => (statusEvents(watcher, runnerId) === 1 ? true : undefined), 5_000, "sign-up");
    const killed = performance.now();
    leader.child.kill("SIGKILL");
    // The lease (3 sweep intervals) lapses and a survivor takes it; the runner has been silent since sign-up.
    await eventually(() => survivors.find(leads), 10_000, "a new sweeper");
    expect(performance.now() - killed).toBeLessThan(5_000);
    await eventually(() => (statusEvents(watcher, runnerId) === 2 ? true : undefined), 10_000, "INACTIVE after the takeover");
    // A later change still arrives (so the watcher would have seen a second INACTIVE by now).
    const { runnerId: later } = await signedUpRunner(`http://127.0.0.1:${survivors[1]!.port}`, owner.apiKey, "later");
    await eventually(() => (statusEvents(watcher, later) === 1 ? true : undefined), 5_000, "a later event");
    await watcher.stop();
    expect(statusEvents(watcher, runnerId)).toBe(2);
  }, 120_000);
});

// The runner channel across replicas on one PostgreSQL database (TEST_DATABASE_URL only): the
// user's call on replica A, the runner's stream on B, its SendResponse on C; events from any
// replica to streams on all of them; a stream that moves to another replica (graceful close)
// or whose replica is killed (SIGKILL of a real server process) still gets its waiting calls,
// and a caller whose runner is gone ends with deadline_exceeded, never hangs.
//
//   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx vitest run test/runner-channel-replicas.test.ts
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import type { WatchRequestsResponse } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { ManualClock } from "../src/domain/clock.js";
import { failure, protocols, startServer, testDatabaseUrl, type TestServer, type TestUser } from "./harness.js";
import { startServerProcess } from "./server-process.js";
import { TestRunner, transportFor, type Watch } from "./runner-client.js";

const databaseUrl = testDatabaseUrl();

const echo = (call: WatchRequestsResponse) =>
  call.request.case === "callParseContext"
    ? { case: "callParseContext" as const, value: { resp: { originalContextUrl: call.request.value.contextUrl } } }
    : undefined;

describe.runIf(databaseUrl)("the runner channel over three replicas", () => {
  let replicas: [TestServer, TestServer, TestServer];
  let user: TestUser;
  const watches: Watch[] = [];
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    const clock = new ManualClock(Date.now());
    replicas = (await Promise.all([0, 1, 2].map(() => startServer({ clock })))) as [TestServer, TestServer, TestServer];
    user = await replicas[0].newUser();
  });
  afterAll(async () => {
    await Promise.all(watches.map((w) => w.close()));
    for (const child of children) child.kill("SIGKILL");
    await Promise.all((replicas ?? []).map((replica) => replica.close()));
  });

  it("relays a call made on A to the stream on B and the answer sent to C, over every protocol", async () => {
    const [a, b, c] = replicas;
    for (const [i, protocol] of protocols.entries()) {
      const runner = await TestRunner.register(b, user.apiKey);
      const watch = runner.watch({
        transport: transportFor(b.baseUrl, { protocol, token: runner.accessToken }),
        answerTransport: transportFor(c.baseUrl, { protocol: protocols[(i + 1) % protocols.length]!, token: runner.accessToken }),
        onCall: echo,
      });
      watches.push(watch);
      await watch.opened;
      for (const caller of protocols) {
        const url = `https://github.com/acme/${protocol}-${caller}`;
        expect((await a.runners(caller, user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: url })).originalContextUrl).toBe(url);
      }
      await watch.close();
    }
  });

  it("sends an event made on C to streams on A and B, and each call to exactly one stream", async () => {
    const [a, b, c] = replicas;
    const runner = await TestRunner.register(a, user.apiKey);
    const onA = runner.watch({ transport: a.transport("grpc", runner.accessToken), workerId: "w-a", onCall: echo });
    const onB = runner.watch({ transport: b.transport("connect-json", runner.accessToken), workerId: "w-b", onCall: echo });
    watches.push(onA, onB);
    await Promise.all([onA.opened, onB.opened]);
    await c.runners("grpc", user.apiKey).updateRunner({ runnerId: runner.runnerId, spec: { configuration: { autoUpdate: true } } });
    await onA.waitFor("eventRunnerConfigurationChange");
    await onB.waitFor("eventRunnerConfigurationChange");
    const calls = Array.from({ length: 18 }, (_, i) =>
      replicas[i % 3]!.runners(protocols[i % 4]!, user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: `https://github.com/a/${i}` }),
    );
    const answers = await Promise.all(calls);
    expect(answers.map((x) => x.originalContextUrl)).toEqual(Array.from({ length: 18 }, (_, i) => `https://github.com/a/${i}`));
    const delivered = [...onA.of("callParseContext"), ...onB.of("callParseContext")].map((m) => m.requestId);
    expect(delivered).toHaveLength(18);
    expect(new Set(delivered).size).toBe(18);
  });

  it("gives a waiting call to the runner's new stream when its replica closes and the runner reconnects to another", async () => {
    const [a, , c] = replicas;
    const leaving = await startServer();
    const runner = await TestRunner.register(a, user.apiKey);
    const first = runner.watch({ transport: leaving.transport("grpc", runner.accessToken), workerId: "w", onCall: () => undefined });
    await first.opened;
    const pending = a.runners("connect-json", user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/moved" }, { timeoutMs: 15_000 });
    await first.waitFor("callParseContext");
    await leaving.close();
    expect((await first.ended)?.code).toBe(Code.Unavailable);
    const second = runner.watch({ transport: c.transport("connect-binary", runner.accessToken), workerId: "w", onCall: echo });
    watches.push(second);
    expect((await pending).originalContextUrl).toBe("https://github.com/a/moved");
    expect((await second.waitFor("callParseContext")).requestId).toBe(first.of("callParseContext")[0]!.requestId);
  }, 30_000);

  it("loses no call when the stream's replica is killed: the reconnected worker gets it, and a caller with no runner left ends deadline_exceeded", async () => {
    const [a, b] = replicas;
    const { child, port } = await startServerProcess({ DATABASE_URL: databaseUrl! });
    children.push(child);
    const doomed = `http://127.0.0.1:${port}`;
    const runner = await TestRunner.register(a, user.apiKey);
    const first = runner.watch({ transport: transportFor(doomed, { protocol: "grpc", token: runner.accessToken }), workerId: "w-crash", onCall: () => undefined });
    await first.opened;
    const pending = a.runners("grpc", user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/survived" }, { timeoutMs: 15_000 });
    await first.waitFor("callParseContext");

    // A second runner, only connected to the doomed replica, never comes back.
    const orphan = await TestRunner.register(a, user.apiKey);
    const orphanWatch = orphan.watch({ transport: transportFor(doomed, { protocol: "connect-json", token: orphan.accessToken }), onCall: () => undefined });
    await orphanWatch.opened;

    child.kill("SIGKILL");
    expect(await first.ended).toBeDefined(); // the connection broke
    const started = performance.now();
    const orphaned = await failure(() => b.runners("connect-json", user.apiKey).parseContextURL({ runnerId: orphan.runnerId, contextUrl: "https://github.com/a/b" }, { timeoutMs: 1_500 }));
    expect([Code.DeadlineExceeded, Code.Unavailable]).toContain(orphaned.code);
    expect(performance.now() - started).toBeLessThan(5_000);

    const second = runner.watch({ transport: b.transport("connect-json", runner.accessToken), workerId: "w-crash", onCall: echo });
    watches.push(second);
    expect((await pending).originalContextUrl).toBe("https://github.com/a/survived");
  }, 40_000);
});

// The development runner (a real process) against three replicas on one PostgreSQL database,
// behind a TCP load balancer (test/tcp-balancer.ts), with a real git server: users call every
// replica while the runner's stream sits on one of them and its answers land wherever the
// balancer sends them; replicas are cut off one after another, and all at once, and the runner
// moves its stream, keeps answering, and reads the configuration that changed while it was away.
//
//   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx vitest run test/runner-agent-replicas.test.ts
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { LogLevel } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { ManualClock } from "../src/domain/clock.js";
import { protocols, startServer, testDatabaseUrl, type TestServer, type TestUser } from "./harness.js";
import { GitServer, type MadeRepo } from "./git-server.js";
import { RunnerProcess } from "./runner-process.js";
import { eventually } from "./runner-client.js";
import { TcpBalancer } from "./tcp-balancer.js";

const databaseUrl = testDatabaseUrl();
/** Repositories with long names: a SearchRepositories answer of 100 of them is far above NOTIFY's 8,000 bytes. */
const MANY = 120;

describe.runIf(databaseUrl)("the development runner with three replicas", () => {
  let replicas: TestServer[];
  let user: TestUser;
  let git: GitServer;
  let balancer: TcpBalancer;
  let widgets: MadeRepo;
  const runners: { runnerId: string; process: RunnerProcess; protocol: string }[] = [];
  let stateRoot: string;

  beforeAll(async () => {
    const clock = new ManualClock(Date.now());
    replicas = await Promise.all([0, 1, 2].map(() => startServer({ clock, env: { RUNNER_CALL_TIMEOUT_SECONDS: "5" } })));
    user = await replicas[0]!.newUser();
    git = await new GitServer().start();
    widgets = git.makeRepo("acme/widgets.git", { branches: ["main", "feature/x"], tags: ["v1.0"] });
    git.makeRepo("bulk/repository-with-a-rather-long-name-to-make-answers-large-000.git");
    for (let i = 1; i < MANY; i++) git.copyRepo("bulk/repository-with-a-rather-long-name-to-make-answers-large-000.git", `bulk/repository-with-a-rather-long-name-to-make-answers-large-${String(i).padStart(3, "0")}.git`);
    balancer = new TcpBalancer(replicas.map((replica) => replica.port));
    const url = await balancer.start();
    stateRoot = mkdtempSync(join(tmpdir(), "rcp-runner-replicas-"));
    // One runner holding its stream over gRPC (one HTTP/2 connection for the stream, one for its
    // answers), one over Connect JSON on HTTP/1.1 (its answers spread over pooled connections).
    for (const [i, protocol] of (["grpc", "connect-json"] as const).entries()) {
      const { runner, exchangeToken } = await replicas[i + 1]!.runners("grpc", user.apiKey).createRunner({ name: `replicated ${protocol}`, provider: RunnerProvider.LINUX_HOST });
      const process = new RunnerProcess([
        "--url", url,
        "--exchange-token", exchangeToken,
        "--state-dir", join(stateRoot, protocol),
        "--protocol", protocol,
        "--repos-dir", git.root,
        "--repos-url", git.url,
        "--scm-host", `127.0.0.1:${git.port}=github`,
        "--heartbeat-seconds", "1",
        "--reconnect-max-seconds", "1",
      ]);
      runners.push({ runnerId: runner!.runnerId, process, protocol });
    }
    await Promise.all(runners.map((runner) => runner.process.waitFor("channel open", {}, 1, 30_000)));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(runners.map((runner) => runner.process.kill()));
    await balancer?.close();
    await Promise.all((replicas ?? []).map((replica) => replica.close()));
    await git?.close();
    if (stateRoot) rmSync(stateRoot, { recursive: true, force: true });
  });

  /** ParseContextURL through `replica`, retried while the runner is between streams. */
  function parseEventually(replica: TestServer, runnerId: string, protocol: (typeof protocols)[number] = "grpc") {
    return eventually(
      () =>
        replica
          .runners(protocol, user.apiKey)
          .parseContextURL({ runnerId, contextUrl: `${git.url}/acme/widgets/tree/feature/x` })
          .catch((err: unknown) => {
            const code = ConnectError.from(err).code;
            if (code === Code.Unavailable || code === Code.DeadlineExceeded) return undefined; // the runner is reconnecting
            throw err;
          }),
      20_000,
      "ParseContextURL answered by the runner",
    );
  }

  it("answers calls made on every replica over every protocol, wherever its stream is", async () => {
    for (const runner of runners) {
      for (const [r, replica] of replicas.entries()) {
        for (const protocol of protocols) {
          const answer = await replica.runners(protocol, user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: `${git.url}/acme/widgets/tree/v1.0` });
          expect(answer.git, `${runner.protocol} runner, replica ${r}, ${protocol}`).toMatchObject({ tag: "v1.0", commit: widgets.commits["v1.0"] });
        }
      }
    }
  });

  it("relays answers far larger than a NOTIFY payload", async () => {
    for (const [r, replica] of replicas.entries()) {
      const answer = await replica.runners("connect-json", user.apiKey).searchRepositories({ runnerId: runners[0]!.runnerId, searchString: "bulk", pagination: { pageSize: 100 } });
      expect(answer.repositories, `replica ${r}`).toHaveLength(100);
      expect(answer.pagination?.nextToken).toBe(`2/2/${MANY}`);
      expect(JSON.stringify(answer.repositories).length).toBeGreaterThan(8_000);
    }
  });

  it("moves its stream when its replica goes away, and keeps answering calls made on every replica", async () => {
    const reconnects = () => runners.map((runner) => runner.process.logged("channel open", { reconnect: true }).length);
    const before = reconnects();
    for (let down = 0; down < replicas.length; down++) {
      balancer.down(down);
      // Also through the replica the runner cannot reach now: caller there, stream and answer elsewhere.
      for (const runner of runners) {
        for (const replica of replicas) {
          const answer = await parseEventually(replica, runner.runnerId);
          expect(answer.git).toMatchObject({ branch: "feature/x", commit: widgets.commits["feature/x"] });
        }
      }
      balancer.up(down);
    }
    // Each runner's stream was on one of the three replicas, so each moved at least once.
    const after = reconnects();
    for (const [i, runner] of runners.entries()) expect(after[i], runner.protocol).toBeGreaterThan(before[i]!);
  });

  it("cut off from every replica, it comes back and reads the configuration that changed meanwhile", async () => {
    const reads = () => replicas.reduce((sum, replica) => sum + replica.logs.filter((line) => line.includes("RunnerInteractionService/GetRunnerConfiguration")).length, 0);
    const lost = runners.map((runner) => runner.process.logged("the channel was lost").length);
    const reopened = runners.map((runner) => runner.process.logged("channel open", { reconnect: true }).length);
    for (let i = 0; i < replicas.length; i++) balancer.down(i);
    await Promise.all(runners.map((runner, i) => runner.process.waitFor("the channel was lost", {}, lost[i]! + 1)));
    const readsBefore = reads();
    for (const runner of runners) {
      await replicas[2]!.runners("grpc", user.apiKey).updateRunner({ runnerId: runner.runnerId, spec: { configuration: { logLevel: LogLevel.WARN } } });
    }
    for (let i = 0; i < replicas.length; i++) balancer.up(i);
    await Promise.all(runners.map((runner, i) => runner.process.waitFor("channel open", { reconnect: true }, reopened[i]! + 1)));
    // Both runners read their configuration again (on reconnecting, and for the event if it was delivered).
    await eventually(() => (reads() >= readsBefore + runners.length ? true : undefined), 15_000, "GetRunnerConfiguration after the reconnect");
    for (const runner of runners) await parseEventually(replicas[0]!, runner.runnerId, "connect-binary");
  });
});

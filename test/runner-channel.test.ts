// The runner channel on one server (embedded database, or TEST_DATABASE_URL): WatchRequests over
// every protocol and HTTP version, the five delegated RunnerService RPCs answered by a runner
// written in the tests (test/runner-client.ts), every error path of a call, events, pings,
// reconnects, and streams that outlive the slow-client timeouts. Several replicas:
// test/runner-channel-replicas.test.ts.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { ViolationsSchema } from "../gen/buf/validate/validate_pb.js";
import { ParseContextURLPreconditionFailureDetailsSchema, RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerInteractionService, SendResponseRequest_ErrorCode, type WatchRequestsResponse } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { failure, protocols, startServer, type Protocol, type TestServer, type TestUser } from "./harness.js";
import { eventually, RunnerCapability, TestRunner, transportFor, type Watch } from "./runner-client.js";

let server: TestServer;
let user: TestUser;
const open: Watch[] = [];

beforeAll(async () => {
  server = await startServer({ env: { RUNNER_CALL_TIMEOUT_SECONDS: "5" } });
  user = await server.newUser();
});
afterAll(async () => {
  await Promise.all(open.map((w) => w.close()));
  await server?.close();
});

/** A signed-up runner with one open stream that answers ParseContextURL by echoing the URL. */
async function connectedRunner(options: { protocol?: Protocol; capabilities?: RunnerCapability[]; onCall?: Parameters<TestRunner["watch"]>[0]["onCall"] } = {}) {
  const runner = await TestRunner.register(server, user.apiKey, { capabilities: options.capabilities });
  const watch = runner.watch({ transport: transportFor(server.baseUrl, { protocol: options.protocol ?? "connect-binary", token: runner.accessToken }), onCall: options.onCall ?? echo });
  open.push(watch);
  await watch.opened;
  return { runner, watch };
}

const echo = (call: WatchRequestsResponse) =>
  call.request.case === "callParseContext"
    ? { case: "callParseContext" as const, value: { resp: { originalContextUrl: call.request.value.contextUrl, git: { host: "example.com" } } } }
    : undefined;

describe("WatchRequests and a delegated call over every protocol", () => {
  const variants: { protocol: Protocol; httpVersion: "1.1" | "2" }[] = [
    { protocol: "connect-json", httpVersion: "1.1" },
    { protocol: "connect-json", httpVersion: "2" },
    { protocol: "connect-binary", httpVersion: "1.1" },
    { protocol: "connect-binary", httpVersion: "2" },
    { protocol: "grpc", httpVersion: "2" },
    { protocol: "grpc-web", httpVersion: "1.1" },
    { protocol: "grpc-web", httpVersion: "2" },
  ];
  for (const { protocol, httpVersion } of variants) {
    it(`streams over ${protocol} on HTTP/${httpVersion}, answers SendResponse over it, and relays the answer to a caller on every protocol`, async () => {
      const runner = await TestRunner.register(server, user.apiKey);
      const transport = transportFor(server.baseUrl, { protocol, httpVersion, token: runner.accessToken });
      const watch = runner.watch({ transport, onCall: echo });
      open.push(watch);
      await watch.opened;
      // The stream opens with a ping (it flushes the headers); the runner's answer is accepted.
      expect(watch.received[0]?.request.case).toBe("callPing");
      for (const caller of protocols) {
        const url = `https://github.com/acme/${protocol}-${httpVersion}-${caller}`;
        const answer = await server.runners(caller, user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: url });
        expect(answer.originalContextUrl).toBe(url);
        expect(answer.git?.host).toBe("example.com");
      }
      const calls = watch.of("callParseContext");
      expect(calls).toHaveLength(protocols.length);
      // principal_id is the calling user; every call has its own request id.
      expect(new Set(calls.map((c) => (c.request.value as { principalId: string }).principalId))).toEqual(new Set([user.userId]));
      expect(new Set(calls.map((c) => c.requestId)).size).toBe(protocols.length);
      await watch.close();
    });
  }
});

describe("the five delegated RPCs", () => {
  it("relays each with principal_id = the caller and the public request's fields, and returns the runner's answer", async () => {
    const seen: WatchRequestsResponse[] = [];
    const { runner } = await connectedRunner({
      capabilities: [RunnerCapability.LIST_SCM_ORGANIZATIONS, RunnerCapability.CHECK_REPOSITORY_ACCESS],
      onCall: (call) => {
        seen.push(call);
        switch (call.request.case) {
          case "callSearchRepositories":
            return {
              case: "callSearchRepositories",
              value: {
                // Far larger than a NOTIFY payload may be (8000 bytes).
                repositories: Array.from({ length: 2000 }, (_, i) => ({ name: `repo-${i}`, url: `https://git.example.com/acme/repo-${i}.git` })),
                pagination: { nextToken: "2/40/1000" },
                lastPage: 40,
              },
            };
          case "callListScmOrganizations":
            return { case: "callListScmOrganizations", value: { organizations: [{ name: "acme", url: "https://git.example.com/acme" }], pagination: { nextToken: "" } } };
          case "callCheckAuthenticationForHost":
            return { case: "callCheckAuthenticationForHost", value: { resp: { authenticated: true, scmId: "github", scmName: "GitHub" } } };
          case "callCheckRepositoryAccess":
            return { case: "callCheckRepositoryAccess", value: { resp: { hasAccess: false, errorMessage: "repository not found" } } };
          default:
            return echo(call);
        }
      },
    });
    const client = server.runners("connect-json", user.apiKey);
    const runnerId = runner.runnerId;

    const search = await client.searchRepositories({ runnerId, searchString: "repo", scmHost: "git.example.com", pagination: { pageSize: 50, token: "t" }, searchMode: 1 });
    expect(search.repositories).toHaveLength(2000);
    expect(search.repositories[1999]).toMatchObject({ name: "repo-1999" });
    expect(search.pagination?.nextToken).toBe("2/40/1000");
    expect(search.lastPage).toBe(40);

    const orgs = await client.listSCMOrganizations({ runnerId, scmHost: "git.example.com", query: "ac", pagination: { pageSize: 10 } });
    expect(orgs.organizations.map((o) => o.name)).toEqual(["acme"]);

    const auth = await client.checkAuthenticationForHost({ runnerId, host: "github.com" });
    expect(auth).toMatchObject({ authenticated: true, scmId: "github", scmName: "GitHub" });

    const access = await client.checkRepositoryAccess({ runnerId, repositoryUrl: "https://git.example.com/acme/secret.git" });
    expect(access).toMatchObject({ hasAccess: false, errorMessage: "repository not found" });

    const parsed = await client.parseContextURL({ runnerId, contextUrl: "https://github.com/acme/app/pull/7" });
    expect(parsed.originalContextUrl).toBe("https://github.com/acme/app/pull/7");

    const byMember = Object.fromEntries(seen.map((call) => [call.request.case, call.request.value]));
    expect(byMember.callSearchRepositories).toMatchObject({ principalId: user.userId, searchString: "repo", scmHost: "git.example.com", searchMode: 1, pagination: { pageSize: 50, token: "t" } });
    expect(byMember.callListScmOrganizations).toMatchObject({ principalId: user.userId, scmHost: "git.example.com", query: "ac", pagination: { pageSize: 10 } });
    expect(byMember.callCheckAuthenticationForHost).toMatchObject({ principalId: user.userId, host: "github.com" });
    expect(byMember.callCheckRepositoryAccess).toMatchObject({ principalId: user.userId, repositoryUrl: "https://git.example.com/acme/secret.git" });
    expect(byMember.callParseContext).toMatchObject({ principalId: user.userId, contextUrl: "https://github.com/acme/app/pull/7" });
  });

  it("passes the caller's traceparent on to the runner in trace_context", async () => {
    const { runner, watch } = await connectedRunner();
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const client = createClient(RunnerService, transportFor(server.baseUrl, { protocol: "grpc", token: user.apiKey }));
    await client.parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/b" }, { headers: { traceparent } });
    expect(watch.of("callParseContext")[0]?.traceContext).toEqual({ traceparent });
  });

  it("refuses runners the caller may not use, runners without the capability a call needs, and runner callers", async () => {
    const { runner } = await connectedRunner();
    const other = await server.newUser();
    const stranger = server.runners("grpc", other.apiKey);
    for (const call of [
      () => stranger.parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/b" }),
      () => stranger.searchRepositories({ runnerId: runner.runnerId }),
      () => stranger.listSCMOrganizations({ runnerId: runner.runnerId, scmHost: "github.com" }),
      () => stranger.checkAuthenticationForHost({ runnerId: runner.runnerId, host: "github.com" }),
      () => stranger.checkRepositoryAccess({ runnerId: runner.runnerId, repositoryUrl: "https://github.com/a/b" }),
    ]) {
      const err = await failure(call);
      expect(err.code).toBe(Code.NotFound);
      expect(err.rawMessage).toBe(`runner ${runner.runnerId} not found`);
    }
    const mine = server.runners("grpc", user.apiKey);
    const unsupported = await failure(() => mine.listSCMOrganizations({ runnerId: runner.runnerId, scmHost: "github.com" }));
    expect(unsupported.code).toBe(Code.Unimplemented);
    expect(unsupported.rawMessage).toContain("RUNNER_CAPABILITY_LIST_SCM_ORGANIZATIONS");
    const noAccessCheck = await failure(() => mine.checkRepositoryAccess({ runnerId: runner.runnerId, repositoryUrl: "https://github.com/a/b" }));
    expect(noAccessCheck.code).toBe(Code.Unimplemented);
    expect(noAccessCheck.rawMessage).toContain("RUNNER_CAPABILITY_CHECK_REPOSITORY_ACCESS");
    // Runners do not call these on behalf of themselves.
    const asRunner = await failure(() => server.runners("grpc", runner.accessToken).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/b" }));
    expect(asRunner.code).toBe(Code.PermissionDenied);
    // The public request's own validation comes first.
    const invalid = await failure(() => mine.parseContextURL({ runnerId: runner.runnerId, contextUrl: "not a url" }));
    expect(invalid.code).toBe(Code.InvalidArgument);
  });
});

describe("a call's error paths", () => {
  it("is unavailable, naming the runner, when the runner has no open stream", async () => {
    const runner = await TestRunner.register(server, user.apiKey);
    for (const protocol of protocols) {
      const err = await failure(() => server.runners(protocol, user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/b" }));
      expect(err.code).toBe(Code.Unavailable);
      expect(err.rawMessage).toContain(`runner ${runner.runnerId} is not connected`);
    }
    // Nor once its only stream closed.
    const watch = runner.watch({ transport: server.transport("grpc", runner.accessToken) });
    await watch.opened;
    await watch.close();
    await eventually(async () => {
      const err = await failure(() => server.runners("grpc", user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/b" }));
      return err.code === Code.Unavailable ? err : undefined;
    }, 5_000, "unavailable after the stream closed");
  });

  it("is deadline_exceeded when the runner does not answer within the caller's deadline, or RUNNER_CALL_TIMEOUT_SECONDS without one", async () => {
    const { runner, watch } = await connectedRunner({ onCall: () => undefined });
    for (const protocol of protocols) {
      const started = performance.now();
      const err = await failure(() => server.runners(protocol, user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/b" }, { timeoutMs: 400 }));
      expect(err.code).toBe(Code.DeadlineExceeded);
      expect(performance.now() - started).toBeLessThan(4_000);
    }
    const started = performance.now();
    const err = await failure(() => server.runners("connect-json", user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/b" }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(err.rawMessage).toBe(`runner ${runner.runnerId} did not answer ParseContextURL within 5000 ms`);
    expect(performance.now() - started).toBeGreaterThanOrEqual(4_900);
    // Answering now is too late, and changes nothing.
    const late = watch.of("callParseContext").at(-1)!;
    const tooLate = await failure(() =>
      runner.client(server.transport("grpc", runner.accessToken)).sendResponse({
        runnerId: runner.runnerId, requestId: late.requestId, response: { case: "callParseContext", value: { resp: {} } },
      }),
    );
    expect(tooLate.code).toBe(Code.FailedPrecondition);
    expect(tooLate.rawMessage).toContain("expired");
  }, 20_000);

  it("passes the runner's CallError on as the caller's error: same code, message and Any details, over every protocol", async () => {
    const details = create(ParseContextURLPreconditionFailureDetailsSchema, { authenticationRequiredUrl: "https://github.com/login/oauth", scmId: "github" });
    for (const runnerProtocol of protocols) {
      const { runner } = await connectedRunner({
        protocol: runnerProtocol,
        onCall: () => ({
          case: "error",
          value: { code: SendResponseRequest_ErrorCode.FAILED_PRECONDITION, message: "authentication required for github.com", details: [anyPack(ParseContextURLPreconditionFailureDetailsSchema, details)] },
        }),
      });
      for (const protocol of protocols) {
        const err = await failure(() => server.runners(protocol, user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/b" }));
        expect(err.code, `${runnerProtocol} runner, ${protocol} caller`).toBe(Code.FailedPrecondition);
        expect(err.rawMessage).toBe("authentication required for github.com");
        expect(err.findDetails(ParseContextURLPreconditionFailureDetailsSchema)).toEqual([details]);
      }
    }
  });

  it("maps every ErrorCode to the same Connect code, and UNSPECIFIED to unknown", async () => {
    let code = SendResponseRequest_ErrorCode.UNSPECIFIED;
    const { runner } = await connectedRunner({ onCall: () => ({ case: "error", value: { code, message: `code ${code}` } }) });
    for (const value of Object.values(SendResponseRequest_ErrorCode).filter((v): v is number => typeof v === "number")) {
      code = value;
      const err = await failure(() => server.runners("grpc", user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/b" }));
      expect(err.code).toBe(value === 0 ? Code.Unknown : value);
      expect(err.rawMessage).toBe(`code ${value}`);
    }
  });

  it("refuses, changing nothing, SendResponses for unknown or foreign request ids, duplicates, wrong members and other runners", async () => {
    const { runner, watch } = await connectedRunner({ onCall: () => undefined });
    const intruder = await TestRunner.register(server, user.apiKey);
    const pending = server.runners("grpc", user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/b" });
    const call = await watch.waitFor("callParseContext");
    const client = runner.client(server.transport("connect-json", runner.accessToken));
    const send = (requestId: string, response: Parameters<typeof client.sendResponse>[0]["response"], from = client, runnerId = runner.runnerId) =>
      failure(() => from.sendResponse({ runnerId, requestId, response }));

    // Not a call of this runner.
    const unknown = await send("6f1c2d3e-4a5b-4c6d-8e7f-001122334455", { case: "callParseContext", value: {} });
    expect(unknown.code).toBe(Code.NotFound);
    const intruderClient = intruder.client(server.transport("grpc", intruder.accessToken));
    const foreign = await send(call.requestId, { case: "callParseContext", value: { resp: { originalContextUrl: "forged" } } }, intruderClient, intruder.runnerId);
    expect(foreign.code).toBe(Code.NotFound);
    const impersonation = await send(call.requestId, { case: "callParseContext", value: {} }, intruderClient, runner.runnerId);
    expect(impersonation.code).toBe(Code.PermissionDenied);
    // Not the call's member, or no member at all.
    const wrong = await send(call.requestId, { case: "callSearchRepositories", value: {} });
    expect(wrong.code).toBe(Code.InvalidArgument);
    expect(wrong.rawMessage).toContain("callParseContext");
    expect(wrong.findDetails(ViolationsSchema)[0]?.violations[0]?.field?.elements[0]?.fieldName).toBe("response");
    const empty = await send(call.requestId, { case: undefined });
    expect(empty.code).toBe(Code.InvalidArgument);
    // The real answer still goes through, once.
    await client.sendResponse({ runnerId: runner.runnerId, requestId: call.requestId, response: { case: "callParseContext", value: { resp: { originalContextUrl: "real" } } } });
    expect((await pending).originalContextUrl).toBe("real");
    const duplicate = await send(call.requestId, { case: "callParseContext", value: { resp: { originalContextUrl: "again" } } });
    expect(duplicate.code).toBe(Code.AlreadyExists);
  });

  it("refuses to open a stream for another runner, before Signup, for users, or with shard ids out of 0..63", async () => {
    const a = await TestRunner.register(server, user.apiKey);
    const b = await TestRunner.register(server, user.apiKey, { signup: false });
    const codeOfStream = async (token: string, runnerId: string, shardIds: number[] = []) => {
      const watch = createClient(RunnerInteractionService, server.transport("grpc", token));
      try {
        for await (const _ of watch.watchRequests({ runnerId, shardIds })) break;
        return "ok";
      } catch (err) {
        return Code[ConnectError.from(err).code];
      }
    };
    expect(await codeOfStream(a.accessToken, b.runnerId)).toBe("PermissionDenied");
    expect(await codeOfStream(b.accessToken, b.runnerId)).toBe("FailedPrecondition");
    expect(await codeOfStream(user.apiKey, a.runnerId)).toBe("PermissionDenied");
    expect(await codeOfStream(a.accessToken, a.runnerId, [64])).toBe("InvalidArgument");
    expect(await codeOfStream(a.accessToken, a.runnerId, [-1])).toBe("InvalidArgument");
    expect(await codeOfStream(a.accessToken, a.runnerId, [0, 63])).toBe("ok");
  });
});

describe("events and streams", () => {
  it("sends EventRunnerConfigurationChange to every open stream on UpdateRunner with a configuration change, and a call to exactly one", async () => {
    const runner = await TestRunner.register(server, user.apiKey);
    const watches = ["w1", "w2", ""].map((workerId, i) => runner.watch({ transport: server.transport(protocols[i]!, runner.accessToken), workerId, onCall: echo }));
    open.push(...watches);
    await Promise.all(watches.map((w) => w.opened));
    const runners = server.runners("connect-json", user.apiKey);
    await runners.updateRunner({ runnerId: runner.runnerId, name: "renamed only" }); // no configuration change: no event
    await runners.updateRunner({ runnerId: runner.runnerId, spec: { configuration: { logLevel: 3 } } });
    for (const watch of watches) await watch.waitFor("eventRunnerConfigurationChange");
    for (let i = 0; i < 12; i++) await runners.parseContextURL({ runnerId: runner.runnerId, contextUrl: `https://github.com/a/b${i}` });
    const perStream = watches.map((w) => w.of("callParseContext").length);
    expect(perStream.reduce((a, b) => a + b, 0)).toBe(12);
    expect(new Set(watches.flatMap((w) => w.of("callParseContext").map((c) => c.requestId))).size).toBe(12);
    expect(watches.map((w) => w.of("eventRunnerConfigurationChange").length)).toEqual([1, 1, 1]);
  });

  it("gives a stream that opens later the events no stream received, once each", async () => {
    const runner = await TestRunner.register(server, user.apiKey);
    const runners = server.runners("grpc", user.apiKey);
    await runners.updateRunner({ runnerId: runner.runnerId, spec: { configuration: { autoUpdate: true } } });
    await runners.updateRunner({ runnerId: runner.runnerId, spec: { configuration: { autoUpdate: false } } });
    const watch = runner.watch({ transport: server.transport("grpc", runner.accessToken) });
    open.push(watch);
    await watch.waitFor("eventRunnerConfigurationChange");
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(watch.of("eventRunnerConfigurationChange")).toHaveLength(1); // two equal events are said once
    // A second stream does not get them again: they were delivered.
    const second = runner.watch({ transport: server.transport("grpc", runner.accessToken) });
    open.push(second);
    await second.opened;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(second.of("eventRunnerConfigurationChange")).toHaveLength(0);
  });

  it("hands a call whose stream closed before the runner answered to the runner's next stream", async () => {
    const runner = await TestRunner.register(server, user.apiKey);
    const first = runner.watch({ transport: server.transport("connect-json", runner.accessToken), workerId: "w", onCall: () => undefined });
    await first.opened;
    const pending = server.runners("grpc", user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/again" }, { timeoutMs: 10_000 });
    const dropped = await first.waitFor("callParseContext");
    await first.close();
    const second = runner.watch({ transport: server.transport("grpc", runner.accessToken), workerId: "w", onCall: echo });
    open.push(second);
    const again = await second.waitFor("callParseContext");
    expect(again.requestId).toBe(dropped.requestId);
    expect((await pending).originalContextUrl).toBe("https://github.com/a/again");
  });

  it("ends an older stream of the same worker_id when a newer one opens (aborted)", async () => {
    const runner = await TestRunner.register(server, user.apiKey);
    const old = runner.watch({ transport: server.transport("grpc", runner.accessToken), workerId: "replica-0" });
    await old.opened;
    const fresh = runner.watch({ transport: server.transport("connect-json", runner.accessToken), workerId: "replica-0", onCall: echo });
    open.push(fresh);
    await fresh.opened;
    const ended = await old.ended;
    expect(ended?.code).toBe(Code.Aborted);
    const answer = await server.runners("grpc", user.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/fresh" });
    expect(answer.originalContextUrl).toBe("https://github.com/a/fresh");
  });
});

describe("keepalive and slow-client timeouts", () => {
  let quick: TestServer;
  beforeAll(async () => {
    // Timeouts far below the stream's lifetime: the stream must outlive them all.
    quick = await startServer({
      env: { RUNNER_KEEPALIVE_SECONDS: "1", REQUEST_TIMEOUT_MS: "1000", HEADERS_TIMEOUT_MS: "500", IDLE_TIMEOUT_MS: "1000" },
    });
  });
  afterAll(() => quick?.close());

  for (const protocol of protocols) {
    it(`pings an idle ${protocol} stream every RUNNER_KEEPALIVE_SECONDS and keeps it past REQUEST_TIMEOUT_MS and IDLE_TIMEOUT_MS`, async () => {
      const quickUser = await quick.newUser();
      const runner = await TestRunner.register(quick, quickUser.apiKey);
      const watch = runner.watch({ transport: quick.transport(protocol, runner.accessToken), onCall: echo });
      await watch.waitFor("callPing", 4, 8_000); // the opening ping and three keepalives
      const answer = await quick.runners("grpc", quickUser.apiKey).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/still-here" });
      expect(answer.originalContextUrl).toBe("https://github.com/a/still-here");
      await watch.close();
    }, 20_000);
  }
});

describe("shutdown", () => {
  it("ends every stream with unavailable at once when the server closes, so runners reconnect elsewhere", async () => {
    const closing = await startServer();
    const closingUser = await closing.newUser();
    const runner = await TestRunner.register(closing, closingUser.apiKey);
    const watches = protocols.map((protocol) => runner.watch({ transport: closing.transport(protocol, runner.accessToken), workerId: protocol }));
    await Promise.all(watches.map((w) => w.opened));
    const started = performance.now();
    await closing.close();
    for (const watch of watches) expect((await watch.ended)?.code).toBe(Code.Unavailable);
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

describe("ParseContextURL without runner_id", () => {
  it("is failed_precondition listing the organization's runners when none is connected, and asks a connected one otherwise", async () => {
    const org = await server.newUser();
    const runners = server.runners("connect-json", org.apiKey);
    const idle = await TestRunner.register(server, org.apiKey, { name: "idle runner" });
    const none = await failure(() => runners.parseContextURL({ contextUrl: "https://github.com/a/b" }));
    expect(none.code).toBe(Code.FailedPrecondition);
    expect(none.findDetails(ParseContextURLPreconditionFailureDetailsSchema)[0]?.runnerIds).toEqual([idle.runnerId]);

    const needsAuth = await TestRunner.register(server, org.apiKey, { name: "needs auth" });
    const authWatch = needsAuth.watch({
      transport: server.transport("grpc", needsAuth.accessToken),
      onCall: () => ({
        case: "error",
        value: {
          code: SendResponseRequest_ErrorCode.FAILED_PRECONDITION,
          message: "authentication required",
          details: [anyPack(ParseContextURLPreconditionFailureDetailsSchema, create(ParseContextURLPreconditionFailureDetailsSchema, { authenticationRequiredUrl: "https://auth.example.com", scmId: "github" }))],
        },
      }),
    });
    open.push(authWatch);
    await authWatch.opened;
    const auth = await failure(() => runners.parseContextURL({ contextUrl: "https://github.com/a/b" }));
    expect(auth.code).toBe(Code.FailedPrecondition);
    expect(auth.findDetails(ParseContextURLPreconditionFailureDetailsSchema)[0]).toMatchObject({
      authenticationRequiredUrl: "https://auth.example.com", scmId: "github", runnerIds: [needsAuth.runnerId],
    });

    const able = await TestRunner.register(server, org.apiKey, { name: "able" });
    const ableWatch = able.watch({ transport: server.transport("connect-json", able.accessToken), onCall: echo });
    open.push(ableWatch);
    await ableWatch.opened;
    const answer = await runners.parseContextURL({ contextUrl: "https://github.com/a/picked" });
    expect(answer.originalContextUrl).toBe("https://github.com/a/picked");
  });
});

describe("TLS", () => {
  let dir: string;
  let tlsServer: TestServer;
  let ca: Buffer;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "rcp-channel-tls-"));
    const certFile = join(dir, "cert.pem");
    const keyFile = join(dir, "key.pem");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", keyFile, "-out", certFile,
      "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ], { stdio: "ignore" });
    ca = readFileSync(certFile);
    tlsServer = await startServer({ env: { TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile } });
  });
  afterAll(async () => {
    await tlsServer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const { protocol, httpVersion } of [
    { protocol: "grpc", httpVersion: "2" },
    { protocol: "connect-json", httpVersion: "1.1" },
    { protocol: "connect-binary", httpVersion: "2" },
    { protocol: "grpc-web", httpVersion: "1.1" },
  ] as const) {
    it(`streams and answers over TLS (${protocol}, HTTP/${httpVersion})`, async () => {
      const baseUrl = `https://localhost:${tlsServer.port}`;
      const over = (p: Protocol, token: string | undefined, version?: "1.1" | "2") => transportFor(baseUrl, { protocol: p, httpVersion: version, token, ca });
      const tlsUser = await tlsServer.newUser();
      const runner = await TestRunner.register(tlsServer, tlsUser.apiKey, { transport: (token) => over("grpc", token) });
      const watch = runner.watch({ transport: over(protocol, runner.accessToken, httpVersion), onCall: echo });
      await watch.opened;
      const answer = await createClient(RunnerService, over("connect-json", tlsUser.apiKey)).parseContextURL({ runnerId: runner.runnerId, contextUrl: "https://github.com/a/tls" });
      expect(answer.originalContextUrl).toBe("https://github.com/a/tls");
      await watch.close();
    });
  }
});

// The development runner end to end: the real server (embedded database, or TEST_DATABASE_URL),
// the runner as a real child process (`src/runner-agent/main.ts`), and a real git server on
// 127.0.0.1 (git http-backend, test/git-server.ts) with repositories made here. Users call the
// five delegated RunnerService RPCs through the official SDK and Connect JSON, Connect binary,
// gRPC and gRPC-Web clients; the runner answers them from git. Also: errors with details,
// forged and duplicate answers, a call that times out, the runner killed mid-call, SIGTERM and a
// restart without a second exchange, configuration change events, every runner protocol.
// Three replicas: test/runner-agent-replicas.test.ts. URL parsing: test/runner-agent-units.test.ts.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import Gitpod from "@gitpod/sdk";
import { LogLevel, ParseContextURLPreconditionFailureDetailsSchema, RunnerCapability, RunnerPhase } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { RunnerInteractionService } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { createClient } from "@connectrpc/connect";
import { projectRoot } from "../src/paths.js";
import { failure, protocols, startServer, type Protocol, type TestServer, type TestUser } from "./harness.js";
import { GitServer, type MadeRepo } from "./git-server.js";
import { RunnerProcess, withDeadline } from "./runner-process.js";
import { eventually, TestRunner, transportFor } from "./runner-client.js";

/** How long the server waits for a runner's answer (RUNNER_CALL_TIMEOUT_SECONDS). */
const CALL_TIMEOUT_S = 3;

let server: TestServer;
let git: GitServer;
let user: TestUser;
let other: TestUser;
let widgets: MadeRepo;
let gadgets: MadeRepo;
const runners: RunnerProcess[] = [];
const stateDirs: string[] = [];

/** A new runner of `owner` through the API, and its exchange token. */
async function createRunner(owner: TestUser, name = "dev runner") {
  const { runner, exchangeToken } = await server.runners("connect-json", owner.apiKey).createRunner({ name, provider: RunnerProvider.LINUX_HOST });
  return { runnerId: runner!.runnerId, exchangeToken };
}

function runnerArgs(exchangeToken: string, stateDir: string, extra: string[] = []): string[] {
  return [
    "--url", server.baseUrl,
    "--exchange-token", exchangeToken,
    "--state-dir", stateDir,
    "--repos-dir", git.root,
    "--repos-url", git.url,
    // The test's git server speaks plain git; read its URLs in GitHub's forms too.
    "--scm-host", `127.0.0.1:${git.port}=github`,
    "--heartbeat-seconds", "1",
    "--reconnect-max-seconds", "1",
    "--git-timeout-seconds", "20",
    ...extra,
  ];
}

function startRunner(args: string[]): RunnerProcess {
  const runner = new RunnerProcess(args);
  runners.push(runner);
  return runner;
}

function newStateDir(): string {
  const dir = join(mkdtempSync(join(tmpdir(), "rcp-runner-state-")), "state");
  stateDirs.push(dir);
  return dir;
}

// The main runner of these tests: started once, restarted by the SIGTERM test.
let main: { runnerId: string; exchangeToken: string; stateDir: string; process: RunnerProcess };

beforeAll(async () => {
  git = await new GitServer().start();
  widgets = git.makeRepo("acme/widgets.git", { branches: ["main", "feature/x", "release/2.0"], tags: ["v1.0"], pulls: { 1: "feature/x" } });
  gadgets = git.makeRepo("acme/gadgets.git", { branches: ["trunk"] });
  git.makeRepo("beta/tools.git");
  git.makeRepo("private/secret.git");
  git.makeRepo("solo.git");
  server = await startServer({
    env: { RUNNER_CALL_TIMEOUT_SECONDS: String(CALL_TIMEOUT_S), RUNNER_RELEASES_FILE: join(projectRoot, "docs/examples/runner-releases.json") },
  });
  [user, other] = await Promise.all([server.newUser(), server.newUser()]);
  const created = await createRunner(user);
  const stateDir = newStateDir();
  main = { ...created, stateDir, process: startRunner(runnerArgs(created.exchangeToken, stateDir)) };
  await main.process.waitFor("channel open");
}, 60_000);

afterAll(async () => {
  await Promise.all(runners.map((runner) => runner.kill()));
  await server?.close();
  await git?.close();
  for (const dir of stateDirs) rmSync(join(dir, ".."), { recursive: true, force: true });
});

const sdk = (apiKey: string) => new Gitpod({ bearerToken: apiKey, baseURL: server.baseUrl, maxRetries: 0 });
const repoUrl = (path: string) => `${git.url}/${path}`;

describe("registration", () => {
  it("signs up, reports its version, system and real capabilities, and stays active", async () => {
    const { runner } = await server.runners("grpc", user.apiKey).getRunner({ runnerId: main.runnerId });
    expect(runner!.status!.phase).toBe(RunnerPhase.ACTIVE);
    expect(runner!.status!.version).toBe("0.1.0");
    expect(runner!.status!.systemDetails).toMatch(/^rcp-dev-runner\/0\.1\.0 \(.*node v\d+.*git version/);
    expect(runner!.status!.capabilities.sort()).toEqual([RunnerCapability.LIST_SCM_ORGANIZATIONS, RunnerCapability.CHECK_REPOSITORY_ACCESS].sort());
    // The public key it signed up with is the one in its state directory.
    const publicKey = Buffer.from(readFileSync(join(main.stateDir, "x25519-public-key"), "utf8").trim(), "base64");
    expect(Buffer.from(runner!.status!.publicKey)).toEqual(publicKey);
    // It asked which version to run (docs/examples/runner-releases.json: stable is 2026.11.1).
    expect(main.process.logged("latest version")[0]).toMatchObject({ current: "0.1.0", latest: "2026.11.1", updateAvailable: true, autoUpdate: false });
    // Heartbeats keep coming (every second here).
    await main.process.waitFor("channel open");
    const heartbeats = server.logs.filter((line) => line.includes("MarkRunnerActive")).length;
    await eventually(() => (server.logs.filter((line) => line.includes("MarkRunnerActive")).length >= heartbeats + 2 ? true : undefined), 10_000, "two more heartbeats");
  });

  it("keeps its credentials in files only it can read, and never logs them", () => {
    expect(statSync(main.stateDir).mode & 0o777).toBe(0o700);
    for (const file of ["access-token", "x25519-secret-key", "x25519-public-key", "runner.json"]) {
      expect(statSync(join(main.stateDir, file)).mode & 0o777, file).toBe(0o600);
    }
    const accessToken = readFileSync(join(main.stateDir, "access-token"), "utf8").trim();
    const secretKey = readFileSync(join(main.stateDir, "x25519-secret-key"), "utf8").trim();
    expect(accessToken).toMatch(/^rcpr_/);
    for (const secret of [accessToken, secretKey, main.exchangeToken]) expect(main.process.stdout).not.toContain(secret);
    expect(main.process.lines.every((line) => line.level !== "raw")).toBe(true); // every line is JSON
  });
});

describe("ParseContextURL answered by the runner", () => {
  const sha = (repo: MadeRepo, ref: string) => repo.commits[ref]!;
  const forms: [string, () => Record<string, string>][] = [
    ["acme/widgets", () => ({ branch: "main", commit: sha(widgets, "main"), owner: "acme", repo: "widgets" })],
    ["acme/widgets.git", () => ({ branch: "main", commit: sha(widgets, "main") })],
    ["acme/gadgets", () => ({ branch: "trunk", commit: sha(gadgets, "trunk") })],
    ["acme/widgets/tree/feature/x", () => ({ branch: "feature/x", commit: sha(widgets, "feature/x") })],
    ["acme/widgets/blob/release/2.0/README.md", () => ({ branch: "release/2.0", commit: sha(widgets, "release/2.0") })],
    ["acme/widgets/tree/v1.0", () => ({ tag: "v1.0", branch: "", commit: sha(widgets, "v1.0") })],
    ["acme/widgets/releases/tag/v1.0", () => ({ tag: "v1.0", commit: sha(widgets, "v1.0") })],
  ];

  it.each(forms)("in GitHub's form: %s", async (path, expected) => {
    const { git: context, originalContextUrl, scmId } = await server
      .runners("grpc", user.apiKey)
      .parseContextURL({ runnerId: main.runnerId, contextUrl: repoUrl(path) });
    expect(originalContextUrl).toBe(repoUrl(path));
    expect(scmId).toBe("github");
    expect(context).toMatchObject({ host: `127.0.0.1:${git.port}`, cloneUrl: `${git.url}/acme/${path.split("/")[1]!.replace(/\.git$/, "")}.git`, ...expected() });
  });

  it("a commit, also by a short id", async () => {
    const client = server.runners("connect-binary", user.apiKey);
    const full = sha(widgets, "feature/x");
    for (const id of [full, full.slice(0, 10)]) {
      const { git: context } = await client.parseContextURL({ runnerId: main.runnerId, contextUrl: repoUrl(`acme/widgets/commit/${id}`) });
      expect(context).toMatchObject({ commit: full, branch: "" });
    }
  });

  it("a pull request: its head commit from refs/pull/N/head, and the branch at that commit", async () => {
    const answer = await server.runners("grpc-web", user.apiKey).parseContextURL({ runnerId: main.runnerId, contextUrl: repoUrl("acme/widgets/pull/1") });
    expect(answer.git).toMatchObject({ commit: sha(widgets, "feature/x"), branch: "feature/x" });
    expect(answer.pullRequest).toMatchObject({ id: "1", headSha: sha(widgets, "feature/x"), fromBranch: "feature/x", url: repoUrl("acme/widgets/pull/1") });
    expect(answer.pullRequest!.repository).toMatchObject({ owner: "acme", name: "widgets", cloneUrl: repoUrl("acme/widgets.git") });
    expect(answer.pr).toMatchObject({ id: "1", fromBranch: "feature/x" }); // the deprecated copy, for older clients
  });

  it("an issue: the repository's default branch, and the issue", async () => {
    const answer = await server.runners("connect-json", user.apiKey).parseContextURL({ runnerId: main.runnerId, contextUrl: repoUrl("acme/widgets/issues/12") });
    expect(answer.issue).toMatchObject({ id: "12" });
    expect(answer.git).toMatchObject({ branch: "main", commit: sha(widgets, "main") });
  });

  it("a plain git URL of a host it has no forms for", async () => {
    const url = `http://localhost:${git.port}/beta/tools.git`;
    const answer = await server.runners("grpc", user.apiKey).parseContextURL({ runnerId: main.runnerId, contextUrl: url });
    expect(answer.scmId).toBe("");
    expect(answer.git).toMatchObject({ cloneUrl: url, host: `localhost:${git.port}`, owner: "beta", repo: "tools", branch: "main" });
    expect(answer.git!.commit).toMatch(/^[0-9a-f]{40}$/);
  });

  it("a plain git URL without .git, of a repository a static (dumb HTTP) server has as NAME.git", async () => {
    const url = `http://localhost:${git.port}/dumb/beta/tools`;
    const answer = await server.runners("connect-json", user.apiKey).parseContextURL({ runnerId: main.runnerId, contextUrl: url });
    expect(answer.git).toMatchObject({ cloneUrl: `${url}.git`, repo: "tools", branch: "main" });
    const access = await server.runners("connect-json", user.apiKey).checkRepositoryAccess({ runnerId: main.runnerId, repositoryUrl: url });
    expect(access.hasAccess).toBe(true);
  });

  it("a host that cannot be reached: the context as the URL spells it", async () => {
    const answer = await server.runners("grpc", user.apiKey).parseContextURL({ runnerId: main.runnerId, contextUrl: "https://github.com/gitpod-io/gitpod/tree/main" });
    expect(answer.git).toMatchObject({ cloneUrl: "https://github.com/gitpod-io/gitpod.git", owner: "gitpod-io", repo: "gitpod", branch: "main", commit: "" });
  });

  it("without runner_id: the server picks the organization's connected runner", async () => {
    const answer = await server.runners("connect-json", user.apiKey).parseContextURL({ contextUrl: repoUrl("acme/gadgets") });
    expect(answer.git).toMatchObject({ branch: "trunk", commit: sha(gadgets, "trunk") });
  });
});

describe("every delegated RPC, over every client", () => {
  type Results = {
    parse: { branch?: string; commit?: string };
    access: { hasAccess?: boolean };
    auth: { authenticated?: boolean; scmId?: string; patCreateUrl?: string };
    search: string[];
    next: string;
    orgs: string[];
  };
  async function viaProtocol(protocol: Protocol): Promise<Results> {
    const client = server.runners(protocol, user.apiKey);
    const runnerId = main.runnerId;
    const parse = await client.parseContextURL({ runnerId, contextUrl: repoUrl("acme/widgets/tree/feature/x") });
    const access = await client.checkRepositoryAccess({ runnerId, repositoryUrl: repoUrl("acme/gadgets.git") });
    const auth = await client.checkAuthenticationForHost({ runnerId, host: "github.com" });
    const search = await client.searchRepositories({ runnerId, searchString: "acme", pagination: { pageSize: 1 } });
    const orgs = await client.listSCMOrganizations({ runnerId, scmHost: `127.0.0.1:${git.port}` });
    return {
      parse: { branch: parse.git?.branch, commit: parse.git?.commit },
      access: { hasAccess: access.hasAccess },
      auth: { authenticated: auth.authenticated, scmId: auth.scmId, patCreateUrl: auth.supportsPat?.createUrl },
      search: search.repositories.map((r) => `${r.name} ${r.url}`),
      next: search.pagination?.nextToken ?? "",
      orgs: orgs.organizations.map((o) => o.name),
    };
  }

  /** The official SDK: its methods where 0.6.0 has them, its generic post() for the others. */
  async function viaSdk(): Promise<Results> {
    const client = sdk(user.apiKey);
    const runnerId = main.runnerId;
    const parse = await client.runners.parseContextURL({ runnerId, contextUrl: repoUrl("acme/widgets/tree/feature/x") });
    const auth = await client.runners.checkAuthenticationForHost({ runnerId, host: "github.com" });
    const post = <T>(method: string, body: object) => client.post<T>(`/gitpod.v1.RunnerService/${method}`, { body });
    const access = await post<{ hasAccess?: boolean }>("CheckRepositoryAccess", { runnerId, repositoryUrl: repoUrl("acme/gadgets.git") });
    const search = await post<{ repositories: { name: string; url: string }[]; pagination?: { nextToken?: string } }>("SearchRepositories", { runnerId, searchString: "acme", pagination: { pageSize: 1 } });
    const orgs = await post<{ organizations: { name: string }[] }>("ListSCMOrganizations", { runnerId, scmHost: `127.0.0.1:${git.port}` });
    return {
      parse: { branch: parse.git?.branch, commit: parse.git?.commit },
      access: { hasAccess: access.hasAccess },
      // JSON leaves out false, as proto3 JSON does.
      auth: { authenticated: auth.authenticated ?? false, scmId: auth.scmId, patCreateUrl: auth.supportsPat?.createUrl },
      search: search.repositories.map((r) => `${r.name} ${r.url}`),
      next: search.pagination?.nextToken ?? "",
      orgs: orgs.organizations.map((o) => o.name),
    };
  }

  it.each([...protocols, "sdk"] as const)("%s", async (protocol) => {
    const results = protocol === "sdk" ? await viaSdk() : await viaProtocol(protocol);
    expect(results).toEqual({
      parse: { branch: "feature/x", commit: widgets.commits["feature/x"] },
      access: { hasAccess: true },
      auth: { authenticated: false, scmId: "github", patCreateUrl: "https://github.com/settings/tokens/new?scopes=repo" },
      search: [`acme/gadgets ${repoUrl("acme/gadgets.git")}`],
      next: "2/2/2",
      orgs: ["acme", "beta", "private"],
    });
  });

  it("pages through SearchRepositories and searches by keyword and by glob", async () => {
    const client = server.runners("grpc", user.apiKey);
    const runnerId = main.runnerId;
    const second = await client.searchRepositories({ runnerId, searchString: "acme", pagination: { pageSize: 1, token: "2/2/2" } });
    expect(second.repositories.map((r) => r.name)).toEqual(["acme/widgets"]);
    expect(second.pagination?.nextToken).toBe("");
    const all = await client.searchRepositories({ runnerId });
    expect(all.repositories.map((r) => r.name)).toEqual(["acme/gadgets", "acme/widgets", "beta/tools", "private/secret", "solo"]);
    const glob = await client.searchRepositories({ runnerId, searchString: "*/t*s", searchMode: 2 });
    expect(glob.repositories.map((r) => r.name)).toEqual(["beta/tools"]);
    const words = await client.searchRepositories({ runnerId, searchString: "ACME widg" });
    expect(words.repositories.map((r) => r.name)).toEqual(["acme/widgets"]);
    const orgs = await client.listSCMOrganizations({ runnerId, scmHost: `127.0.0.1:${git.port}`, query: "ET" });
    expect(orgs.organizations.map((o) => o.name)).toEqual(["beta"]);
  });

  it("says a user is authenticated where no authentication is needed: its own repository host", async () => {
    const answer = await server.runners("grpc", user.apiKey).checkAuthenticationForHost({ runnerId: main.runnerId, host: `127.0.0.1:${git.port}` });
    expect(answer).toMatchObject({ authenticated: true, scmName: "Git" });
  });
});

describe("failures are statuses, with the runner's details", () => {
  it.each(["grpc", "connect-json"] as const)("over %s", async (protocol) => {
    const client = server.runners(protocol, user.apiKey);
    const runnerId = main.runnerId;

    const missingRepo = await failure(client.parseContextURL({ runnerId, contextUrl: repoUrl("acme/nothing") }));
    expect(missingRepo.code).toBe(Code.NotFound);
    expect(missingRepo.rawMessage).toContain("acme/nothing.git not found");

    const missingBranch = await failure(client.parseContextURL({ runnerId, contextUrl: repoUrl("acme/widgets/tree/no-such-branch") }));
    expect(missingBranch.code).toBe(Code.NotFound);
    expect(missingBranch.rawMessage).toContain('no branch, tag or commit "no-such-branch"');

    const missingPull = await failure(client.parseContextURL({ runnerId, contextUrl: repoUrl("acme/widgets/pull/99") }));
    expect(missingPull.code).toBe(Code.NotFound);

    const notARepo = await failure(client.parseContextURL({ runnerId, contextUrl: repoUrl("acme") }));
    expect(notARepo.code).toBe(Code.InvalidArgument);
    expect(notARepo.rawMessage).toContain("names no GitHub repository");

    // A repository behind authentication: failed_precondition with ParseContextURLPreconditionFailureDetails.
    const locked = await failure(client.parseContextURL({ runnerId, contextUrl: repoUrl("private/secret") }));
    expect(locked.code).toBe(Code.FailedPrecondition);
    expect(locked.rawMessage).toContain("authentication required");
    const [details] = locked.findDetails(ParseContextURLPreconditionFailureDetailsSchema);
    expect(details).toMatchObject({ scmId: "github", authenticationRequiredUrl: `${git.url}/settings/tokens/new?scopes=repo` });

    const lockedAccess = await failure(client.checkRepositoryAccess({ runnerId, repositoryUrl: repoUrl("private/secret.git") }));
    expect(lockedAccess.code).toBe(Code.FailedPrecondition);
    const noAccess = await client.checkRepositoryAccess({ runnerId, repositoryUrl: repoUrl("acme/nothing.git") });
    expect(noAccess.hasAccess).toBe(false);
    expect(noAccess.errorMessage).toMatch(/^repository not found: /);

    const elsewhere = await failure(client.searchRepositories({ runnerId, scmHost: "github.com" }));
    expect(elsewhere.code).toBe(Code.Unimplemented);
    expect(elsewhere.rawMessage).toContain("lists only the repositories of 127.0.0.1");
    const badToken = await failure(client.listSCMOrganizations({ runnerId, scmHost: `127.0.0.1:${git.port}`, pagination: { token: "nonsense" } }));
    expect(badToken.code).toBe(Code.InvalidArgument);
  });

  it("another organization's runner is not_found", async () => {
    for (const protocol of protocols) {
      const err = await failure(server.runners(protocol, other.apiKey).parseContextURL({ runnerId: main.runnerId, contextUrl: repoUrl("acme/widgets") }));
      expect(err.code, protocol).toBe(Code.NotFound);
    }
    const viaSdk = await sdk(other.apiKey).runners.parseContextURL({ runnerId: main.runnerId, contextUrl: repoUrl("acme/widgets") }).catch((err: unknown) => err);
    expect(viaSdk).toMatchObject({ status: 404 });
  });
});

describe("answers the control plane does not take", () => {
  it("refuses a forged answer from another runner and a second answer, and the caller gets the runner's own", async () => {
    const client = server.runners("grpc", user.apiKey);
    const contextUrl = repoUrl("slow/held");
    const pending = client.parseContextURL({ runnerId: main.runnerId, contextUrl }, { timeoutMs: 20_000 });
    const received = await main.process.waitFor("call received", { contextUrl });
    const requestId = received.requestId as string;

    // Another runner of the same organization answers the call: refused, nothing changes.
    const intruder = await TestRunner.register(server, user.apiKey);
    const forged = await failure(
      intruder.client(transportFor(server.baseUrl, { protocol: "grpc", token: intruder.accessToken })).sendResponse({
        runnerId: intruder.runnerId,
        requestId,
        response: { case: "callParseContext", value: { resp: { originalContextUrl: "forged" } } },
      }),
    );
    expect(forged.code).toBe(Code.NotFound);

    // The git host answers at last (503): the runner answers with the context as the URL spells it.
    git.release();
    const answer = await pending;
    expect(answer.originalContextUrl).toBe(contextUrl);
    expect(answer.git).toMatchObject({ owner: "slow", repo: "held", commit: "" });
    await main.process.waitFor("call answered", { requestId });

    // The runner's own credentials, the same call again: already answered.
    const accessToken = readFileSync(join(main.stateDir, "access-token"), "utf8").trim();
    const own = createClient(RunnerInteractionService, transportFor(server.baseUrl, { protocol: "connect-json", token: accessToken }));
    const duplicate = await failure(own.sendResponse({ runnerId: main.runnerId, requestId, response: { case: "callParseContext", value: { resp: {} } } }));
    expect(duplicate.code).toBe(Code.AlreadyExists);
  });

  it("a call the runner does not answer in time is deadline_exceeded; its late answer is refused", async () => {
    const contextUrl = repoUrl("slow/late");
    const started = performance.now();
    const err = await failure(server.runners("connect-binary", user.apiKey).parseContextURL({ runnerId: main.runnerId, contextUrl }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(performance.now() - started).toBeGreaterThanOrEqual(CALL_TIMEOUT_S * 1000 - 100);
    const received = await main.process.waitFor("call received", { contextUrl });
    git.release();
    await main.process.waitFor("the control plane did not take the answer", { requestId: received.requestId });
  });
});

describe("configuration", () => {
  it("re-reads its configuration when it changes, and opens the secrets sealed to its key", async () => {
    const reads = () => server.logs.filter((line) => line.includes("RunnerInteractionService/GetRunnerConfiguration")).length;
    const before = reads();
    const events = main.process.logged("configuration read", { reason: "event" }).length;
    await server.runners("connect-json", user.apiKey).updateRunner({
      runnerId: main.runnerId,
      spec: {
        configuration: {
          logLevel: LogLevel.DEBUG,
          autoUpdate: true,
          metrics: { enabled: true, url: "https://metrics.example.com/api/v1/write", username: "runner-metrics", password: "s3cret-metrics-password" },
        },
      },
    });
    await main.process.waitFor("event", { event: "eventRunnerConfigurationChange" });
    // The server saw the runner read its configuration again.
    await eventually(() => (reads() > before ? true : undefined), 10_000, "GetRunnerConfiguration after the event");
    const read = await main.process.waitFor("configuration read", { reason: "event" }, events + 1);
    expect(read).toMatchObject({
      logLevel: "DEBUG",
      autoUpdate: true,
      metricsEnabled: true,
      metricsUrl: "https://metrics.example.com/api/v1/write",
      // Sealed to the runner's X25519 key by the server (crypto_box_seal); only the runner opens them.
      metricsUsername: "opened",
      metricsPassword: "opened",
      honeycombApiKey: "none",
    });
    expect(read.changed).toEqual(expect.arrayContaining(["logLevel", "autoUpdate", "metricsEnabled", "metricsUsername", "metricsPassword"]));
    expect(main.process.stdout).not.toContain("s3cret-metrics-password");
    // autoUpdate changed: it asks for the latest version again, and says it does not update itself.
    await main.process.waitFor("latest version", { autoUpdate: true });
    await main.process.waitFor("a newer runner version is available; the development runner does not update itself: update this checkout and restart it");
    // It follows the configuration's log level: debug lines (heartbeats) appear.
    await main.process.waitFor("heartbeat", {}, 1, 10_000);
  });
});

describe("stopping, dying and restarting", () => {
  it("stops cleanly on SIGTERM, is unavailable while gone, and restarts without a second exchange", async () => {
    const exchanges = () => server.logs.filter((line) => line.includes("IdentityService/ExchangeToken")).length;
    const exchangesBefore = exchanges();
    const tokenBefore = readFileSync(join(main.stateDir, "access-token"), "utf8");

    expect(await main.process.stop()).toBe(0);
    expect(main.process.logged("reported status", { degredationMessage: "stopped (SIGTERM)" })).toHaveLength(1);
    expect(main.process.logged("stopped", { exitCode: 0 })).toHaveLength(1);
    const { runner } = await server.runners("grpc", user.apiKey).getRunner({ runnerId: main.runnerId });
    expect(runner!.status).toMatchObject({ phase: RunnerPhase.DEGRADED, message: "stopped (SIGTERM)" });

    // No stream: the call is unavailable at once, naming the runner.
    const gone = await failure(server.runners("grpc", user.apiKey).parseContextURL({ runnerId: main.runnerId, contextUrl: repoUrl("acme/widgets") }));
    expect(gone.code).toBe(Code.Unavailable);
    expect(gone.rawMessage).toContain(main.runnerId);

    // The same command line again, with the spent exchange token: no exchange, same runner.
    main.process = startRunner(runnerArgs(main.exchangeToken, main.stateDir, ["--protocol", "connect"]));
    await main.process.waitFor("--exchange-token was exchanged before: using the saved access token");
    await main.process.waitFor("channel open");
    expect(main.process.logged("exchanged the exchange token for an access token")).toHaveLength(0);
    expect(exchanges()).toBe(exchangesBefore);
    expect(readFileSync(join(main.stateDir, "access-token"), "utf8")).toBe(tokenBefore);
    await main.process.waitFor("signed up", { runnerId: main.runnerId, protocol: "connect" });
    const answer = await server.runners("grpc", user.apiKey).parseContextURL({ runnerId: main.runnerId, contextUrl: repoUrl("acme/widgets") });
    expect(answer.git!.branch).toBe("main");
    const { runner: after } = await server.runners("grpc", user.apiKey).getRunner({ runnerId: main.runnerId });
    expect(after!.status).toMatchObject({ phase: RunnerPhase.ACTIVE, message: "" });
  });

  it("killed mid-call: the caller gets a clear status, never a hang; a new process takes over", async () => {
    const contextUrl = repoUrl("slow/killed");
    const started = performance.now();
    const pending = failure(server.runners("grpc", user.apiKey).parseContextURL({ runnerId: main.runnerId, contextUrl }));
    await main.process.waitFor("call received", { contextUrl });
    await main.process.kill();
    const err = await withDeadline(pending, (CALL_TIMEOUT_S + 5) * 1000, "the caller did not get an answer");
    expect([Code.Unavailable, Code.DeadlineExceeded]).toContain(err.code);
    expect(performance.now() - started).toBeLessThan((CALL_TIMEOUT_S + 5) * 1000);
    git.release();

    main.process = startRunner(runnerArgs(main.exchangeToken, main.stateDir));
    await main.process.waitFor("removing a stale lock");
    await main.process.waitFor("channel open");
    const answer = await server.runners("grpc", user.apiKey).parseContextURL({ runnerId: main.runnerId, contextUrl: repoUrl("acme/gadgets") });
    expect(answer.git!.branch).toBe("trunk");
  });

  it("replaces a refused access token with a new exchange token (CreateRunnerToken)", async () => {
    const { runnerId, exchangeToken } = await createRunner(user, "renewed");
    const stateDir = newStateDir();
    const first = startRunner(runnerArgs(exchangeToken, stateDir));
    await first.waitFor("channel open");
    expect(await first.stop()).toBe(0);
    // A token the control plane does not know (as after a revocation) in the state directory.
    writeFileSync(join(stateDir, "access-token"), `rcpr_${"x".repeat(43)}000000\n`, { mode: 0o600 });
    const { exchangeToken: renewed } = await server.runners("grpc", user.apiKey).createRunnerToken({ runnerId });
    const second = startRunner(runnerArgs(renewed, stateDir));
    await second.waitFor("the saved access token was refused; exchanging the new --exchange-token");
    await second.waitFor("channel open");
    expect(readFileSync(join(stateDir, "access-token"), "utf8")).not.toContain("xxxx");
    const answer = await server.runners("grpc", user.apiKey).parseContextURL({ runnerId, contextUrl: repoUrl("acme/gadgets") });
    expect(answer.git!.branch).toBe("trunk");
    expect(await second.stop()).toBe(0);
  });

  it("prints its help, and names a bad option (exit code 2)", async () => {
    const help = startRunner(["--help"]);
    const bad = startRunner(["--url", server.baseUrl, "--heartbeat-seconds", "often"]);
    expect(await withDeadline(help.exited, 15_000, "--help did not exit")).toBe(0);
    expect(help.stdout).toMatch(/^Usage: npm run runner -- --url URL/);
    expect(await withDeadline(bad.exited, 15_000, "a bad option did not exit")).toBe(2);
    expect(bad.stderr).toContain('--heartbeat-seconds must be a number of seconds from 0.05 to 3600, not "often"');
  });

  it("refuses to start without credentials, and stops with exit code 1 when its runner is deleted", async () => {
    const empty = startRunner(["--url", server.baseUrl, "--state-dir", newStateDir()]);
    const { runnerId, exchangeToken } = await createRunner(user, "doomed");
    const doomed = startRunner(runnerArgs(exchangeToken, newStateDir()));
    expect(await withDeadline(empty.exited, 15_000, "the runner did not exit")).toBe(1);
    expect(empty.logged("stopped", { exitCode: 1 })).toHaveLength(1);
    expect(empty.lines.find((line) => line.level === "error")!.msg).toMatch(/no access token .* and no --exchange-token/);

    await doomed.waitFor("channel open");
    await server.runners("grpc", user.apiKey).deleteRunner({ runnerId });
    expect(await withDeadline(doomed.exited, 15_000, "the deleted runner did not exit")).toBe(1);
    expect(doomed.lines.some((line) => line.level === "error" && /refused the runner's access token/.test(line.msg))).toBe(true);
  });
});

describe("the runner over every protocol it speaks", () => {
  // Started together: each is a process of its own (local `expect`, as concurrent tests need).
  it.concurrent.for([
    ["grpc", []],
    ["connect", []],
    ["connect", ["--http-version", "1.1"]],
    ["connect-json", []],
    ["grpc-web", []],
    ["grpc-web", ["--http-version", "2"]],
  ] as const)("%s %j", async ([protocol, extra], { expect }) => {
    const { runnerId, exchangeToken } = await createRunner(user, `runner over ${protocol}`);
    const runner = startRunner(runnerArgs(exchangeToken, newStateDir(), ["--protocol", protocol, ...extra]));
    await runner.waitFor("channel open", {}, 1, 20_000);
    const answer = await server.runners("grpc", user.apiKey).parseContextURL({ runnerId, contextUrl: repoUrl("acme/widgets/tree/v1.0") });
    expect(answer.git).toMatchObject({ tag: "v1.0", commit: widgets.commits["v1.0"] });
    expect(await runner.stop()).toBe(0);
  });
});

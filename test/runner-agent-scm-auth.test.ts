// The development runner with users' SCM credentials, end to end: the real server, the runner as
// a real child process, and git http-backend behind HTTP Basic authentication on 127.0.0.1
// (test/git-server.ts, /private/…). A private repository is reachable through the delegated
// CheckRepositoryAccess and ParseContextURL only after the user stored a personal access token
// for the host (CreateHostAuthenticationToken); CheckAuthenticationForHost says so truthfully and
// names the PAT method of the runner's SCM integration; the token appears in no log line of the
// server or the runner, nor in any table.
//
//   npx vitest run test/runner-agent-scm-auth.test.ts
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { HostAuthenticationTokenSource, RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { failure, startServer, type TestServer, type TestUser } from "./harness.js";
import { GitServer } from "./git-server.js";
import { RunnerProcess } from "./runner-process.js";

const PAT = "glpat-EndToEndSecretToken-7f3a9c1e5b";

let server: TestServer;
let git: GitServer;
let user: TestUser;
let other: TestUser;
let runner: RunnerProcess;
let runnerId: string;
let stateRoot: string;
let host: string;

beforeAll(async () => {
  // The runner sends "git" as the user name of a token for a plain git host.
  git = await new GitServer({ user: "git", password: PAT }).start();
  git.makeRepo("private/secret.git", { branches: ["main"] });
  host = `127.0.0.1:${git.port}`;
  server = await startServer({ env: { RUNNER_CALL_TIMEOUT_SECONDS: "20" } });
  user = await server.newUser();
  other = await server.newUser(user.organizationSlug);
  const { runner: created, exchangeToken } = await server.runners("connect-json", user.apiKey).createRunner({ name: "scm auth runner", provider: RunnerProvider.LINUX_HOST });
  runnerId = created!.runnerId;
  stateRoot = mkdtempSync(join(tmpdir(), "rcp-runner-state-"));
  // No --repos-url: no host counts as open, every credential comes from the control plane.
  runner = new RunnerProcess([
    "--url", server.baseUrl, "--exchange-token", exchangeToken, "--state-dir", join(stateRoot, "state"),
    "--heartbeat-seconds", "1", "--reconnect-max-seconds", "1", "--git-timeout-seconds", "20",
  ]);
  await runner.waitFor("channel open");
}, 60_000);

afterAll(async () => {
  await runner?.kill();
  await server?.close();
  await git?.close();
  if (stateRoot) rmSync(stateRoot, { recursive: true, force: true });
});

describe("a private repository behind basic authentication", () => {
  it("is refused before the user stored a token, and CheckAuthenticationForHost says not authenticated", async () => {
    const runners = server.runners("connect-binary", user.apiKey);
    const denied = await failure(runners.checkRepositoryAccess({ runnerId, repositoryUrl: `${git.url}/private/secret.git` }));
    expect(denied.code).toBe(Code.FailedPrecondition);
    expect(denied.rawMessage).toContain("authentication required");
    const auth = await runners.checkAuthenticationForHost({ runnerId, host });
    expect(auth.authenticated).toBe(false);
  });

  it("is reachable once the user stored a token, for that user only", async () => {
    const configuration = server.configuration("connect-json", user.apiKey);
    await configuration.createSCMIntegration({ runnerId, scmId: "gitlab", host, pat: true });
    await configuration.createHostAuthenticationToken({ runnerId, host, token: PAT, source: HostAuthenticationTokenSource.PAT });

    for (const protocol of ["connect-json", "connect-binary", "grpc", "grpc-web"] as const) {
      const runners = server.runners(protocol, user.apiKey);
      const access = await runners.checkRepositoryAccess({ runnerId, repositoryUrl: `${git.url}/private/secret.git` });
      expect({ protocol, access: access.hasAccess }).toEqual({ protocol, access: true });
      const context = await runners.parseContextURL({ runnerId, contextUrl: `${git.url}/private/secret.git` });
      expect(context.git?.branch).toBe("main");
      expect(context.git?.commit).toMatch(/^[0-9a-f]{40}$/);
      const auth = await runners.checkAuthenticationForHost({ runnerId, host });
      // The SCM and the PAT method come from the runner's integration (gitlab).
      expect(auth).toMatchObject({ authenticated: true, scmId: "gitlab", scmName: "GitLab", supportsPat: { requiredScopes: ["read_repository"] } });
      expect(auth.supportsPat?.createUrl).toContain(`https://${host}/-/user_settings/personal_access_tokens`);
    }

    // Another member of the organization, who stored no token, still gets no access.
    const theirs = await failure(server.runners("grpc", other.apiKey).checkRepositoryAccess({ runnerId, repositoryUrl: `${git.url}/private/secret.git` }));
    expect(theirs.code).toBe(Code.FailedPrecondition);
    expect((await server.runners("grpc", other.apiKey).checkAuthenticationForHost({ runnerId, host })).authenticated).toBe(false);
  });

  it("is refused again once the token is deleted", async () => {
    const configuration = server.configuration("grpc", user.apiKey);
    const { tokens } = await configuration.listHostAuthenticationTokens({ filter: { runnerId } });
    await configuration.deleteHostAuthenticationToken({ id: tokens[0]!.id });
    await runner.waitFor("event", { event: "eventHostAuthenticationTokenDeleted" });
    const denied = await failure(server.runners("grpc", user.apiKey).checkRepositoryAccess({ runnerId, repositoryUrl: `${git.url}/private/secret.git` }));
    expect(denied.code).toBe(Code.FailedPrecondition);
  });

  it("the token is in no log line of the server or the runner, and in no table", async () => {
    expect(server.logs.join("\n")).not.toContain(PAT);
    expect(runner.stdout).not.toContain(PAT);
    expect(runner.stderr).not.toContain(PAT);
    const { rows: tables } = await server.db.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    );
    for (const { table_name } of tables) {
      const { rows } = await server.db.query<{ row: string }>(`SELECT t::text AS row FROM "${table_name}" t`);
      for (const { row } of rows) expect(row.includes(PAT), table_name).toBe(false);
    }
  });
});

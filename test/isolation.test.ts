// Tenant and runner isolation as a matrix: every RPC of RunnerService (16), IdentityService (3)
// and RunnerInteractionService (8), called by each kind of caller, gets the code in the table
// below. The requests aim at runner A (organization A) wherever they name a runner. Protocols
// rotate from cell to cell, so the matrix covers Connect JSON/binary, gRPC and gRPC-Web.
// Afterwards: nothing another caller attempted changed runner A, and "not found" for another
// organization's runner is byte for byte the answer for a runner that does not exist.
// (test/lifecycle.test.ts checks the individual rules in depth; this is the full grid.)
//
//   npx vitest run test/isolation.test.ts
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { create, toBinary, type DescService } from "@bufbuild/protobuf";
import { RunnerService, type Runner } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { IdentityService, Principal } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerInteractionService } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { issueApiKey } from "../src/domain/accounts.js";
import { IdentityStore } from "../src/store/identity-store.js";
import { frame, outcomeOf, RawClient } from "./raw-rpc.js";
import { postJson, protocols, startServer, type TestServer, type TestUser } from "./harness.js";

// --- The matrix ---------------------------------------------------------------------------------
const callers = ["userA", "userB", "runnerA", "runnerB", "runnerOrgB", "noToken", "revokedKey", "deletedRunner"] as const;
type Caller = (typeof callers)[number];

const OK = "OK";
const NF = "NotFound";
const PD = "PermissionDenied";
const UA = "Unauthenticated";
const UI = "Unimplemented";
const UV = "Unavailable";
const FP = "FailedPrecondition";
type Expected = typeof OK | typeof NF | typeof PD | typeof UA | typeof UI | typeof UV | typeof FP;

// userA, userB: users of organizations A and B. runnerA, runnerB: runners of organization A
// (runner A is the target). runnerOrgB: a runner of organization B. revokedKey: an API key of
// organization A, revoked. deletedRunner: the access token of a deleted runner of organization A.
//
//                                                   userA userB runnerA runnerB runnerOrgB noToken revokedKey deletedRunner
const matrix: Record<string, Expected[]> = {
  "RunnerService.CreateRunner":                      [OK,   OK,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.GetRunner":                         [OK,   NF,   OK,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.ListRunners":                       [OK,   OK,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.UpdateRunner":                      [OK,   NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.DeleteRunner":                      [OK,   NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.CreateRunnerToken":                 [OK,   NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.CreateRunnerLogsToken":             [UI,   UI,   UI,     UI,     UI,        UA,     UA,        UA],
  // Relayed to runner A, which has no open stream (unavailable) and advertises no capability (unimplemented).
  "RunnerService.ParseContextURL":                   [UV,   NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.SearchRepositories":                [UV,   NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.ListSCMOrganizations":              [UI,   NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.CheckAuthenticationForHost":        [UV,   NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.CheckRepositoryAccess":             [UI,   NF,   PD,     PD,     PD,        UA,     UA,        UA],
  "RunnerService.ListRunnerPolicies":                [UI,   UI,   UI,     UI,     UI,        UA,     UA,        UA],
  "RunnerService.CreateRunnerPolicy":                [UI,   UI,   UI,     UI,     UI,        UA,     UA,        UA],
  "RunnerService.UpdateRunnerPolicy":                [UI,   UI,   UI,     UI,     UI,        UA,     UA,        UA],
  "RunnerService.DeleteRunnerPolicy":                [UI,   UI,   UI,     UI,     UI,        UA,     UA,        UA],
  // ExchangeToken authenticates by the exchange token in its body; the Authorization header is ignored.
  "IdentityService.ExchangeToken":                   [OK,   OK,   OK,     OK,     OK,        OK,     OK,        OK],
  "IdentityService.GetAuthenticatedIdentity":        [OK,   OK,   OK,     OK,     OK,        UA,     UA,        UA],
  "IdentityService.GetIDToken":                      [UI,   UI,   UI,     UI,     UI,        UA,     UA,        UA],
  "RunnerInteractionService.Signup":                 [PD,   PD,   OK,     OK,     OK,        UA,     UA,        UA],
  "RunnerInteractionService.MarkRunnerActive":       [PD,   PD,   OK,     PD,     PD,        UA,     UA,        UA],
  "RunnerInteractionService.UpdateRunnerStatus":     [PD,   PD,   OK,     PD,     PD,        UA,     UA,        UA],
  "RunnerInteractionService.WatchRequests":          [PD,   PD,   OK,     PD,     PD,        UA,     UA,        UA],
  // A request id no call of runner A has.
  "RunnerInteractionService.SendResponse":           [PD,   PD,   NF,     PD,     PD,        UA,     UA,        UA],
  "RunnerInteractionService.GetLatestVersion":       [PD,   PD,   OK,     PD,     PD,        UA,     UA,        UA],
  "RunnerInteractionService.GetRunnerConfiguration": [PD,   PD,   OK,     PD,     PD,        UA,     UA,        UA],
  // Runner A has no managed metrics.
  "RunnerInteractionService.ReportRunnerMetrics":    [PD,   PD,   FP,     PD,     PD,        UA,     UA,        UA],
};

// --- Fixtures -------------------------------------------------------------------------------------
let server: TestServer;
let userA: TestUser;
let userB: TestUser;
let runnerA: { runnerId: string; accessToken: string };
const tokens = {} as Record<Caller, string | undefined>;
/** Runners created to be deleted by one cell each, and what that cell got. */
const victims: { runnerId: string; caller: Caller; code: string }[] = [];

const PUBLIC_KEY = new Uint8Array(32).fill(9);

async function newRunner(user: TestUser) {
  const { runner, exchangeToken } = await server.runners("connect-json", user.apiKey).createRunner({ name: "isolation runner", provider: RunnerProvider.AWS_EC2 });
  const { accessToken } = await server.identity("connect-json").exchangeToken({ exchangeToken });
  await server.interaction("connect-json", accessToken).signup({ publicKey: PUBLIC_KEY });
  return { runnerId: runner!.runnerId, accessToken };
}

beforeAll(async () => {
  server = await startServer();
  userA = await server.newUser();
  userB = await server.newUser();
  runnerA = await newRunner(userA);
  const runnerB = await newRunner(userA);
  const runnerOrgB = await newRunner(userB);
  const deleted = await newRunner(userA);
  await server.identity("grpc", deleted.accessToken).getAuthenticatedIdentity({}); // known (and cached) before the delete
  await server.runners("connect-json", userA.apiKey).deleteRunner({ runnerId: deleted.runnerId });
  const identities = new IdentityStore(server.db);
  const revoked = await issueApiKey(identities, server.clock, { organizationSlug: userA.organizationSlug, userEmail: "revoked@example.com" });
  await server.identity("grpc", revoked.apiKey).getAuthenticatedIdentity({});
  await identities.revokeApiKey(revoked.id, server.clock.now());
  Object.assign(tokens, {
    userA: userA.apiKey,
    userB: userB.apiKey,
    runnerA: runnerA.accessToken,
    runnerB: runnerB.accessToken,
    runnerOrgB: runnerOrgB.accessToken,
    noToken: undefined,
    revokedKey: revoked.apiKey,
    deletedRunner: deleted.accessToken,
  });
});
afterAll(() => server?.close());

/** The request each RPC gets; it names runner A wherever a runner is named, and passes validation. */
const requests: Record<string, (caller: Caller) => Promise<object> | object> = {
  "RunnerService.CreateRunner": (caller) => ({ name: `created by ${caller}`, provider: RunnerProvider.GCP }),
  "RunnerService.GetRunner": () => ({ runnerId: runnerA.runnerId }),
  "RunnerService.ListRunners": () => ({}),
  "RunnerService.UpdateRunner": (caller) => ({ runnerId: runnerA.runnerId, name: `renamed by ${caller}` }),
  // Each cell deletes its own runner of organization A, so that one success does not change the next cell.
  "RunnerService.DeleteRunner": async () => ({ runnerId: (await newRunner(userA)).runnerId }),
  "RunnerService.CreateRunnerToken": () => ({ runnerId: runnerA.runnerId }),
  "RunnerService.CreateRunnerLogsToken": () => ({ runnerId: runnerA.runnerId }),
  "RunnerService.ParseContextURL": () => ({ runnerId: runnerA.runnerId, contextUrl: "https://github.com/gitpod-io/gitpod" }),
  "RunnerService.SearchRepositories": () => ({ runnerId: runnerA.runnerId, searchString: "x" }),
  "RunnerService.ListSCMOrganizations": () => ({ runnerId: runnerA.runnerId, scmHost: "github.com" }),
  "RunnerService.CheckAuthenticationForHost": () => ({ runnerId: runnerA.runnerId, host: "github.com" }),
  "RunnerService.CheckRepositoryAccess": () => ({ runnerId: runnerA.runnerId, repositoryUrl: "https://github.com/gitpod-io/gitpod" }),
  "RunnerService.ListRunnerPolicies": () => ({ runnerId: runnerA.runnerId }),
  "RunnerService.CreateRunnerPolicy": () => ({ runnerId: runnerA.runnerId, groupId: randomUUID() }),
  "RunnerService.UpdateRunnerPolicy": () => ({ runnerId: runnerA.runnerId, groupId: randomUUID() }),
  "RunnerService.DeleteRunnerPolicy": () => ({ runnerId: runnerA.runnerId, groupId: randomUUID() }),
  // A fresh exchange token of runner A per cell.
  "IdentityService.ExchangeToken": async () => ({
    exchangeToken: (await server.runners("connect-json", userA.apiKey).createRunnerToken({ runnerId: runnerA.runnerId })).exchangeToken,
  }),
  "IdentityService.GetAuthenticatedIdentity": () => ({}),
  "IdentityService.GetIDToken": () => ({ audience: ["https://example.com"] }),
  "RunnerInteractionService.Signup": () => ({ publicKey: PUBLIC_KEY }),
  "RunnerInteractionService.MarkRunnerActive": () => ({ runnerId: runnerA.runnerId }),
  "RunnerInteractionService.UpdateRunnerStatus": (caller) => ({ runnerId: runnerA.runnerId, version: `reported by ${caller}` }),
  "RunnerInteractionService.WatchRequests": () => ({ runnerId: runnerA.runnerId }),
  "RunnerInteractionService.SendResponse": () => ({ runnerId: runnerA.runnerId, requestId: randomUUID(), response: { case: "callPing", value: {} } }),
  "RunnerInteractionService.GetLatestVersion": () => ({ runnerId: runnerA.runnerId }),
  "RunnerInteractionService.GetRunnerConfiguration": () => ({ runnerId: runnerA.runnerId }),
  "RunnerInteractionService.ReportRunnerMetrics": () => ({ runnerId: runnerA.runnerId, compressedMetrics: new Uint8Array([1]) }),
};

const services: DescService[] = [RunnerService, IdentityService, RunnerInteractionService];
const rpcs = services.flatMap((service) => service.methods.map((method) => ({ name: `${service.name}.${method.name}`, service, method })));

describe("the matrix", () => {
  it("lists every RPC of the three services, each with a request", () => {
    expect(rpcs).toHaveLength(16 + 3 + 8);
    expect(Object.keys(matrix).sort()).toEqual(rpcs.map((rpc) => rpc.name).sort());
    expect(Object.keys(requests).sort()).toEqual(rpcs.map((rpc) => rpc.name).sort());
    for (const row of Object.values(matrix)) expect(row).toHaveLength(callers.length);
  });

  describe.each(rpcs.map((rpc, row) => [rpc.name, rpc, row] as const))("%s", (name, rpc, row) => {
    it.each(callers.map((caller, column) => [caller, column] as const))("as %s", async (caller, column) => {
      const protocol = protocols[(row * callers.length + column) % protocols.length]!;
      const client = createClient(rpc.service, server.transport(protocol, tokens[caller])) as unknown as Record<
        string,
        (request: object) => Promise<Record<string, unknown>>
      >;
      const request = await requests[name]!(caller);
      let code: string = OK;
      let response: Record<string, unknown> | undefined;
      try {
        if (rpc.method.methodKind === "server_streaming") {
          // A stream that opens (its first message arrives) is OK; stop reading then.
          const stream = client[rpc.method.localName]!(request) as unknown as AsyncIterable<Record<string, unknown>>;
          for await (const message of stream) {
            response = message;
            break;
          }
        } else {
          response = await client[rpc.method.localName]!(request);
        }
      } catch (err) {
        code = Code[ConnectError.from(err).code];
      }
      if (name === "RunnerService.DeleteRunner") victims.push({ runnerId: (request as { runnerId: string }).runnerId, caller, code });
      expect({ caller, protocol, code }).toEqual({ caller, protocol, code: matrix[name]![column] });

      // What a successful call returned belongs to the caller.
      if (name === "IdentityService.GetAuthenticatedIdentity" && response) {
        const expectedSubject = { userA: userA.userId, userB: userB.userId, runnerA: runnerA.runnerId }[caller as string];
        if (expectedSubject) expect((response.subject as { id: string }).id).toBe(expectedSubject);
        const organization = caller === "userB" || caller === "runnerOrgB" ? userB.organizationId : userA.organizationId;
        expect(response.organizationId).toBe(organization);
        expect((response.subject as { principal: Principal }).principal).toBe(caller.startsWith("user") ? Principal.USER : Principal.RUNNER);
      }
      if (name === "RunnerService.ListRunners" && response) {
        const ids = (response.runners as Runner[]).map((runner) => runner.runnerId);
        expect(ids.includes(runnerA.runnerId)).toBe(caller === "userA");
      }
    });
  });
});

describe("after the matrix", () => {
  it("runner A carries only the changes of its owner and of itself", async () => {
    const { runner } = await server.runners("connect-json", userA.apiKey).getRunner({ runnerId: runnerA.runnerId });
    expect(runner?.name).toBe("renamed by userA");
    expect(runner?.status?.version).toBe("reported by runnerA");
  });

  it("every runner whose deletion was refused still exists, and the deleted one is gone", async () => {
    expect(victims).toHaveLength(callers.length);
    for (const victim of victims) {
      const found = await server.runners("connect-json", userA.apiKey).getRunner({ runnerId: victim.runnerId }).then(
        () => true,
        () => false,
      );
      expect({ caller: victim.caller, exists: found }).toEqual({ caller: victim.caller, exists: victim.code !== OK });
    }
  });
});

describe("not found", () => {
  let deletedRunnerId: string;
  beforeAll(async () => {
    deletedRunnerId = (await newRunner(userA)).runnerId;
    await server.runners("connect-json", userA.apiKey).deleteRunner({ runnerId: deletedRunnerId });
  });

  // Another organization's runner, a deleted runner and an id that never existed: one answer.
  // (Deleting a deleted runner again is OK for its owner, by design: DeleteRunner is idempotent.)
  const targets = (procedure: string) =>
    [
      { what: "another organization's runner", runnerId: runnerA.runnerId, token: userB.apiKey },
      { what: "a deleted runner", runnerId: deletedRunnerId, token: userA.apiKey },
      { what: "a runner that never existed", runnerId: randomUUID(), token: userA.apiKey },
    ].filter((target) => procedure !== "DeleteRunner" || target.what !== "a deleted runner");
  const procedures = ["GetRunner", "UpdateRunner", "DeleteRunner", "CreateRunnerToken"];

  it.each(procedures)("%s answers byte for byte the same over Connect JSON, modulo the id", async (procedure) => {
    const answers = await Promise.all(
      targets(procedure).map(async ({ runnerId, token }) => {
        const body = procedure === "UpdateRunner" ? { runnerId, name: "probe" } : { runnerId };
        const response = await postJson(server, `gitpod.v1.RunnerService/${procedure}`, body, { authorization: `Bearer ${token}` });
        return { status: response.status, body: JSON.stringify(response.body).replaceAll(runnerId, "<id>") };
      }),
    );
    expect(answers[0]).toEqual({ status: 404, body: expect.stringContaining('"code":"not_found"') });
    for (const answer of answers) expect(answer).toEqual(answers[0]);
  });

  it.each(procedures)("%s answers the same grpc-status, grpc-message and trailers over gRPC, modulo the id", async (procedure) => {
    const raw = new RawClient("127.0.0.1", server.port);
    try {
      const method = RunnerService.methods.find((m) => m.name === procedure)!;
      const answers = await Promise.all(
        targets(procedure).map(async ({ runnerId, token }) => {
          const message = create(method.input, procedure === "UpdateRunner" ? { runnerId, name: "probe" } : { runnerId });
          const response = await raw.send({
            method: "POST",
            path: `/gitpod.v1.RunnerService/${procedure}`,
            http: "2",
            headers: [["content-type", "application/grpc"], ["te", "trailers"], ["authorization", `Bearer ${token}`]],
            body: frame(toBinary(method.input, message)),
          });
          const { code, message: text } = outcomeOf(response);
          const metadata = { ...response.headers, ...response.trailers };
          for (const name of ["date", "x-request-id", "grpc-message"]) delete metadata[name];
          return { code, message: text.replaceAll(runnerId, "<id>"), metadata, body: response.body.toString("hex") };
        }),
      );
      expect(answers[0]!.code).toBe("not_found");
      for (const answer of answers) expect(answer).toEqual(answers[0]);
    } finally {
      raw.close();
    }
  });
});

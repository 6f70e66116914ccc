// Mistakes a newcomer makes get answers that say what to do (issue #10): unknown enum names,
// validation messages in the names the client sent, credential hints that reveal nothing stored,
// and x-should-retry: false where a retry cannot help.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { failure, postJson, protocols, startServer, type TestServer, type TestUser } from "./harness.js";
import { generateToken } from "../src/domain/tokens.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";

let server: TestServer;
let user: TestUser;

beforeAll(async () => {
  server = await startServer();
  user = await server.newUser();
});
afterAll(() => server?.close());

const create = (body: unknown, headers: Record<string, string> = {}) =>
  postJson(server, "gitpod.v1.RunnerService/CreateRunner", body, { authorization: `Bearer ${user.apiKey}`, ...headers });

describe("unknown enum names in JSON", () => {
  it.each([
    [{ name: "abc", provider: "LINUX_HOST" }, 'provider: "LINUX_HOST" is not a RunnerProvider value; allowed: RUNNER_PROVIDER_AWS_EC2'],
    [{ name: "abc", provider: "RUNNER_PROVIDER_AWS_EC2", spec: { desiredPhase: "INACTIVE" } }, 'spec.desiredPhase: "INACTIVE" is not a RunnerPhase value; allowed: '],
    [
      { name: "abc", provider: "RUNNER_PROVIDER_AWS_EC2", spec: { configuration: { releaseChannel: "STABLE" } } },
      'spec.configuration.releaseChannel: "STABLE" is not a RunnerReleaseChannel value; allowed: ',
    ],
    [
      { name: "abc", provider: "RUNNER_PROVIDER_AWS_EC2", spec: { configuration: { logLevel: "DEBUG" } } },
      'spec.configuration.logLevel: "DEBUG" is not a LogLevel value; allowed: LOG_LEVEL_DEBUG',
    ],
  ])("%j is invalid_argument naming the field and the allowed names", async (body, message) => {
    const response = await create(body);
    expect(response.status).toBe(400);
    expect(response.body.code).toBe("invalid_argument");
    expect(response.body.message).toContain(message);
    expect(response.headers.get("x-should-retry")).toBe("false");
  });

  it("still accepts known names, enum numbers and unknown fields", async () => {
    const known = await create({ name: "abc", provider: "RUNNER_PROVIDER_AWS_EC2", spec: { desiredPhase: "RUNNER_PHASE_INACTIVE" }, someFutureField: "X_Y" });
    expect(known.status).toBe(200);
    expect(known.body.runner.spec.desiredPhase).toBe("RUNNER_PHASE_INACTIVE");
    const numbers = await create({ name: "abc", provider: 1 });
    expect(numbers.status).toBe(200);
  });
});

describe("validation messages", () => {
  it("name JSON fields for JSON requests and protobuf fields for binary ones", async () => {
    const json = await postJson(server, "gitpod.v1.RunnerService/GetRunner", { runnerId: "nope" }, { authorization: `Bearer ${user.apiKey}` });
    expect(json.status).toBe(400);
    expect(json.body.message).toMatch(/^runnerId: /);
    const binary = await failure(server.runners("connect-binary", user.apiKey).getRunner({ runnerId: "nope" }));
    expect(binary.rawMessage).toMatch(/^runner_id: /);
  });
});

describe("credential failures", () => {
  const identity = (authorization?: string) =>
    postJson(server, "gitpod.v1.IdentityService/GetAuthenticatedIdentity", {}, authorization === undefined ? {} : { authorization });

  it("give a hint from the format alone", async () => {
    const good = user.apiKey;
    const cases: [string | undefined, string][] = [
      [undefined, "no credentials: send the header Authorization: Bearer <API key or runner access token>"],
      [`Bearer ${good}`, ""],
      [`Bearer ${good}\t`, ""],
      [`Basic ${good}`, "the Authorization header must be `Bearer <token>`"],
      [`Bearer ${good.slice(0, -3)}`, "the bearer token is malformed"],
      [`Bearer ${good.slice(0, -1)}${good.endsWith("a") ? "b" : "a"}`, "the bearer token's checksum does not match: it was truncated or mistyped"],
      [`Bearer ${generateToken("exchange")}`, "this is an exchange token: call IdentityService.ExchangeToken with it"],
      [`Bearer ghp_${"x".repeat(36)}`, "the bearer token is not an API key (rcpk_…) or a runner access token (rcpr_…)"],
    ];
    for (const [header, message] of cases) {
      const response = await identity(header ?? undefined);
      if (message === "") {
        expect(response.status).toBe(200);
        continue;
      }
      expect({ header, status: response.status, code: response.body.code }).toEqual({ header, status: 401, code: "unauthenticated" });
      expect(response.body.message).toContain(message);
      expect(response.headers.get("x-should-retry")).toBe("false");
    }
  });

  it("say the same for a well-formed key that is unknown and one that was revoked", async () => {
    const unknown = await identity(`Bearer ${generateToken("apiKey")}`);
    const other = await server.newUser();
    await server.db.query("UPDATE api_keys SET revoked_at = now() WHERE user_id = $1", [other.userId]);
    const revoked = await identity(`Bearer ${other.apiKey}`);
    expect(unknown.status).toBe(401);
    expect(revoked.body.message).toBe(unknown.body.message);
  });

  it("trim a trailing newline from an exchange token", async () => {
    const created = await server.runners("connect-json", user.apiKey).createRunner({ name: "trim", provider: RunnerProvider.AWS_EC2 });
    const response = await postJson(server, "gitpod.v1.IdentityService/ExchangeToken", { exchangeToken: `${created.exchangeToken}\n` });
    expect(response.status).toBe(200);
    expect(response.body.accessToken).toMatch(/^rcpr_/);
  });
});

describe("x-should-retry", () => {
  it.each(protocols)("is false on an error a retry cannot fix (%s)", async (protocol) => {
    const error = await failure(server.runners(protocol, user.apiKey).getRunner({ runnerId: "00000000-0000-4000-8000-000000000000" }));
    expect(error.code).toBe(Code.NotFound);
    expect(error.metadata.get("x-should-retry")).toBe("false");
  });
});

describe("wrong turns", () => {
  const post = (path: string, contentType: string | undefined, body = "{}") =>
    fetch(`${server.baseUrl}${path}`, {
      method: "POST",
      headers: { ...(contentType === undefined ? {} : { "content-type": contentType }), authorization: `Bearer ${user.apiKey}` },
      body,
    });

  it.each([["text/plain"], ["application/xml"], [undefined]])("a body of content type %s is a Connect error listing what is accepted", async (contentType) => {
    const response = await post("/gitpod.v1.RunnerService/ListRunners", contentType);
    expect(response.status).toBe(400);
    const body = (await response.json()) as { code: string; message: string };
    expect(body.code).toBe("invalid_argument");
    expect(body.message).toContain("send application/json or application/proto (Connect), application/grpc");
  });

  it("a misspelled method is unimplemented and names the one that was meant, over Connect and gRPC", async () => {
    for (const path of ["/gitpod.v1.RunnerService/ListRunner", "/api/gitpod.v1.RunnerService/listrunners"]) {
      const response = await post(path, "application/json");
      expect(response.status).toBe(501);
      expect(response.headers.get("x-should-retry")).toBe("false");
      expect(await response.json()).toEqual({
        code: "unimplemented",
        message: `no procedure gitpod.v1.RunnerService/${path.split("/").at(-1)}; did you mean gitpod.v1.RunnerService/ListRunners?`,
      });
    }
    const grpc = await post("/gitpod.v1.RunnerService/GetRuner", "application/grpc", "");
    expect(grpc.headers.get("grpc-status")).toBe("12");
    expect(decodeURIComponent(grpc.headers.get("grpc-message")!)).toContain("did you mean gitpod.v1.RunnerService/GetRunner?");
    const far = (await (await post("/gitpod.v1.RunnerService/Frobnicate", "application/json")).json()) as { message: string };
    expect(far.message).toBe("no procedure gitpod.v1.RunnerService/Frobnicate");
  });

  it("GET / is the web dashboard; other paths say where the API is", async () => {
    const root = await fetch(`${server.baseUrl}/`);
    expect(root.status).toBe(200);
    expect(root.headers.get("content-type")).toMatch(/^text\/html/);
    const other = await fetch(`${server.baseUrl}/v1/runners`);
    expect(other.status).toBe(404);
    expect(((await other.json()) as { message: string }).message).toContain("POST /gitpod.v1.RunnerService/ListRunners");
  });
});

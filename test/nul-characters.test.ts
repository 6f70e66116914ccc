// A NUL character (U+0000) in any string of any request is `invalid_argument` naming the field,
// on every protocol and both paths, before the handler runs. PostgreSQL `text` cannot hold
// U+0000: before, CreateRunner with such a name answered `internal` (HTTP 500) on PostgreSQL.
//
//   npx vitest run test/nul-characters.test.ts          (TEST_DATABASE_URL=… for PostgreSQL)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromJson, type DescMessage } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { ViolationsSchema } from "../gen/buf/validate/validate_pb.js";
import { RunnerService, UpdateRunnerRequestSchema } from "../gen/gitpod/v1/runner_pb.js";
import { UpdateRunnerStatusRequestSchema } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { findNulCharacter } from "../src/protobuf/nul-characters.js";
import { failure, postJson, protocols, startServer, type TestServer, type TestUser } from "./harness.js";

describe("findNulCharacter", () => {
  const pathOf = (schema: DescMessage, json: unknown) => {
    const found = findNulCharacter(schema, fromJson(schema, json as never));
    return found && { path: pathToString(found.path), forKey: found.forKey };
  };

  it("finds U+0000 in scalars, nested messages, oneofs, lists, map keys and values", () => {
    expect(pathOf(RunnerService.method.createRunner.input, { name: "a\u0000b" })).toEqual({ path: "name", forKey: false });
    expect(pathOf(UpdateRunnerRequestSchema, { runnerId: "x", spec: { configuration: { metrics: { username: "\u0000" } } } })).toEqual({
      path: "spec.configuration.metrics.username",
      forKey: false,
    });
    expect(pathOf(UpdateRunnerStatusRequestSchema, { additionalInfo: [{ key: "ok" }, { key: "k", value: "v\u0000" }] })).toEqual({
      path: "additional_info[1].value",
      forKey: false,
    });
    expect(pathOf(RunnerService.method.listRunners.input, { filter: { creatorIds: ["a", "\u0000"] } })).toEqual({ path: "filter.creator_ids[1]", forKey: false });
    // google.protobuf.Struct: a map of Values (a oneof), recursively through lists and structs.
    expect(pathOf(StructSchema, { a: 1, "k\u0000": "v" })).toEqual({ path: 'fields["k\u0000"]', forKey: true });
    expect(pathOf(StructSchema, { a: { b: [1, "x", { c: "\u0000" }] } })).toEqual({
      path: 'fields["a"].struct_value.fields["b"].list_value.values[2].struct_value.fields["c"].string_value',
      forKey: false,
    });
  });

  it("finds nothing in messages without U+0000 (other control characters are allowed)", () => {
    expect(pathOf(RunnerService.method.createRunner.input, { name: "tab\there, é, 😀, \u0001" })).toBeUndefined();
    expect(pathOf(StructSchema, { a: { b: [1, "x", { c: null }] } })).toBeUndefined();
    expect(findNulCharacter(UpdateRunnerRequestSchema, create(UpdateRunnerRequestSchema))).toBeUndefined();
  });
});

let server: TestServer;
let user: TestUser;

beforeAll(async () => {
  server = await startServer();
  user = await server.newUser();
});
afterAll(() => server?.close());

describe.each(["true", "false"])("over the wire (UNARY_FAST_PATH=%s)", (fastPath) => {
  let local: TestServer;
  let localUser: TestUser;
  beforeAll(async () => {
    local = fastPath === "true" ? server : await startServer({ env: { UNARY_FAST_PATH: "false" } });
    localUser = await local.newUser();
  });
  afterAll(async () => {
    if (local !== server) await local?.close();
  });

  async function runnerCount(): Promise<number> {
    const { runners } = await local.runners("connect-json", localUser.apiKey).listRunners({ pagination: { pageSize: 100 } });
    return runners.length;
  }

  it.each(protocols)("refuses a runner name with U+0000 over %s as invalid_argument naming the field, and stores nothing", async (protocol) => {
    const before = await runnerCount();
    const err = await failure(local.runners(protocol, localUser.apiKey).createRunner({ name: "abc\u0000def", provider: RunnerProvider.AWS_EC2 }));
    expect(err.code).toBe(3); // InvalidArgument
    expect(err.rawMessage).toBe("name: must not contain a NUL character (U+0000) [string.no_nul]");
    const [violations] = err.findDetails(ViolationsSchema);
    expect(violations?.violations).toHaveLength(1);
    expect(violations!.violations[0]).toMatchObject({ ruleId: "string.no_nul", field: { elements: [{ fieldName: "name", fieldNumber: 1 }] } });
    expect(await runnerCount()).toBe(before);
  });

  it.each(protocols)("refuses U+0000 deep in an update over %s", async (protocol) => {
    const { runner } = await local.runners(protocol, localUser.apiKey).createRunner({ name: "nul runner", provider: RunnerProvider.AWS_EC2 });
    const err = await failure(
      local.runners(protocol, localUser.apiKey).updateRunner({ runnerId: runner!.runnerId, spec: { configuration: { metrics: { username: "a\u0000b" } } } }),
    );
    expect(err.rawMessage).toBe("spec.configuration.metrics.username: must not contain a NUL character (U+0000) [string.no_nul]");
    const { runner: stored } = await local.runners(protocol, localUser.apiKey).getRunner({ runnerId: runner!.runnerId });
    expect(stored!.spec?.configuration?.metrics?.username ?? "").toBe("");
  });
});

describe("other ways in", () => {
  it("refuses U+0000 sent as a JSON escape on the Connect short path (was HTTP 500 on PostgreSQL)", async () => {
    const response = await postJson(server, "gitpod.v1.RunnerService/CreateRunner", '{"name":"abc\\u0000def","provider":"RUNNER_PROVIDER_AWS_EC2"}', {
      authorization: `Bearer ${user.apiKey}`,
    });
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ code: "invalid_argument", message: "name: must not contain a NUL character (U+0000) [string.no_nul]" });
  });

  it("refuses U+0000 in a Connect GET message and in the SDK's pagination query parameter", async () => {
    const message = encodeURIComponent(JSON.stringify({ runnerId: "00000000-0000-0000-0000-00000000\u00000000" }));
    const get = await fetch(`${server.baseUrl}/gitpod.v1.RunnerService/GetRunner?connect=v1&encoding=json&message=${message}`, {
      headers: { authorization: `Bearer ${user.apiKey}` },
    });
    expect(get.status).toBe(400);
    expect(((await get.json()) as { message: string }).message).toMatch(/^runnerId: must not contain a NUL character/); // a JSON request: JSON names
    const list = await postJson(server, "gitpod.v1.RunnerService/ListRunners?token=%00", {}, { authorization: `Bearer ${user.apiKey}` });
    expect(list.status).toBe(400);
    expect(list.body.message).toMatch(/^pagination\.token: must not contain a NUL character/);
  });

  it("refuses U+0000 in a public method's token before it is looked up", async () => {
    const err = await failure(server.identity("grpc").exchangeToken({ exchangeToken: "rcpx_\u0000" }));
    expect(err.rawMessage).toMatch(/^exchange_token: must not contain a NUL character/);
  });
});

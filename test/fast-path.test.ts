// The short path for plain unary calls (src/rpc/unary-fast-path.ts) must answer exactly as
// Connect's own handler does, over Connect JSON, Connect binary and gRPC. Each request here is
// sent twice to one server: as is (the short path takes it) and with a deadline header, which
// the short path leaves to Connect. Status, headers, trailers and body must match, byte for byte
// where the answer is deterministic; malformed bodies exercise the hand-back to Connect.
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { GetRunnerRequestSchema, ListRunnersRequestSchema } from "../gen/gitpod/v1/runner_pb.js";
import { frame, RawClient, type RawResponse } from "./raw-rpc.js";
import { startServer, type TestServer, type TestUser } from "./harness.js";

const MAX_REQUEST_BYTES = 4096;
// Headers that differ between any two responses, or describe the connection.
const VOLATILE = new Set(["date", "x-request-id", "connection", "keep-alive", "transfer-encoding"]);

let server: TestServer;
let client: RawClient;
let user: TestUser;
let runnerId: string;
let accessToken: string;

beforeAll(async () => {
  server = await startServer({ env: { MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES) } });
  client = new RawClient("127.0.0.1", server.port);
  user = await server.newUser();
  const runners = server.runners("connect-json", user.apiKey);
  for (let i = 0; i < 30; i++) await runners.createRunner({ name: `parity runner ${i}`, provider: RunnerProvider.AWS_EC2 });
  const { runner, exchangeToken } = await runners.createRunner({ name: "parity self", provider: RunnerProvider.AWS_EC2 });
  runnerId = runner!.runnerId;
  accessToken = (await server.identity("connect-json").exchangeToken({ exchangeToken })).accessToken;
});
afterAll(async () => {
  client?.close();
  await server?.close();
});

type Wire = "connect-json" | "connect-proto" | "grpc";

interface Case {
  procedure: string;
  /** The request body as it goes on the wire (for gRPC, already in envelopes). */
  body: string | Uint8Array;
  auth?: "user" | "runner" | "garbage" | "none";
  headers?: [string, string][];
}

const contentTypes: Record<Wire, string> = { "connect-json": "application/json", "connect-proto": "application/proto", grpc: "application/grpc" };

function send(wire: Wire, c: Case, http: "1.1" | "2", toConnect: boolean): Promise<RawResponse> {
  const token = c.auth === "runner" ? accessToken : c.auth === "garbage" ? "rcpk_garbage" : c.auth === "none" ? undefined : user.apiKey;
  const headers: [string, string][] = [["content-type", contentTypes[wire]], ...(c.headers ?? [])];
  if (wire === "grpc") headers.push(["te", "trailers"]);
  if (token !== undefined) headers.push(["authorization", `Bearer ${token}`]);
  if (toConnect) headers.push(wire === "grpc" ? ["grpc-timeout", "25S"] : ["connect-timeout-ms", "25000"]);
  const body = typeof c.body === "string" ? new TextEncoder().encode(c.body) : c.body;
  // HTTP/1.1 declares the length; the h2c requests carry none, so both ways of reading run.
  if (http === "1.1") headers.push(["content-length", String(body.byteLength)]);
  return client.send({ http, method: "POST", path: `/${c.procedure}`, headers, body });
}

function comparable(response: RawResponse) {
  const keep = (headers: Record<string, string>) =>
    Object.fromEntries(Object.entries(headers).filter(([name]) => !VOLATILE.has(name) && !name.startsWith(":")));
  const headers = keep(response.headers);
  const body = response.headers["content-encoding"] === "gzip" ? gunzipSync(response.body) : response.body;
  if (response.headers["content-encoding"]) delete headers["content-length"]; // compressed sizes may differ by level
  const json = (response.headers["content-type"] ?? "").includes("json");
  return { status: response.status, headers, trailers: keep(response.trailers), body: json ? body.toString("utf8") : body.toString("hex") };
}

const get = "gitpod.v1.RunnerService/GetRunner";
const list = "gitpod.v1.RunnerService/ListRunners";

const jsonCases: [string, () => Case][] = [
  ["GetRunner", () => ({ procedure: get, body: JSON.stringify({ runnerId }) })],
  ["GetRunner by the runner itself", () => ({ procedure: get, body: JSON.stringify({ runnerId }), auth: "runner" })],
  ["GetRunner of an unknown runner", () => ({ procedure: get, body: JSON.stringify({ runnerId: "00000000-0000-4000-8000-000000000000" }) })],
  ["GetRunner with an id that is not a UUID (validation details)", () => ({ procedure: get, body: '{"runnerId":"nope"}' })],
  ["GetRunner with a wrong JSON type", () => ({ procedure: get, body: '{"runnerId":5}' })],
  ["GetRunner with unknown fields", () => ({ procedure: get, body: JSON.stringify({ runnerId, someday: { x: 1 } }) })],
  ["GetRunner with a JSON syntax error", () => ({ procedure: get, body: '{"runnerId":' })],
  ["GetRunner with an empty body", () => ({ procedure: get, body: "" })],
  ["GetRunner with null", () => ({ procedure: get, body: "null" })],
  ["GetRunner with invalid UTF-8", () => ({ procedure: get, body: Uint8Array.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]) })],
  ["GetRunner with a non-BMP character in a syntax error", () => ({ procedure: get, body: '{"runnerId":"😀😀' })],
  ["GetRunner without credentials", () => ({ procedure: get, body: JSON.stringify({ runnerId }), auth: "none" })],
  ["GetRunner with a garbage key", () => ({ procedure: get, body: JSON.stringify({ runnerId }), auth: "garbage" })],
  ["GetRunner with a body over MAX_REQUEST_BYTES", () => ({ procedure: get, body: JSON.stringify({ runnerId, pad: "x".repeat(MAX_REQUEST_BYTES) }) })],
  ["ListRunners, page of 25", () => ({ procedure: list, body: '{"pagination":{"pageSize":25}}' })],
  ["ListRunners, gzip accepted (compressed answer)", () => ({ procedure: list, body: "{}", headers: [["accept-encoding", "gzip"]] })],
  ["ListRunners, paging by query parameters", () => ({ procedure: `${list}?pageSize=3`, body: "{}" })],
  ["ListRunners, page size over 100", () => ({ procedure: list, body: '{"pagination":{"pageSize":101}}' })],
  ["ListRunners by a runner", () => ({ procedure: list, body: "{}", auth: "runner" })],
  ["CreateRunner with a name too long", () => ({ procedure: "gitpod.v1.RunnerService/CreateRunner", body: JSON.stringify({ name: "n".repeat(200), provider: "RUNNER_PROVIDER_AWS_EC2" }) })],
  ["CreateRunner with kind and provider", () => ({ procedure: "gitpod.v1.RunnerService/CreateRunner", body: '{"kind":"RUNNER_KIND_REMOTE","provider":"RUNNER_PROVIDER_AWS_EC2"}' })],
  ["CreateRunner with an unknown enum name", () => ({ procedure: "gitpod.v1.RunnerService/CreateRunner", body: '{"provider":"RUNNER_PROVIDER_MARS"}' })],
  ["ExchangeToken with a bad token", () => ({ procedure: "gitpod.v1.IdentityService/ExchangeToken", body: '{"exchangeToken":"rcpx_nope"}', auth: "none" })],
  ["MarkRunnerActive by the runner", () => ({ procedure: "gitpod.v1.RunnerInteractionService/MarkRunnerActive", body: JSON.stringify({ runnerId }), auth: "runner" })],
  ["MarkRunnerActive by a user", () => ({ procedure: "gitpod.v1.RunnerInteractionService/MarkRunnerActive", body: JSON.stringify({ runnerId }) })],
  ["an error from the handler (CreateRunnerLogsToken without PUBLIC_URL)", () => ({ procedure: "gitpod.v1.RunnerService/CreateRunnerLogsToken", body: JSON.stringify({ runnerId }) })],
  ["GetAuthenticatedIdentity", () => ({ procedure: "gitpod.v1.IdentityService/GetAuthenticatedIdentity", body: "{}" })],
  ["under /api", () => ({ procedure: `api/${get}`, body: JSON.stringify({ runnerId }) })],
];


const message = <Desc extends DescMessage>(schema: Desc, init: MessageInitShape<Desc>) => toBinary(schema, create(schema, init));
const utf8 = (text: string) => new TextEncoder().encode(text);

/** Cases for the binary protocols: `wrap` puts a message into the protocol's body (an envelope for gRPC). */
function binaryCases(wrap: (payload: Uint8Array) => Uint8Array, grpc: boolean): [string, () => Case][] {
  const cases: [string, () => Case][] = [
    ["GetRunner", () => ({ procedure: get, body: wrap(message(GetRunnerRequestSchema, { runnerId })) })],
    ["GetRunner by the runner itself", () => ({ procedure: get, body: wrap(message(GetRunnerRequestSchema, { runnerId })), auth: "runner" })],
    ["GetRunner of an unknown runner", () => ({ procedure: get, body: wrap(message(GetRunnerRequestSchema, { runnerId: "00000000-0000-4000-8000-000000000000" })) })],
    ["GetRunner with an id that is not a UUID (validation details)", () => ({ procedure: get, body: wrap(message(GetRunnerRequestSchema, { runnerId: "nope" })) })],
    ["GetRunner without credentials", () => ({ procedure: get, body: wrap(message(GetRunnerRequestSchema, { runnerId })), auth: "none" })],
    ["GetRunner with a garbage key", () => ({ procedure: get, body: wrap(message(GetRunnerRequestSchema, { runnerId })), auth: "garbage" })],
    ["GetRunner with bytes that are not protobuf", () => ({ procedure: get, body: wrap(Uint8Array.from([0x0a, 0xff, 0x01])) })],
    ["GetRunner with invalid UTF-8 in a string", () => ({ procedure: get, body: wrap(Uint8Array.from([0x0a, 0x02, 0xc3, 0x28])) })],
    ["GetRunner with an empty message", () => ({ procedure: get, body: wrap(new Uint8Array(0)) })],
    ["GetRunner with a body over MAX_REQUEST_BYTES", () => ({ procedure: get, body: wrap(utf8("x".repeat(MAX_REQUEST_BYTES + 10))) })],
    ["ListRunners, page of 25", () => ({ procedure: list, body: wrap(message(ListRunnersRequestSchema, { pagination: { pageSize: 25 } })) })],
    ["ListRunners, compression accepted (compressed answer)", () => ({ procedure: list, body: wrap(new Uint8Array(0)), headers: [[grpc ? "grpc-accept-encoding" : "accept-encoding", "gzip"]] })],
    ["an error from the handler (CreateRunnerLogsToken without PUBLIC_URL)", () => ({ procedure: "gitpod.v1.RunnerService/CreateRunnerLogsToken", body: wrap(message(GetRunnerRequestSchema, { runnerId })) })],
    ["MarkRunnerActive by a user", () => ({ procedure: "gitpod.v1.RunnerInteractionService/MarkRunnerActive", body: wrap(message(GetRunnerRequestSchema, { runnerId })) })],
  ];
  if (grpc) {
    const one = message(GetRunnerRequestSchema, { runnerId });
    cases.push(
      ["two messages for a unary method", () => ({ procedure: get, body: Buffer.concat([frame(one), frame(one)]) })],
      ["no message at all", () => ({ procedure: get, body: new Uint8Array(0) })],
      ["a truncated envelope", () => ({ procedure: get, body: frame(one).subarray(0, 8) })],
      ["an envelope flagged compressed without grpc-encoding", () => ({ procedure: get, body: frame(one, 1) })],
      ["an envelope declaring more than MAX_REQUEST_BYTES", () => ({ procedure: get, body: frame(one, 0, MAX_REQUEST_BYTES + 1) })],
    );
  }
  return cases;
}

const protocolCases: [Wire, "1.1" | "2", [string, () => Case][]][] = [
  ["connect-json", "1.1", jsonCases],
  ["connect-json", "2", jsonCases],
  ["connect-proto", "1.1", binaryCases((payload) => payload, false)],
  ["connect-proto", "2", binaryCases((payload) => payload, false)],
  ["grpc", "2", binaryCases((payload) => frame(payload), true)],
];

describe.each(protocolCases)("%s over HTTP/%s: the short path and Connect answer alike", (wire, http, cases) => {
  it.each(cases)("%s", async (_name, makeCase) => {
    const c = makeCase();
    const short = comparable(await send(wire, c, http, false));
    const connect = comparable(await send(wire, c, http, true));
    expect(short).toEqual(connect);
  });
});

describe.each(["1.1", "2"] as const)("Connect JSON over HTTP/%s: new ids and tokens", (http) => {
  // Answers that hold new ids, times and tokens: compared with those masked.
  const mask = (response: RawResponse) => {
    const { status, headers, body } = comparable(response);
    const masked = body
      .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, "<uuid>")
      .replace(/"\d{4}-\d\d-\d\dT[\d:.]+Z"/g, "<time>")
      .replace(/rcp[xr]_\w+/g, "<token>");
    delete headers["content-length"]; // ids and times differ in length (trailing zeros of fractions)
    return { status, headers, body: masked };
  };

  it("CreateRunner: the same answer but for the new runner's id, times and token", async () => {
    const c: Case = { procedure: "gitpod.v1.RunnerService/CreateRunner", body: JSON.stringify({ name: "parity new", provider: "RUNNER_PROVIDER_GCP" }) };
    const short = mask(await send("connect-json", c, http, false));
    expect(short.status).toBe(200);
    expect(short.body).toContain("<token>");
    expect(short).toEqual(mask(await send("connect-json", c, http, true)));
  });

  it("ExchangeToken and CreateRunnerToken: the same answers but for the tokens", async () => {
    const runners = server.runners("connect-json", user.apiKey);
    const exchange = async (toConnect: boolean) => {
      const { exchangeToken } = await runners.createRunner({ name: "parity exchange", provider: RunnerProvider.AWS_EC2 });
      return mask(await send("connect-json", { procedure: "gitpod.v1.IdentityService/ExchangeToken", body: JSON.stringify({ exchangeToken }), auth: "none" }, http, toConnect));
    };
    const short = await exchange(false);
    expect(short.status).toBe(200);
    expect(short.body).toContain("<token>");
    expect(short).toEqual(await exchange(true));

    const c: Case = { procedure: "gitpod.v1.RunnerService/CreateRunnerToken", body: JSON.stringify({ runnerId }) };
    const token = mask(await send("connect-json", c, http, false));
    expect(token.body).toContain("<token>");
    expect(token).toEqual(mask(await send("connect-json", c, http, true)));
  });
});

it("takes the short path for plain unary calls only, and not at all with UNARY_FAST_PATH=false", async () => {
  const served = async (target: TestServer) => {
    const text = await (await fetch(`${target.baseUrl}/metrics`)).text();
    const count = (protocol: string) => Number(new RegExp(`^rcp_unary_fast_path_requests_total\\{protocol="${protocol}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
    return { json: count("connect_json"), proto: count("connect_proto"), grpc: count("grpc") };
  };
  const json = JSON.stringify({ runnerId });
  const proto = message(GetRunnerRequestSchema, { runnerId });
  const before = await served(server);
  await send("connect-json", { procedure: get, body: json }, "1.1", false);
  await send("connect-json", { procedure: get, body: json }, "2", false);
  await send("connect-json", { procedure: get, body: json }, "1.1", true); // has a deadline
  await send("connect-proto", { procedure: get, body: proto }, "2", false);
  await send("grpc", { procedure: get, body: frame(proto) }, "2", false);
  await send("grpc", { procedure: get, body: frame(proto) }, "2", true); // has a deadline
  await send("connect-json", { procedure: get, body: json, headers: [["content-encoding", "gzip"]] }, "1.1", false); // compressed
  const after = await served(server);
  expect({ json: after.json - before.json, proto: after.proto - before.proto, grpc: after.grpc - before.grpc }).toEqual({ json: 2, proto: 1, grpc: 1 });

  const off = await startServer({ env: { UNARY_FAST_PATH: "false" } });
  try {
    const offUser = await off.newUser();
    await off.runners("connect-json", offUser.apiKey).listRunners({});
    await off.runners("grpc", offUser.apiKey).listRunners({});
    expect(await served(off)).toEqual({ json: 0, proto: 0, grpc: 0 });
  } finally {
    await off.close();
  }
});

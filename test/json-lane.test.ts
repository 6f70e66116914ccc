// The short path for Connect JSON calls (src/connect-json-lane.ts) must answer exactly as
// Connect's own handler does. Each request here is sent twice to one server: as is (the short
// path takes it) and with a Connect-Timeout-Ms header, which the short path leaves to Connect.
// Status, headers and body must match, byte for byte where the answer is deterministic.
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { RawClient, type RawResponse } from "./raw-rpc.js";
import { startServer, type TestServer, type TestUser } from "./harness.js";

const MAX_REQUEST_BYTES = 4096;
const TO_CONNECT = ["connect-timeout-ms", "25000"] as const;
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

interface Case {
  procedure: string;
  body: string | Uint8Array;
  auth?: "user" | "runner" | "garbage" | "none";
  headers?: [string, string][];
}

function send(c: Case, http: "1.1" | "2", toConnect: boolean): Promise<RawResponse> {
  const token = c.auth === "runner" ? accessToken : c.auth === "garbage" ? "rcpk_garbage" : c.auth === "none" ? undefined : user.apiKey;
  const headers: [string, string][] = [["content-type", "application/json"], ...(c.headers ?? [])];
  if (token !== undefined) headers.push(["authorization", `Bearer ${token}`]);
  if (toConnect) headers.push([...TO_CONNECT]);
  const body = typeof c.body === "string" ? new TextEncoder().encode(c.body) : c.body;
  // HTTP/1.1 declares the length; the h2c requests carry none, so both ways of reading run.
  if (http === "1.1") headers.push(["content-length", String(body.byteLength)]);
  return client.send({ http, method: "POST", path: `/${c.procedure}`, headers, body });
}

function comparable(response: RawResponse) {
  const headers = Object.fromEntries(Object.entries(response.headers).filter(([name]) => !VOLATILE.has(name) && !name.startsWith(":")));
  const body = response.headers["content-encoding"] === "gzip" ? gunzipSync(response.body) : response.body;
  if (response.headers["content-encoding"]) delete headers["content-length"]; // compressed sizes may differ by level
  return { status: response.status, headers, body: body.toString("utf8") };
}

const get = "gitpod.v1.RunnerService/GetRunner";
const list = "gitpod.v1.RunnerService/ListRunners";
const cases: [string, () => Case][] = [
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
  ["an unimplemented method", () => ({ procedure: "gitpod.v1.RunnerService/CreateRunnerLogsToken", body: JSON.stringify({ runnerId }) })],
  ["GetAuthenticatedIdentity", () => ({ procedure: "gitpod.v1.IdentityService/GetAuthenticatedIdentity", body: "{}" })],
  ["under /api", () => ({ procedure: `api/${get}`, body: JSON.stringify({ runnerId }) })],
];

describe.each(["1.1", "2"] as const)("Connect JSON over HTTP/%s: short path and Connect answer alike", (http) => {
  it.each(cases)("%s", async (_name, makeCase) => {
    const c = makeCase();
    const short = comparable(await send(c, http, false));
    const connect = comparable(await send(c, http, true));
    expect(short).toEqual(connect);
  });

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
    const short = mask(await send(c, http, false));
    expect(short.status).toBe(200);
    expect(short.body).toContain("<token>");
    expect(short).toEqual(mask(await send(c, http, true)));
  });

  it("ExchangeToken and CreateRunnerToken: the same answers but for the tokens", async () => {
    const runners = server.runners("connect-json", user.apiKey);
    const exchange = async (toConnect: boolean) => {
      const { exchangeToken } = await runners.createRunner({ name: "parity exchange", provider: RunnerProvider.AWS_EC2 });
      return mask(await send({ procedure: "gitpod.v1.IdentityService/ExchangeToken", body: JSON.stringify({ exchangeToken }), auth: "none" }, http, toConnect));
    };
    const short = await exchange(false);
    expect(short.status).toBe(200);
    expect(short.body).toContain("<token>");
    expect(short).toEqual(await exchange(true));

    const c: Case = { procedure: "gitpod.v1.RunnerService/CreateRunnerToken", body: JSON.stringify({ runnerId }) };
    const token = mask(await send(c, http, false));
    expect(token.body).toContain("<token>");
    expect(token).toEqual(mask(await send(c, http, true)));
  });
});

it("takes the short path for plain Connect JSON calls only, and not at all with JSON_FAST_PATH=false", async () => {
  const served = async (target: TestServer) => {
    const text = await (await fetch(`${target.baseUrl}/metrics`)).text();
    return Number(/^rcp_json_fast_path_requests_total (\d+)$/m.exec(text)?.[1]);
  };
  const body = JSON.stringify({ runnerId });
  const before = await served(server);
  await send({ procedure: get, body }, "1.1", false);
  await send({ procedure: get, body }, "2", false);
  await send({ procedure: get, body }, "1.1", true); // has a deadline
  await send({ procedure: get, body, headers: [["content-type", "application/proto"]] }, "2", false);
  expect((await served(server)) - before).toBe(2);

  const off = await startServer({ env: { JSON_FAST_PATH: "false" } });
  try {
    const offUser = await off.newUser();
    await off.runners("connect-json", offUser.apiKey).listRunners({});
    expect(await served(off)).toBe(0);
  } finally {
    await off.close();
  }
});

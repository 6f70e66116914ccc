// Hostile input (property-based, fast-check): thousands of generated requests per run over
// Connect JSON, Connect binary, gRPC (h2c) and gRPC-Web, sent as raw HTTP so that anything
// can be on the wire: random and mutated valid messages of every method, wrong JSON types,
// invalid UTF-8, truncated and garbage protobuf, broken frames, wrong or duplicate content
// types and authorization headers, absurd deadlines, huge strings, deep nesting, oversized
// bodies. Every response must be a well-formed protocol answer with a client-error code, no
// internals in the message, no hang; the server logs no unexpected error and keeps serving.
//
//   npx vitest run test/fuzz.test.ts                  (FUZZ_RUNS=n scales it, FUZZ_SEED=s replays)
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import fc from "fast-check";
import {
  create,
  fromBinary,
  fromJsonString,
  toBinary,
  toJson,
  type DescMethod,
  type JsonValue,
} from "@bufbuild/protobuf";
import { RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { IdentityService } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerInteractionService } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { generateToken } from "../src/domain/tokens.js";
import { frame, outcomeOf, RawClient, type RawRequest, type WireProtocol } from "./raw-rpc.js";
import { startServer, type TestServer, type TestUser } from "./harness.js";
import { messageArbitraries } from "./message-arbitrary.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 300); // batches per protocol; a batch is 1..8 requests
const SEED = process.env.FUZZ_SEED === undefined ? (Date.now() ^ Math.floor(Math.random() * 0x100000000)) | 0 : Number(process.env.FUZZ_SEED);
const MAX_BYTES = 4 * 1024 * 1024; // MAX_REQUEST_BYTES default
const wireProtocols: WireProtocol[] = ["connect-json", "connect-binary", "grpc", "grpc-web"];

/** Codes a hostile client may cause. internal, unknown, unavailable, data_loss, aborted, canceled: never. */
const clientCodes = new Set([
  "ok", "invalid_argument", "not_found", "already_exists", "permission_denied", "resource_exhausted",
  "failed_precondition", "out_of_range", "unimplemented", "unauthenticated",
  "deadline_exceeded", // only when the client itself asked for an (absurdly short) deadline; see below
]);
/** Plain HTTP answers before any RPC is involved (no such procedure, wrong method or content type, header limits). */
const plainHttpStatuses = new Set([400, 404, 405, 408, 411, 413, 415, 431]);
/** What must never reach a client: stack frames, source paths, SQL, driver errors. */
const LEAK =
  /\n\s+at |\bat [\w.<>]+ \(|node_modules|node:internal|\/work\/|\/src\/|\.[cm]?[jt]s:\d+|\b(SELECT|INSERT|UPDATE|DELETE)\b.*\b(FROM|INTO|SET|WHERE)\b|relation "|violates|duplicate key|syntax error at|ECONN|PGlite|pg_|TypeError|RangeError|ReferenceError|Cannot read prop|undefined is not|Maximum call stack/;

const methods: DescMethod[] = [...RunnerService.methods, ...IdentityService.methods, ...RunnerInteractionService.methods];
/** RPCs relayed to a runner over the runner channel. */
const delegated = new Set<DescMethod>([
  RunnerService.method.parseContextURL, RunnerService.method.searchRepositories, RunnerService.method.listSCMOrganizations,
  RunnerService.method.checkAuthenticationForHost, RunnerService.method.checkRepositoryAccess,
]);
/** A fuzzed WatchRequests that opens a stream must end: it gets a short deadline unless its own is malformed. */
function streamDeadline(timeout: string | undefined, isGrpc: boolean): string | undefined {
  const valid = isGrpc ? /^\d{1,8}[HMSmun]$/ : /^\d{1,10}$/;
  return timeout === undefined || valid.test(timeout) ? (isGrpc ? "300m" : "300") : timeout;
}

let server: TestServer;
let client: RawClient;
let user: TestUser;
let fixtures: { runnerIds: string[]; accessToken: string; exchangeToken: string };
const counts = new Map<string, Map<string, number>>();
let total = 0;
// The server runs in this process: what it would print on stderr shows up here.
const warnings: string[] = [];
const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
const consoleErrors = vi.spyOn(console, "error"); // where connect-fastify reports a handler that failed to answer

beforeAll(async () => {
  // The production defaults (4 MiB body limit, 20 auth failures a minute per address).
  // A delegated call that meets a fuzzed stream (which never answers) waits 1 s, not 15.
  server = await startServer({ env: { AUTH_FAILURE_LIMIT: "20", RUNNER_CALL_TIMEOUT_SECONDS: "1" } });
  user = await server.newUser();
  const runners = server.runners("connect-json", user.apiKey);
  const a = await runners.createRunner({ name: "fuzz runner a", provider: RunnerProvider.AWS_EC2 });
  const b = await runners.createRunner({ name: "fuzz runner b", provider: RunnerProvider.LINUX_HOST });
  const { accessToken } = await server.identity("connect-json").exchangeToken({ exchangeToken: a.exchangeToken });
  await server.interaction("connect-json", accessToken).signup({ publicKey: new Uint8Array(32) });
  const { runners: all } = await runners.listRunners({});
  fixtures = { runnerIds: all.map((r) => r.runnerId), accessToken, exchangeToken: b.exchangeToken };
  client = new RawClient("127.0.0.1", server.port);
  process.on("warning", onWarning);
});

afterAll(async () => {
  process.off("warning", onWarning);
  consoleErrors.mockRestore();
  client?.close();
  await server?.close();
  const lines = [`fuzz: ${total} requests (FUZZ_SEED=${SEED} FUZZ_RUNS=${RUNS} replays this run)`];
  for (const [protocol, byCode] of counts) {
    const sum = [...byCode.values()].reduce((x, y) => x + y, 0);
    const codes = [...byCode].sort((x, y) => y[1] - x[1]).map(([code, n]) => `${code}=${n}`).join(" ");
    lines.push(`  ${protocol.padEnd(14)} ${String(sum).padStart(5)}  ${codes}`);
  }
  console.log(lines.join("\n"));
});

// ---------------------------------------------------------------------------------------------
// Generators

const hugeUuid = "ffffffff-ffff-ffff-ffff-ffffffffffff";
const stringArb = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom("my runner", "us-west runner", "abc", "ab", "", " ", "RUNNER_PROVIDER_GCP", "us-west-1") },
    { weight: 3, arbitrary: fc.constantFrom(...fixtures.runnerIds, hugeUuid, "00000000-0000-0000-0000-000000000000", "not-a-uuid") },
    { weight: 1, arbitrary: fc.uuid() },
    { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 30 }) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 30 }) }, // lone surrogates included
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        "https://example.com/logs", "http://", "javascript:alert(1)", "../../../etc/passwd", "' OR 1=1 --", "'; DROP TABLE runners; --",
        "\u0000", "%00%ff", "a".repeat(128), "é".repeat(127), "😀".repeat(64), "{{7*7}}", "${jndi:ldap://x}",
      ),
    },
    { weight: 1, arbitrary: fc.constantFrom(fixtures.accessToken, fixtures.exchangeToken, user.apiKey, generateToken("exchange")) },
  );

const { messageInitArb } = messageArbitraries({ strings: () => stringArb() });

const badUtf8 = [[0xff], [0xc3, 0x28], [0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]].map((b) => Uint8Array.from(b));

type Mutation =
  | { kind: "flip"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "delete"; at: number; length: number }
  | { kind: "duplicate"; at: number; length: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.constantFrom(...badUtf8)) }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant("duplicate" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 16 }) }),
);

function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const at = m.at % (bytes.length + 1);
  const out = Buffer.from(bytes);
  switch (m.kind) {
    case "flip":
      if (bytes.length === 0) return Uint8Array.of(m.value);
      out[at % bytes.length] = m.value;
      return out;
    case "truncate":
      return out.subarray(0, at);
    case "insert":
      return Buffer.concat([out.subarray(0, at), m.bytes, out.subarray(at)]);
    case "delete":
      return Buffer.concat([out.subarray(0, at), out.subarray(at + m.length)]);
    case "duplicate":
      return Buffer.concat([out.subarray(0, at + m.length), out.subarray(at)]);
  }
}

const utf8 = (text: string) => new TextEncoder().encode(text);

function encodeJson(method: DescMethod, init: Record<string, unknown>): JsonValue {
  try {
    return toJson(method.input, create(method.input, init));
  } catch {
    return {}; // e.g. a Timestamp out of the JSON range: send an empty message instead
  }
}

/** JSON bodies: valid, with wrong-typed fields, random JSON, or mutated/invalid text. */
function jsonBodyArb(method: DescMethod): fc.Arbitrary<{ body: Uint8Array; kind: string }> {
  const valid = messageInitArb(method.input).map((init) => encodeJson(method, init));
  const jsonNames = [...method.input.fields.map((f) => f.jsonName), "unknownField"];
  return fc.oneof(
    { weight: 4, arbitrary: valid.map((json) => ({ body: utf8(JSON.stringify(json)), kind: "valid" })) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(valid, fc.array(fc.tuple(fc.constantFrom(...jsonNames, "__proto__", "constructor"), fc.jsonValue({ maxDepth: 3 })), { minLength: 1, maxLength: 3 }))
        .map(([json, changes]) => {
          const object = { ...(json as Record<string, JsonValue>) };
          for (const [key, value] of changes) object[key] = value as JsonValue;
          return { body: utf8(JSON.stringify(object)), kind: "wrong-types" };
        }),
    },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((json) => ({ body: utf8(JSON.stringify(json) ?? "null"), kind: "random-json" })) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(valid, fc.array(mutationArb, { minLength: 1, maxLength: 3 }))
        .map(([json, mutations]) => ({ body: mutations.reduce(mutate, utf8(JSON.stringify(json))), kind: "mutated" })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constantFrom(...jsonNames), fc.constantFrom(...badUtf8))
        .map(([key, bad]) => ({ body: Buffer.concat([utf8(`{"${key}":"ab`), bad, utf8(`cd"}`)]), kind: "invalid-utf8" })),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((body) => ({ body, kind: "garbage" })) },
  );
}

/** Protobuf bodies: valid, mutated, truncated, garbage, invalid UTF-8 in a string field. */
function binaryBodyArb(method: DescMethod): fc.Arbitrary<{ body: Uint8Array; kind: string }> {
  const valid = messageInitArb(method.input).map((init) => toBinary(method.input, create(method.input, init)));
  return fc.oneof(
    { weight: 4, arbitrary: valid.map((body) => ({ body, kind: "valid" })) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(valid, fc.array(mutationArb, { minLength: 1, maxLength: 3 }))
        .map(([body, mutations]) => ({ body: mutations.reduce(mutate, body), kind: "mutated" })),
    },
    { weight: 1, arbitrary: fc.tuple(valid, fc.nat()).map(([body, n]) => ({ body: body.subarray(0, n % (body.length + 1)), kind: "truncated" })) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((body) => ({ body, kind: "garbage" })) },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.integer({ min: 1, max: 8 }), fc.constantFrom(...badUtf8), valid).map(([field, bad, rest]) => ({
        // field N as a length-delimited value with invalid UTF-8 (a string field for most N here)
        body: Buffer.concat([Uint8Array.of((field << 3) | 2, bad.length + 2, 0x61), bad, Uint8Array.of(0x62), rest]),
        kind: "invalid-utf8",
      })),
    },
  );
}

const wrongContentTypes = [
  "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "",
  "application/json; charset=latin1", "application/proto; charset=utf-8", "application/grpc-web-text",
  "application/grpc+json", "application/grpc-web+json", "application/connect+json", "application/connect+proto",
  "application/grpc", "application/grpc-web+proto", "application/json", "application/proto", "APPLICATION/JSON",
];

/** Deadlines that are huge, zero, negative, fractional or not numbers at all. */
const connectTimeouts = ["0", "1", "-1", "1.5", "abc", "", " 100", "2147483648", "9999999999", "99999999999", "9999999999999999999999", "0x10", "1e3", "30000", "30001"];
const grpcTimeouts = ["0n", "1n", "1m", "0S", "-1S", "1.5S", "abc", "", "100000000S", "99999999H", "1x", "S", "5M", "30S", "31S"];

const authorizationArb = (): fc.Arbitrary<string[]> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.constant<string[]>([`Bearer ${user.apiKey}`]) },
    { weight: 2, arbitrary: fc.constant<string[]>([`Bearer ${fixtures.accessToken}`]) },
    { weight: 2, arbitrary: fc.constant<string[]>([]) },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom(
          "Bearer ", "Bearer", "Basic dXNlcjpwYXNz", `bearer ${user.apiKey}`, `Bearer  ${user.apiKey}  `, `Bearer ${user.apiKey.slice(0, -1)}x`,
          `Bearer ${generateToken("apiKey")}`, `Bearer ${generateToken("runnerAccess")}`, `Bearer ${fixtures.exchangeToken}`,
          `Bearer ${"A".repeat(8000)}`, `Bearer ${user.apiKey} ${user.apiKey}`, "Bearer \u00ff\u00fe",
        )
        .map((value): string[] => [value]),
    },
    // Two Authorization headers (HTTP/1.1 keeps both; on HTTP/2 the last one is sent).
    { weight: 1, arbitrary: fc.constant<string[]>([`Bearer ${generateToken("apiKey")}`, `Bearer ${user.apiKey}`]) },
    { weight: 1, arbitrary: fc.constant<string[]>([`Bearer ${user.apiKey}`, `Bearer ${generateToken("apiKey")}`]) },
  );

interface Case {
  protocol: WireProtocol;
  method: DescMethod;
  kind: string;
  request: RawRequest;
}

function caseArb(protocol: WireProtocol): fc.Arbitrary<Case> {
  const methodArb = fc.oneof(
    { weight: 9, arbitrary: fc.constantFrom(...methods) },
    { weight: 1, arbitrary: fc.constant(undefined) }, // a path that is no procedure
  );
  return methodArb.chain((method) => {
    const m = method ?? RunnerService.method.getRunner;
    const body = protocol === "connect-json" ? jsonBodyArb(m) : binaryBodyArb(m);
    const isGrpc = protocol === "grpc" || protocol === "grpc-web";
    const contentType = {
      "connect-json": "application/json",
      "connect-binary": "application/proto",
      grpc: "application/grpc",
      "grpc-web": "application/grpc-web+proto",
    }[protocol];
    return fc
      .record({
        body,
        http: protocol === "grpc" ? fc.constant("2" as const) : fc.constantFrom("1.1" as const, "1.1" as const, "2" as const),
        contentTypes: fc.oneof(
          { weight: 12, arbitrary: fc.constant<string[]>([contentType]) },
          { weight: 2, arbitrary: fc.constantFrom(...wrongContentTypes).map((ct): string[] => [ct]) },
          { weight: 1, arbitrary: fc.constant<string[]>([]) },
          { weight: 1, arbitrary: fc.constantFrom(...wrongContentTypes).map((ct): string[] => [contentType, ct]) },
        ),
        authorization: authorizationArb(),
        timeout: fc.option(fc.constantFrom(...(isGrpc ? grpcTimeouts : connectTimeouts)), { nil: undefined, freq: 4 }),
        framing: fc.oneof(
          { weight: 10, arbitrary: fc.constant({ kind: "frame" as const }) },
          { weight: 1, arbitrary: fc.record({ kind: fc.constant("flags" as const), flags: fc.constantFrom(1, 2, 0x80, 0xff) }) },
          { weight: 1, arbitrary: fc.record({ kind: fc.constant("length" as const), delta: fc.integer({ min: -10, max: 10 }) }) },
          { weight: 1, arbitrary: fc.constant({ kind: "two-frames" as const }) },
          { weight: 1, arbitrary: fc.constant({ kind: "no-frame" as const }) },
          { weight: 1, arbitrary: fc.integer({ min: 1, max: 4 }).map((n) => ({ kind: "partial-header" as const, n })) },
        ),
        extra: fc.subarray([
          ["connect-protocol-version", "2"],
          ["connect-protocol-version", "garbage"],
          ["content-encoding", "gzip"],
          ["content-encoding", "br"],
          ["connect-content-encoding", "zstd"],
          ["grpc-encoding", "gzip"],
          ["grpc-encoding", "identity"],
          ["grpc-encoding", "x-unknown"],
          ["accept-encoding", "gzip"],
          ["grpc-accept-encoding", "garbage"],
          ["x-request-id", "\u00e9\u00e9 not a request id"],
          ["traceparent", "00-zzzz-zzzz-01"],
          ["te", "gzip"],
          ["x-grpc-web", "1"],
        ] as [string, string][], { maxLength: 2 }),
      })
      .map(({ body: { body: payload, kind }, http, contentTypes, authorization, timeout, framing, extra }): Case => {
        let wire: Uint8Array = payload;
        let frameKind = "";
        if (isGrpc) {
          switch (framing.kind) {
            case "frame":
              wire = frame(payload);
              break;
            case "flags":
              wire = frame(payload, framing.flags);
              frameKind = "+flags";
              break;
            case "length":
              wire = frame(payload, 0, Math.max(0, payload.length + framing.delta));
              frameKind = "+length";
              break;
            case "two-frames":
              wire = Buffer.concat([frame(payload), frame(payload)]);
              frameKind = "+two-frames";
              break;
            case "no-frame":
              frameKind = "+no-frame";
              break;
            case "partial-header":
              wire = Buffer.concat([frame(payload), frame(payload).subarray(0, framing.n)]);
              frameKind = "+partial-header";
          }
        }
        const headers: [string, string][] = contentTypes.map((ct) => ["content-type", ct]);
        for (const value of authorization) headers.push(["authorization", value]);
        const deadline = m.methodKind === "server_streaming" ? streamDeadline(timeout, isGrpc) : timeout;
        if (deadline !== undefined) headers.push([isGrpc ? "grpc-timeout" : "connect-timeout-ms", deadline]);
        if (protocol === "grpc") headers.push(["te", "trailers"]);
        headers.push(...extra);
        const path = method ? `/${method.parent.typeName}/${method.name}` : "/gitpod.v1.RunnerService/NoSuchMethod";
        return { protocol, method: m, kind: kind + frameKind, request: { method: "POST", path, headers, body: wire, http } };
      });
  });
}

/** Connect GET (side-effect-free methods) with odd query strings. */
function connectGetArb(): fc.Arbitrary<Case> {
  const readOnly = methods.filter((m) => m.idempotency === 1 /* NO_SIDE_EFFECTS */);
  return fc
    .record({
      method: fc.constantFrom(...readOnly),
      json: fc.boolean(),
      variant: fc.constantFrom("valid", "garbage", "base64", "missing-message", "bad-encoding", "compression", "mutated"),
      authorization: authorizationArb(),
      seed: fc.nat(),
    })
    .chain(({ method, json, variant, authorization }) =>
      messageInitArb(method.input).map((init): Case => {
        const message = create(method.input, init);
        const text = JSON.stringify(encodeJson(method, init));
        const query: Record<string, string> = { connect: "v1", encoding: json ? "json" : "proto" };
        const asBase64 = Buffer.from(json ? utf8(text) : toBinary(method.input, message)).toString("base64url");
        if (variant === "valid") Object.assign(query, json ? { message: text } : { message: asBase64, base64: "1" });
        if (variant === "garbage") query.message = "%%%\u0000{[";
        if (variant === "base64") Object.assign(query, { message: "!!!not base64!!!", base64: "1" });
        if (variant === "bad-encoding") Object.assign(query, { encoding: "xml", message: text });
        if (variant === "compression") Object.assign(query, { message: asBase64, base64: "1", compression: "gzip" });
        if (variant === "mutated") Object.assign(query, { message: text.slice(0, Math.max(0, text.length - 2)) + "\uFFFF" });
        const path = `/${method.parent.typeName}/${method.name}?${new URLSearchParams(query)}`;
        const headers: [string, string][] = authorization.map((value) => ["authorization", value]);
        return { protocol: json ? "connect-json" : "connect-binary", method, kind: `get-${variant}`, request: { method: "GET", path, headers, body: new Uint8Array(), http: "1.1" } };
      }),
    );
}

// ---------------------------------------------------------------------------------------------
// Checks

function count(protocol: string, code: string) {
  const byCode = counts.get(protocol) ?? new Map<string, number>();
  byCode.set(code, (byCode.get(code) ?? 0) + 1);
  counts.set(protocol, byCode);
  total++;
}

function describeCase(c: Case): string {
  const body = Buffer.from(c.request.body);
  return `${c.protocol} ${c.kind} ${c.request.method} ${c.request.path} over HTTP/${c.request.http}\n` +
    `headers: ${JSON.stringify(c.request.headers.map(([k, v]) => [k, v.length > 80 ? `${v.slice(0, 80)}…` : v]))}\n` +
    `body (${body.length} bytes): ${body.subarray(0, 200).toString("hex")}`;
}

/** Sends one case and checks the answer; returns the outcome. */
async function check(c: Case): Promise<ReturnType<typeof outcomeOf>> {
  let outcome: ReturnType<typeof outcomeOf>;
  try {
    outcome = outcomeOf(await client.send(c.request), { streaming: c.method.methodKind === "server_streaming" });
  } catch (err) {
    throw new Error(`no well-formed answer (${(err as Error).message}) for\n${describeCase(c)}`);
  }
  const clientTimeout = c.request.headers.some(([name]) => name === "connect-timeout-ms" || name === "grpc-timeout");
  const problems = [...outcome.problems];
  if (outcome.code.startsWith("http_")) {
    if (!plainHttpStatuses.has(Number(outcome.code.slice(5)))) problems.push(`plain HTTP status ${outcome.code}`);
  } else if (!clientCodes.has(outcome.code) && !(delegated.has(c.method) && outcome.code === "unavailable" && /is not connected/.test(outcome.message))) {
    // (A delegated call to a runner without a stream is unavailable: the runner is, not the server.)
    problems.push(`code ${outcome.code}`);
  } else if (outcome.code === "deadline_exceeded" && !clientTimeout && !(delegated.has(c.method) && /did not answer/.test(outcome.message))) {
    problems.push("deadline_exceeded without a client deadline");
  }
  if (LEAK.test(outcome.message)) problems.push(`message leaks internals: ${outcome.message}`);
  if (outcome.code === "ok" && outcome.payload) {
    try {
      if (outcome.protocol === "connect-json") fromJsonString(c.method.output, Buffer.from(outcome.payload).toString("utf8"));
      else fromBinary(c.method.output, outcome.payload);
    } catch (err) {
      problems.push(`OK payload does not decode as ${c.method.output.typeName}: ${(err as Error).message}`);
    }
  }
  count(c.kind === "regression" ? "regressions" : c.protocol + (c.request.method === "GET" ? " GET" : ""), outcome.code);
  if (problems.length > 0) {
    throw new Error(`${problems.join("; ")} (code ${outcome.code}, message ${JSON.stringify(outcome.message.slice(0, 300))}) for\n${describeCase(c)}`);
  }
  return outcome;
}

function fuzz(arb: fc.Arbitrary<Case>, runs: number) {
  return fc.assert(
    fc.asyncProperty(fc.array(arb, { minLength: 1, maxLength: 8 }), async (cases) => {
      // A batch goes out concurrently, so handlers also see hostile input side by side.
      const results = await Promise.allSettled(cases.map(check));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
    }),
    { numRuns: runs, seed: SEED, endOnFailure: true },
  );
}

// ---------------------------------------------------------------------------------------------

describe.each(wireProtocols)("generated requests over %s", (protocol) => {
  it(`answers ${RUNS} batches with well-formed client errors or successes`, async () => {
    await fuzz(caseArb(protocol), RUNS);
  }, 120_000);
});

describe("Connect GET", () => {
  it("answers odd query strings with well-formed client errors or successes", async () => {
    await fuzz(connectGetArb(), Math.ceil(RUNS / 4));
  }, 120_000);
});

describe.each(wireProtocols)("oversized and deeply nested input over %s", (protocol) => {
  const isGrpc = protocol === "grpc" || protocol === "grpc-web";
  const contentType = { "connect-json": "application/json", "connect-binary": "application/proto", grpc: "application/grpc", "grpc-web": "application/grpc-web+proto" }[protocol];
  const createRunner = RunnerService.method.createRunner;

  function request(body: Uint8Array, kind: string, wrap = true): Case {
    const headers: [string, string][] = [["content-type", contentType], ["authorization", `Bearer ${user.apiKey}`]];
    if (protocol === "grpc") headers.push(["te", "trailers"]);
    return {
      protocol,
      method: createRunner,
      kind,
      request: { method: "POST", path: "/gitpod.v1.RunnerService/CreateRunner", headers, body: isGrpc && wrap ? frame(body) : body, http: protocol === "grpc" ? "2" : "1.1" },
    };
  }

  function createRunnerBody(name: string): Uint8Array {
    const message = create(createRunner.input, { name, provider: RunnerProvider.GCP });
    return protocol === "connect-json" ? utf8(JSON.stringify(toJson(createRunner.input, message))) : toBinary(createRunner.input, message);
  }

  it("refuses a name just below the body limit as invalid, and a body above it as resource_exhausted", async () => {
    expect((await check(request(createRunnerBody("x".repeat(MAX_BYTES - 1024)), "huge-below"))).code).toBe("invalid_argument");
    expect((await check(request(createRunnerBody("x".repeat(MAX_BYTES + 1024)), "huge-above"))).code).toBe("resource_exhausted");
    // Multi-byte characters: 2 MiB of "é" is 4 MiB of UTF-8.
    expect((await check(request(createRunnerBody("é".repeat(MAX_BYTES / 2 + 10)), "huge-utf8"))).code).toBe("resource_exhausted");
  }, 60_000);

  it.runIf(isGrpc)("refuses a frame that declares more than the limit before the body arrives", async () => {
    const declared = frame(new Uint8Array(16), 0, 64 * 1024 * 1024);
    expect((await check(request(declared, "declared-huge", false))).code).toBe("resource_exhausted");
  });

  it("answers deeply nested input without crashing", async () => {
    const depth = 100_000;
    const bodies: Uint8Array[] =
      protocol === "connect-json"
        ? [
            utf8(`{"name":${"[".repeat(depth)}${"]".repeat(depth)}}`),
            utf8(`{"spec":${'{"configuration":'.repeat(depth)}{}${"}".repeat(depth)}}`),
            utf8(`${"[".repeat(depth)}`),
          ]
        : [
            // Unknown field 15 as nested groups (start-group ... end-group), 100 000 deep.
            Buffer.concat([Buffer.alloc(depth, 0x7b), Buffer.alloc(depth, 0x7c)]),
            Buffer.concat([createRunnerBody("deep groups"), Buffer.alloc(depth, 0x7b), Buffer.alloc(depth, 0x7c)]),
            // Field 3 (spec) as nested length-delimited messages that never close properly.
            Buffer.alloc(depth, 0x1a),
          ];
    for (const body of bodies) {
      const outcome = await check(request(body, "deep"));
      expect(outcome.code).not.toBe("ok");
    }
  }, 60_000);
});

// Fixed bugs the fuzzer found, replayed deterministically (src/rpc/protocol-guards.ts, src/http/early-response.ts,
// src/http/dual-server.ts): each was `internal`, a hang, or a torn-down connection before.
describe("regressions found by fuzzing", () => {
  const auth: [string, string] = ["authorization", `Bearer ${"x"}`];
  const grpcHeaders = (contentType = "application/grpc"): [string, string][] => [["content-type", contentType], ["te", "trailers"], [auth[0], `Bearer ${user.apiKey}`]];
  const send = (request: Partial<RawRequest> & { path: string; headers: [string, string][] }) =>
    check({
      protocol: "grpc",
      method: IdentityService.method.getAuthenticatedIdentity,
      kind: "regression",
      request: { method: "POST", body: new Uint8Array(), http: "2", ...request },
    });
  const identityPath = "/gitpod.v1.IdentityService/GetAuthenticatedIdentity";
  const getRunnerPath = "/gitpod.v1.RunnerService/GetRunner";

  it.each([
    ["gRPC", "application/grpc", "2", true],
    ["gRPC-Web", "application/grpc-web+proto", "1.1", true],
    ["Connect", "application/proto", "1.1", false],
  ] as const)("answers truncated protobuf over %s with invalid_argument, not internal", async (_name, contentType, http, framed) => {
    const truncated = Uint8Array.of(0x0a, 0x24, 0x61); // field 1, 36 bytes announced, 1 present
    const outcome = await send({ path: getRunnerPath, http, headers: grpcHeaders(contentType), body: framed ? frame(truncated) : truncated });
    expect(outcome.code).toBe("invalid_argument");
    expect(outcome.message).toMatch(/^cannot decode the request message: premature EOF/);
  });

  it("answers a frame flagged compressed without grpc-encoding with invalid_argument", async () => {
    const outcome = await send({ path: identityPath, headers: grpcHeaders(), body: frame(new Uint8Array(), 1) });
    expect(outcome.code).toBe("invalid_argument");
  });

  it("answers a truncated gzip body with invalid_argument", async () => {
    const truncated = gzipSync(utf8("{}")).subarray(0, 12); // zlib: "unexpected end of file"
    const outcome = await send({ path: identityPath, http: "1.1", headers: [["content-type", "application/json"], ["content-encoding", "gzip"], [auth[0], `Bearer ${user.apiKey}`]], body: truncated });
    expect(outcome.code).toBe("invalid_argument");
  });

  it("answers a Connect GET whose message is not base64 with invalid_argument", async () => {
    const outcome = await send({ method: "GET", http: "1.1", path: `${identityPath}?connect=v1&encoding=proto&base64=1&message=!!!`, headers: [[auth[0], `Bearer ${user.apiKey}`]] });
    expect(outcome.code).toBe("invalid_argument");
  });

  it("answers a gRPC JSON syntax error quoting half an emoji, and keeps the HTTP/2 connection", async () => {
    const body = frame(utf8(`x${"😀".repeat(20)}`)); // V8 quotes "x😀😀😀😀\ud83d" in its message
    const [broken, ...others] = await Promise.all([
      send({ path: identityPath, headers: grpcHeaders("application/grpc+json"), body }),
      ...Array.from({ length: 5 }, () => send({ path: identityPath, headers: grpcHeaders(), body: frame(new Uint8Array()) })),
    ]);
    expect(broken!.code).toBe("invalid_argument");
    for (const other of others) expect(other.code).toBe("ok");
  });

  it("refuses a deadline too long for a timer without arming one (no TimeoutOverflowWarning)", async () => {
    const before = warnings.length;
    expect((await send({ path: identityPath, headers: [...grpcHeaders(), ["grpc-timeout", "99999999H"]] })).code).toBe("invalid_argument");
    const connect = await send({ path: identityPath, http: "1.1", headers: [["content-type", "application/json"], ["connect-timeout-ms", "9999999999"], [auth[0], `Bearer ${user.apiKey}`]], body: utf8("{}") });
    expect(connect.code).toBe("invalid_argument");
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(warnings.slice(before)).toEqual([]);
  });

  it("closes an HTTP/1.1 connection after refusing a body it did not read, so the next request does not hang", async () => {
    const oversized = create(RunnerService.method.createRunner.input, { name: "x".repeat(MAX_BYTES + 1024), provider: RunnerProvider.GCP });
    const headers: [string, string][] = [["content-type", "application/proto"], [auth[0], `Bearer ${user.apiKey}`]];
    const path = "/gitpod.v1.RunnerService/CreateRunner";
    const raw = await client.send({ method: "POST", path, http: "1.1", headers, body: toBinary(RunnerService.method.createRunner.input, oversized) });
    expect(raw.status).toBe(429);
    expect(raw.headers.connection).toBe("close");
    // Sequential requests reuse the agent's connections: none may be stuck behind unread bytes.
    for (let i = 0; i < 3; i++) {
      const outcome = await send({ path: identityPath, http: "1.1", headers: [["content-type", "application/json"], [auth[0], `Bearer ${user.apiKey}`]], body: utf8("{}") });
      expect(outcome.code).toBe("ok");
    }
  });
});

describe("afterwards", () => {
  it("still answers /healthz and valid calls over every protocol, and logged no unexpected error", async () => {
    expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(200);
    for (const protocol of ["connect-json", "connect-binary", "grpc", "grpc-web"] as const) {
      const identity = await server.identity(protocol, user.apiKey).getAuthenticatedIdentity({});
      expect(identity.subject?.id).toBe(user.userId);
    }
    const unexpected = server.logs.filter((line) => {
      const entry = JSON.parse(line) as { level: number };
      return entry.level >= 50;
    });
    expect(unexpected).toEqual([]);
    expect(consoleErrors.mock.calls.map((args) => String(args[0]))).toEqual([]);
    // Known and harmless, once per process: Node's note that the HTTP/2 compatibility layer drops a
    // Connection header (Fastify's error path), and that more than 10 calls in flight listen to
    // the shutdown signal @connectrpc/connect-fastify shares between them.
    const benign = /^(UnsupportedWarning|MaxListenersExceededWarning)/;
    expect(warnings.filter((warning) => !benign.test(warning))).toEqual([]);
    expect(total).toBeGreaterThan(1000);
  });
});

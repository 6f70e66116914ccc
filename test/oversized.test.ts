// A request message above MAX_REQUEST_BYTES gets a prompt, well-formed `resource_exhausted` on
// every protocol, over HTTP/1.1 and h2c (TLS: test/tls.test.ts), from real clients that write the
// whole message at once (connect-node's transports with their defaults, curl). Before: over
// HTTP/2 a 10.9 or 15 MiB message was reset with ENHANCE_YOUR_CALM instead of answered (Node's
// client cannot take response headers while its session memory holds the unsent body), and curl
// saw the response headers and then waited for trailers until it gave up (the stream stayed open).
//
//   npx vitest run test/oversized.test.ts
import { execFile } from "node:child_process";
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { create, toBinary } from "@bufbuild/protobuf";
import { RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { bearer, failure, startServer, type TestServer, type TestUser } from "./harness.js";
import { frame } from "./raw-rpc.js";

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const SIZES = [5_000_000, Math.round(10.9 * MiB), 15 * MiB];
/** Generous for a busy machine; a hang or a reset shows up as a failure long before. */
const PROMPT_MS = 10_000;

let server: TestServer;
let user: TestUser;
let dir: string;

beforeAll(async () => {
  server = await startServer();
  user = await server.newUser();
  dir = mkdtempSync(join(tmpdir(), "rcp-oversized-"));
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

// Each call on a transport of its own (so on a fresh HTTP/2 session), as a client process would.
const transports: [string, () => Transport][] = [
  ["gRPC (h2c)", () => createGrpcTransport({ baseUrl: server.baseUrl, interceptors: [bearer(user.apiKey)] })],
  ["Connect binary over h2c", () => createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors: [bearer(user.apiKey)] })],
  ["Connect JSON over h2c", () => createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "2", useBinaryFormat: false, interceptors: [bearer(user.apiKey)] })],
  ["gRPC-Web over h2c", () => createGrpcWebTransport({ baseUrl: server.baseUrl, httpVersion: "2", interceptors: [bearer(user.apiKey)] })],
  ["Connect JSON over HTTP/1.1", () => createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", useBinaryFormat: false, interceptors: [bearer(user.apiKey)] })],
  ["gRPC-Web over HTTP/1.1", () => createGrpcWebTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", interceptors: [bearer(user.apiKey)] })],
];

describe.each(transports)("%s", (_name, transport) => {
  it.each(SIZES)("answers a %i-byte GetRunner and UpdateRunner with resource_exhausted, promptly", async (size) => {
    const client = createClient(RunnerService, transport());
    for (const call of [
      () => client.getRunner({ runnerId: "x".repeat(size) }, { timeoutMs: PROMPT_MS }),
      () => client.updateRunner({ runnerId: "00000000-0000-4000-8000-000000000000", name: "x".repeat(size) }, { timeoutMs: PROMPT_MS }),
    ]) {
      const err = await failure(call);
      expect(Code[err.code]).toBe("ResourceExhausted");
      // The server's answer: connect-node reads a stream reset with ENHANCE_YOUR_CALM as resource_exhausted too.
      expect(err.rawMessage).toMatch(/larger than configured readMaxBytes 4194304/);
    }
  }, 60_000);
});

function grpcBody(size: number): Buffer {
  const message = create(RunnerService.method.getRunner.input, { runnerId: "x".repeat(size) });
  return Buffer.from(frame(toBinary(RunnerService.method.getRunner.input, message)));
}

describe.runIf(process.platform === "linux")("curl (HTTP/2 prior knowledge, declares content-length)", () => {
  it.each(SIZES)("gets grpc-status 8 in the trailers of a %i-byte gRPC call and exits cleanly", async (size) => {
    const file = join(dir, `body-${size}`);
    writeFileSync(file, grpcBody(size));
    const { stdout } = await execFileAsync(
      "curl",
      ["-sS", "--http2-prior-knowledge", "--max-time", String(PROMPT_MS / 1000), "-o", "/dev/null", "-D", "-",
        "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", `authorization: Bearer ${user.apiKey}`,
        "--data-binary", `@${file}`, `${server.baseUrl}/gitpod.v1.RunnerService/GetRunner`],
    );
    expect(stdout).toMatch(/^HTTP\/2 200/);
    expect(stdout).toMatch(/grpc-status: 8/); // a trailer (curl -D prints trailers after the headers)
  }, 30_000);
});

describe("a client that keeps sending after the answer", () => {
  it("gets the answer, then RST_STREAM(NO_ERROR) telling it to stop", async () => {
    const session = http2.connect(server.baseUrl);
    session.on("error", () => {});
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": "/gitpod.v1.RunnerService/GetRunner",
        "content-type": "application/grpc",
        te: "trailers",
        authorization: `Bearer ${user.apiKey}`,
      });
      stream.on("error", () => {});
      let trailers: http2.IncomingHttpHeaders | undefined;
      stream.on("trailers", (t) => (trailers = t));
      stream.resume();
      // A frame header declaring 100 MiB, then bytes for as long as the stream is open.
      stream.write(frame(new Uint8Array(0), 0, 100 * MiB).subarray(0, 5));
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let sent = 0;
      const pump = async () => {
        while (!stream.closed && !stream.destroyed) {
          sent += chunk.length;
          if (!stream.write(chunk)) await new Promise((resolve) => (stream.once("drain", resolve), stream.once("close", resolve)));
        }
      };
      const started = performance.now();
      void pump();
      await new Promise((resolve) => stream.once("close", resolve));
      expect(performance.now() - started).toBeLessThan(PROMPT_MS);
      expect(trailers?.["grpc-status"]).toBe("8");
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
      expect(sent).toBeGreaterThan(0);
    } finally {
      session.destroy();
    }
  }, 30_000);
});

// TLS on the one port (TLS_CERT_FILE/TLS_KEY_FILE): ALPN offers h2 and http/1.1, so gRPC
// clients and HTTP/1.1 clients (browsers, curl, the SDK) share it. The certificate is a
// self-signed one made by the openssl CLI for this run.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as http2 from "node:http2";
import * as https from "node:https";
import * as tls from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { IdentityService } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { ConfigError, loadConfig } from "../src/config.js";
import { bearer, failure, startServer, type TestServer, type TestUser } from "./harness.js";
import { expectDribbledStreamCancelled, expectNoConnectionsWithin } from "./slow-clients.js";

const execFileAsync = promisify(execFile);

let dir: string;
let certFile: string;
let keyFile: string;
let ca: Buffer;
let server: TestServer;
let user: TestUser;
let origin: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "rcp-tls-"));
  certFile = join(dir, "cert.pem");
  keyFile = join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ], { stdio: "ignore" });
  ca = readFileSync(certFile);
  server = await startServer({ env: { TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile } });
  user = await server.newUser();
  origin = `https://127.0.0.1:${server.port}`;
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

function alpn(protocols: string[]): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port: server.port, ca, servername: "localhost", ALPNProtocols: protocols }, () => {
      resolve(socket.alpnProtocol ?? false);
      socket.end();
    });
    socket.on("error", reject);
  });
}

function httpsGet(path: string, agent?: https.Agent): Promise<{ status: number; body: string; httpVersion: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(`${origin}${path}`, { ca, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, httpVersion: res.httpVersion }));
    });
    req.on("error", reject);
  });
}

describe("TLS with ALPN on one port", () => {
  it("negotiates h2 with gRPC clients and http/1.1 with HTTP/1.1-only clients", async () => {
    expect(await alpn(["h2", "http/1.1"])).toBe("h2");
    expect(await alpn(["http/1.1"])).toBe("http/1.1");
  });

  it("logs the https address", () => {
    expect(server.logs.some((line) => line.includes(`Server listening at https://127.0.0.1:${server.port}`))).toBe(true);
  });

  it.each([
    ["gRPC (h2)", () => createGrpcTransport({ baseUrl: origin, nodeOptions: { ca }, interceptors: [bearer(user.apiKey)] })],
    ["Connect over h2", () => createConnectTransport({ baseUrl: origin, httpVersion: "2", nodeOptions: { ca }, interceptors: [bearer(user.apiKey)] })],
    ["Connect over HTTP/1.1", () => createConnectTransport({ baseUrl: origin, httpVersion: "1.1", nodeOptions: { ca }, interceptors: [bearer(user.apiKey)] })],
    ["gRPC-Web over HTTP/1.1", () => createGrpcWebTransport({ baseUrl: origin, httpVersion: "1.1", nodeOptions: { ca }, interceptors: [bearer(user.apiKey)] })],
  ])("serves %s with the CA trusted", async (_name, transport) => {
    const identity = await createClient(IdentityService, transport()).getAuthenticatedIdentity({});
    expect(identity.organizationId).toBe(user.organizationId);
  });

  it("serves plain HTTP/1.1 requests (health, metrics) over TLS", async () => {
    const health = await httpsGet("/healthz");
    expect(health).toMatchObject({ status: 200, httpVersion: "1.1" });
    expect((await httpsGet("/metrics")).body).toContain("grpc_server_handled_total");
  });

  it("works with buf curl and server reflection over TLS", async () => {
    const { stdout } = await execFileAsync("npx", ["buf", "curl", "--cacert", certFile, "--reflect", "--list-services", origin]);
    expect(stdout).toContain("gitpod.v1.RunnerService");
  });

  it("rejects a client that does not trust the certificate", async () => {
    await expect(createClient(IdentityService, createGrpcTransport({ baseUrl: origin })).getAuthenticatedIdentity({})).rejects.toThrow();
  });

  // The whole upload must fit in REQUEST_TIMEOUT_MS, so this runs on the server with the defaults.
  it.each([
    ["gRPC (h2)", () => createGrpcTransport({ baseUrl: origin, nodeOptions: { ca }, interceptors: [bearer(user.apiKey)] })],
    ["Connect over h2", () => createConnectTransport({ baseUrl: origin, httpVersion: "2", nodeOptions: { ca }, interceptors: [bearer(user.apiKey)] })],
    ["Connect over HTTP/1.1", () => createConnectTransport({ baseUrl: origin, httpVersion: "1.1", nodeOptions: { ca }, interceptors: [bearer(user.apiKey)] })],
  ])("answers a 15 MiB message over %s with resource_exhausted", async (_name, transport) => {
    const err = await failure(createClient(RunnerService, transport()).getRunner({ runnerId: "x".repeat(15 * 1024 * 1024) }, { timeoutMs: 10_000 }));
    expect(err.code).toBe(Code.ResourceExhausted);
    // The server's answer, not connect-node's reading of a reset stream (ENHANCE_YOUR_CALM is resource_exhausted there too).
    expect(err.rawMessage).toMatch(/larger than configured readMaxBytes/);
  }, 30_000);

  it("closes promptly with idle h2 sessions and idle HTTP/1.1 keep-alive connections open", async () => {
    const agent = new https.Agent({ keepAlive: true, ca });
    await httpsGet("/healthz", agent); // leaves an idle keep-alive socket
    await createClient(IdentityService, createGrpcTransport({ baseUrl: origin, nodeOptions: { ca }, interceptors: [bearer(user.apiKey)] })).getAuthenticatedIdentity({});
    const started = Date.now();
    await server.close();
    expect(Date.now() - started).toBeLessThan(3_000);
    agent.destroy();
  });
});

describe("TLS configuration", () => {
  it("needs both files, readable, or neither", () => {
    expect(() => loadConfig({ TLS_CERT_FILE: certFile })).toThrow(/TLS_CERT_FILE and TLS_KEY_FILE must be set together/);
    expect(() => loadConfig({ TLS_KEY_FILE: keyFile })).toThrow(ConfigError);
    expect(() => loadConfig({ TLS_CERT_FILE: join(dir, "missing.pem"), TLS_KEY_FILE: keyFile })).toThrow(/TLS_CERT_FILE is not a readable file/);
    expect(loadConfig({ TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile }).tls).toEqual({ certFile, keyFile });
    expect(loadConfig({}).tls).toBeUndefined();
  });
});

// The same slow-client guards as the cleartext server (test/slow-loris.test.ts, helpers in
// test/slow-clients.ts), shared code in
// src/http/http2-streams.ts. Before, the TLS server checked HTTP/1.1 header timeouts only every
// 30 s, had no whole-request deadline per HTTP/2 stream, and left the socket of an idle h2
// session whose client does not read half-closed forever.
describe("slow clients over TLS", () => {
  const HEADERS_TIMEOUT_MS = 500;
  const REQUEST_TIMEOUT_MS = 1_000;
  const IDLE_TIMEOUT_MS = 1_000;
  const SLACK_MS = 1_500;
  let slow: TestServer;
  let slowUser: TestUser;
  let slowOrigin: string;

  beforeAll(async () => {
    slow = await startServer({
      env: {
        TLS_CERT_FILE: certFile,
        TLS_KEY_FILE: keyFile,
        HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
        REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
        IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS),
      },
    });
    slowUser = await slow.newUser();
    slowOrigin = `https://127.0.0.1:${slow.port}`;
  });
  afterAll(() => slow?.close());

  const connect = (alpn: string[]) =>
    new Promise<tls.TLSSocket>((resolve, reject) => {
      const socket = tls.connect({ host: "127.0.0.1", port: slow.port, ca, servername: "localhost", ALPNProtocols: alpn }, () => resolve(socket));
      socket.on("error", reject);
    });
  const closedAfter = (socket: tls.TLSSocket, started: number) =>
    new Promise<number>((resolve) => socket.once("close", () => resolve(performance.now() - started)));

  it("closes an HTTP/1.1 connection whose headers arrive byte by byte after HEADERS_TIMEOUT_MS", async () => {
    const socket = await connect(["http/1.1"]);
    socket.on("error", () => {});
    const started = performance.now();
    const closed = closedAfter(socket, started);
    const headers = `GET /healthz HTTP/1.1\r\nHost: x\r\n${"X-Slow: a\r\n".repeat(1000)}`;
    let i = 0;
    const drip = setInterval(() => !socket.destroyed && socket.write(headers[i++ % headers.length]!), 50);
    const afterMs = await closed;
    clearInterval(drip);
    expect(afterMs).toBeLessThan(HEADERS_TIMEOUT_MS + SLACK_MS);
  });

  it("cancels an HTTP/2 stream whose body arrives byte by byte after REQUEST_TIMEOUT_MS, keeping the session", async () => {
    const session = http2.connect(slowOrigin, { ca });
    session.on("error", () => {});
    try {
      await expectDribbledStreamCancelled(session, slowUser.apiKey, REQUEST_TIMEOUT_MS + SLACK_MS);
    } finally {
      session.destroy();
    }
  });

  it("destroys the socket of an idle HTTP/2 session whose client neither reads nor closes", async () => {
    const socket = await connect(["h2"]);
    socket.on("error", () => {});
    socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    socket.pause(); // never reads: cannot see the GOAWAY nor the server's close_notify
    await expectNoConnectionsWithin(slow, IDLE_TIMEOUT_MS + 1_000 + SLACK_MS);
    socket.destroy();
  });
});

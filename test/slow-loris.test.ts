// Slow clients cannot hold the server: a connection that sends nothing, dribbles its headers,
// the HTTP/2 preface or its body byte by byte, or idles after the preface is closed by the
// server's timeouts (HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS, IDLE_TIMEOUT_MS; tiny here so the
// test is fast), while other clients keep being served.
//
//   npx vitest run test/slow-loris.test.ts
import * as http2 from "node:http2";
import * as net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { startServer, type TestServer, type TestUser } from "./harness.js";
import { expectDribbledStreamCancelled, expectNoConnectionsWithin } from "./slow-clients.js";

const HEADERS_TIMEOUT_MS = 500;
const REQUEST_TIMEOUT_MS = 1_000;
const IDLE_TIMEOUT_MS = 1_000;
/** Scheduling slack on a busy CI machine. */
const SLACK_MS = 1_500;

let server: TestServer;
let user: TestUser;

beforeAll(async () => {
  server = await startServer({
    env: {
      HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS),
    },
  });
  user = await server.newUser();
});
afterAll(() => server?.close());

interface SlowClient {
  /** Resolves with the ms from connect until the server closed the connection, and what it sent. */
  closed: Promise<{ afterMs: number; received: string }>;
  stop(): void;
}

/** Connects and sends `bytes` one at a time, `intervalMs` apart (0: all at once; nothing when empty), reading all it gets. */
function slowClient(bytes: Buffer, intervalMs = 50): SlowClient {
  const socket = net.connect(server.port, "127.0.0.1");
  const started = performance.now();
  let received = "";
  let timer: NodeJS.Timeout | undefined;
  socket.on("connect", () => {
    let i = 0;
    if (intervalMs === 0) {
      if (bytes.length > 0) socket.write(bytes);
      return;
    }
    const next = () => {
      if (i >= bytes.length || socket.destroyed) return;
      socket.write(bytes.subarray(i, ++i));
      timer = setTimeout(next, intervalMs);
    };
    next();
  });
  socket.on("data", (chunk) => (received += chunk.toString("latin1")));
  socket.on("error", () => {}); // a reset counts as closed
  const closed = new Promise<{ afterMs: number; received: string }>((resolve) => {
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ afterMs: performance.now() - started, received });
    });
  });
  return { closed, stop: () => socket.destroy() };
}

const neverEndingHeaders = () =>
  Buffer.from(
    `POST /gitpod.v1.IdentityService/GetAuthenticatedIdentity HTTP/1.1\r\nHost: x\r\n` +
      Array.from({ length: 500 }, (_, i) => `X-Slow-${i}: ${"a".repeat(20)}\r\n`).join(""),
  );

describe("timeouts against slow clients", () => {
  it("closes a connection that sends nothing after HEADERS_TIMEOUT_MS", async () => {
    const { afterMs } = await slowClient(Buffer.alloc(0)).closed;
    expect(afterMs).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
    expect(afterMs).toBeLessThan(HEADERS_TIMEOUT_MS + SLACK_MS);
  });

  it("closes an HTTP/1.1 connection whose headers arrive byte by byte", async () => {
    // These headers would take 10 minutes at 20 bytes per second.
    const { afterMs, received } = await slowClient(neverEndingHeaders()).closed;
    expect(afterMs).toBeLessThan(HEADERS_TIMEOUT_MS + SLACK_MS);
    expect(received === "" || received.startsWith("HTTP/1.1 408")).toBe(true);
  });

  it("closes a connection that dribbles the HTTP/2 preface (a deadline, not reset by each byte)", async () => {
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
    const { afterMs } = await slowClient(preface, 100).closed; // the whole preface would take 2.4 s
    expect(afterMs).toBeLessThan(HEADERS_TIMEOUT_MS + SLACK_MS);
    expect(afterMs).toBeLessThan(preface.length * 100);
  });

  it("closes an HTTP/2 connection that sends the preface and then nothing after IDLE_TIMEOUT_MS", async () => {
    // The whole preface at once, then silence; reading what the server sends.
    const { afterMs } = await slowClient(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"), 0).closed;
    expect(afterMs).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - 50);
    expect(afterMs).toBeLessThan(IDLE_TIMEOUT_MS + SLACK_MS);
  });

  it("also closes it when the client neither reads nor closes (no half-open socket left behind)", async () => {
    const socket = net.connect(server.port, "127.0.0.1", () => socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    socket.pause(); // never reads: cannot see the server's GOAWAY nor its FIN
    socket.on("error", () => {});
    // The server destroys its side a second after the idle close.
    await expectNoConnectionsWithin(server, IDLE_TIMEOUT_MS + 1_000 + SLACK_MS);
    socket.destroy();
  });

  it("closes an HTTP/1.1 connection whose body arrives byte by byte after REQUEST_TIMEOUT_MS", async () => {
    const head = Buffer.from(
      `POST /gitpod.v1.IdentityService/GetAuthenticatedIdentity HTTP/1.1\r\nHost: x\r\n` +
        `Content-Type: application/json\r\nAuthorization: Bearer ${user.apiKey}\r\nContent-Length: 1000\r\n\r\n`,
    );
    const socket = net.connect(server.port, "127.0.0.1");
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    socket.on("connect", () => {
      socket.write(head);
      const drip = () => {
        if (socket.destroyed) return;
        socket.write(" ");
        timer = setTimeout(drip, 50);
      };
      drip();
    });
    socket.on("error", () => {});
    const afterMs = await new Promise<number>((resolve) =>
      socket.on("close", () => {
        clearTimeout(timer);
        resolve(performance.now() - started);
      }),
    );
    expect(afterMs).toBeLessThan(REQUEST_TIMEOUT_MS + SLACK_MS);
  });

  it("cancels an HTTP/2 stream whose body arrives byte by byte after REQUEST_TIMEOUT_MS, keeping the session", async () => {
    const session = http2.connect(server.baseUrl);
    session.on("error", () => {});
    try {
      await expectDribbledStreamCancelled(session, user.apiKey, REQUEST_TIMEOUT_MS + SLACK_MS);
    } finally {
      session.destroy();
    }
  });

  it("keeps serving other clients while 60 slow clients hang on", async () => {
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
    const slow = Array.from({ length: 60 }, (_, i) =>
      slowClient(i % 3 === 0 ? Buffer.alloc(0) : i % 3 === 1 ? neverEndingHeaders() : preface, 100),
    );
    try {
      const latencies: number[] = [];
      const until = performance.now() + HEADERS_TIMEOUT_MS + 300;
      while (performance.now() < until) {
        const started = performance.now();
        const identity = await server.identity("grpc", user.apiKey).getAuthenticatedIdentity({});
        expect(identity.subject?.id).toBe(user.userId);
        const response = await fetch(`${server.baseUrl}/healthz`);
        expect(response.status).toBe(200);
        latencies.push(performance.now() - started);
      }
      expect(latencies.length).toBeGreaterThan(3);
      expect(Math.max(...latencies)).toBeLessThan(1_000);
      // ...and the slow ones are all gone shortly after.
      const closed = await Promise.all(slow.map((client) => client.closed));
      expect(Math.max(...closed.map((c) => c.afterMs))).toBeLessThan(HEADERS_TIMEOUT_MS + SLACK_MS);
    } finally {
      for (const client of slow) client.stop();
    }
  });
});

describe("configuration", () => {
  it("defaults to 10 s for headers, 60 s per request and 65 s idle, and rejects a header timeout above the request timeout", () => {
    expect(loadConfig({})).toMatchObject({ headersTimeoutMs: 10_000, requestTimeoutMs: 60_000, idleTimeoutMs: 65_000 });
    expect(() => loadConfig({ HEADERS_TIMEOUT_MS: "5000", REQUEST_TIMEOUT_MS: "1000" })).toThrow(/HEADERS_TIMEOUT_MS/);
    expect(() => loadConfig({ HEADERS_TIMEOUT_MS: "10" })).toThrow(/HEADERS_TIMEOUT_MS must be between/);
  });
});

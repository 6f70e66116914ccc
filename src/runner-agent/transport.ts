// How the runner talks to the control plane. The default is gRPC over HTTP/2 (h2c for http://,
// ALPN h2 for https://): the protocol made for a long server stream, with HTTP/2 PINGs that find
// a dead connection in pingIntervalMs + pingTimeoutMs even while the stream is quiet. Connect
// (binary over HTTP/2, or JSON over HTTP/1.1) and gRPC-Web can be chosen with --protocol, e.g.
// behind a proxy that speaks only HTTP/1.1; there the stream watchdog (agent.ts) finds dead streams.
import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { RUNNER_VERSION } from "./version.js";

export const PROTOCOLS = ["grpc", "connect", "connect-json", "grpc-web"] as const;
export type Protocol = (typeof PROTOCOLS)[number];
export type HttpVersion = "1.1" | "2";

/** The HTTP version a protocol uses unless --http-version says otherwise (gRPC needs HTTP/2). */
export const DEFAULT_HTTP_VERSION: Record<Protocol, HttpVersion> = { grpc: "2", connect: "2", "connect-json": "1.1", "grpc-web": "1.1" };

export interface TransportOptions {
  baseUrl: string;
  protocol: Protocol;
  httpVersion: HttpVersion;
  /** PEM of the CA that signed the server's certificate, for https:// with a private CA. */
  ca?: Buffer;
  /** The current access token (it can change when the runner exchanges a new one). */
  token: () => string | undefined;
}

const PING_INTERVAL_MS = 15_000;
const PING_TIMEOUT_MS = 10_000;

export interface RunnerTransport {
  transport: Transport;
  /** Closes the connection and every call on it. */
  close(): void;
}

export function createRunnerTransport(options: TransportOptions): RunnerTransport {
  const auth: Interceptor = (next) => (req) => {
    const token = options.token();
    // ExchangeToken is authenticated by the exchange token in its body, never by a header.
    if (token && req.method.name !== "ExchangeToken") req.header.set("authorization", `Bearer ${token}`);
    req.header.set("user-agent", `rcp-dev-runner/${RUNNER_VERSION}`);
    return next(req);
  };
  const interceptors = [auth];
  const tls = options.ca ? { ca: options.ca } : {};
  if (options.httpVersion === "2") {
    const sessionManager = new Http2SessionManager(
      options.baseUrl,
      { pingIntervalMs: PING_INTERVAL_MS, pingTimeoutMs: PING_TIMEOUT_MS, pingIdleConnection: true, idleConnectionTimeoutMs: 60_000 },
      tls,
    );
    const common = { baseUrl: options.baseUrl, httpVersion: "2" as const, sessionManager, interceptors };
    const transport =
      options.protocol === "grpc"
        ? createGrpcTransport(common)
        : options.protocol === "grpc-web"
          ? createGrpcWebTransport({ ...common, useBinaryFormat: true })
          : createConnectTransport({ ...common, useBinaryFormat: options.protocol === "connect" });
    return { transport, close: () => sessionManager.abort() };
  }
  if (options.protocol === "grpc") throw new Error("gRPC needs HTTP/2 (--http-version 2)");
  const common = { baseUrl: options.baseUrl, httpVersion: "1.1" as const, nodeOptions: tls, interceptors };
  const transport =
    options.protocol === "grpc-web"
      ? createGrpcWebTransport({ ...common, useBinaryFormat: true })
      : createConnectTransport({ ...common, useBinaryFormat: options.protocol === "connect" });
  return { transport, close: () => {} };
}

/** The message connect-node's Http2SessionManager destroys an idle connection with on a GOAWAY. */
export const IDLE_GOAWAY_MESSAGE = "received GOAWAY without any open streams";

/**
 * The error connect-node may raise as an uncaught exception after a GOAWAY on a connection
 * without streams (connectrpc/connect-es#1768, open as of 2.1.2); it concerns no call.
 */
export function isIdleConnectionGoaway(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.Canceled && err.rawMessage === IDLE_GOAWAY_MESSAGE;
}

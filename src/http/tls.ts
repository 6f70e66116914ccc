// TLS on the one port: HTTP/2 and HTTP/1.1 negotiated by ALPN, so browsers (HTTP/1.1 or
// h2), gRPC clients (h2) and Connect/gRPC-Web clients share it. Used instead of the
// cleartext dual server (src/http/dual-server.ts) when TLS_CERT_FILE and TLS_KEY_FILE are set,
// with the same timeouts and the same close behaviour.
import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import type { DualServerTimeouts } from "./dual-server.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Handler = (req: any, res: any) => void;

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

export type TlsServer = http2.Http2SecureServer & {
  closeIdleConnections(): void;
  closeHttp2Sessions(): void;
  closeAllConnections(): void;
};

export function createTlsServer(handler: Handler, files: TlsFiles, timeouts: DualServerTimeouts): TlsServer {
  const server = http2.createSecureServer(
    {
      cert: readFileSync(files.certFile),
      key: readFileSync(files.keyFile),
      allowHTTP1: true, // ALPN offers h2 and http/1.1; clients without ALPN get HTTP/1.1
      minVersion: "TLSv1.2",
      // A client that completes no TLS handshake must not hold a socket for long.
      handshakeTimeout: timeouts.headersTimeoutMs,
    },
    handler,
  );
  // HTTP/1.1 connections over TLS are served by Node's http machinery inside this server,
  // which reads these fields like an http.Server does.
  const h1 = server as unknown as { headersTimeout: number; requestTimeout: number; keepAliveTimeout: number };
  h1.headersTimeout = timeouts.headersTimeoutMs;
  h1.requestTimeout = timeouts.requestTimeoutMs;
  h1.keepAliveTimeout = timeouts.idleTimeoutMs;

  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    session.setTimeout(timeouts.idleTimeoutMs, () => session.close());
  });
  // Failed handshakes (wrong protocol, unknown CA on the client side, timeouts) just close.
  server.on("tlsClientError", (_err, socket) => socket.destroy());

  // Node's Http2SecureServer already has closeIdleConnections() (for its HTTP/1.1
  // connections; Fastify calls it on close); @types/node only does not declare it.
  return Object.assign(server as http2.Http2SecureServer & { closeIdleConnections(): void }, {
    closeHttp2Sessions: () => {
      for (const session of sessions) session.close();
    },
    closeAllConnections: () => {
      // Http2SecureServer has no closeAllConnections: destroy the h2 sessions; HTTP/1.1
      // connections end when their request completes (idle ones were closed already).
      for (const session of sessions) session.destroy();
    },
  });
}

// TLS on the one port: HTTP/2 and HTTP/1.1 negotiated by ALPN, so browsers (HTTP/1.1 or
// h2), gRPC clients (h2) and Connect/gRPC-Web clients share it. Used instead of the
// cleartext dual server (src/http/dual-server.ts) when TLS_CERT_FILE and TLS_KEY_FILE are set,
// with the same timeouts, HTTP/2 stream guards and close behaviour (src/http/http2-streams.ts).
import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import type * as net from "node:net";
import { applyHttp1Timeouts, guardHttp2, type ServerTimeouts } from "./http2-streams.js";

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

export function createTlsServer(handler: Handler, files: TlsFiles, timeouts: ServerTimeouts): TlsServer {
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
  // which reads the same fields as an http.Server.
  applyHttp1Timeouts(server, timeouts);
  // The TLS socket a new h2 session runs on: Node's own 'secureConnection' listener creates the
  // session (and emits 'session') synchronously, right after this one.
  let handingOver: net.Socket | undefined;
  server.prependListener("secureConnection", (socket: net.Socket) => (handingOver = socket));
  const sessions = guardHttp2(server, timeouts, () => handingOver!);
  // Failed handshakes (wrong protocol, unknown CA on the client side, timeouts) just close.
  server.on("tlsClientError", (_err, socket) => socket.destroy());

  // Node's Http2SecureServer already has closeIdleConnections() (for its HTTP/1.1
  // connections; Fastify calls it on close); @types/node only does not declare it.
  return Object.assign(server as http2.Http2SecureServer & { closeIdleConnections(): void }, {
    closeHttp2Sessions: () => sessions.closeAll(),
    closeAllConnections: () => {
      // Http2SecureServer has no closeAllConnections: destroy the h2 sessions; HTTP/1.1
      // connections end when their request completes (idle ones were closed already).
      sessions.destroyAll();
    },
  });
}

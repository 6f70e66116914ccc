// The socket server under Fastify: cleartext HTTP/1.1 + h2c on one port (src/http/dual-server.ts),
// or TLS with ALPN h2 + http/1.1 (src/http/tls.ts), with the same slow-client timeouts.
import type { FastifyServerFactory } from "fastify";
import { createDualServer, type DualServerTimeouts } from "./dual-server.js";
import { createTlsServer, type TlsFiles } from "./tls.js";

export function serverFactory(tls: TlsFiles | undefined, timeouts: DualServerTimeouts): FastifyServerFactory {
  return (handler) =>
    (tls ? createTlsServer(handler, tls, timeouts) : createDualServer(handler, timeouts)) as unknown as ReturnType<FastifyServerFactory>;
}

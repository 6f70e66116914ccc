// One cleartext port for HTTP/1.1 and HTTP/2 with prior knowledge (h2c). Node cannot do
// both on one socket by itself (allowHTTP1 needs TLS/ALPN), so a net.Server peeks at the
// first bytes: the HTTP/2 connection preface goes to an http2 server, anything else to an
// http server. Both hand requests to the same Fastify handler.
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { applyHttp1Timeouts, guardHttp2, type ServerTimeouts } from "./http2-streams.js";

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Handler = (req: any, res: any) => void;

/** The slow-client timeouts (shared with the TLS server). */
export type DualServerTimeouts = ServerTimeouts;

export type DualServer = net.Server & {
  closeIdleConnections(): void;
  closeHttp2Sessions(): void;
  closeAllConnections(): void;
};

export function createDualServer(handler: Handler, timeouts: DualServerTimeouts): DualServer {
  const h1 = http.createServer(handler);
  applyHttp1Timeouts(h1, timeouts);
  h1.timeout = timeouts.idleTimeoutMs * 2;

  const h2 = http2.createServer({}, handler);
  // The socket being handed to the h2 server: its 'session' event fires synchronously.
  let handingOver: net.Socket | undefined;
  const h2Sessions = guardHttp2(h2, timeouts, () => handingOver!); // src/http/http2-streams.ts

  const server = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => {
    let head = Buffer.alloc(0);
    // A client that connects and sends nothing, or dribbles the HTTP/2 preface byte by byte,
    // must not hold a socket: the first bytes must decide the protocol within the header
    // timeout (a deadline, not an inactivity timer that each byte would reset).
    const sniffDeadline = setTimeout(() => socket.destroy(), timeouts.headersTimeoutMs);
    socket.once("close", () => clearTimeout(sniffDeadline));
    const onReadable = () => {
      for (let chunk: Buffer | null; (chunk = socket.read()) !== null; ) head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, H2_PREFACE.length);
      const looksH2 = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (looksH2 && head.length < H2_PREFACE.length) {
        if (socket.readableEnded) socket.destroy();
        return; // not decided yet: wait for more bytes
      }
      socket.off("readable", onReadable);
      clearTimeout(sniffDeadline);
      socket.unshift(head);
      if (looksH2) {
        handingOver = socket;
        h2.emit("connection", socket);
        handingOver = undefined;
      } else {
        h1.emit("connection", socket);
      }
    };
    socket.on("readable", onReadable);
    socket.on("error", () => socket.destroy());
  });

  // http.Server starts its connection tracking (idle/timeouts) on its own 'listening' event.
  server.on("listening", () => h1.emit("listening"));
  server.on("close", () => {
    h1.close();
    h2.close();
  });
  return Object.assign(server, {
    closeIdleConnections: () => h1.closeIdleConnections(),
    // Fastify calls this on close; without it idle h2 sessions keep close() waiting.
    closeHttp2Sessions: () => h2Sessions.closeAll(),
    closeAllConnections: () => {
      h1.closeAllConnections();
      h2Sessions.destroyAll();
    },
  });
}

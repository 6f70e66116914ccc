// One cleartext port for HTTP/1.1 and HTTP/2 with prior knowledge (h2c). Node cannot do
// both on one socket by itself (allowHTTP1 needs TLS/ALPN), so a net.Server peeks at the
// first bytes: the HTTP/2 connection preface goes to an http2 server, anything else to an
// http server. Both hand requests to the same Fastify handler.
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Handler = (req: any, res: any) => void;

export interface DualServerTimeouts {
  /** Time to receive a request's headers (slow-loris guard). */
  headersTimeoutMs: number;
  /** Time to receive a whole HTTP/1.1 request, body included. */
  requestTimeoutMs: number;
  /** Idle time after which a keep-alive connection or h2 session is closed. */
  idleTimeoutMs: number;
}

export type DualServer = net.Server & {
  closeIdleConnections(): void;
  closeHttp2Sessions(): void;
  closeAllConnections(): void;
};

export function createDualServer(handler: Handler, timeouts: DualServerTimeouts): DualServer {
  const h1 = http.createServer(
    {
      requestTimeout: timeouts.requestTimeoutMs,
      headersTimeout: timeouts.headersTimeoutMs,
      // Node enforces both timeouts only when it checks its connections (default every 30 s,
      // which would let a slow-loris client keep a 10 s header timeout for up to 40 s).
      connectionsCheckingInterval: Math.max(50, Math.min(5_000, Math.floor(timeouts.headersTimeoutMs / 4))),
    },
    handler,
  );
  h1.keepAliveTimeout = timeouts.idleTimeoutMs;
  h1.timeout = timeouts.idleTimeoutMs * 2;

  const h2 = http2.createServer({}, handler);
  // Each session with the socket it runs on (the session only exposes a proxy of it).
  const sessions = new Map<http2.Http2Session, net.Socket>();
  // The socket being handed to the h2 server: its 'session' event fires synchronously.
  let handingOver: net.Socket | undefined;
  // Like HTTP/1.1's requestTimeout: a request must have arrived whole (END_STREAM) within
  // requestTimeoutMs, or its stream is cancelled; a slow client cannot hold streams open by
  // dribbling bodies (each byte would reset an inactivity timer). The session lives on.
  h2.on("stream", (stream: http2.ServerHttp2Stream) => {
    if (stream.readableEnded) return;
    const deadline = setTimeout(() => {
      if (!stream.readableEnded && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    }, timeouts.requestTimeoutMs);
    deadline.unref();
    stream.once("end", () => clearTimeout(deadline));
    stream.once("close", () => clearTimeout(deadline));
  });
  h2.on("session", (session) => {
    const socket = handingOver!;
    sessions.set(session, socket);
    socket.once("close", () => sessions.delete(session));
    session.setTimeout(timeouts.idleTimeoutMs, () => closeSession(session, socket));
  });

  /**
   * Closes a session gracefully (its streams may finish). Once it is done, its socket gets a
   * second to deliver the GOAWAY and is then destroyed: Node only half-closes it, so a client
   * that neither reads nor closes would otherwise hold it, and keep close() waiting, forever.
   */
  function closeSession(session: http2.Http2Session, socket: net.Socket): void {
    session.close();
    const poll = setInterval(() => {
      if (!session.destroyed) return;
      clearInterval(poll);
      setTimeout(() => socket.destroy(), 1_000).unref();
    }, 100);
    poll.unref();
    socket.once("close", () => clearInterval(poll));
  }

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
    closeHttp2Sessions: () => {
      for (const [session, socket] of sessions) closeSession(session, socket);
    },
    closeAllConnections: () => {
      h1.closeAllConnections();
      for (const [session, socket] of sessions) {
        session.destroy();
        socket.destroy();
      }
    },
  });
}

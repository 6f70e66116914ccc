// What the cleartext server (src/http/dual-server.ts) and the TLS server (src/http/tls.ts) do
// the same way with their connections: the slow-client timeouts of HTTP/1.1, and for HTTP/2 a
// whole-request deadline per stream, "stop sending" after an early answer, and idle sessions that
// are closed for good even when their client neither reads nor closes.
import type * as http from "node:http";
import * as http2 from "node:http2";
import type * as net from "node:net";

export interface ServerTimeouts {
  /** Time to receive a request's headers (slow-loris guard). */
  headersTimeoutMs: number;
  /** Time to receive a whole request, body included (HTTP/1.1 request, HTTP/2 stream). */
  requestTimeoutMs: number;
  /** Idle time after which a keep-alive connection or h2 session is closed. */
  idleTimeoutMs: number;
}

/** The HTTP/1.1 timeouts, on an http.Server or on the HTTP/1.1 side of an Http2SecureServer (which reads the same fields). */
export function applyHttp1Timeouts(server: http.Server | http2.Http2SecureServer, timeouts: ServerTimeouts): void {
  // (Not `timeout`, the socket inactivity limit: an Http2SecureServer applies it to its HTTP/2
  // sessions too, which would cut long-lived streams that are quiet for a while.)
  const h1 = server as unknown as Pick<http.Server, "requestTimeout" | "headersTimeout" | "keepAliveTimeout"> & { connectionsCheckingInterval: number };
  h1.requestTimeout = timeouts.requestTimeoutMs;
  h1.headersTimeout = timeouts.headersTimeoutMs;
  h1.keepAliveTimeout = timeouts.idleTimeoutMs;
  // Node enforces the header and request timeouts only when it checks its connections (default
  // every 30 s, which would let a slow-loris client keep a 10 s header timeout for up to 40 s).
  // Read when the server starts listening.
  h1.connectionsCheckingInterval = Math.max(50, Math.min(5_000, Math.floor(timeouts.headersTimeoutMs / 4)));
}

export interface Http2Sessions {
  /** Closes every session gracefully (in-flight streams finish); Fastify calls it on close. */
  closeAll(): void;
  /** Destroys every session and its socket. */
  destroyAll(): void;
}

/**
 * Installs the HTTP/2 guards on `server`. `socketOf()` is called during the 'session' event and
 * returns the socket the session runs on (a session only exposes a proxy of it).
 */
export function guardHttp2(server: http2.Http2Server | http2.Http2SecureServer, timeouts: ServerTimeouts, socketOf: () => net.Socket): Http2Sessions {
  const sessions = new Map<http2.Http2Session, net.Socket>();

  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    // Like HTTP/1.1's requestTimeout: a request must have arrived whole (END_STREAM) within
    // requestTimeoutMs, or its stream is cancelled; a slow client cannot hold streams open by
    // dribbling bodies (each byte would reset an inactivity timer). The session lives on.
    if (!stream.readableEnded) {
      const deadline = setTimeout(() => {
        if (!stream.readableEnded && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
      }, timeouts.requestTimeoutMs);
      deadline.unref();
      stream.once("end", () => clearTimeout(deadline));
      stream.once("close", () => clearTimeout(deadline));
    }
    // An answer sent while the client is still sending (refused before its body was read): once
    // the trailers are queued (Node's compatibility layer always ends with them), tell the client
    // to stop with RST_STREAM(NO_ERROR), as RFC 9113 §8.1 allows and gRPC servers do. Node sends
    // what is queued before the reset. Without it the stream stays open, the client blocked on
    // flow control, until the request deadline.
    stream.on("wantTrailers", () => {
      setImmediate(() => {
        if (!stream.destroyed && !stream.closed && stream.state.remoteClose === 0) stream.close(http2.constants.NGHTTP2_NO_ERROR);
      });
    });
  });

  server.on("session", (session: http2.ServerHttp2Session) => {
    const socket = socketOf();
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

  return {
    closeAll: () => {
      for (const [session, socket] of sessions) closeSession(session, socket);
    },
    destroyAll: () => {
      for (const [session, socket] of sessions) {
        session.destroy();
        socket.destroy();
      }
    },
  };
}

// HTTP/1.1 connections whose request was answered before its body was read to the end.
//
// When a call is refused early (a body above MAX_REQUEST_BYTES, a frame declaring too much, a
// broken envelope), the rest of the body is still on its way and stays unread. Left as a
// keep-alive connection, a client that sends its next request on it waits forever behind the
// unread bytes (found by test/fuzz.test.ts), and the connection keeps the server from closing.
// So such an answer says `Connection: close`. Node would then destroy the socket as soon as the
// answer is written, which with unread bytes is a TCP reset that can wipe the answer out of the
// client's receive buffer; instead the server half-closes (FIN after the answer) and destroys
// the socket a little later. HTTP/2 needs none of this: only the stream ends.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";

/** How long a client gets to read the answer before the half-closed socket is destroyed. */
const LINGER_MS = 2_000;

export function closeAfterEarlyResponse(req: IncomingMessage, res: ServerResponse): void {
  if (req.httpVersionMajor !== 1) return;
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    const socket = res.socket;
    if (!req.complete && res.shouldKeepAlive && socket) {
      res.shouldKeepAlive = false; // sends Connection: close
      lingerOnClose(socket);
    }
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as typeof res.writeHead;
}

function lingerOnClose(socket: Socket): void {
  // Node calls destroySoon() once a Connection: close answer is written.
  socket.destroySoon = function (this: Socket) {
    this.end();
    const timer = setTimeout(() => this.destroy(), LINGER_MS);
    timer.unref();
    this.once("close", () => clearTimeout(timer));
  };
}

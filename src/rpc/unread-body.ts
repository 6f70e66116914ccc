// An answer that is ready before the request body has arrived (a message above MAX_REQUEST_BYTES,
// refused from its declared length or its envelope header; a malformed envelope; a bad header)
// waits until the rest of the body has been read and thrown away, within limits, and is sent then.
//
// Why not answer at once: an HTTP/2 client that wrote a large message in one go holds the unsent
// bytes in its session memory, and Node's client (connect-node, grpc-js: maxSessionMemory, 10 MB
// by default) refuses the response headers while that memory is full: it resets the stream with
// ENHANCE_YOUR_CALM and reports `internal` instead of our `resource_exhausted`. HTTP/1.1 clients
// that only read the response after sending lose it when the server closes first. Once the body
// has been read, every client sees the status, and an HTTP/1.1 connection stays reusable.
//
// The limits keep it cheap: at most DRAIN_MAX_BYTES more bytes, DRAIN_MAX_MS in all, and no pause
// longer than DRAIN_IDLE_MS (the answer waits for a client that is sending, not for one that
// stalls). A client still sending after that gets the answer anyway, and then, on HTTP/2,
// RST_STREAM(NO_ERROR) ("stop sending", src/http/http2-streams.ts); on HTTP/1.1
// `Connection: close` (src/http/early-response.ts).
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";

/** Most bytes read and discarded after an early answer (the largest MAX_REQUEST_BYTES). */
export const DRAIN_MAX_BYTES = 64 * 1024 * 1024;
/** Longest an early answer waits for the rest of the body... */
export const DRAIN_MAX_MS = 10_000;
/** ...and for the next bytes of it. */
export const DRAIN_IDLE_MS = 1_000;

export interface DrainLimits {
  maxBytes: number;
  maxMs: number;
  idleMs: number;
}

/** Wraps a handler of a unary or server-streaming method (whose answer normally comes after the whole request). */
export function answerAfterBody(handler: UniversalHandler, limits: DrainLimits = { maxBytes: DRAIN_MAX_BYTES, maxMs: DRAIN_MAX_MS, idleMs: DRAIN_IDLE_MS }): UniversalHandler {
  const kind = handler.method.methodKind;
  if (kind !== "unary" && kind !== "server_streaming") return handler;
  const wrapped = async (request: UniversalServerRequest): Promise<UniversalServerResponse> => {
    if (request.method !== "POST" || !isAsyncIterable(request.body)) return handler(request);
    const body = trackedBody(request.body);
    const response = await handler({ ...request, body: body.iterable });
    if (!body.ended) await body.drain(limits);
    return response;
  };
  return Object.assign(wrapped, handler);
}

function isAsyncIterable(value: unknown): value is AsyncIterable<Uint8Array> {
  return typeof value === "object" && value !== null && Symbol.asyncIterator in value;
}

/** The body as Connect reads it, minus Connect's early `return()` (which would destroy the request), and a way to read the rest. */
function trackedBody(source: AsyncIterable<Uint8Array>) {
  const it = source[Symbol.asyncIterator]();
  const state = {
    ended: false,
    iterable: {
      [Symbol.asyncIterator]: () => ({
        next: async () => {
          const result = await it.next();
          if (result.done) state.ended = true;
          return result;
        },
        // Connect stops reading early on a refusal; the rest is read by drain().
        return: async () => ({ done: true as const, value: undefined }),
      }),
    } as AsyncIterable<Uint8Array>,
    async drain(limits: DrainLimits): Promise<void> {
      const deadline = performance.now() + limits.maxMs;
      let bytes = 0;
      let timer: NodeJS.Timeout | undefined;
      try {
        while (bytes <= limits.maxBytes) {
          const wait = Math.min(limits.idleMs, deadline - performance.now());
          if (wait <= 0) return;
          const next = it.next();
          next.catch(() => {}); // a read left pending at the deadline fails when the stream is reset
          const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), wait)));
          const result = await Promise.race([next, timeout]);
          clearTimeout(timer);
          if (result === "timeout" || result.done) return;
          bytes += result.value.byteLength;
        }
      } catch {
        // The client went away or the stream was reset: nothing more to read.
      } finally {
        clearTimeout(timer);
      }
    },
  };
  return state;
}

// A streaming RPC is not over when the interceptor chain returns: its messages are still to
// come. Interceptors that record how a call ended (metrics, the log line) use this to see the
// end of a stream's messages instead.
import type { StreamResponse, UnaryResponse } from "@connectrpc/connect";

/** How a stream's messages ended: completed, failed with `error`, or the client stopped reading. */
export type StreamEnd = { kind: "completed" } | { kind: "failed"; error: unknown } | { kind: "canceled" };

/**
 * For a streaming response, calls `onEnd` once its messages end, and rethrows what `onEnd`
 * returns for a failure (e.g. an error without internals) in place of the original error.
 * A unary response is returned unchanged.
 */
export function atStreamEnd<R extends UnaryResponse | StreamResponse>(res: R, onEnd: (end: StreamEnd) => unknown): R {
  if (!res.stream) return res;
  const messages = res.message;
  async function* watched() {
    let end: StreamEnd = { kind: "canceled" };
    try {
      yield* messages;
      end = { kind: "completed" };
    } catch (error) {
      end = { kind: "failed", error };
      throw onEnd(end) ?? error;
    } finally {
      if (end.kind !== "failed") onEnd(end);
    }
  }
  return { ...res, message: watched() };
}

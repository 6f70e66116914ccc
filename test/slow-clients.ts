// Slow-client checks shared by the cleartext (test/slow-loris.test.ts) and the TLS
// (test/tls.test.ts) servers, which share their guards (src/http/http2-streams.ts).
import * as http2 from "node:http2";
import { expect } from "vitest";
import type { TestServer } from "./harness.js";

/**
 * On `session`: a stream whose body is dribbled a byte every 50 ms is cancelled within
 * `withinMs`, and the same session then still serves a call.
 */
export async function expectDribbledStreamCancelled(session: http2.ClientHttp2Session, apiKey: string, withinMs: number): Promise<void> {
  const request = () =>
    session.request({
      ":method": "POST",
      ":path": "/gitpod.v1.IdentityService/GetAuthenticatedIdentity",
      "content-type": "application/json",
      authorization: `Bearer ${apiKey}`,
    });
  const stream = request();
  stream.on("error", () => {});
  stream.resume();
  const started = performance.now();
  const drip = setInterval(() => stream.write(" "), 50);
  const afterMs = await new Promise<number>((resolve) => stream.on("close", () => resolve(performance.now() - started)));
  clearInterval(drip);
  expect(afterMs).toBeLessThan(withinMs);
  expect(stream.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
  // The same connection still serves calls.
  const ok = request();
  let status = 0;
  ok.on("response", (headers) => (status = Number(headers[":status"])));
  ok.resume();
  ok.end("{}");
  await new Promise((resolve) => ok.on("close", resolve));
  expect(status).toBe(200);
}

/** Waits up to `withinMs` for the server to hold no connection (sockets destroyed, not half-open), and expects that. */
export async function expectNoConnectionsWithin(server: TestServer, withinMs: number): Promise<void> {
  const started = performance.now();
  const connections = () => new Promise<number>((resolve) => server.app.server.getConnections((_err, n) => resolve(n)));
  while ((await connections()) > 0 && performance.now() - started < withinMs) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(await connections()).toBe(0);
}

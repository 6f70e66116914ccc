// Closing the server is bounded: after SHUTDOWN_TIMEOUT_MS the handlers are told to stop, and a
// moment later any connection still open is cut, whatever its client does. Without that bound a
// client that never finishes its request holds `close()` (and a pod in Terminating) until the
// request timeout (60 s by default).
//
//   npx vitest run test/shutdown.test.ts
import * as http from "node:http";
import * as http2 from "node:http2";
import { afterAll, describe, expect, it } from "vitest";
import { DRAIN_GRACE_MS } from "../src/server.js";
import { startServer, type TestServer } from "./harness.js";

const SHUTDOWN_TIMEOUT_MS = 300;

describe("closing the server", () => {
  const opened: TestServer[] = [];
  afterAll(async () => {
    for (const server of opened) await server.close().catch(() => {});
  });

  it("ends within SHUTDOWN_TIMEOUT_MS and a short grace while clients hold unfinished requests on HTTP/1.1 and HTTP/2", async () => {
    const server = await startServer({ env: { SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) } });
    opened.push(server);
    const path = "/gitpod.v1.RunnerService/GetRunner";

    // HTTP/2: a stream whose body never ends.
    const session = http2.connect(server.baseUrl);
    session.on("error", () => {});
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/json" }, { endStream: false });
    stream.on("error", () => {});
    stream.write("{");
    await new Promise((resolve) => stream.once("ready", resolve));

    // HTTP/1.1: a request whose body never ends.
    const request = http.request(`${server.baseUrl}${path}`, { method: "POST", headers: { "content-type": "application/json", "content-length": "100" } });
    request.on("error", () => {});
    request.write("{");
    await new Promise((resolve) => request.once("socket", (socket) => socket.once("connect", resolve)));

    const started = performance.now();
    await server.close();
    const took = performance.now() - started;
    session.destroy();
    request.destroy();
    expect(took).toBeLessThan(SHUTDOWN_TIMEOUT_MS + DRAIN_GRACE_MS + 2_000);
  }, 90_000);
});

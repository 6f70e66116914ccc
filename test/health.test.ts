// grpc.health.v1.Health (Check, List, Watch) from the same readiness signal as GET /readyz, with
// connect-node's gRPC transport and, where Debian's python3-grpcio is installed (.ci/run installs
// it), with gRPC's C-core client: the implementation behind most non-Go health probes. Neither
// grpc_health_probe nor grpcurl is packaged by Debian.
//
//   npx vitest run test/health.test.ts
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { failure, openTestDatabase, startServer, type TestServer } from "./harness.js";
import { FaultyDatabase } from "./faulty-database.js";

const execFileAsync = promisify(execFile);

let server: TestServer;
let db: FaultyDatabase;

beforeAll(async () => {
  db = new FaultyDatabase(await openTestDatabase());
  server = await startServer({ db });
});
afterAll(async () => {
  await server?.close().catch(() => {});
});

const health = () => createClient(Health, createGrpcTransport({ baseUrl: server.baseUrl }));
const readyz = async () => (await fetch(`${server.baseUrl}/readyz`)).status;

/** Polls `condition` until it holds or `ms` passed. */
async function eventually(condition: () => Promise<boolean> | boolean, ms = 10_000): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (await condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return condition();
}

describe("Check and List", () => {
  it("say SERVING for the server and each gitpod.v1 service, without credentials", async () => {
    expect((await health().check({})).status).toBe(ServingStatus.SERVING);
    expect((await health().check({ service: RunnerService.typeName })).status).toBe(ServingStatus.SERVING);
    const { statuses } = await health().list({});
    expect(Object.keys(statuses)).toEqual(expect.arrayContaining(["", "gitpod.v1.RunnerService", "gitpod.v1.IdentityService", "gitpod.v1.RunnerInteractionService"]));
    for (const response of Object.values(statuses)) expect(response.status).toBe(ServingStatus.SERVING);
  });

  it("answer NOT_FOUND for an unknown service", async () => {
    expect((await failure(health().check({ service: "no.such.Service" }))).code).toBe(Code.NotFound);
  });

  it("say NOT_SERVING exactly when /readyz says 503 (database unreachable)", async () => {
    db.mode = "down";
    try {
      expect(await readyz()).toBe(503);
      expect((await health().check({})).status).toBe(ServingStatus.NOT_SERVING);
    } finally {
      db.mode = "ok";
    }
    expect(await readyz()).toBe(200);
    expect((await health().check({})).status).toBe(ServingStatus.SERVING);
  });

  it("are listed by server reflection", async () => {
    const { stdout } = await execFileAsync("npx", ["buf", "curl", "--reflect", "--protocol", "grpc", "--http2-prior-knowledge", "--list-methods", server.baseUrl]);
    expect(stdout).toContain("grpc.health.v1.Health/Check");
    expect(stdout).toContain("grpc.health.v1.Health/Watch");
  });
});

describe("Watch", () => {
  it("sends the status at once, then each change", async () => {
    const abort = new AbortController();
    const seen: ServingStatus[] = [];
    const watching = (async () => {
      for await (const response of health().watch({}, { signal: abort.signal })) seen.push(response.status);
    })().catch(() => {});
    try {
      expect(await eventually(() => seen.length === 1)).toBe(true);
      expect(seen[0]).toBe(ServingStatus.SERVING);
      db.mode = "down";
      expect(await eventually(() => seen.at(-1) === ServingStatus.NOT_SERVING)).toBe(true);
      db.mode = "ok";
      expect(await eventually(() => seen.at(-1) === ServingStatus.SERVING)).toBe(true);
      expect(seen).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING, ServingStatus.SERVING]);
    } finally {
      db.mode = "ok";
      abort.abort();
      await watching;
    }
  }, 30_000);

  it("sends SERVICE_UNKNOWN for an unknown service and keeps the call open", async () => {
    const abort = new AbortController();
    const it = health().watch({ service: "no.such.Service" }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await it.next()).value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);
    const next = it.next();
    const raced = await Promise.race([next.then(() => "ended", () => "ended"), new Promise((resolve) => setTimeout(() => resolve("open"), 300))]);
    expect(raced).toBe("open");
    abort.abort();
    await next.catch(() => {});
  });
});

const python = "/usr/bin/python3";
const hasGrpcio = (() => {
  try {
    execFileSync(python, ["-c", "import grpc"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

// A C-core client with raw (de)serializers: no generated code needed. HealthCheckRequest {} is
// empty bytes; HealthCheckResponse{status: SERVING} is 08 01.
const PYTHON_CLIENT = `
import sys, grpc
target, what = sys.argv[1], sys.argv[2]
channel = grpc.insecure_channel(target)
ident = lambda b: b
try:
    if what == "check":
        call = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=ident, response_deserializer=ident)
        print("ok", call(b"", timeout=10).hex())
    else:
        call = channel.unary_unary("/gitpod.v1.RunnerService/GetRunner", request_serializer=ident, response_deserializer=ident)
        size = 15 * 1024 * 1024
        header = bytes([0x12]) + bytes([(size >> (7 * i) & 0x7f) | (0x80 if i < 3 else 0) for i in range(4)])
        call(header + b"x" * size, timeout=10)
        print("ok")
except grpc.RpcError as e:
    print("error", e.code().name)
`;

describe.runIf(hasGrpcio)("gRPC C-core client (python3-grpcio)", () => {
  it("gets SERVING from Check", async () => {
    const { stdout } = await execFileAsync(python, ["-c", PYTHON_CLIENT, `127.0.0.1:${server.port}`, "check"]);
    expect(stdout.trim()).toBe("ok 0801");
  });

  it("gets RESOURCE_EXHAUSTED for a 15 MiB message", async () => {
    const { stdout } = await execFileAsync(python, ["-c", PYTHON_CLIENT, `127.0.0.1:${server.port}`, "oversized"]);
    expect(stdout.trim()).toBe("error RESOURCE_EXHAUSTED");
  });
});

describe("on shutdown", () => {
  it("sends NOT_SERVING to watchers and ends their calls, without holding up the drain", async () => {
    const seen: ServingStatus[] = [];
    const watching = (async () => {
      for await (const response of health().watch({})) seen.push(response.status);
      return "ended";
    })().catch((err: unknown) => `failed: ${String(err)}`);
    expect(await eventually(() => seen.length === 1)).toBe(true);
    const started = performance.now();
    await server.close();
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(await watching).toBe("ended");
    expect(seen).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  });
});

// CORS for browser clients (Connect-Web, gRPC-Web): off by default; CORS_ALLOWED_ORIGINS
// allows a list of origins with the headers the Connect and gRPC-Web protocols use.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";
import { startServer, type TestServer, type TestUser } from "./harness.js";

const ALLOWED = "https://app.example.com";

let server: TestServer;
let user: TestUser;

beforeAll(async () => {
  server = await startServer({ env: { CORS_ALLOWED_ORIGINS: `${ALLOWED}, http://localhost:5173` } });
  user = await server.newUser();
});
afterAll(() => server?.close());

function preflight(base: string, origin: string, requestHeaders: string): Promise<Response> {
  return fetch(`${base}/gitpod.v1.RunnerService/ListRunners`, {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": requestHeaders },
  });
}

const list = (header: string | null) => (header ?? "").toLowerCase().split(/\s*,\s*/);

describe("CORS", () => {
  it("answers a Connect preflight from an allowed origin", async () => {
    const response = await preflight(server.baseUrl, ALLOWED, "content-type,authorization,connect-protocol-version,connect-timeout-ms");
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    expect(list(response.headers.get("access-control-allow-methods"))).toEqual(expect.arrayContaining(["post", "get"]));
    expect(list(response.headers.get("access-control-allow-headers"))).toEqual(
      expect.arrayContaining(["content-type", "authorization", "connect-protocol-version", "connect-timeout-ms", "x-request-id"]),
    );
    expect(Number(response.headers.get("access-control-max-age"))).toBeGreaterThan(0);
  });

  it("allows the headers the official SDK sends on every call, and exposes x-should-retry", async () => {
    const sdkHeaders = [
      "x-stainless-lang",
      "x-stainless-package-version",
      "x-stainless-os",
      "x-stainless-arch",
      "x-stainless-runtime",
      "x-stainless-runtime-version",
      "x-stainless-retry-count",
      "x-stainless-timeout",
    ];
    const response = await preflight(server.baseUrl, ALLOWED, ["content-type", "authorization", "accept", ...sdkHeaders].join(","));
    expect(response.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    expect(list(response.headers.get("access-control-allow-headers"))).toEqual(expect.arrayContaining(sdkHeaders));
    const failed = await fetch(`${server.baseUrl}/gitpod.v1.RunnerService/GetRunner`, {
      method: "POST",
      headers: { origin: ALLOWED, "content-type": "application/json", authorization: `Bearer ${user.apiKey}` },
      body: JSON.stringify({ runnerId: "00000000-0000-4000-8000-000000000000" }),
    });
    expect(failed.status).toBe(404);
    expect(failed.headers.get("x-should-retry")).toBe("false");
    expect(list(failed.headers.get("access-control-expose-headers"))).toContain("x-should-retry");
  });

  it("answers a gRPC-Web preflight from another allowed origin", async () => {
    const response = await preflight(server.baseUrl, "http://localhost:5173", "content-type,x-grpc-web,x-user-agent,grpc-timeout");
    expect(response.headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
    expect(list(response.headers.get("access-control-allow-headers"))).toEqual(expect.arrayContaining(["x-grpc-web", "x-user-agent", "grpc-timeout"]));
  });

  it("does not allow an origin that is not on the list", async () => {
    const response = await preflight(server.baseUrl, "https://evil.example.com", "content-type,authorization");
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("exposes the gRPC-Web status headers and the request id on the actual call", async () => {
    const response = await fetch(`${server.baseUrl}/gitpod.v1.RunnerService/ListRunners`, {
      method: "POST",
      headers: { origin: ALLOWED, "content-type": "application/json", authorization: `Bearer ${user.apiKey}` },
      body: "{}",
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    expect(list(response.headers.get("access-control-expose-headers"))).toEqual(
      expect.arrayContaining(["grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"]),
    );
  });

  it("is off without CORS_ALLOWED_ORIGINS", async () => {
    const plain = await startServer();
    try {
      const response = await preflight(plain.baseUrl, ALLOWED, "content-type,authorization");
      expect(response.headers.get("access-control-allow-origin")).toBeNull();
    } finally {
      await plain.close();
    }
  });

  it("accepts only origins (scheme, host, port) in the list", () => {
    expect(loadConfig({ CORS_ALLOWED_ORIGINS: "https://a.example, http://localhost:3000" }).corsAllowedOrigins).toEqual([
      "https://a.example",
      "http://localhost:3000",
    ]);
    expect(loadConfig({ CORS_ALLOWED_ORIGINS: "*" }).corsAllowedOrigins).toEqual(["*"]);
    expect(loadConfig({}).corsAllowedOrigins).toEqual([]);
    for (const bad of ["https://a.example/", "https://a.example/app", "a.example", "ftp://a.example"]) {
      expect(() => loadConfig({ CORS_ALLOWED_ORIGINS: bad })).toThrow(ConfigError);
    }
  });
});

// The development runner against the server on TLS (a self-signed certificate made by the openssl
// CLI for this run): with --ca-file it holds its stream over gRPC on h2 and over Connect JSON on
// https HTTP/1.1; without it, it keeps retrying and says why, instead of hanging or exiting.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { startServer, type TestServer, type TestUser } from "./harness.js";
import { GitServer } from "./git-server.js";
import { RunnerProcess } from "./runner-process.js";
import { transportFor } from "./runner-client.js";

let dir: string;
let certFile: string;
let server: TestServer;
let user: TestUser;
let git: GitServer;
let origin: string;
const runners: RunnerProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "rcp-runner-tls-"));
  certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ], { stdio: "ignore" });
  server = await startServer({ env: { TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile } });
  origin = `https://127.0.0.1:${server.port}`;
  user = await server.newUser();
  git = await new GitServer().start();
  git.makeRepo("acme/widgets.git", { branches: ["main", "dev"] });
});
afterAll(async () => {
  await Promise.all(runners.map((runner) => runner.kill()));
  await server?.close();
  await git?.close();
  rmSync(dir, { recursive: true, force: true });
});

const users = () => createClient(RunnerService, transportFor(origin, { protocol: "grpc", token: user.apiKey, ca: readFileSync(certFile) }));

async function startRunner(extra: string[]) {
  const { runner, exchangeToken } = await users().createRunner({ name: "tls runner", provider: RunnerProvider.LINUX_HOST });
  const process = new RunnerProcess(["--url", origin, "--exchange-token", exchangeToken, "--state-dir", join(dir, runner!.runnerId), "--reconnect-max-seconds", "1", ...extra]);
  runners.push(process);
  return { runnerId: runner!.runnerId, process };
}

describe("the development runner over TLS", () => {
  it.each([["grpc"], ["connect-json"]])("holds its stream with --ca-file over %s", async (protocol) => {
    const { runnerId, process } = await startRunner(["--protocol", protocol, "--ca-file", certFile]);
    await process.waitFor("channel open", {}, 1, 20_000);
    const answer = await users().parseContextURL({ runnerId, contextUrl: `${git.url}/acme/widgets.git` });
    expect(answer.git).toMatchObject({ branch: "main", repo: "widgets" });
    expect(await process.stop()).toBe(0);
  });

  it("without the CA it keeps retrying and says why", async () => {
    const { process } = await startRunner([]);
    const retry = await process.waitFor("ExchangeToken failed; retrying", {}, 2, 20_000);
    expect(String(retry.message)).toMatch(/certificate/i);
    expect(process.running).toBe(true);
    expect(await process.stop()).toBe(0);
  });
});

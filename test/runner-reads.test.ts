// What a runner reads and pushes after Signup: GetRunnerConfiguration (secrets sealed to its own
// X25519 key, opened here with libsodium), GetLatestVersion from a release manifest
// (RUNNER_RELEASES_FILE, re-read when it changes), and ReportRunnerMetrics forwarded to a real
// Prometheus (Debian's `prometheus` with its remote-write receiver, queried afterwards), or to a
// test receiver that decodes what it gets when no prometheus binary is installed.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import sodium from "libsodium-wrappers";
import SnappyJS from "snappyjs";
import { LogLevel, RunnerReleaseChannel } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { WriteRequestSchema } from "../gen/prometheus/remote_pb.js";
import { loadConfig } from "../src/config.js";
import { projectRoot } from "../src/paths.js";
import { failure, startServer, type TestServer, type TestUser } from "./harness.js";
import { eventually, TestRunner } from "./runner-client.js";

const dir = mkdtempSync(join(tmpdir(), "rcp-runner-reads-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("GetRunnerConfiguration", () => {
  let server: TestServer;
  let user: TestUser;
  beforeAll(async () => {
    server = await startServer();
    user = await server.newUser();
    await sodium.ready;
  });
  afterAll(() => server?.close());

  it("returns the runner's configuration with the metrics credentials and Honeycomb key sealed to its Signup key", async () => {
    const keys = sodium.crypto_box_keypair();
    const runner = await TestRunner.register(server, user.apiKey, { signup: false });
    const client = runner.client(server.transport("grpc", runner.accessToken));
    const before = await failure(() => client.getRunnerConfiguration({ runnerId: runner.runnerId }));
    expect(before.code).toBe(Code.FailedPrecondition);
    await client.signup({ publicKey: keys.publicKey });
    await server.runners("connect-json", user.apiKey).updateRunner({
      runnerId: runner.runnerId,
      spec: {
        configuration: {
          releaseChannel: RunnerReleaseChannel.LATEST, autoUpdate: true, logLevel: LogLevel.DEBUG, continuousProfiling: true,
          updateWindow: { startHour: 22, endHour: 4 }, honeycombApiKey: "hc-secret",
          metrics: { enabled: true, url: "https://metrics.example.com/push", username: "metrics-user", password: "metrics-pässword", managedMetricsEnabled: true },
        },
      },
    });
    for (const protocol of ["connect-json", "connect-binary", "grpc", "grpc-web"] as const) {
      const { configuration } = await runner.client(server.transport(protocol, runner.accessToken)).getRunnerConfiguration({ runnerId: runner.runnerId });
      expect(configuration).toMatchObject({ releaseChannel: RunnerReleaseChannel.LATEST, autoUpdate: true, logLevel: LogLevel.DEBUG, continuousProfiling: true, updateWindow: { startHour: 22, endHour: 4 } });
      const open = (sealed: Uint8Array) => sodium.to_string(sodium.crypto_box_seal_open(sealed, keys.publicKey, keys.privateKey));
      expect(configuration!.metrics).toMatchObject({ enabled: true, url: "https://metrics.example.com/push", managedMetricsEnabled: true });
      expect(open(configuration!.metrics!.encryptedUsername)).toBe("metrics-user");
      expect(open(configuration!.metrics!.encryptedPassword)).toBe("metrics-pässword");
      expect(open(configuration!.encryptedHoneycombApiKey)).toBe("hc-secret");
      // Sealed boxes: a fresh ephemeral key each time, and nothing in the clear.
      expect(Buffer.from(configuration!.metrics!.encryptedPassword).includes(Buffer.from("metrics"))).toBe(false);
    }
    const other = await TestRunner.register(server, user.apiKey);
    expect((await failure(() => other.client(server.transport("grpc", other.accessToken)).getRunnerConfiguration({ runnerId: runner.runnerId }))).code).toBe(Code.PermissionDenied);
    // What is not set stays empty rather than a sealed empty string.
    const plain = await other.client(server.transport("grpc", other.accessToken)).getRunnerConfiguration({ runnerId: other.runnerId });
    expect(plain.configuration?.metrics?.encryptedPassword).toHaveLength(0);
  });
});

describe("GetLatestVersion", () => {
  const manifestFile = join(dir, "releases.json");
  const manifest = {
    channels: {
      stable: {
        version: "2026.11.1",
        supervisorDownloadUrl: "https://releases.example.com/supervisor/2026.11.1",
        gitpodCliDownloadUrl: "https://releases.example.com/gitpod/2026.11.1",
        providers: {
          aws_ec2: { awsEc2: { runnerImage: "registry.example.com/runner:2026.11.1", proxyImage: "registry.example.com/proxy:2026.11.1" } },
          gcp: { version: "2026.11.2", hotfix: true, gcp: { runnerImage: "gcr.example.com/runner:2026.11.2", terraformFiles: ["main.tf"], downloadUrl: "https://releases.example.com/gcp.zip" } },
        },
      },
      latest: { version: "2026.12.0-rc1", hotfix: false },
    },
  };
  let server: TestServer;
  let bare: TestServer;
  let user: TestUser;
  beforeAll(async () => {
    writeFileSync(manifestFile, JSON.stringify(manifest));
    server = await startServer({ env: { RUNNER_RELEASES_FILE: manifestFile } });
    bare = await startServer();
    user = await server.newUser();
  });
  afterAll(async () => {
    await server?.close();
    await bare?.close();
  });

  async function latestFor(target: TestServer, apiKey: string, provider: RunnerProvider, configuration: { releaseChannel?: RunnerReleaseChannel; autoUpdate?: boolean }) {
    const runner = await TestRunner.register(target, apiKey, { provider });
    await target.runners("grpc", apiKey).updateRunner({ runnerId: runner.runnerId, spec: { configuration } });
    return runner.client(target.transport("connect-json", runner.accessToken)).getLatestVersion({ runnerId: runner.runnerId, currentVersion: "2026.10.0" });
  }

  it("answers from the manifest by the runner's release channel and provider, with its auto_update", async () => {
    const aws = await latestFor(server, user.apiKey, RunnerProvider.AWS_EC2, { autoUpdate: true });
    expect(aws).toMatchObject({ version: "2026.11.1", autoUpdate: true, hotfix: false, runnerImage: "registry.example.com/runner:2026.11.1", supervisorDownloadUrl: "https://releases.example.com/supervisor/2026.11.1" });
    expect(aws.manifest).toMatchObject({ case: "awsEc2", value: { proxyImage: "registry.example.com/proxy:2026.11.1" } });
    const gcp = await latestFor(server, user.apiKey, RunnerProvider.GCP, { releaseChannel: RunnerReleaseChannel.STABLE });
    expect(gcp).toMatchObject({ version: "2026.11.2", hotfix: true, autoUpdate: false, gitpodCliDownloadUrl: "https://releases.example.com/gitpod/2026.11.1" });
    expect(gcp.manifest).toMatchObject({ case: "gcp", value: { terraformFiles: ["main.tf"] } });
    const latest = await latestFor(server, user.apiKey, RunnerProvider.LINUX_HOST, { releaseChannel: RunnerReleaseChannel.LATEST, autoUpdate: true });
    expect(latest).toMatchObject({ version: "2026.12.0-rc1", autoUpdate: true, manifest: { case: undefined } });
  });

  it("says the current version is the latest without a manifest", async () => {
    const bareUser = await bare.newUser();
    expect(await latestFor(bare, bareUser.apiKey, RunnerProvider.AWS_EC2, { autoUpdate: true })).toMatchObject({ version: "2026.10.0", autoUpdate: true, manifest: { case: undefined } });
  });

  it("re-reads the manifest when it changes and keeps the last good one when an edit is broken", async () => {
    writeFileSync(manifestFile, JSON.stringify({ channels: { stable: { version: "2027.1.0" } } }));
    await eventually(async () => ((await latestFor(server, user.apiKey, RunnerProvider.AWS_EC2, {})).version === "2027.1.0" ? true : undefined), 5_000, "the new version");
    writeFileSync(manifestFile, "{ not json");
    expect((await latestFor(server, user.apiKey, RunnerProvider.AWS_EC2, {})).version).toBe("2027.1.0");
    expect(server.logs.some((line) => line.includes("still serving the last good manifest"))).toBe(true);
  });

  it("refuses a broken manifest at start, naming the variable and the place", () => {
    const broken = join(dir, "broken.json");
    writeFileSync(broken, JSON.stringify({ channels: { stable: { version: "1", providers: { linux_host: { linuxHost: { linuxRunnerUrl: "https://x" } } } } } }));
    expect(() => loadConfig({ RUNNER_RELEASES_FILE: broken })).toThrow(/RUNNER_RELEASES_FILE .*\$\.channels\.stable\.providers\.linux_host\.linuxHost/);
    writeFileSync(broken, JSON.stringify({ channels: { beta: { version: "1" } } }));
    expect(() => loadConfig({ RUNNER_RELEASES_FILE: broken })).toThrow(/\$\.channels\.beta: unknown release channel/);
    expect(() => loadConfig({ RUNNER_RELEASES_FILE: join(dir, "missing.json") })).toThrow(/RUNNER_RELEASES_FILE is not a readable file/);
    // The documented example is a valid manifest.
    expect(loadConfig({ RUNNER_RELEASES_FILE: join(projectRoot, "docs", "examples", "runner-releases.json") }).runnerReleasesFile).toBeDefined();
  });
});

/** A Prometheus with its remote-write receiver, or undefined when none is installed. */
async function startPrometheus(): Promise<{ url: string; child: ChildProcess } | undefined> {
  if (spawnSync("prometheus", ["--version"]).status !== 0) return undefined;
  const port = await freePort();
  const config = join(dir, "prometheus.yml");
  writeFileSync(config, "global:\n  scrape_interval: 1h\n");
  const child = spawn("prometheus", [
    `--config.file=${config}`, `--storage.tsdb.path=${join(dir, "tsdb")}`, `--web.listen-address=127.0.0.1:${port}`, "--web.enable-remote-write-receiver",
  ], { stdio: "ignore" });
  const url = `http://127.0.0.1:${port}`;
  await eventually(async () => (await fetch(`${url}/-/ready`).then((r) => r.ok, () => false)) || undefined, 30_000, "prometheus to be ready");
  return { url, child };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

describe("ReportRunnerMetrics", () => {
  let prometheus: { url: string; child: ChildProcess } | undefined;
  let receiver: Server | undefined;
  const received: ReturnType<typeof fromBinary<typeof WriteRequestSchema>>[] = [];
  let failNext = 0;
  let server: TestServer;
  let user: TestUser;

  beforeAll(async () => {
    prometheus = await startPrometheus();
    // A test receiver as well: it decodes what it gets, and can fail on purpose (retries).
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (failNext > 0) {
          failNext--;
          res.writeHead(503).end();
          return;
        }
        received.push(fromBinary(WriteRequestSchema, SnappyJS.uncompress(new Uint8Array(Buffer.concat(chunks)))));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver!.listen(0, "127.0.0.1", resolve));
    const target = prometheus ? `${prometheus.url}/api/v1/write` : `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/write`;
    server = await startServer({ env: { METRICS_REMOTE_WRITE_URL: target } });
    user = await server.newUser();
  }, 60_000);
  afterAll(async () => {
    prometheus?.child.kill();
    receiver?.close();
    await server?.close();
  });

  function writeRequest(name: string, extraLabels: Record<string, string> = {}): Uint8Array {
    const labels = Object.entries({ __name__: name, job: "runner", ...extraLabels }).map(([n, value]) => ({ name: n, value }));
    return SnappyJS.compress(toBinary(WriteRequestSchema, create(WriteRequestSchema, {
      timeseries: [{ labels, samples: [{ value: 42, timestamp: BigInt(Date.now()) }] }],
    })));
  }

  async function managedRunner(target: TestServer, apiKey = user.apiKey) {
    const runner = await TestRunner.register(target, apiKey);
    await target.runners("grpc", apiKey).updateRunner({ runnerId: runner.runnerId, spec: { configuration: { metrics: { managedMetricsEnabled: true } } } });
    return runner;
  }

  it("forwards a runner's metrics with its runner_id and organization_id labels (replacing any it set)", async () => {
    const runner = await managedRunner(server);
    const client = runner.client(server.transport("connect-binary", runner.accessToken));
    await client.reportRunnerMetrics({ runnerId: runner.runnerId, compressedMetrics: writeRequest("rcp_test_runner_up", { runner_id: "forged" }) });
    if (prometheus) {
      const query = `${prometheus.url}/api/v1/query?query=${encodeURIComponent(`rcp_test_runner_up{runner_id="${runner.runnerId}"}`)}`;
      const result = await eventually(async () => {
        const body = (await (await fetch(query)).json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
        return body.data.result[0];
      }, 20_000, "the sample in prometheus");
      expect(result.metric).toMatchObject({ runner_id: runner.runnerId, organization_id: user.organizationId, job: "runner" });
      expect(result.value[1]).toBe("42");
    } else {
      const got = await eventually(() => received.find((r) => r.timeseries[0]?.labels.some((l) => l.value === runner.runnerId)), 5_000, "the batch");
      expect(Object.fromEntries(got.timeseries[0]!.labels.map((l) => [l.name, l.value]))).toMatchObject({ runner_id: runner.runnerId, organization_id: user.organizationId });
    }
  }, 30_000);

  it("refuses metrics that are not Snappy, not a WriteRequest, or from a runner without managed metrics", async () => {
    const runner = await managedRunner(server);
    const client = runner.client(server.transport("grpc", runner.accessToken));
    const notSnappy = await failure(() => client.reportRunnerMetrics({ runnerId: runner.runnerId, compressedMetrics: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]) }));
    expect(notSnappy.code).toBe(Code.InvalidArgument);
    expect(notSnappy.rawMessage).toContain("compressed_metrics");
    const notProto = await failure(() => client.reportRunnerMetrics({ runnerId: runner.runnerId, compressedMetrics: SnappyJS.compress(new Uint8Array([0x0a, 0xff, 0x01])) }));
    expect(notProto.code).toBe(Code.InvalidArgument);
    expect(notProto.rawMessage).toContain("WriteRequest");
    const tooBig = await failure(() => client.reportRunnerMetrics({ runnerId: runner.runnerId, compressedMetrics: new Uint8Array(524_289) }));
    expect(tooBig.code).toBe(Code.InvalidArgument);
    const off = await TestRunner.register(server, user.apiKey);
    const refused = await failure(() => off.client(server.transport("grpc", off.accessToken)).reportRunnerMetrics({ runnerId: off.runnerId, compressedMetrics: writeRequest("x") }));
    expect(refused.code).toBe(Code.FailedPrecondition);
    expect(refused.rawMessage).toContain("managed_metrics_enabled");
  });

  it("retries a failing receiver in the background (the runner is answered at once) and counts the outcome in /metrics", async () => {
    const local = await startServer({ env: { METRICS_REMOTE_WRITE_URL: `http://127.0.0.1:${(receiver!.address() as AddressInfo).port}/write` } });
    try {
      const runner = await managedRunner(local, (await local.newUser()).apiKey);
      failNext = 2;
      const started = performance.now();
      await runner.client(local.transport("grpc", runner.accessToken)).reportRunnerMetrics({ runnerId: runner.runnerId, compressedMetrics: writeRequest("rcp_test_retried") });
      expect(performance.now() - started).toBeLessThan(2_000);
      await eventually(() => received.find((r) => r.timeseries[0]?.labels.some((l) => l.value === "rcp_test_retried")), 10_000, "the retried batch");
      const text = await (await fetch(`${local.baseUrl}/metrics`)).text();
      expect(text).toMatch(/rcp_runner_metrics_forwarded_total\{outcome="forwarded"\} 1/);
    } finally {
      await local.close();
    }
  }, 30_000);

  it("is failed_precondition when the server has no METRICS_REMOTE_WRITE_URL", async () => {
    const plain = await startServer();
    try {
      const plainUser = await plain.newUser();
      const runner = await TestRunner.register(plain, plainUser.apiKey);
      await plain.runners("grpc", plainUser.apiKey).updateRunner({ runnerId: runner.runnerId, spec: { configuration: { metrics: { managedMetricsEnabled: true } } } });
      const err = await failure(() => runner.client(plain.transport("grpc", runner.accessToken)).reportRunnerMetrics({ runnerId: runner.runnerId, compressedMetrics: writeRequest("x") }));
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(err.rawMessage).toContain("METRICS_REMOTE_WRITE_URL");
    } finally {
      await plain.close();
    }
  });
});


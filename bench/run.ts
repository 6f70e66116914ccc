// `npm run bench`: measures the production build against PostgreSQL's own limit.
//
// For each scenario it alternates a bounded server run (wrk for HTTP/1.1, h2load for
// HTTP/2 and gRPC) with a pgbench run of the SQL that scenario costs per request, at the
// same concurrency, BENCH_PAIRS times, and reports medians and the median paired ratio.
// Everything runs on loopback against a fresh database that is dropped at the end.
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";
import { randomBytes } from "node:crypto";
import { cpus, totalmem } from "node:os";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import pg from "pg";
import { create, toBinary } from "@bufbuild/protobuf";
import { CreateRunnerRequestSchema, GetRunnerRequestSchema } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { generateToken, hashToken } from "../src/domain/tokens.js";
import { projectRoot } from "../src/paths.js";
import { channelRoundTrip, newRunner, openStreams, type StreamsResult } from "./channel.js";
import { watchLatency, type EventsResult } from "./events.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const PAIRS = Number(process.env.BENCH_PAIRS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const READ_RUNNERS = 1000;
const FLEET_RUNNERS = Number(process.env.BENCH_FLEET_RUNNERS ?? 10_000);
const ONLY = process.env.BENCH_ONLY?.split(",");
/** WatchRequests streams the `streams` scenario opens (one connection each), over STREAM_RUNNERS runners. */
const STREAMS = Number(process.env.BENCH_STREAMS ?? 10_000);
const STREAM_RUNNERS = 100;
/** WatchEvents streams and runner changes of the `events` scenario (bench/events.ts). */
const WATCHERS = Number(process.env.BENCH_WATCHERS ?? 1_000);
const EVENT_CHANGES = Number(process.env.BENCH_EVENT_CHANGES ?? 50);
const WORKERS = process.env.BENCH_WORKERS; // passed through to the server (node:cluster experiment)
// pgbench's default (simple) query protocol, which the targets in the performance issue
// were calibrated with; variables are substituted as text, hence ':org' in the scripts.
const PGBENCH_MODE = "simple";

/** Duration of one load run; shortened during warm-up. */
let runSeconds = SECONDS;

const work = mkdtempSync(join(tmpdir(), "rcp-bench-"));
const execFileAsync = promisify(execFile);
const PROFILE_DIR = process.env.BENCH_PROFILE ? join(projectRoot, "bench/results/profiles") : undefined;
const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

// ---------------------------------------------------------------- tools

function ensureTools(): void {
  const missing = ["wrk", "h2load", "pgbench"].filter((tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0);
  if (missing.length === 0) return;
  const packages = missing.map((tool) => ({ wrk: "wrk", h2load: "nghttp2-client", pgbench: "postgresql-client" })[tool]!);
  log(`installing ${packages.join(", ")} (Debian packages)`);
  const sudo = process.getuid?.() === 0 ? [] : ["sudo"];
  const run = (args: string[]) => execFileSync(sudo[0] ?? args[0]!, sudo.length ? args : args.slice(1), { stdio: "inherit" });
  run(["apt-get", "update", "-qq"]);
  run(["apt-get", "install", "-y", "-qq", ...packages]);
}

// ---------------------------------------------------------------- database

const databaseName = `rcp_bench_${Date.now()}_${randomBytes(2).toString("hex")}`;
const databaseUrl = (() => {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${databaseName}`;
  return url.toString();
})();

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

interface Seed {
  apiKey: string;
  organizationId: string;
  readRunnerId: string;
}

async function seed(db: pg.Client): Promise<Seed> {
  const { issueApiKey } = await import("../src/domain/accounts.js");
  const { IdentityStore } = await import("../src/store/identity-store.js");
  const { openDatabase } = await import("../src/store/db/database.js");
  const database = await openDatabase({ databaseUrl, dataDir: undefined, poolSize: 2 });
  const issued = await issueApiKey(new IdentityStore(database), { now: () => new Date() }, { organizationSlug: "bench", userEmail: "bench@example.com" });
  await database.close();
  const organizationId = issued.organization.id;
  // Runners with predictable ids (md5('bench-<n>')) so pgbench can address the same rows.
  await db.query(
    `INSERT INTO runners (id, organization_id, creator_id, creator_principal, name, kind, provider, created_at, updated_at,
                          desired_phase, region, signed_up_at, last_active_at, status_reported_at, public_key, status_version)
     SELECT md5('bench-' || n)::uuid, $1, $2, 2, 'bench runner ' || n, 2, 1, now() - (n || ' seconds')::interval, now(),
            3, 'us-west', now(), now(), now(), decode(repeat('00', 32), 'hex'), '1.0.0'
       FROM generate_series(0, $3 - 1) AS n`,
    [organizationId, issued.user.id, Math.max(READ_RUNNERS, FLEET_RUNNERS)],
  );
  await db.query("ANALYZE");
  return { apiKey: issued.apiKey, organizationId, readRunnerId: (await db.query("SELECT md5('bench-0')::uuid AS id")).rows[0].id };
}

/** Writes "<token> <body>" lines for `count` runner access tokens of the seeded runners. */
async function seedRunnerTokens(db: pg.Client, count: number, bodyOf: (runnerId: string) => string): Promise<string> {
  const ids = (await db.query(`SELECT md5('bench-' || n)::uuid AS id FROM generate_series(0, $1 - 1) n`, [count])).rows.map((r) => r.id as string);
  const tokens = ids.map(() => generateToken("runnerAccess"));
  for (let i = 0; i < ids.length; i += 5000) {
    await db.query(
      `INSERT INTO runner_access_tokens (token_hash, runner_id, created_at) SELECT * , now() FROM unnest($1::bytea[], $2::uuid[])`,
      [tokens.slice(i, i + 5000).map(hashToken), ids.slice(i, i + 5000)],
    );
  }
  const file = join(work, `runner-tokens-${count}.txt`);
  writeFileSync(file, ids.map((id, i) => `${tokens[i]} ${bodyOf(id)}`).join("\n") + "\n");
  return file;
}

/** Fresh one-time exchange tokens for one ExchangeToken run. */
async function seedExchangeTokens(db: pg.Client, count: number): Promise<string> {
  const tokens = Array.from({ length: count }, () => generateToken("exchange"));
  for (let i = 0; i < tokens.length; i += 5000) {
    const chunk = tokens.slice(i, i + 5000);
    await db.query(
      `INSERT INTO runner_exchange_tokens (token_hash, runner_id, created_at, expires_at)
       SELECT h, md5('bench-' || (ord % ${READ_RUNNERS}))::uuid, now(), now() + interval '1 day'
         FROM unnest($1::bytea[]) WITH ORDINALITY AS t(h, ord)`,
      [chunk.map(hashToken)],
    );
  }
  const file = join(work, `exchange-${Date.now()}.txt`);
  writeFileSync(file, tokens.map((token) => `${token} {"exchangeToken":"${token}"}`).join("\n") + "\n");
  return file;
}

// ---------------------------------------------------------------- server

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

interface RunningServer {
  child: ChildProcess;
  port: number;
  logFile: string;
  coldStartMs: number;
  maxRssMb: number;
  stopSampling(): void;
}

/** CPU seconds (user + system) the process has used so far. */
function cpuSecondsOf(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

function rssOf(pid: number): number {
  try {
    const pids = [pid, ...String(spawnSync("pgrep", ["-P", String(pid)]).stdout).split("\n").filter(Boolean).map(Number)];
    let kb = 0;
    for (const p of pids) {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"));
      kb += match ? Number(match[1]) : 0;
    }
    return kb / 1024;
  } catch {
    return 0;
  }
}

/** The node arguments of `npm start` (V8 flags and the script), so the bench runs what production runs. */
function startArguments(): string[] {
  const start = (JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")) as { scripts: { start: string } }).scripts.start;
  // `exec node …`: the shell npm runs the script in hands its pid to node.
  const [command, ...args] = start.trim().replace(/^exec\s+/, "").split(/\s+/);
  if (command !== "node") throw new Error(`npm start is not a plain node command: ${start}`);
  return args;
}

async function startServer(): Promise<RunningServer> {
  const port = await freePort();
  const logFile = join(work, `server-${port}.log`);
  const out = openSync(logFile, "a");
  const started = performance.now();
  const profile = PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`] : [];
  // BENCH_NODE_ARGS: extra V8/Node flags to try against npm start's (e.g. heap settings).
  const extra = process.env.BENCH_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...profile, ...extra, ...startArguments()], {
    cwd: projectRoot,
    env: {
      ...process.env,
      NODE_ENV: "production",
      LOG_LEVEL: "info",
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      HOST: "127.0.0.1",
      ...(WORKERS ? { WORKERS } : {}),
    },
    stdio: ["ignore", out, out],
  });
  closeSync(out);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited: ${readFileSync(logFile, "utf8").slice(-2000)}`);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false);
    if (ready) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const server: RunningServer = { child, port, logFile, coldStartMs: performance.now() - started, maxRssMb: 0, stopSampling: () => {} };
  const timer = setInterval(() => {
    server.maxRssMb = Math.max(server.maxRssMb, rssOf(child.pid!));
  }, 250);
  server.stopSampling = () => clearInterval(timer);
  return server;
}

async function stopServer(server: RunningServer): Promise<void> {
  server.stopSampling();
  const exited = new Promise((resolve) => server.child.once("exit", resolve));
  server.child.kill("SIGTERM");
  await exited;
}

/** RPC log lines written since `offset` whose code is not ok. */
function serverErrors(server: RunningServer, offset: number): { errors: number; rpcs: number; sample: string[] } {
  const text = readFileSync(server.logFile, "utf8").slice(offset);
  let errors = 0;
  let rpcs = 0;
  const sample: string[] = [];
  for (const line of text.split("\n")) {
    if (!line.includes('"msg":"rpc')) continue;
    rpcs++;
    if (!line.includes('"code":"ok"')) {
      errors++;
      if (sample.length < 3) sample.push(line.slice(0, 300));
    }
  }
  return { errors, rpcs, sample };
}

// ---------------------------------------------------------------- load generators

interface Measurement {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** Server CPU (user + system) per request, in µs, and the share of one core it used. */
  cpuUsPerRequest?: number;
  cpuShare?: number;
}

function parseWrk(output: string): Measurement {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? 0);
  const unit = (value: string, suffix: string) => Number(value) * ({ us: 0.001, ms: 1, s: 1000, m: 60000 }[suffix] ?? 1);
  const pct = (p: string) => {
    const match = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s|m)`).exec(output);
    return match ? unit(match[1]!, match[2]!) : NaN;
  };
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const socketErrors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  return { rps, p50: pct("50"), p99: pct("99"), errors: non2xx + socketErrors };
}

async function wrk(port: number, script: string, env: Record<string, string>): Promise<Measurement> {
  const { stdout: output } = await execFileAsync(
    "wrk",
    ["-t1", `-c${CONCURRENCY}`, `-d${runSeconds}s`, "--latency", "--timeout", "5s", "-s", join(projectRoot, "bench/lua", script), `http://127.0.0.1:${port}`],
    { env: { ...process.env, BENCH_THREADS: "1", ...env }, encoding: "utf8" },
  );
  return parseWrk(output);
}

async function h2load(port: number, path: string, bodyFile: string, headers: string[]): Promise<Measurement> {
  const logFile = join(work, `h2load-${Date.now()}.tsv`);
  const { stdout: output } = await execFileAsync(
    "h2load",
    ["-c", String(CONCURRENCY), "-m", "1", "-D", String(runSeconds), "--warm-up-time=1", "-d", bodyFile, "--log-file", logFile,
      ...headers.flatMap((header) => ["-H", header]), `http://127.0.0.1:${port}${path}`],
    { encoding: "utf8" },
  );
  const durations = readFileSync(logFile, "utf8").trim().split("\n").map((line) => Number(line.split("\t")[2]) / 1000).sort((a, b) => a - b);
  const at = (q: number) => durations[Math.min(durations.length - 1, Math.floor(q * durations.length))] ?? NaN;
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(output)?.[1] ?? 0);
  const failed = /requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored/.exec(output);
  return { rps, p50: at(0.5), p99: at(0.99), errors: failed ? Number(failed[1]) + Number(failed[2]) : 0 };
}

function pgbench(files: string[], defines: Record<string, string>): number {
  const output = execFileSync(
    "pgbench",
    ["-n", "-c", String(CONCURRENCY), "-j", "1", "-T", String(SECONDS), "-M", PGBENCH_MODE,
      ...Object.entries(defines).flatMap(([key, value]) => ["-D", `${key}=${value}`]), ...files.flatMap((file) => ["-f", file]), databaseUrl],
    { encoding: "utf8" },
  );
  return Number(/tps = ([\d.]+)/.exec(output)?.[1] ?? 0);
}

function sqlFile(name: string, text: string): string {
  const file = join(work, `${name}.sql`);
  writeFileSync(file, text);
  return file;
}

// ---------------------------------------------------------------- scenarios

interface Scenario {
  key: string;
  title: string;
  /** Runs the server side once; may prepare data first (not timed). */
  server(port: number): Promise<Measurement>;
  /** pgbench scripts (with @weights) for the same per-request SQL, or none. */
  pgbench?: () => string[];
}

const median = (values: number[]) => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function main(): Promise<void> {
  ensureTools();
  log(`building (tsc) …`);
  execFileSync("npm", ["run", "--silent", "build"], { cwd: projectRoot, stdio: "inherit" });
  await admin(`CREATE DATABASE ${databaseName}`);
  log(`database ${databaseName}`);
  let server: RunningServer | undefined;
  const db = new pg.Client({ connectionString: databaseUrl });
  try {
    // The first start applies the migrations; the cold start we report is the median of the next three.
    server = await startServer();
    const firstStartMs = server.coldStartMs;
    const starts: number[] = [];
    for (let i = 0; i < 3; i++) {
      await stopServer(server);
      server = await startServer();
      starts.push(server.coldStartMs);
    }
    const coldStartMs = median(starts);
    log(`cold start to /readyz: ${coldStartMs.toFixed(0)} ms (median of ${starts.map((ms) => ms.toFixed(0)).join(", ")}; first start with migrations: ${firstStartMs.toFixed(0)} ms)`);
    await db.connect();
    const seeded = await seed(db);
    const auth = seeded.apiKey;
    const heartbeatLines = await seedRunnerTokens(db, FLEET_RUNNERS, (id) => `{"runnerId":"${id}"}`);
    const fleetLines = join(work, "fleet.txt");
    writeFileSync(fleetLines, readFileSync(heartbeatLines, "utf8").replace(/ \{"runnerId":"([^"]+)"\}/g, " $1"));

    const createJson = JSON.stringify({ name: "bench runner", provider: "RUNNER_PROVIDER_AWS_EC2", spec: { configuration: { region: "us-west", autoUpdate: true } } });
    const grpcFrame = (bytes: Uint8Array) => {
      const frame = Buffer.alloc(5 + bytes.length);
      frame.writeUInt32BE(bytes.length, 1);
      Buffer.from(bytes).copy(frame, 5);
      return frame;
    };
    const createProto = toBinary(CreateRunnerRequestSchema, create(CreateRunnerRequestSchema, {
      name: "bench runner", provider: RunnerProvider.AWS_EC2, spec: { configuration: { region: "us-west", autoUpdate: true } },
    }));
    const getProto = toBinary(GetRunnerRequestSchema, create(GetRunnerRequestSchema, { runnerId: seeded.readRunnerId }));
    const files = {
      createGrpc: join(work, "create.grpc"),
      getGrpc: join(work, "get.grpc"),
      getProto: join(work, "get.bin"),
      getJson: join(work, "get.json"),
    };
    writeFileSync(files.createGrpc, grpcFrame(createProto));
    writeFileSync(files.getGrpc, grpcFrame(getProto));
    writeFileSync(files.getProto, getProto);
    writeFileSync(files.getJson, JSON.stringify({ runnerId: seeded.readRunnerId }));
    const bearer = `authorization: Bearer ${auth}`;
    const defines = { org: seeded.organizationId };

    // The SQL one request costs, for pgbench.
    const registrationTx = sqlFile("registration", `BEGIN;
INSERT INTO runners (id, organization_id, creator_id, creator_principal, name, kind, provider, runner_manager_id, created_at, updated_at,
  desired_phase, variant, region, release_channel, auto_update, log_level, devcontainer_image_cache_enabled, continuous_profiling,
  update_window_start, update_window_end, metrics_enabled, metrics_url, metrics_username, metrics_password, metrics_managed_enabled, metrics_include_verbose)
VALUES (gen_random_uuid(), ':org', NULL, 2, 'bench runner', 2, 1, NULL, now(), now(), 3, 0, 'us-west', 0, true, 0, false, false, NULL, NULL, false, '', '', '', false, false)
RETURNING id AS rid \\gset
INSERT INTO runner_exchange_tokens (token_hash, runner_id, created_at, expires_at) VALUES (sha256(gen_random_uuid()::text::bytea), ':rid', now(), now() + interval '1 day');
END;
`);
    const readColumns = `id, organization_id, creator_id, creator_principal, name, kind, provider, runner_manager_id, created_at, updated_at,
  desired_phase, variant, region, release_channel, auto_update, log_level, devcontainer_image_cache_enabled, continuous_profiling,
  update_window_start, update_window_end, metrics_enabled, metrics_url, metrics_username, metrics_password, metrics_managed_enabled,
  metrics_include_verbose, public_key, signed_up_at, last_active_at, status_reported_at, status_version, status_system_details,
  status_log_url, status_region, status_llm_url, status_support_bundle_url, degradation_message, additional_info, capabilities, gateway_info`;
    const primaryKeyRead = sqlFile("get", `\\set n random(0, ${READ_RUNNERS - 1})
SELECT ${readColumns} FROM runners WHERE id = md5('bench-' || :n)::uuid AND organization_id = ':org' AND deleted_at IS NULL;
`);
    const listPage = sqlFile("list", `SELECT ${readColumns} FROM runners WHERE organization_id = ':org' AND deleted_at IS NULL
ORDER BY created_at DESC, id DESC LIMIT 26;
`);
    const exchange = sqlFile("exchange", `\\set n random(0, ${READ_RUNNERS - 1})
WITH used AS (UPDATE runner_exchange_tokens t SET used_at = now() FROM runners r
  WHERE t.token_hash = (SELECT token_hash FROM runner_exchange_tokens WHERE runner_id = md5('bench-' || :n)::uuid LIMIT 1)
    AND t.expires_at > now() AND r.id = t.runner_id AND r.deleted_at IS NULL RETURNING t.runner_id)
INSERT INTO runner_access_tokens (token_hash, runner_id, created_at) SELECT sha256(gen_random_uuid()::text::bytea), runner_id, now() FROM used;
`);
    const heartbeat = sqlFile("heartbeat", `\\set n random(0, ${FLEET_RUNNERS - 1})
UPDATE runners SET last_active_at = now() WHERE id = md5('bench-' || :n)::uuid AND deleted_at IS NULL AND signed_up_at IS NOT NULL;
`);
    const statusReport = sqlFile("status", `\\set n random(0, ${FLEET_RUNNERS - 1})
UPDATE runners SET status_version = '1.2.3', status_region = 'us-west-2', capabilities = '{11}', status_reported_at = now(), last_active_at = now()
 WHERE id = md5('bench-' || :n)::uuid AND deleted_at IS NULL AND signed_up_at IS NOT NULL;
`);
    const registrationStatement = sqlFile("registration-one-statement", `WITH runner AS (
INSERT INTO runners (id, organization_id, creator_principal, name, kind, provider, created_at, updated_at, desired_phase, region, auto_update)
VALUES (gen_random_uuid(), ':org', 2, 'bench runner', 2, 1, now(), now(), 3, 'us-west', true) RETURNING id)
INSERT INTO runner_exchange_tokens (token_hash, runner_id, created_at, expires_at)
SELECT sha256(gen_random_uuid()::text::bytea), id, now(), now() + interval '1 day' FROM runner;
`);

    const scenarios: Scenario[] = [
      {
        key: "create",
        title: "CreateRunner (Connect JSON, HTTP/1.1)",
        server: async (port: number) => wrk(port, "post.lua", { BENCH_PATH: "/gitpod.v1.RunnerService/CreateRunner", BENCH_BODY: createJson, BENCH_AUTH: auth }),
        pgbench: () => [registrationTx],
      },
      {
        key: "create_grpc",
        title: "CreateRunner (gRPC binary, h2c)",
        server: async (port: number) => h2load(port, "/gitpod.v1.RunnerService/CreateRunner", files.createGrpc, ["content-type: application/grpc", "te: trailers", bearer]),
        pgbench: () => [registrationTx],
      },
      {
        key: "create_one_statement",
        title: "(reference) registration as one statement, pgbench only",
        server: async () => ({ rps: NaN, p50: NaN, p99: NaN, errors: 0 }),
        pgbench: () => [registrationStatement],
      },
      {
        key: "get",
        title: "GetRunner (Connect JSON, HTTP/1.1)",
        server: async (port: number) => wrk(port, "post.lua", { BENCH_PATH: "/gitpod.v1.RunnerService/GetRunner", BENCH_BODY: readFileSync(files.getJson, "utf8"), BENCH_AUTH: auth }),
        pgbench: () => [primaryKeyRead],
      },
      {
        key: "get_h2_json",
        title: "GetRunner (Connect JSON, h2c)",
        server: async (port: number) => h2load(port, "/gitpod.v1.RunnerService/GetRunner", files.getJson, ["content-type: application/json", bearer]),
        pgbench: () => [primaryKeyRead],
      },
      {
        key: "get_h2_binary",
        title: "GetRunner (Connect binary, h2c)",
        server: async (port: number) => h2load(port, "/gitpod.v1.RunnerService/GetRunner", files.getProto, ["content-type: application/proto", bearer]),
        pgbench: () => [primaryKeyRead],
      },
      {
        key: "get_grpc",
        title: "GetRunner (gRPC, h2c)",
        server: async (port: number) => h2load(port, "/gitpod.v1.RunnerService/GetRunner", files.getGrpc, ["content-type: application/grpc", "te: trailers", bearer]),
        pgbench: () => [primaryKeyRead],
      },
      {
        key: "list",
        title: "ListRunners, page of 25 (Connect JSON)",
        server: async (port: number) => wrk(port, "post.lua", { BENCH_PATH: "/gitpod.v1.RunnerService/ListRunners", BENCH_BODY: '{"pagination":{"pageSize":25}}', BENCH_AUTH: auth }),
        pgbench: () => [listPage],
      },
      {
        key: "exchange",
        title: "ExchangeToken (Connect JSON)",
        server: async (port: number) => {
          const lines = await seedExchangeTokens(db, SECONDS * 8000);
          return wrk(port, "rotate.lua", { BENCH_PATH: "/gitpod.v1.IdentityService/ExchangeToken", BENCH_LINES: lines, BENCH_MODE: "body" });
        },
        pgbench: () => [exchange],
      },
      {
        key: "heartbeat",
        title: `MarkRunnerActive (Connect JSON, ${FLEET_RUNNERS} runners)`,
        server: async (port: number) => wrk(port, "rotate.lua", { BENCH_PATH: "/gitpod.v1.RunnerInteractionService/MarkRunnerActive", BENCH_LINES: heartbeatLines, BENCH_MODE: "bearer" }),
        pgbench: () => [heartbeat],
      },
      {
        key: "fleet",
        title: "Fleet mix: 85% heartbeat, 10% status, 3% create, 2% list",
        server: async (port: number) => wrk(port, "fleet.lua", { BENCH_LINES: fleetLines, BENCH_AUTH: auth }),
        pgbench: () => [`${heartbeat}@85`, `${statusReport}@10`, `${registrationTx}@3`, `${listPage}@2`],
      },
    ].filter((scenario) => !ONLY || ONLY.includes(scenario.key));

    // Warm-up: JIT, prepared statements, caches.
    log("warming up");
    runSeconds = Math.min(3, SECONDS);
    for (const key of ["create", "get_grpc", "list", "heartbeat"]) {
      await scenarios.find((s) => s.key === key)?.server(server.port);
    }
    runSeconds = SECONDS;

    const results: { scenario: Scenario; server: Measurement[]; pg: number[]; ratios: number[]; errors: number; rss: number }[] = [];
    for (const scenario of scenarios) {
      const row = { scenario, server: [] as Measurement[], pg: [] as number[], ratios: [] as number[], errors: 0, rss: 0 };
      for (let pair = 0; pair < PAIRS; pair++) {
        server.maxRssMb = 0;
        const offset = statSync(server.logFile).size;
        const cpuBefore = cpuSecondsOf(server.child.pid!);
        const started = performance.now();
        const measured = await scenario.server(server.port);
        const cpuSeconds = cpuSecondsOf(server.child.pid!) - cpuBefore;
        const wallSeconds = (performance.now() - started) / 1000;
        measured.cpuUsPerRequest = (cpuSeconds * 1e6) / (measured.rps * wallSeconds);
        measured.cpuShare = cpuSeconds / wallSeconds;
        const logged = serverErrors(server, offset);
        if (Number.isFinite(measured.rps)) {
          measured.errors += logged.errors;
          if (logged.errors) log(`  errors in ${scenario.key}: ${logged.sample.join(" | ")}`);
        }
        row.rss = Math.max(row.rss, server.maxRssMb);
        const tps = scenario.pgbench ? pgbench(scenario.pgbench(), defines) : NaN;
        row.server.push(measured);
        row.pg.push(tps);
        row.ratios.push(measured.rps / tps);
        row.errors += measured.errors;
        log(`${scenario.key} pair ${pair + 1}: server ${measured.rps.toFixed(0)} req/s (p50 ${measured.p50.toFixed(1)} ms, p99 ${measured.p99.toFixed(1)} ms, errors ${measured.errors}, server CPU ${measured.cpuUsPerRequest?.toFixed(0)} µs/request at ${((measured.cpuShare ?? NaN) * 100).toFixed(0)} % of a core), pgbench ${tps.toFixed(0)} tps, ratio ${(measured.rps / tps).toFixed(2)}`);
      }
      results.push(row);
    }

    // ------------------------------------------------------------ the runner channel (bench/channel.ts)
    const wants = (key: string) => !ONLY || ONLY.includes(key);
    const channelRows: { title: string; m: Measurement }[] = [];
    if (wants("channel_rtt_same")) {
      const m = await channelRoundTrip({ callerPort: server.port, streamPort: server.port, apiKey: auth, seconds: SECONDS, concurrency: CONCURRENCY });
      log(`channel_rtt_same: ${m.rps.toFixed(0)} req/s (p50 ${m.p50.toFixed(1)} ms, p99 ${m.p99.toFixed(1)} ms, errors ${m.errors})`);
      channelRows.push({ title: "Delegated ParseContextURL, runner's stream on the caller's replica (gRPC)", m });
    }
    let otherRtt: Measurement | undefined;
    if (wants("channel_rtt_other")) {
      const other = await startServer();
      try {
        otherRtt = await channelRoundTrip({ callerPort: server.port, streamPort: other.port, apiKey: auth, seconds: SECONDS, concurrency: CONCURRENCY });
        log(`channel_rtt_other: ${otherRtt.rps.toFixed(0)} req/s (p50 ${otherRtt.p50.toFixed(1)} ms, p99 ${otherRtt.p99.toFixed(1)} ms, errors ${otherRtt.errors})`);
        channelRows.push({ title: "Delegated ParseContextURL, runner's stream on another replica (gRPC)", m: otherRtt });
      } finally {
        await stopServer(other);
      }
    }
    // The two scenarios that hold thousands of streams each get a server process of their own, so
    // that neither's peak memory includes what the other (or the table's scenarios) left behind.
    const freshServer = async () => {
      await stopServer(server!);
      server = await startServer();
    };
    let streams: (StreamsResult & { rssMb: number }) | undefined;
    if (wants("streams")) {
      await freshServer();
      const runners = [];
      for (let i = 0; i < STREAM_RUNNERS; i++) runners.push(await newRunner(server.port, auth, `bench stream runner ${i}`));
      server.maxRssMb = 0;
      const result = await openStreams({
        port: server.port, apiKey: auth, runners, count: STREAMS, log,
        sampleRss: () => (server!.maxRssMb = Math.max(server!.maxRssMb, rssOf(server!.child.pid!))),
      });
      streams = { ...result, rssMb: server.maxRssMb };
      log(`streams: ${streams.streams} open in ${streams.openMs.toFixed(0)} ms, RSS ${streams.rssMb.toFixed(0)} MB, event to all in ${streams.eventMs.toFixed(0)} ms (${streams.missed} missed)`);
    }

    // ------------------------------------------------------------ events and audit (bench/events.ts)
    let events: (EventsResult & { rssMb: number }) | undefined;
    let audit: { without: number; with: number } | undefined;
    if (wants("events")) {
      await freshServer();
      server.maxRssMb = 0;
      const result = await watchLatency({
        port: server.port, apiKey: auth, watchers: WATCHERS, changes: EVENT_CHANGES, log,
        sampleRss: () => (server!.maxRssMb = Math.max(server!.maxRssMb, rssOf(server!.child.pid!))),
      });
      events = { ...result, rssMb: server.maxRssMb };
      log(`events: ${events.watchers} watchers, change → event p50 ${events.p50.toFixed(1)} ms, p99 ${events.p99.toFixed(1)} ms, max ${events.max.toFixed(1)} ms (${events.missed} missed), RSS ${events.rssMb.toFixed(0)} MB`);
      // The audit entry's cost on CreateRunner's SQL: the same registration with the audit context
      // the server sets (the trigger then inserts the entry) and without (events only).
      const context = JSON.stringify({ t: "runners", a: "CreateRunner", i: "", p: 2, r: "bench-request-id", at: new Date().toISOString() });
      const audited = sqlFile("registration-audited", readFileSync(registrationTx, "utf8").replace("BEGIN;", `BEGIN;\nSELECT set_config('rcp.audit', '${context}', true);`));
      // Alternated three times (medians): single 10 s pgbench runs differ by more than the effect.
      const without: number[] = [];
      const withAudit: number[] = [];
      for (let i = 0; i < 3; i++) {
        without.push(pgbench([registrationTx], defines));
        withAudit.push(pgbench([audited], defines));
      }
      audit = { without: median(without), with: median(withAudit) };
      log(`audit: registration ${audit.without.toFixed(0)} tps without the audit entry, ${audit.with.toFixed(0)} tps with it`);
    }

    // ------------------------------------------------------------ report
    const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : "–");
    const byKey = (key: string) => results.find((r) => r.scenario.key === key);
    const ratioOf = (key: string) => median(byKey(key)?.ratios ?? []);
    const cpu = cpus();
    const pgVersion = (await db.query("SHOW server_version")).rows[0].server_version as string;
    const lines = [
      "# Benchmark results",
      "",
      `Run at ${new Date().toISOString()} with \`npm run bench\` (BENCH_SECONDS=${SECONDS}, BENCH_PAIRS=${PAIRS}, concurrency ${CONCURRENCY}, pgbench -M ${PGBENCH_MODE}${WORKERS ? `, WORKERS=${WORKERS}` : ""}).`,
      "",
      `Machine: ${cpu.length} × ${cpu[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Node ${process.version}, PostgreSQL ${pgVersion} on the same host (synchronous_commit on). Server and PostgreSQL share these cores; load generators: wrk (HTTP/1.1), h2load (h2c), pgbench, one thread each.`,
      "",
      `Cold start to /readyz on PostgreSQL: ${fmt(coldStartMs)} ms (first start, applying migrations: ${fmt(firstStartMs)} ms).`,
      "",
      "| scenario | server req/s (median) | p50 ms | p99 ms | errors | max RSS MB | server CPU µs/request | pgbench tps (median) | ratio server/pgbench (median of pairs) |",
      "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
      ...results.map((r) => {
        const m = (pick: (x: Measurement) => number) => median(r.server.map(pick));
        return `| ${r.scenario.title} | ${fmt(m((x) => x.rps))} | ${fmt(m((x) => x.p50), 1)} | ${fmt(m((x) => x.p99), 1)} | ${r.errors} | ${fmt(r.rss)} | ${fmt(m((x) => x.cpuUsPerRequest ?? NaN))} | ${fmt(median(r.pg))} | ${fmt(median(r.ratios), 2)} |`;
      }),
      "",
      "pgbench runs the SQL one request costs: registration = runner row + token row in one transaction (BEGIN, INSERT, INSERT, COMMIT);",
      "read = one primary-key SELECT of the same columns; list = the same ORDER BY … LIMIT 26 query; exchange = the conditional UPDATE + INSERT;",
      "heartbeat = one UPDATE per request; fleet = those scripts at the same weights. Authentication is not in the pgbench side.",
      "Server CPU: user + system time of the server process (all its threads) during the run, per request answered.",
    ];
    if (channelRows.length > 0) {
      lines.push("", "| runner channel | req/s | p50 ms | p99 ms | errors |", "|---|--:|--:|--:|--:|",
        ...channelRows.map(({ title, m }) => `| ${title} | ${fmt(m.rps)} | ${fmt(m.p50, 1)} | ${fmt(m.p99, 1)} | ${m.errors} |`));
    }
    if (streams) {
      lines.push("", `Open WatchRequests streams (one HTTP/1.1 connection each, ${STREAM_RUNNERS} runners): ${streams.streams} open in ${fmt(streams.openMs)} ms, ` +
        `server RSS ${fmt(streams.rssMb)} MB, an EventRunnerConfigurationChange (UpdateRunner of every runner at once) reached all of them in ${fmt(streams.eventMs)} ms (${streams.missed} missed within 10 s).`);
    }
    if (events) {
      lines.push("", `WatchEvents: ${events.watchers} streams on one process (gRPC, 100 per HTTP/2 connection) opened in ${fmt(events.openMs)} ms, server RSS ${fmt(events.rssMb)} MB; ` +
        `UpdateRunner → event on every watcher over ${EVENT_CHANGES} changes: p50 ${fmt(events.p50, 1)} ms, p99 ${fmt(events.p99, 1)} ms, max ${fmt(events.max, 1)} ms (${events.missed} missed within 10 s).`);
    }
    if (audit) {
      lines.push("", `Audit entry on CreateRunner (pgbench, the registration transaction): ${fmt(audit.without)} tps without, ${fmt(audit.with)} tps with (${fmt((1 - audit.with / audit.without) * 100, 1)} % fewer).`);
    }
    const protocolRows = ["get_h2_json", "get_h2_binary", "get_grpc"].map((key) => [key, median(byKey(key)?.server.map((x) => x.rps) ?? [])] as const);
    const fastest = Math.max(...protocolRows.map(([, rps]) => rps).filter(Number.isFinite));
    if (Number.isFinite(fastest)) {
      lines.push("", "Protocol overhead for GetRunner (same generator, h2c): " +
        protocolRows.map(([key, rps]) => `${key} ${fmt(rps)} req/s (${fmt((1 - rps / fastest) * 100)} % below fastest)`).join(", ") + ".");
    }
    // A run of some scenarios only must not replace the last full table.
    writeFileSync(join(projectRoot, ONLY ? "bench/results/partial.md" : "bench/results/latest.md"), lines.join("\n") + "\n");
    process.stdout.write(lines.join("\n") + "\n\n");

    const heartbeatRow = byKey("heartbeat");
    // GetRunner over h2c: the slowest of the three protocols (the target holds for each).
    const h2Ratios = ["get_h2_json", "get_h2_binary", "get_grpc"].map(ratioOf).filter(Number.isFinite);
    const summary = {
      create_ratio: fmt(ratioOf("create"), 2),
      create_grpc_ratio: fmt(ratioOf("create_grpc"), 2),
      get_ratio: fmt(ratioOf("get"), 2),
      get_h2_ratio: fmt(h2Ratios.length === 3 ? Math.min(...h2Ratios) : NaN, 2),
      list_ratio: fmt(ratioOf("list"), 2),
      heartbeat_rps: fmt(median(heartbeatRow?.server.map((x) => x.rps) ?? [])),
      heartbeat_p99_ms: fmt(median(heartbeatRow?.server.map((x) => x.p99) ?? [])),
      heartbeat_ratio: fmt(ratioOf("heartbeat"), 2),
      max_rss_mb: fmt(Math.max(...results.map((r) => r.rss))),
      cold_start_ms: fmt(coldStartMs),
      channel_rtt_p99_ms: fmt((otherRtt ?? channelRows[0]?.m)?.p99 ?? NaN, 1),
      streams: streams ? String(streams.streams) : "–",
      streams_rss_mb: streams ? fmt(streams.rssMb) : "–",
      streams_event_ms: streams ? fmt(streams.eventMs) : "–",
      watch_streams: events ? String(events.watchers) : "–",
      event_p99_ms: events ? fmt(events.p99, 1) : "–",
      watch_rss_mb: events ? fmt(events.rssMb) : "–",
      audit_overhead: audit ? fmt(1 - audit.with / audit.without, 3) : "–",
      errors: String(results.reduce((sum, r) => sum + r.errors, 0)),
    };
    process.stdout.write(`bench: ${Object.entries(summary).map(([k, v]) => `${k}=${v}`).join(" ")}\n`);
  } finally {
    if (server) await stopServer(server).catch(() => {});
    await db.end().catch(() => {});
    await admin(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`).catch((err) => log(`could not drop ${databaseName}: ${err}`));
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : err}\n`);
  process.exit(1);
});

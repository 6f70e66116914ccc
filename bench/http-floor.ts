// What HTTP costs before any of our code runs: minimal servers that answer every POST with the
// same 1 KB body, driven like the benchmark drives the real one (16 connections, one request in
// flight on each; wrk for HTTP/1.1, h2load for h2c), reporting the server's CPU per request.
// The variants separate Node's HTTP/1.1, Node's http2 (its compatibility API and the bare
// stream API), Fastify on each, and gRPC's trailers. Usage: npx tsx bench/http-floor.ts [seconds]
//
// Each variant runs in its own process (this file, with the variant's name as argument), and the
// variants run in turn BENCH_ROUNDS times (default 2), so that drift of the machine shows.
import { execFileSync, spawn } from "node:child_process";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import Fastify, { type FastifyReply } from "fastify";

const BODY = Buffer.alloc(1024, 97);

const streamServer = (options: http2.ServerOptions) => {
  const server = http2.createServer(options);
  server.on("stream", (stream) => {
    stream.resume();
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/json", "content-length": BODY.length });
      stream.end(BODY);
    });
  });
  return listen(server);
};

/** `streams`: requests in flight per connection (h2load -m), over 16 / streams connections. */
const variants: Record<string, { h2: boolean; grpc?: boolean; streams?: number; start(): Promise<number> }> = {
  "node:http": {
    h2: false,
    start: () =>
      listen(
        http.createServer((req, res) => {
          req.resume();
          req.on("end", () => {
            res.writeHead(200, { "content-type": "application/json", "content-length": BODY.length });
            res.end(BODY);
          });
        }),
      ),
  },
  "node:http2 compatibility API": {
    h2: true,
    start: () =>
      listen(
        http2.createServer({}, (req, res) => {
          req.resume();
          req.on("end", () => {
            res.writeHead(200, { "content-type": "application/json", "content-length": BODY.length });
            res.end(BODY);
          });
        }),
      ),
  },
  "node:http2 stream API": { h2: true, start: () => streamServer({}) },
  "node:http2 stream API, 1 MiB flow-control windows": {
    h2: true,
    start: () => streamServer({ settings: { initialWindowSize: 1 << 20 } }),
  },
  "node:http2 stream API, 4 connections × 4 streams": { h2: true, streams: 4, start: () => streamServer({}) },
  "node:http2 stream API, gRPC trailers": {
    h2: true,
    grpc: true,
    start: () => {
      const server = http2.createServer({});
      server.on("stream", (stream) => {
        stream.resume();
        stream.on("end", () => {
          stream.respond({ ":status": 200, "content-type": "application/grpc+proto" }, { waitForTrailers: true });
          stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
          stream.end(BODY);
        });
      });
      return listen(server);
    },
  },
  "fastify, HTTP/1.1": { h2: false, start: () => fastify(false) },
  "fastify, h2c": { h2: true, start: () => fastify(true) },
};

async function fastify(h2: boolean): Promise<number> {
  const app = (h2 ? Fastify({ http2: true }) : Fastify()) as unknown as ReturnType<typeof Fastify>;
  app.post("/x", async (_request: unknown, reply: FastifyReply) => reply.header("content-type", "application/json").send(BODY));
  await app.listen({ port: 0, host: "127.0.0.1" });
  return (app.server.address() as AddressInfo).port;
}

function listen(server: http.Server | http2.Http2Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)));
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function measure(name: string, seconds: number, work: string): Promise<{ rps: number; cpuUs: number }> {
  const variant = variants[name]!;
  const child = spawn(process.execPath, ["--import", "tsx", new URL(import.meta.url).pathname, name], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve) => child.stdout.once("data", (data: Buffer) => resolve(Number(String(data).trim()))));
  const before = cpuSeconds(child.pid!);
  const started = performance.now();
  let rps: number;
  if (variant.h2) {
    const headers = variant.grpc ? ["-H", "content-type: application/grpc", "-H", "te: trailers"] : ["-H", "content-type: application/json"];
    const out = execFileSync("h2load", ["-c", String(16 / (variant.streams ?? 1)), "-m", String(variant.streams ?? 1), "-D", String(seconds), "-d", join(work, "body"), ...headers, `http://127.0.0.1:${port}/x`], { encoding: "utf8" });
    rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0);
  } else {
    const out = execFileSync("wrk", ["-t1", "-c16", `-d${seconds}s`, "-s", join(work, "post.lua"), `http://127.0.0.1:${port}/x`], { encoding: "utf8" });
    rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  }
  const cpu = cpuSeconds(child.pid!) - before;
  const wall = (performance.now() - started) / 1000;
  child.kill();
  return { rps, cpuUs: (cpu * 1e6) / (rps * wall) };
}

async function main(): Promise<void> {
  const own = process.argv[2];
  if (own !== undefined && variants[own]) {
    process.stdout.write(`${await variants[own].start()}\n`);
    return;
  }
  const seconds = Number(own ?? 5);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
  const work = mkdtempSync(join(tmpdir(), "http-floor-"));
  writeFileSync(join(work, "body"), '{"runnerId":"00000000-0000-4000-8000-000000000000"}');
  writeFileSync(join(work, "post.lua"), `wrk.method = "POST"\nwrk.body = '{"runnerId":"00000000-0000-4000-8000-000000000000"}'\nwrk.headers["content-type"] = "application/json"\n`);
  const results = new Map<string, { rps: number; cpuUs: number }[]>();
  for (let round = 0; round < rounds; round++) {
    for (const name of Object.keys(variants)) {
      const m = await measure(name, seconds, work);
      results.set(name, [...(results.get(name) ?? []), m]);
      process.stderr.write(`[floor] ${name}: ${m.rps.toFixed(0)} req/s, ${m.cpuUs.toFixed(0)} µs CPU/request\n`);
    }
  }
  process.stdout.write("| server | req/s | server CPU µs/request |\n|---|--:|--:|\n");
  for (const [name, ms] of results) {
    process.stdout.write(`| ${name} | ${ms.map((m) => m.rps.toFixed(0)).join(", ")} | ${ms.map((m) => m.cpuUs.toFixed(0)).join(", ")} |\n`);
  }
}

void main();

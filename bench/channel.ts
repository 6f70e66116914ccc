// The runner channel's scenarios for `npm run bench` (bench/run.ts calls them):
// - channel_rtt_same / channel_rtt_other: delegated ParseContextURL round trips (caller → server
//   → the runner's WatchRequests stream → SendResponse → caller) with the runner's stream on the
//   caller's replica, and on another replica (a second server process on the same database).
//   The runner is written here; it answers each call at once.
// - streams: concurrently open WatchRequests streams one server process holds, each on its own
//   HTTP/1.1 connection (Connect binary), and the time for an event (EventRunnerConfigurationChange
//   from UpdateRunner) to reach all of them.
import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { IdentityService } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerInteractionService, type SendResponseRequestSchema } from "../gen/gitpod/v1/runner_interaction_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";

export interface Measurement {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

const bearer = (token: string | undefined): Interceptor => (next) => (req) => {
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};
const grpc = (port: number, token?: string) => createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, interceptors: [bearer(token)] });

/** A new runner, exchanged and signed up, with its access token. */
async function newRunner(port: number, apiKey: string, name: string): Promise<{ runnerId: string; accessToken: string }> {
  const { runner, exchangeToken } = await createClient(RunnerService, grpc(port, apiKey)).createRunner({ name, provider: RunnerProvider.LINUX_HOST });
  const { accessToken } = await createClient(IdentityService, grpc(port)).exchangeToken({ exchangeToken });
  await createClient(RunnerInteractionService, grpc(port, accessToken)).signup({ publicKey: new Uint8Array(32) });
  return { runnerId: runner!.runnerId, accessToken };
}

/** Holds a stream on `transport` and answers every call over the same transport; resolves once open. */
async function answeringRunner(transport: Transport, runnerId: string, signal: AbortSignal): Promise<void> {
  const client = createClient(RunnerInteractionService, transport);
  let opened!: () => void;
  const open = new Promise<void>((resolve) => (opened = resolve));
  void (async () => {
    try {
      for await (const message of client.watchRequests({ runnerId, workerId: "bench" }, { signal })) {
        opened();
        const response: MessageInitShape<typeof SendResponseRequestSchema>["response"] =
          message.request.case === "callParseContext"
            ? { case: "callParseContext" as const, value: { resp: { originalContextUrl: message.request.value.contextUrl } } }
            : message.request.case === "callPing"
              ? { case: "callPing" as const, value: {} }
              : undefined;
        if (response) void client.sendResponse({ runnerId, requestId: message.requestId, response }).catch(() => {});
      }
    } catch {
      // aborted at the end
    }
  })();
  await open;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Round trips for `seconds` at `concurrency`, caller on `callerPort`, the runner's stream on `streamPort`. */
export async function channelRoundTrip(options: { callerPort: number; streamPort: number; apiKey: string; seconds: number; concurrency: number }): Promise<Measurement> {
  const runner = await newRunner(options.callerPort, options.apiKey, "bench channel runner");
  const abort = new AbortController();
  try {
    await answeringRunner(grpc(options.streamPort, runner.accessToken), runner.runnerId, abort.signal);
    const users = createClient(RunnerService, grpc(options.callerPort, options.apiKey));
    const latencies: number[] = [];
    let errors = 0;
    const end = performance.now() + options.seconds * 1000;
    await Promise.all(
      Array.from({ length: options.concurrency }, async (_, worker) => {
        for (let i = 0; performance.now() < end; i++) {
          const started = performance.now();
          try {
            await users.parseContextURL({ runnerId: runner.runnerId, contextUrl: `https://github.com/bench/repo-${worker}-${i}` });
            latencies.push(performance.now() - started);
          } catch {
            errors++;
          }
        }
      }),
    );
    latencies.sort((a, b) => a - b);
    return { rps: latencies.length / options.seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors };
  } finally {
    abort.abort();
  }
}

export interface StreamsResult {
  /** Streams that were open at the same time. */
  streams: number;
  /** Time to open them all. */
  openMs: number;
  /** From the first UpdateRunner until the last stream had its event. */
  eventMs: number;
  /** Streams that did not get the event within the 10 s allowed. */
  missed: number;
}

/**
 * Opens `count` streams (one HTTP/1.1 connection each) for `runners` (with `count / runners.length`
 * workers each), then changes every runner's configuration at once and waits for the event on
 * every stream. `sampleRss` is called while all are open.
 */
export async function openStreams(options: { port: number; apiKey: string; runners: { runnerId: string; accessToken: string }[]; count: number; sampleRss: () => void; log: (message: string) => void }): Promise<StreamsResult> {
  const abort = new AbortController();
  const received = new Map<number, number>(); // stream index → time the event arrived
  const opened: Promise<void>[] = [];
  let eventSentAt = Infinity;
  const started = performance.now();
  try {
    for (let i = 0; i < options.count; i++) {
      const runner = options.runners[i % options.runners.length]!;
      // Its own agent: one socket (connection) per stream.
      const transport = createConnectTransport({
        baseUrl: `http://127.0.0.1:${options.port}`,
        httpVersion: "1.1",
        useBinaryFormat: true,
        interceptors: [bearer(runner.accessToken)],
        nodeOptions: { agent: new (await import("node:http")).Agent({ keepAlive: false, maxSockets: 1 }) },
      });
      const client = createClient(RunnerInteractionService, transport);
      opened.push(
        new Promise<void>((resolve, reject) => {
          void (async () => {
            try {
              for await (const message of client.watchRequests({ runnerId: runner.runnerId, workerId: `w${i}` }, { signal: abort.signal })) {
                if (message.request.case === "callPing") resolve();
                if (message.request.case === "eventRunnerConfigurationChange" && performance.now() >= eventSentAt) received.set(i, performance.now());
              }
            } catch (err) {
              reject(err);
            }
          })();
        }),
      );
      // Open in waves, so the server is not asked for thousands of TLS-less handshakes in one tick.
      if (i % 500 === 499) {
        await Promise.all(opened.slice(i - 499));
        options.log(`  ${i + 1} streams open`);
      }
    }
    await Promise.all(opened);
    const openMs = performance.now() - started;
    options.sampleRss();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    options.sampleRss();
    const users = createClient(RunnerService, grpc(options.port, options.apiKey));
    eventSentAt = performance.now();
    await Promise.all(options.runners.map((r) => users.updateRunner({ runnerId: r.runnerId, spec: { configuration: { autoUpdate: true } } })));
    const deadline = eventSentAt + 10_000;
    while (received.size < options.count && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    options.sampleRss();
    const last = Math.max(...received.values());
    return { streams: options.count, openMs, eventMs: received.size > 0 ? last - eventSentAt : NaN, missed: options.count - received.size };
  } finally {
    abort.abort();
  }
}

export { newRunner };

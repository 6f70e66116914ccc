// The event stream's scenario for `npm run bench` (bench/run.ts calls it): `events` opens
// BENCH_WATCHERS (default 1,000) WatchEvents streams on one server process (gRPC, 100 streams per
// HTTP/2 connection), then makes BENCH_EVENT_CHANGES (default 50) runner changes one after the
// other and measures, for every watcher and change, the time from sending UpdateRunner to the
// event's arrival (p50, p99, max). The audit overhead on CreateRunner is measured on the
// pgbench side (bench/run.ts): the registration transaction with and without an audit context.
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { EventService, ResourceOperation } from "../gen/gitpod/v1/event_pb.js";
import { RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { RunnerProvider } from "../gen/gitpod/v1/runner_configuration_pb.js";

export interface EventsResult {
  /** Streams open at once on the process. */
  watchers: number;
  openMs: number;
  p50: number;
  p99: number;
  max: number;
  /** Events that did not arrive within 10 s. */
  missed: number;
}

const bearer = (token: string): Interceptor => (next) => (req) => {
  req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function watchLatency(options: { port: number; apiKey: string; watchers: number; changes: number; log: (message: string) => void; sampleRss: () => void }): Promise<EventsResult> {
  const baseUrl = `http://127.0.0.1:${options.port}`;
  const abort = new AbortController();
  const arrivals: Map<string, number>[] = []; // per watcher: change number → arrival time
  // Only the watched runner's events count: others (the sweeper marking the seeded fleet
  // INACTIVE, earlier scenarios' runners) arrive at the same time.
  let watched: string | undefined;
  const failed = new Set<Map<string, number>>();
  const reasons: string[] = [];
  const opened: Promise<void>[] = [];
  const started = performance.now();
  let failures = 0;
  try {
    const transports = Array.from({ length: Math.ceil(options.watchers / 100) }, () => createGrpcTransport({ baseUrl, interceptors: [bearer(options.apiKey)] }));
    for (let i = 0; i < options.watchers; i++) {
      const seen = new Map<string, number>();
      arrivals.push(seen);
      const client = createClient(EventService, transports[Math.floor(i / 100)]!);
      opened.push(
        new Promise<void>((resolve) => {
          void (async () => {
            try {
              let n = 0;
              for await (const event of client.watchEvents({}, { signal: abort.signal })) {
                if (n++ === 0) resolve(); // the opening message
                // Its UPDATEs only: its CREATE may arrive before or after `watched` is known.
                else if (event.operation === ResourceOperation.UPDATE && event.resourceId === watched) seen.set(`${seen.size}`, performance.now());
              }
            } catch (err) {
              if (!abort.signal.aborted) {
                failures++;
                failed.add(seen);
                reasons.push(String(err));
              }
              resolve();
            }
          })();
        }),
      );
      // In waves: a thousand authentications at once would queue for the pool's connections.
      if (i % 100 === 99) await Promise.all(opened.slice(i - 99));
    }
    await Promise.all(opened);
    if (reasons.length > 0) options.log(`  ${reasons.length} watch streams failed, e.g. ${reasons[0]!.slice(0, 200)}`);
    const openMs = performance.now() - started;
    options.log(`  ${options.watchers - failures} watch streams open in ${openMs.toFixed(0)} ms`);
    options.sampleRss();
    const runners = createClient(RunnerService, createGrpcTransport({ baseUrl, interceptors: [bearer(options.apiKey)] }));
    const { runner } = await runners.createRunner({ name: "bench watched runner", provider: RunnerProvider.LINUX_HOST });
    watched = runner!.runnerId;
    const until = async (count: number, deadline: number) => {
      while (performance.now() < deadline && arrivals.some((a) => !failed.has(a) && a.size < count)) await new Promise((resolve) => setTimeout(resolve, 2));
    };
    const latencies: number[] = [];
    let missed = 0;
    for (let change = 0; change < options.changes; change++) {
      const sent = performance.now();
      await runners.updateRunner({ runnerId: runner!.runnerId, name: `bench watched runner ${change}` });
      await until(change + 1, sent + 10_000);
      for (const a of arrivals) {
        if (failed.has(a)) continue;
        const at = a.get(String(change));
        if (at === undefined) missed++;
        else latencies.push(at - sent);
      }
    }
    options.sampleRss();
    latencies.sort((a, b) => a - b);
    return { watchers: options.watchers - failures, openMs, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies[latencies.length - 1] ?? NaN, missed };
  } finally {
    abort.abort();
  }
}

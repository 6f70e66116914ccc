// Prometheus metrics at GET /metrics (text format 0.0.4, via prom-client).
//
// The per-RPC series use the names of the gRPC ecosystem (go-grpc-prometheus and its
// successors), so existing dashboards and alerts work unchanged:
//   grpc_server_started_total{grpc_type,grpc_service,grpc_method}
//   grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
//   grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method} (histogram)
// They count every RPC whatever the protocol (Connect, gRPC, gRPC-Web).
//
// Hot path: one Map lookup by method descriptor, two increments, a bucket search in a
// preallocated array. No label hashing, no allocation; the text is built only at scrape time.
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { collectDefaultMetrics, Registry, type Metric } from "prom-client";
import { IdentityService } from "../../gen/gitpod/v1/identity_pb.js";
import { atStreamEnd } from "./stream-end.js";

/** gRPC status names as the gRPC ecosystem prints them (Go's codes.Code.String()). */
const CODE_NAMES = [
  "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
  "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
  "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
] as const;

/** Upper bounds in seconds; a PostgreSQL round trip is about a millisecond. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

const GRPC_TYPES: Record<DescMethod["methodKind"], string> = {
  unary: "unary",
  server_streaming: "server_stream",
  client_streaming: "client_stream",
  bidi_streaming: "bidi_stream",
};

/** Counters of one method, allocated on its first call. */
class MethodStats {
  started = 0;
  readonly handled = new Float64Array(CODE_NAMES.length);
  /** Non-cumulative: buckets[i] counts observations in (bound[i-1], bound[i]]; the last slot is +Inf. */
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;
  count = 0;
  readonly labels: { grpc_type: string; grpc_service: string; grpc_method: string };

  constructor(method: DescMethod) {
    this.labels = { grpc_type: GRPC_TYPES[method.methodKind], grpc_service: method.parent.typeName, grpc_method: method.name };
  }

  record(code: number, seconds: number): void {
    this.handled[code]!++;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.buckets[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

export type RunnerPhaseCounts = ReadonlyMap<string, number>;

export interface MetricsSources {
  /** Connection pool counters of the database. */
  poolStats(): { total: number; idle: number; waiting: number };
  /** Live runners per phase name (e.g. "ACTIVE") across all organizations, and the number of organizations. */
  runnerStats(): Promise<{ phases: RunnerPhaseCounts; organizations: number }>;
  /** Load shedding: RPCs in flight now, RPCs refused so far, and the limit (0 = none). */
  load(): { inFlight: number; shed: number; limit: number };
}

export interface MetricsOptions {
  /** How long runner counts are reused between scrapes (they cost one SQL query). Default 10 s. */
  runnerStatsTtlMs?: number;
  /** Milliseconds clock for that cache (the server's clock, so tests can move it). */
  now?: () => number;
  /** Process metrics (CPU, memory, event loop lag, GC). Off in tests that build many servers. */
  processMetrics?: boolean;
  /** Called when the runner query fails; the scrape still succeeds with the last known values. */
  onError?: (err: unknown) => void;
}

export interface CollectedValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/** A series computed at scrape time; prom-client's registry only calls get(). */
function collector(
  name: string,
  help: string,
  type: "counter" | "gauge" | "histogram",
  values: () => CollectedValue[] | Promise<CollectedValue[]>,
): Metric {
  return {
    name,
    help,
    type,
    aggregator: "sum",
    async get() {
      return { name, help, type, aggregator: "sum", values: await values() };
    },
  } as unknown as Metric;
}

const exchangeTokenMethod = IdentityService.method.exchangeToken;

export class Metrics {
  readonly registry = new Registry();
  private readonly methods = new Map<DescMethod, MethodStats>();
  private readonly exchangeOutcomes = { success: 0, rejected: 0 };
  /** Calls answered by the unary short path (src/rpc/unary-fast-path.ts), by protocol. */
  private readonly fastPathCalls = new Map<string, number>();
  private runnerCache: { at: number; value: Promise<{ phases: RunnerPhaseCounts; organizations: number }> } | undefined;
  private lastRunnerStats: { phases: RunnerPhaseCounts; organizations: number } | undefined;

  constructor(
    private readonly sources: MetricsSources,
    private readonly options: MetricsOptions = {},
  ) {
    const r = this.registry;
    r.registerMetric(
      collector("grpc_server_started_total", "RPCs started on the server.", "counter", () =>
        [...this.methods.values()].map((m) => ({ labels: m.labels, value: m.started })),
      ),
    );
    r.registerMetric(
      collector("grpc_server_handled_total", "RPCs completed on the server, by status code.", "counter", () => {
        const values: CollectedValue[] = [];
        for (const m of this.methods.values()) {
          m.handled.forEach((value, code) => {
            if (value > 0) values.push({ labels: { ...m.labels, grpc_code: CODE_NAMES[code]! }, value });
          });
        }
        return values;
      }),
    );
    r.registerMetric(
      collector("grpc_server_handling_seconds", "Time from receiving an RPC's request to having its response, in seconds.", "histogram", () => {
        const values: CollectedValue[] = [];
        for (const m of this.methods.values()) {
          let cumulative = 0;
          for (let i = 0; i <= LATENCY_BUCKETS.length; i++) {
            cumulative += m.buckets[i]!;
            const le = i < LATENCY_BUCKETS.length ? LATENCY_BUCKETS[i]! : "+Inf";
            values.push({ metricName: "grpc_server_handling_seconds_bucket", labels: { ...m.labels, le }, value: cumulative });
          }
          values.push({ metricName: "grpc_server_handling_seconds_sum", labels: m.labels, value: m.sum });
          values.push({ metricName: "grpc_server_handling_seconds_count", labels: m.labels, value: m.count });
        }
        return values;
      }),
    );
    r.registerMetric(
      collector("rcp_exchange_token_total", "IdentityService.ExchangeToken calls by outcome: success, or rejected (unknown, used, expired or malformed token, or too many failures).", "counter", () => [
        { labels: { outcome: "success" }, value: this.exchangeOutcomes.success },
        { labels: { outcome: "rejected" }, value: this.exchangeOutcomes.rejected },
      ]),
    );
    r.registerMetric(
      collector("rcp_unary_fast_path_requests_total", "Unary calls answered by the short path rather than Connect's own handler (UNARY_FAST_PATH), by protocol.", "counter", () =>
        [...this.fastPathCalls].map(([protocol, value]) => ({ labels: { protocol }, value })),
      ),
    );
    r.registerMetric(
      collector("rcp_db_pool_connections", "Database connections open in the pool, by state (idle or in_use).", "gauge", () => {
        const { total, idle } = sources.poolStats();
        return [
          { labels: { state: "idle" }, value: idle },
          { labels: { state: "in_use" }, value: total - idle },
        ];
      }),
    );
    r.registerMetric(
      collector("rcp_db_pool_waiting_requests", "Queries waiting for a free database connection.", "gauge", () => [
        { labels: {}, value: sources.poolStats().waiting },
      ]),
    );
    r.registerMetric(
      collector("rcp_in_flight_requests", "RPCs being handled now.", "gauge", () => [{ labels: {}, value: sources.load().inFlight }]),
    );
    r.registerMetric(
      collector("rcp_in_flight_limit", "MAX_IN_FLIGHT: RPCs above this many in flight are refused (0 = no limit).", "gauge", () => [
        { labels: {}, value: sources.load().limit },
      ]),
    );
    r.registerMetric(
      collector("rcp_shed_requests_total", "RPCs refused with `unavailable` because MAX_IN_FLIGHT was reached.", "counter", () => [
        { labels: {}, value: sources.load().shed },
      ]),
    );
    r.registerMetric(
      collector("rcp_runners", "Live (not deleted) runners of all organizations, by observed phase.", "gauge", async () => {
        const stats = await this.runnerStats();
        return stats ? [...stats.phases].map(([phase, value]) => ({ labels: { phase }, value })) : [];
      }),
    );
    r.registerMetric(
      collector("rcp_organizations", "Organizations.", "gauge", async () => {
        const stats = await this.runnerStats();
        return stats ? [{ labels: {}, value: stats.organizations }] : [];
      }),
    );
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: r });
  }

  /** Registers a metric of another room, read at scrape time (e.g. the runner channel's streams). */
  register(name: string, help: string, type: "counter" | "gauge", values: () => CollectedValue[]): void {
    this.registry.registerMetric(collector(name, help, type, values));
  }

  fastPathServed(protocol: string): void {
    this.fastPathCalls.set(protocol, (this.fastPathCalls.get(protocol) ?? 0) + 1);
  }

  /** Outermost interceptor: counts and times every RPC by its final (public) status code. */
  interceptor(): Interceptor {
    return (next) => async (req) => {
      let stats = this.methods.get(req.method);
      if (stats === undefined) this.methods.set(req.method, (stats = new MethodStats(req.method)));
      stats.started++;
      const started = performance.now();
      let code: number = Code.Unknown;
      let streaming = false;
      try {
        const res = await next(req);
        code = 0;
        // A stream is handled when its messages end (a client that goes away: canceled).
        streaming = res.stream;
        return atStreamEnd(res, (end) => {
          const final = end.kind === "completed" ? 0 : end.kind === "canceled" ? Code.Canceled : end.error instanceof ConnectError ? end.error.code : Code.Unknown;
          stats!.record(final, (performance.now() - started) / 1000);
        });
      } catch (err) {
        code = err instanceof ConnectError ? err.code : Code.Unknown;
        throw err;
      } finally {
        if (!streaming) stats.record(code, (performance.now() - started) / 1000);
        if (req.method === exchangeTokenMethod) {
          if (code === 0) this.exchangeOutcomes.success++;
          else if (code === Code.Unauthenticated || code === Code.InvalidArgument || code === Code.ResourceExhausted) {
            this.exchangeOutcomes.rejected++; // bad token, or refused by the brute-force limit
          }
        }
      }
    };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The whole exposition text. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /** Runner counts, at most one query per TTL however many scrapes arrive; stale values on failure. */
  private async runnerStats(): Promise<{ phases: RunnerPhaseCounts; organizations: number } | undefined> {
    const now = (this.options.now ?? Date.now)();
    const ttl = this.options.runnerStatsTtlMs ?? 10_000;
    if (this.runnerCache === undefined || now - this.runnerCache.at >= ttl || now < this.runnerCache.at) {
      this.runnerCache = { at: now, value: this.sources.runnerStats() };
    }
    const cached = this.runnerCache;
    try {
      this.lastRunnerStats = await cached.value;
    } catch (err) {
      // Retry on the next scrape; report once even though two series share the query.
      if (this.runnerCache === cached) {
        this.runnerCache = undefined;
        this.options.onError?.(err);
      }
    }
    return this.lastRunnerStats;
  }
}

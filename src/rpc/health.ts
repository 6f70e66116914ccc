// grpc.health.v1.Health: Check, List and Watch, for Kubernetes gRPC probes, grpc_health_probe and
// balancers' gRPC health checks. The status comes from the same readiness signal as GET /readyz
// (src/ops/readiness.ts): SERVING when /readyz would say 200, NOT_SERVING otherwise. Known
// services: "" (the server as a whole) and every gitpod.v1 service served; all share that status.
// Watch sends the status at once and then each change (one shared poll of the readiness signal
// while anyone watches); on shutdown it sends NOT_SERVING and ends, so it never holds up a drain.
// Like reflection it needs no credentials: it tells only whether the server is ready.
import { Code, ConnectError, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import type { Readiness } from "../ops/readiness.js";

export interface HealthOptions {
  /** Names of the served services (besides "", the server as a whole). */
  services: readonly string[];
  readiness: Readiness;
  /** Aborted when the server starts shutting down. */
  shutdown: AbortSignal;
  /** How often Watch looks at the readiness signal (default 2 s). */
  watchIntervalMs?: number;
}

export function healthRoutes(options: HealthOptions): (router: ConnectRouter) => void {
  const known = new Set(["", ...options.services]);
  const status = async () => ((await options.readiness.check()).ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  const feed = new StatusFeed(status, options.watchIntervalMs ?? 2_000);

  const impl: ServiceImpl<typeof Health> = {
    async check(request) {
      if (!known.has(request.service)) throw new ConnectError(`unknown service ${JSON.stringify(request.service)}`, Code.NotFound);
      return { status: options.shutdown.aborted ? ServingStatus.NOT_SERVING : await status() };
    },
    async list() {
      const current = options.shutdown.aborted ? ServingStatus.NOT_SERVING : await status();
      return { statuses: Object.fromEntries([...known].map((name) => [name, { status: current }])) };
    },
    async *watch(request, context) {
      if (!known.has(request.service)) {
        // The protocol: SERVICE_UNKNOWN, and the call stays open (services never appear later here).
        yield { status: ServingStatus.SERVICE_UNKNOWN };
        await ended(context, options.shutdown);
        return;
      }
      const changes: ServingStatus[] = [];
      let wake: (() => void) | undefined;
      const unsubscribe = feed.subscribe((next) => {
        changes.push(next);
        wake?.();
      });
      const done = ended(context, options.shutdown);
      try {
        let last = options.shutdown.aborted ? ServingStatus.NOT_SERVING : await status();
        yield { status: last };
        while (!options.shutdown.aborted && !context.signal.aborted) {
          if (changes.length === 0) await Promise.race([new Promise<void>((resolve) => (wake = resolve)), done]);
          for (const next of changes.splice(0)) {
            if (next !== last && !options.shutdown.aborted) yield { status: (last = next) };
          }
        }
        if (options.shutdown.aborted && last !== ServingStatus.NOT_SERVING) yield { status: ServingStatus.NOT_SERVING };
      } finally {
        unsubscribe();
      }
    },
  };
  return (router) => router.service(Health, impl);
}

/** Resolves when the call ends or the server shuts down. */
function ended(context: HandlerContext, shutdown: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (context.signal.aborted || shutdown.aborted) return resolve();
    context.signal.addEventListener("abort", () => resolve(), { once: true });
    shutdown.addEventListener("abort", () => resolve(), { once: true });
  });
}

/** Polls the status while someone listens, and tells every listener what it finds. */
class StatusFeed {
  private readonly listeners = new Set<(status: ServingStatus) => void>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly status: () => Promise<ServingStatus>,
    private readonly intervalMs: number,
  ) {}

  subscribe(listener: (status: ServingStatus) => void): () => void {
    this.listeners.add(listener);
    this.timer ??= setInterval(() => void this.poll(), this.intervalMs).unref();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  private async poll(): Promise<void> {
    if (this.polling) return; // a slow check (the database does not answer) is not stacked up
    this.polling = true;
    try {
      const status = await this.status();
      for (const listener of this.listeners) listener(status);
    } finally {
      this.polling = false;
    }
  }
}

// Plain HTTP endpoints for operators and orchestrators: liveness, readiness, Prometheus.
import type { FastifyInstance } from "fastify";
import type { InFlightLimiter } from "./load-shedding.js";
import type { Metrics } from "./metrics.js";

export interface OpsEndpointsOptions {
  limiter: InFlightLimiter;
  metrics: Metrics;
  /** One cheap round trip to the database (readiness). */
  pingDatabase: () => Promise<unknown>;
  databaseKind: string;
}

export function registerOpsEndpoints(app: FastifyInstance, { limiter, metrics, pingDatabase, databaseKind }: OpsEndpointsOptions): void {
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    if (limiter.overloaded()) {
      return reply.code(503).send({ status: "unavailable", reason: "overloaded: MAX_IN_FLIGHT reached" });
    }
    try {
      await withTimeout(pingDatabase(), 2_000);
      return { status: "ok", database: databaseKind };
    } catch {
      return reply.code(503).send({ status: "unavailable", reason: "database unreachable" });
    }
  });

  // Prometheus text format; no credentials (keep it off the public side of the load balancer).
  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", metrics.contentType);
    return metrics.scrape();
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

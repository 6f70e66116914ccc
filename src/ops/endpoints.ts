// Plain HTTP endpoints for operators and orchestrators: liveness, readiness, Prometheus.
import type { FastifyInstance } from "fastify";
import type { Metrics } from "./metrics.js";
import type { Readiness } from "./readiness.js";

export interface OpsEndpointsOptions {
  metrics: Metrics;
  /** The readiness signal (src/ops/readiness.ts), shared with grpc.health.v1. */
  readiness: Readiness;
  databaseKind: string;
}

export function registerOpsEndpoints(app: FastifyInstance, { metrics, readiness, databaseKind }: OpsEndpointsOptions): void {
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    const state = await readiness.check();
    if (state.ready) return { status: "ok", database: databaseKind };
    return reply.code(503).send({ status: "unavailable", reason: state.reason });
  });

  // Prometheus text format; no credentials (keep it off the public side of the load balancer).
  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", metrics.contentType);
    return metrics.scrape();
  });
}

// Builds the Fastify application: Connect/gRPC/gRPC-Web routes for every service on one
// port (HTTP/1.1 and h2c, or TLS with ALPN), gRPC reflection, health endpoints, metrics,
// CORS, load shedding, request ids and structured logs.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Writable } from "node:stream";
import { pino } from "pino";
import fastifyCors from "@fastify/cors";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import { Code, ConnectError, cors as connectCors, createConnectRouter, createContextValues, type ConnectRouter } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { fastify, LogController, type FastifyInstance, type FastifyRequest, type FastifyServerFactory } from "fastify";
import type { Config } from "./config.js";
import { systemClock, type Clock } from "./clock.js";
import type { Database } from "./db/database.js";
import { createDualServer } from "./dual-server.js";
import { createTlsServer } from "./tls.js";
import { Metrics } from "./metrics.js";
import { InFlightLimiter } from "./load-shedding.js";
import { reflectionRoutes } from "./reflection.js";
import { requestIdOf, traceIdOf } from "./request-id.js";
import { runnerStats } from "./store/runner-stats-store.js";
import { Authenticator } from "./domain/auth.js";
import { CREDENTIALS_CHANNEL, CredentialCache } from "./domain/credential-cache.js";
import { PageTokenCodec } from "./domain/page-token.js";
import { RunnerRegistry } from "./domain/runner-registry.js";
import { IdentityStore } from "./store/identity-store.js";
import { RunnerStore } from "./store/runner-store.js";
import { sharedSecret } from "./store/settings-store.js";
import {
  authInterceptor,
  loggerKey,
  observeInterceptor,
  paginationQueryInterceptor,
  requestIdKey,
  validateInterceptor,
} from "./interceptors.js";
import { RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { IdentityService } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerInteractionService } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { runnerService } from "./services/runner-service.js";
import { serviceRoute, unaryFastPath, type ServiceRoute } from "./unary-fast-path.js";
// reliability (issue 5): brute-force limits, client errors for undecodable requests, early answers on HTTP/1.1
import { authFailureInterceptor, clientAddressKey, FailureLimiter } from "./rate-limit.js";
import { withProtocolGuards, withSafeJsonDecoding } from "./protocol-guards.js";
import { closeAfterEarlyResponse } from "./early-response.js";
import { identityService } from "./services/identity-service.js";
import { runnerInteractionService } from "./services/runner-interaction-service.js";

export interface BuildOptions {
  config: Config;
  /** An open, migrated database; closed when the app closes. */
  db: Database;
  clock?: Clock;
  /** Where logs go (default stdout); tests capture them here. */
  logStream?: Writable;
}

export async function build(options: BuildOptions): Promise<FastifyInstance> {
  const { config, db } = options;
  const clock = options.clock ?? systemClock;

  // Slow-loris guards (HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS, IDLE_TIMEOUT_MS).
  const timeouts = { headersTimeoutMs: config.headersTimeoutMs, requestTimeoutMs: config.requestTimeoutMs, idleTimeoutMs: config.idleTimeoutMs };
  const tls = config.tls;
  const serverFactory: FastifyServerFactory = (handler) =>
    (tls ? createTlsServer(handler, tls, timeouts) : createDualServer(handler, timeouts)) as unknown as ReturnType<FastifyServerFactory>;

  const logDestination = options.logStream ? undefined : pino.destination({ dest: 1, sync: false, minLength: 4096 });
  // A quiet server must not keep its last lines in the buffer.
  const logFlusher = logDestination && setInterval(() => logDestination.flush(), 1000).unref();
  const app = fastify({
    serverFactory,
    logger: {
      level: config.logLevel,
      // Defence in depth: our own log lines never include headers or bodies.
      redact: ["req.headers.authorization", "headers.authorization", "authorization"],
      // Buffered, asynchronous writes: one syscall per few KiB of log lines instead of one per
      // line (about 5 % of a call's CPU time when synchronous). Flushed on close and on exit.
      stream: options.logStream ?? logDestination,
    },
    // One "rpc" line per call comes from the observe interceptor instead of Fastify's pair.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.maxRequestBytes,
    requestIdHeader: false,
    // x-request-id, else the traceparent's trace id, else a random UUID (src/request-id.ts).
    genReqId: (req) => requestIdOf(req.headers),
    // When the client sent both, its trace id goes on every log line next to reqId.
    childLoggerFactory: (logger, bindings, options, rawReq) => {
      const traceId = traceIdOf(rawReq.headers.traceparent);
      return logger.child(traceId !== undefined && traceId !== bindings.reqId ? { ...bindings, traceId } : bindings, options);
    },
    return503OnClosing: true,
    // Only for the "Server listening at https://…" line; the server itself comes from serverFactory.
    ...(tls ? { https: true as unknown as null } : {}),
  });

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
    closeAfterEarlyResponse(request.raw as IncomingMessage, reply.raw as ServerResponse); // src/early-response.ts
  });

  const identities = new IdentityStore(db);
  const runnerStore = new RunnerStore(db);
  const pageTokens = new PageTokenCodec(await sharedSecret(db, "page_token_key"));
  const credentials = new CredentialCache({ ttlMs: config.credentialCacheTtlMs, capacity: config.credentialCacheSize });
  // Revocations made by any replica (or the CLI) arrive here; until this session is up, nothing is cached.
  const stopListening = await db.listen(
    CREDENTIALS_CHANNEL,
    (payload) => credentials.onNotification(payload),
    (live) => {
      credentials.setLive(live);
      if (!live) app.log.warn("credential notifications interrupted: authenticating every call against the database until they resume");
    },
  );
  app.addHook("onClose", async () => stopListening().catch(() => {}));
  const registry = new RunnerRegistry(runnerStore, clock, { windowMs: config.livenessWindowMs }, pageTokens, (revocation) =>
    credentials.revoke(revocation),
  );
  const authenticator = new Authenticator(identities, runnerStore, credentials);
  // Brute-force protection (src/rate-limit.ts): AUTH_FAILURE_LIMIT failures per address and window.
  const authFailures =
    config.authFailureLimit > 0
      ? new FailureLimiter({ limit: config.authFailureLimit, windowMs: config.authFailureWindowMs, now: () => clock.now().getTime() })
      : undefined;

  const limiter = new InFlightLimiter(config.maxInFlight, (inFlight) =>
    app.log.warn({ inFlight, limit: config.maxInFlight }, "overloaded: refusing RPCs with unavailable (MAX_IN_FLIGHT reached)"),
  );
  const metrics = new Metrics(
    {
      poolStats: () => db.poolStats(),
      runnerStats: () => runnerStats(db, clock.now(), config.livenessWindowMs),
      load: () => ({ inFlight: limiter.inFlight, shed: limiter.shed, limit: limiter.limit }),
    },
    {
      now: () => clock.now().getTime(),
      onError: (err) => app.log.warn({ err }, "metrics: counting runners failed; serving the last known values"),
    },
  );

  // CORS for browser clients (Connect-Web, gRPC-Web): off unless origins are configured.
  // Registered before the routes so its hooks and preflight handling cover them.
  if (config.corsAllowedOrigins.length > 0) {
    await app.register(fastifyCors, {
      origin: config.corsAllowedOrigins.includes("*") ? "*" : config.corsAllowedOrigins,
      methods: [...connectCors.allowedMethods],
      allowedHeaders: [...connectCors.allowedHeaders, "Authorization", "X-Request-Id", "Traceparent"],
      exposedHeaders: [...connectCors.exposedHeaders, "X-Request-Id"],
      maxAge: 7200,
    });
  }

  const services: ServiceRoute[] = [
    serviceRoute(RunnerService, runnerService(registry)),
    serviceRoute(IdentityService, identityService(registry)),
    serviceRoute(RunnerInteractionService, runnerInteractionService(registry)),
  ];
  const routes = (router: ConnectRouter) => {
    for (const { service, impl } of services) router.service(service, impl as never);
  };

  // Outermost first. Metrics see every call with its final code, shed ones included;
  // shedding comes before logging so an overload does not also flood the log.
  const interceptors = [
    metrics.interceptor(),
    limiter.interceptor(),
    observeInterceptor(),
    authFailureInterceptor(authFailures),
    authInterceptor(authenticator),
    paginationQueryInterceptor(),
    validateInterceptor(),
  ];
  const contextValues = (request: FastifyRequest) =>
    createContextValues().set(requestIdKey, request.id).set(loggerKey, request.log).set(clientAddressKey, request.socket.remoteAddress);
  const jsonOptions = withSafeJsonDecoding({ ignoreUnknownFields: true }); // src/protocol-guards.ts
  const connectOptions: Parameters<typeof fastifyConnectPlugin>[1] = {
    routes: withProtocolGuards(routes, config), // src/protocol-guards.ts
    interceptors,
    contextValues,
    readMaxBytes: config.maxRequestBytes,
    maxTimeoutMs: config.maxTimeoutMs,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    shutdownError: new ConnectError("the server is shutting down", Code.Unavailable),
    jsonOptions,
  };
  // Plain unary Connect and gRPC calls take a shorter path with the same interceptors and
  // handlers (src/unary-fast-path.ts), which hands anything unusual to Connect's own handlers
  // (a router of its own, built from the same options). After CORS, whose onRequest hook must
  // see them first.
  if (config.unaryFastPath) {
    const connectRouter = createConnectRouter({ ...connectOptions, acceptCompression: [compressionGzip, compressionBrotli] });
    connectOptions.routes!(connectRouter);
    app.addHook(
      "onRequest",
      unaryFastPath({
        services,
        prefixes: ["/api"],
        interceptors,
        jsonOptions,
        readMaxBytes: config.maxRequestBytes,
        contextValues,
        connectHandlers: connectRouter.handlers,
        onServed: (protocol) => metrics.fastPathServed(protocol),
      }),
    );
  }
  // Served at the root and under /api, so SDKs configured with the public base URL's
  // path (https://app.gitpod.io/api) work unchanged against this host.
  await app.register(fastifyConnectPlugin, connectOptions);
  await app.register(fastifyConnectPlugin, { ...connectOptions, prefix: "/api" });
  // gRPC server reflection (v1, v1alpha) at the root, for grpcurl and `buf curl --reflect`.
  // It describes only the public schema, so it has no authentication interceptor.
  await app.register(fastifyConnectPlugin, {
    ...connectOptions,
    routes: withProtocolGuards(reflectionRoutes([RunnerService, IdentityService, RunnerInteractionService]), config),
    interceptors: [metrics.interceptor(), limiter.interceptor(), observeInterceptor()],
  });

  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    if (limiter.overloaded()) {
      return reply.code(503).send({ status: "unavailable", reason: "overloaded: MAX_IN_FLIGHT reached" });
    }
    try {
      await withTimeout(db.query("SELECT 1"), 2_000);
      return { status: "ok", database: db.kind };
    } catch {
      return reply.code(503).send({ status: "unavailable", reason: "database unreachable" });
    }
  });

  // Prometheus text format; no credentials (keep it off the public side of the load balancer).
  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", metrics.contentType);
    return metrics.scrape();
  });

  app.addHook("onClose", async () => {
    clearInterval(logFlusher);
    logDestination?.flushSync();
    await db.close();
  });
  return app;
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

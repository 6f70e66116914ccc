// Builds the Fastify application: Connect/gRPC/gRPC-Web routes for every service on one
// port (HTTP/1.1 and h2c), health endpoints, request ids and structured logs.
import { randomUUID } from "node:crypto";
import type { Writable } from "node:stream";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import { Code, ConnectError, createContextValues, type ConnectRouter } from "@connectrpc/connect";
import { fastify, LogController, type FastifyInstance, type FastifyRequest, type FastifyServerFactory } from "fastify";
import type { Config } from "./config.js";
import { systemClock, type Clock } from "./clock.js";
import type { Database } from "./db/database.js";
import { createDualServer } from "./dual-server.js";
import { Authenticator } from "./domain/auth.js";
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

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export async function build(options: BuildOptions): Promise<FastifyInstance> {
  const { config, db } = options;
  const clock = options.clock ?? systemClock;

  const serverFactory: FastifyServerFactory = (handler) =>
    createDualServer(handler, {
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 60_000,
      idleTimeoutMs: 65_000,
    }) as unknown as ReturnType<FastifyServerFactory>;

  const app = fastify({
    serverFactory,
    logger: {
      level: config.logLevel,
      // Defence in depth: our own log lines never include headers or bodies.
      redact: ["req.headers.authorization", "headers.authorization", "authorization"],
      ...(options.logStream ? { stream: options.logStream } : {}),
    },
    // One "rpc" line per call comes from the observe interceptor instead of Fastify's pair.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.maxRequestBytes,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    return503OnClosing: true,
  });

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });

  const identities = new IdentityStore(db);
  const runnerStore = new RunnerStore(db);
  const pageTokens = new PageTokenCodec(await sharedSecret(db, "page_token_key"));
  const registry = new RunnerRegistry(runnerStore, clock, { windowMs: config.livenessWindowMs }, pageTokens);
  const authenticator = new Authenticator(identities, runnerStore);

  const routes = (router: ConnectRouter) => {
    router.service(RunnerService, runnerService(registry));
    router.service(IdentityService, identityService(registry));
    router.service(RunnerInteractionService, runnerInteractionService(registry));
  };

  const connectOptions: Parameters<typeof fastifyConnectPlugin>[1] = {
    routes,
    interceptors: [observeInterceptor(), authInterceptor(authenticator), paginationQueryInterceptor(), validateInterceptor()],
    contextValues: (request: FastifyRequest) => createContextValues().set(requestIdKey, request.id).set(loggerKey, request.log),
    readMaxBytes: config.maxRequestBytes,
    maxTimeoutMs: config.maxTimeoutMs,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    shutdownError: new ConnectError("the server is shutting down", Code.Unavailable),
    jsonOptions: { ignoreUnknownFields: true },
  };
  // Served at the root and under /api, so SDKs configured with the public base URL's
  // path (https://app.gitpod.io/api) work unchanged against this host.
  await app.register(fastifyConnectPlugin, connectOptions);
  await app.register(fastifyConnectPlugin, { ...connectOptions, prefix: "/api" });

  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    try {
      await withTimeout(db.query("SELECT 1"), 2_000);
      return { status: "ok", database: db.kind };
    } catch {
      return reply.code(503).send({ status: "unavailable", reason: "database unreachable" });
    }
  });

  app.addHook("onClose", async () => {
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

// The composition root: builds the Fastify application from its parts (stores, domain,
// operations, the Connect layer, the socket server) for one configuration and database.
// Layers and rooms: docs/architecture.md.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Writable } from "node:stream";
import { join } from "node:path";
import { pino } from "pino";
import { createContextValues } from "@connectrpc/connect";
import { fastify, LogController, type FastifyInstance, type FastifyRequest } from "fastify";
import { ConfigError, type Config } from "./config.js";
import { systemClock, type Clock } from "./domain/clock.js";
import { Authenticator } from "./domain/auth.js";
import { CredentialCache } from "./domain/credential-cache.js";
import { PageTokenCodec } from "./domain/page-token.js";
import { RunnerRegistry } from "./domain/runner-registry.js";
import { RunnerSecrets } from "./domain/runner-secrets.js";
import { GroupDirectory } from "./domain/groups.js";
import { RunnerPolicies } from "./domain/runner-policies.js";
import { TokenIssuer } from "./domain/id-tokens.js";
import type { SecretsKeyring } from "./domain/secrets.js";
import { JWKS_MAX_AGE_MS, SigningKeys } from "./domain/signing-keys.js";
import { RunnerChannel } from "./domain/runner-channel.js";
import { DelegatedCalls } from "./domain/delegated-calls.js";
import { ReleaseSource } from "./domain/releases.js";
import { EXCHANGE_TOKEN_TTL_MS, HEARTBEAT_INTERVAL_MS } from "./domain/runners.js";
import { RunnerMetrics } from "./domain/runner-metrics.js";
import { RemoteWriteForwarder } from "./ops/remote-write.js";
import { RunnerChannelStore } from "./store/runner-channel-store.js";
import type { Database } from "./store/db/database.js";
import { CREDENTIALS_CHANNEL } from "./store/credential-revocations.js";
import { IdentityStore } from "./store/identity-store.js";
import { GroupStore } from "./store/group-store.js";
import { RunnerPolicyStore } from "./store/runner-policy-store.js";
import { runnerStats } from "./store/runner-stats-store.js";
import { RunnerStore } from "./store/runner-store.js";
import { SIGNING_KEYS_CHANNEL, SigningKeyStore } from "./store/signing-key-store.js";
import { sharedSecret } from "./store/settings-store.js";
import { projectRoot } from "./paths.js";
import { registerCors } from "./http/cors.js";
import { registerOidcEndpoints } from "./http/oidc-endpoints.js";
import { registerDashboard } from "./http/dashboard.js";
import { closeAfterEarlyResponse } from "./http/early-response.js";
import { serverFactory } from "./http/server-factory.js";
import { registerOpsEndpoints } from "./ops/endpoints.js";
import { Readiness } from "./ops/readiness.js";
import { InFlightLimiter } from "./ops/load-shedding.js";
import { Metrics } from "./ops/metrics.js";
import { authFailureInterceptor, clientAddressKey, FailureLimiter } from "./ops/rate-limit.js";
import { requestIdOf, traceIdOf } from "./ops/request-id.js";
import { auditInterceptor, authInterceptor, loggerKey, observeInterceptor, paginationQueryInterceptor, requestIdKey, validateInterceptor } from "./rpc/interceptors.js";
import { rejectNulInterceptor } from "./rpc/reject-nul.js";
import { registerRpcRoutes } from "./rpc/router.js";
import { serviceRoute } from "./rpc/unary-fast-path.js";
import { identityService } from "./rpc/services/identity-service.js";
import { runnerInteractionService } from "./rpc/services/runner-interaction-service.js";
import { runnerService } from "./rpc/services/runner-service.js";
import { groupService } from "./rpc/services/group-service.js";
import { runnerConfigurationService } from "./rpc/services/runner-configuration-service.js";
import { RunnerConfigurationService } from "../gen/gitpod/v1/runner_configuration_pb.js";
import { ScmCredentials } from "./domain/scm-credentials.js";
import { EnvironmentClasses } from "./domain/environment-classes.js";
import { ScmCredentialStore } from "./store/scm-credential-store.js";
import { EnvironmentClassStore } from "./store/environment-class-store.js";
import { eventService } from "./rpc/services/event-service.js";
import { jsonlWatch } from "./rpc/jsonl-watch.js";
import { EventHub } from "./domain/events.js";
import { EventSweeper } from "./domain/event-sweeper.js";
import { AuditLog } from "./domain/audit-log.js";
import { EventStore } from "./store/event-store.js";
import { AuditStore } from "./store/audit-store.js";
import { EventService } from "../gen/gitpod/v1/event_pb.js";
import { RunnerService } from "../gen/gitpod/v1/runner_pb.js";
import { IdentityService } from "../gen/gitpod/v1/identity_pb.js";
import { RunnerInteractionService } from "../gen/gitpod/v1/runner_interaction_pb.js";
import { GroupService } from "../gen/gitpod/v1/group_pb.js";

/** How long after SHUTDOWN_TIMEOUT_MS a closing server waits for its connections before cutting them. */
export const DRAIN_GRACE_MS = 1_000;

export interface BuildOptions {
  config: Config;
  /** An open, migrated database; closed when the app closes. */
  db: Database;
  clock?: Clock;
  /** Where logs go (default stdout); tests capture them here. */
  logStream?: Writable;
  /** The server secrets key when not configured (the embedded database's key file); default config.secretsKey. */
  secretsKeyring?: SecretsKeyring;
}

export async function build(options: BuildOptions): Promise<FastifyInstance> {
  const { config, db } = options;
  const clock = options.clock ?? systemClock;

  // Slow-loris guards (HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS, IDLE_TIMEOUT_MS).
  const timeouts = { headersTimeoutMs: config.headersTimeoutMs, requestTimeoutMs: config.requestTimeoutMs, idleTimeoutMs: config.idleTimeoutMs };
  const tls = config.tls;

  const logDestination = options.logStream ? undefined : pino.destination({ dest: 1, sync: false, minLength: 4096 });
  // A quiet server must not keep its last lines in the buffer.
  const logFlusher = logDestination && setInterval(() => logDestination.flush(), 1000).unref();
  const app = fastify({
    serverFactory: serverFactory(tls, timeouts),
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
    // x-request-id, else the traceparent's trace id, else a random UUID (src/ops/request-id.ts).
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
    closeAfterEarlyResponse(request.raw as IncomingMessage, reply.raw as ServerResponse); // src/http/early-response.ts
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
  // The runner channel (src/domain/runner-channel.ts): streams end first on close, so runners
  // reconnect elsewhere; its notifications stop before the database closes.
  const channel = new RunnerChannel(new RunnerChannelStore(db), {
    keepaliveMs: config.runnerKeepaliveMs,
    pingKey: await sharedSecret(db, "channel_ping_key"),
    warn: (fields, message) => app.log.warn(fields, message),
  });
  await channel.start(db);
  app.addHook("preClose", () => channel.drain());
  app.addHook("onClose", () => channel.close());
  const registry = new RunnerRegistry(
    runnerStore,
    clock,
    { windowMs: config.livenessWindowMs },
    pageTokens,
    (revocation) => credentials.revoke(revocation),
    (runnerId) => channel.sendEvent(runnerId, { case: "eventRunnerConfigurationChange", value: {} }),
    new RunnerSecrets(options.secretsKeyring ?? config.secretsKey?.keyring),
  );
  // Runner secrets stored in plaintext before migration 0008 are sealed now (src/domain/runner-secrets.ts).
  const sealedRunners = await registry.secrets.sealPlaintext(runnerStore);
  if (sealedRunners > 0) app.log.info({ runners: sealedRunners }, "sealed runner secrets stored in plaintext by an earlier version");
  // Who may do what (src/domain/access.ts): groups, memberships and runner policies.
  const groupStore = new GroupStore(db);
  const groups = new GroupDirectory(groupStore, clock, pageTokens, (revocation) => credentials.revoke(revocation));
  const policies = new RunnerPolicies(new RunnerPolicyStore(db), groupStore, registry, clock, pageTokens);
  const delegated = new DelegatedCalls(runnerStore, registry, channel);
  const releases = releaseSource(config.runnerReleasesFile, (message) => app.log.warn(message));
  const forwarder = config.metricsRemoteWriteUrl ? new RemoteWriteForwarder(config.metricsRemoteWriteUrl, (message) => app.log.warn(message)) : undefined;
  const runnerMetrics = new RunnerMetrics(forwarder && ((body) => forwarder.enqueue(body)));
  // Metrics already accepted get a few seconds to reach the receiver before the process exits.
  if (forwarder) app.addHook("preClose", () => Promise.race([forwarder.drained(), new Promise<void>((resolve) => setTimeout(resolve, 5_000).unref())]));
  const authenticator = new Authenticator(identities, runnerStore, credentials);
  // The server secrets key seals secrets at rest (src/domain/secrets.ts); undefined when not configured.
  const secretsKeyring = options.secretsKeyring ?? config.secretsKey?.keyring;
  const tokens = await tokenIssuer(app, config, db, secretsKeyring, clock, registry, identities);
  // Runner configuration (docs/runner-configuration.md): SCM integrations, host tokens, environment classes.
  const scm = new ScmCredentials(new ScmCredentialStore(db), registry, clock, pageTokens, secretsKeyring, (runnerId, event) => channel.sendEvent(runnerId, event));
  const environmentClasses = new EnvironmentClasses(new EnvironmentClassStore(db), registry, clock, pageTokens);
  // Brute-force protection (src/ops/rate-limit.ts): AUTH_FAILURE_LIMIT failures per address and window.
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

  registerChannelMetrics(metrics, channel, runnerMetrics, forwarder);

  await registerCors(app, config.corsAllowedOrigins); // src/http/cors.ts

  // One readiness signal for GET /readyz and grpc.health.v1; on close it turns NOT_SERVING at
  // once and health Watch streams end (src/rpc/health.ts), so they do not hold up the drain.
  const readiness = new Readiness(limiter, () => db.query("SELECT 1"));
  const shutdown = new AbortController();
  // The drain is bounded: SHUTDOWN_TIMEOUT_MS after close() began, Connect aborts the handlers
  // still running; DRAIN_GRACE_MS later every connection still open is cut, so a client that
  // never finishes its request cannot hold close() until the request or idle timeout.
  let cutConnections: NodeJS.Timeout | undefined;
  app.addHook("preClose", async () => {
    readiness.markClosing();
    shutdown.abort();
    const server = app.server as unknown as { closeAllConnections?: () => void };
    cutConnections = setTimeout(() => server.closeAllConnections?.(), config.shutdownTimeoutMs + DRAIN_GRACE_MS).unref();
  });

  // Outermost first. Metrics see every call with its final code, shed ones included;
  // shedding comes before logging so an overload does not also flood the log.
  const interceptors = [
    metrics.interceptor(),
    limiter.interceptor(),
    observeInterceptor(),
    authFailureInterceptor(authFailures),
    authInterceptor(authenticator),
    auditInterceptor({ now: () => clock.now(), clientAddress: config.auditClientAddress }), // the audit log's actor
    paginationQueryInterceptor(),
    rejectNulInterceptor(), // src/rpc/reject-nul.ts: U+0000 in any string is invalid_argument
    validateInterceptor(),
  ];
  const events = await eventsAndAudit(app, config, db, clock);
  metrics.register("rcp_event_streams", "WatchEvents streams open on this process.", "gauge", () => [{ labels: {}, value: events.hub.watchers }]);
  metrics.register("rcp_events_delivered_total", "Events this process delivered to WatchEvents streams.", "counter", () => [{ labels: {}, value: events.hub.stats.delivered }]);
  metrics.register("rcp_sweeper_leader", "1 when this process holds the sweeper lease (marks silent runners INACTIVE, prunes the audit log).", "gauge", () => [{ labels: {}, value: events.sweeper.leader ? 1 : 0 }]);
  // The SDK's JSON Lines WatchEvents, in front of Connect on the same path (src/rpc/jsonl-watch.ts).
  app.addHook("onRequest", jsonlWatch({ hub: events.hub, authenticator, shutdown: shutdown.signal, readMaxBytes: config.maxRequestBytes }));
  await registerRpcRoutes(app, {
    services: [
      serviceRoute(RunnerService, runnerService({ registry, policies, tokens, delegated, callTimeoutMs: config.runnerCallTimeoutMs })),
      serviceRoute(GroupService, groupService(groups, policies)),
      serviceRoute(IdentityService, identityService(registry, tokens)),
      serviceRoute(RunnerInteractionService, runnerInteractionService({ registry, channel, releases, metrics: runnerMetrics, scm, classes: environmentClasses })),
      serviceRoute(RunnerConfigurationService, runnerConfigurationService(scm, environmentClasses)),
      serviceRoute(EventService, eventService(events.hub, new AuditLog(new AuditStore(db), pageTokens), shutdown.signal)),
    ],
    interceptors,
    reflectionInterceptors: [metrics.interceptor(), limiter.interceptor(), observeInterceptor(), rejectNulInterceptor()],
    health: { readiness, shutdown: shutdown.signal, interceptors: [metrics.interceptor(), rejectNulInterceptor()] },
    contextValues: (request: FastifyRequest) =>
      createContextValues().set(requestIdKey, request.id).set(loggerKey, request.log).set(clientAddressKey, request.socket.remoteAddress),
    readMaxBytes: config.maxRequestBytes,
    maxTimeoutMs: config.maxTimeoutMs,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    unaryFastPath: config.unaryFastPath,
    onFastPathServed: (protocol) => metrics.fastPathServed(protocol),
  });
  registerOpsEndpoints(app, { metrics, readiness, databaseKind: db.kind });
  registerOidcEndpoints(app, {
    issuer: config.publicUrl,
    discovery: () => tokens.discovery(),
    jwks: () => tokens.publishedKeys(),
    discoveryMaxAgeSeconds: 3600,
    jwksMaxAgeSeconds: JWKS_MAX_AGE_MS / 1000,
    onError: (err) => app.log.warn({ err }, "JWKS: reading the signing keys failed; answered 503"),
  });

  // The web dashboard at / (web/, built into dist/web; src/http/dashboard.ts).
  registerDashboard(app, {
    dir: join(projectRoot, "dist", "web"),
    settings: {
      livenessWindowSeconds: config.livenessWindowMs / 1000,
      heartbeatSeconds: HEARTBEAT_INTERVAL_MS / 1000,
      exchangeTokenTtlSeconds: EXCHANGE_TOKEN_TTL_MS / 1000,
    },
    warn: (message) => app.log.warn(message),
  });

  app.addHook("onClose", async () => {
    clearTimeout(cutConnections);
    clearInterval(logFlusher);
    logDestination?.flushSync();
    await db.close();
  });
  return app;
}

/**
 * The OIDC issuer at PUBLIC_URL (src/domain/id-tokens.ts): its signing keys, cached per replica and
 * reloaded on NOTIFY from any replica or the CLI. Without PUBLIC_URL, the token RPCs answer
 * failed_precondition and the documents 404.
 */
async function tokenIssuer(
  app: FastifyInstance,
  config: Config,
  db: Database,
  keyring: SecretsKeyring | undefined,
  clock: Clock,
  registry: RunnerRegistry,
  identities: IdentityStore,
): Promise<TokenIssuer> {
  const lookups = {
    // The calling runner itself (the claims of its own ID token).
    runner: (organizationId: string, runnerId: string) => registry.get({ kind: "runner", runnerId, organizationId }, runnerId),
    userEmail: (userId: string) => identities.userEmail(userId),
  };
  if (config.publicUrl === undefined) return new TokenIssuer(undefined, undefined, lookups, clock);
  if (!keyring) throw new Error("PUBLIC_URL is set but no server secrets key was given (SECRETS_KEY_FILE or SECRETS_KEY)");
  const keys = new SigningKeys(new SigningKeyStore(db), keyring, clock);
  const stopListening = await db.listen(SIGNING_KEYS_CHANNEL, () => keys.onNotification(), (live) => keys.setLive(live));
  app.addHook("onClose", async () => stopListening().catch(() => {}));
  // The first start creates the first key, so the JWKS has it before any token is asked for; a key
  // that does not open (a lost secrets key) is reported here rather than on the first token.
  try {
    const { kid } = await keys.signer();
    const stale = await keys.keysSealedWithOlderSecretsKeys();
    app.log.info({ issuer: config.publicUrl, kid }, "OIDC issuer: signing tokens");
    if (stale.length > 0) app.log.warn({ keys: stale }, "signing keys sealed with an older secrets key: run `cli secrets-key reseal` before removing that key");
  } catch (err) {
    app.log.error({ err }, "OIDC issuer: no usable signing key; GetIDToken and CreateRunnerLogsToken fail until this is fixed");
  }
  return new TokenIssuer(config.publicUrl, keys, lookups, clock);
}

/** The runner channel's and runner metrics' series on /metrics (docs/operations.md lists them). */
function registerChannelMetrics(metrics: Metrics, channel: RunnerChannel, runnerMetrics: RunnerMetrics, forwarder: RemoteWriteForwarder | undefined): void {
  metrics.register("rcp_runner_streams", "WatchRequests streams open on this process.", "gauge", () => [{ labels: {}, value: channel.stats.streams }]);
  metrics.register("rcp_runner_calls_total", "Calls this process made to runners for delegated RPCs, by outcome.", "counter", () =>
    Object.entries(channel.stats.calls).map(([outcome, value]) => ({ labels: { outcome }, value })),
  );
  metrics.register("rcp_runner_metrics_samples_total", "Samples received with ReportRunnerMetrics.", "counter", () => [{ labels: {}, value: runnerMetrics.stats.samples }]);
  if (!forwarder) return;
  metrics.register("rcp_runner_metrics_forwarded_total", "Runner metrics batches sent to METRICS_REMOTE_WRITE_URL, by outcome.", "counter", () =>
    (["forwarded", "failed", "rejected", "dropped"] as const).map((outcome) => ({ labels: { outcome }, value: forwarder.stats[outcome] })),
  );
  metrics.register("rcp_runner_metrics_queued", "Runner metrics batches waiting to be forwarded.", "gauge", () => [{ labels: {}, value: forwarder.stats.queued }]);
}

/**
 * Events and the audit log (docs/events.md): the process's event hub on the shared LISTEN
 * session, and the sweeper this replica runs when it holds the deployment's lease. Streams end
 * (cleanly) and the sweeper hands its lease back before the drain, while the database is open.
 */
async function eventsAndAudit(app: FastifyInstance, config: Config, db: Database, clock: Clock): Promise<{ hub: EventHub; sweeper: EventSweeper }> {
  const store = new EventStore(db);
  const warn = (fields: object, message: string) => app.log.warn(fields, message);
  const hub = new EventHub(store, { keepaliveMs: config.eventsKeepaliveMs, warn });
  await hub.start(db);
  const sweeper = new EventSweeper(store, clock, {
    windowMs: config.livenessWindowMs,
    retentionDays: config.auditRetentionDays,
    intervalMs: config.sweepIntervalMs,
    leaseMs: config.sweepIntervalMs * 3,
    warn: (fields, message) => app.log.info(fields, message),
  });
  sweeper.start();
  // Both before the drain: streams end cleanly, and the lease is handed back at once (another
  // replica sweeps from its next interval) while the database is still open.
  app.addHook("preClose", () => hub.close());
  app.addHook("preClose", () => sweeper.stop());
  app.decorate("eventSweeper", sweeper);
  app.decorate("eventHub", hub);
  return { hub, sweeper };
}

/** The release manifest, checked now: a broken RUNNER_RELEASES_FILE is a configuration error. */
function releaseSource(file: string | undefined, warn: (message: string) => void): ReleaseSource {
  try {
    return new ReleaseSource(file, warn);
  } catch (err) {
    throw new ConfigError(`RUNNER_RELEASES_FILE ${file} is not a valid release manifest: ${(err as Error).message}`);
  }
}

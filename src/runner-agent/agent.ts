// The development runner's life: exchange the token once (state.ts keeps what follows), sign up
// with its X25519 public key, read its configuration and latest version, report its status,
// heartbeat, and hold RunnerInteractionService.WatchRequests open, reconnecting with exponential
// backoff. Calls that arrive are answered with SendResponse (calls.ts); a configuration change
// event, and every reconnect, makes it read its configuration again. stop() closes the stream,
// lets calls in flight finish (bounded), sends a last status report and returns.
import { hostname, arch, release, type as osType } from "node:os";
import { execFile } from "node:child_process";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { IdentityService } from "../../gen/gitpod/v1/identity_pb.js";
import { LogLevel, RunnerCapability, RunnerReleaseChannel } from "../../gen/gitpod/v1/runner_pb.js";
import {
  RunnerInteractionService,
  SendResponseRequest_ErrorCode as ErrorCode,
  type UpdateRunnerStatusRequestSchema,
  type GetRunnerConfigurationResponse_RunnerConfiguration as RunnerConfiguration,
  type WatchRequestsResponse,
} from "../../gen/gitpod/v1/runner_interaction_pb.js";
import { answerCall, CALL_NAMES, isCall, responseTo, type Answer, type CallHandlers } from "./calls.js";
import { redactUrl } from "./scm/context-url.js";
import type { Level, Logger } from "./log.js";
import { generateKeyPair, matches, openSealed } from "./sealed-box.js";
import { hashToken, StateDir, StateError, type KeyPair } from "./state.js";
import type { RunnerOptions } from "./options.js";
import { createRunnerTransport, type RunnerTransport } from "./transport.js";
import { RUNNER_VERSION } from "./version.js";

export type AgentOptions = Pick<
  RunnerOptions,
  "url" | "exchangeToken" | "stateDir" | "protocol" | "httpVersion" | "ca" | "heartbeatMs" | "reconnectMaxMs" | "streamIdleMs" | "workerId" | "shardIds"
> & {
  /** --log-level was given: the configuration's log level does not override it. */
  logLevelFixed: boolean;
  handlers: CallHandlers;
};

/** Stops the runner with exit code 1: nothing a retry could fix. */
export class FatalError extends Error {}

const MIN_RECONNECT_MS = 500;
/** A stream open this long counts as working even if it brought nothing. */
const STREAM_WORKED_MS = 5_000;
const RPC_TIMEOUT_MS = 10_000;
const STOP_CALLS_MS = 5_000;
/** Codes worth retrying a start-up call for: the control plane is down, starting or overloaded. */
const TRANSIENT = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Internal, Code.Unknown, Code.Aborted]);

const LOG_LEVELS: Partial<Record<LogLevel, Level>> = {
  [LogLevel.DEBUG]: "debug",
  [LogLevel.INFO]: "info",
  [LogLevel.WARN]: "warn",
  [LogLevel.ERROR]: "error",
};

export class RunnerAgent {
  private readonly stopping = new AbortController();
  private stopReason = "";
  /** Set when the runner stops because of an error (exit code 1). */
  private failed = false;
  private state!: StateDir;
  private accessToken: string | undefined;
  /** An --exchange-token not spent yet, kept for when the saved access token is refused. */
  private spareExchangeToken: string | undefined;
  /** The one replacement of a refused access token in progress (or its failure). */
  private refusal: Promise<void> | undefined;
  private keys!: KeyPair;
  private runnerId = "";
  private readonly channelTransport: RunnerTransport;
  private readonly callTransport: RunnerTransport;
  private readonly runner: Client<typeof RunnerInteractionService>;
  private readonly channel: Client<typeof RunnerInteractionService>;
  private readonly inFlight = new Set<Promise<void>>();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private configuration: Record<string, unknown> | undefined;
  private configurationReads = 0;
  private configurationRead: Promise<void> | undefined;
  private configurationAgain = false;
  private configurationServed = true;

  constructor(
    private readonly options: AgentOptions,
    private readonly log: Logger,
  ) {
    const transportOptions = { baseUrl: options.url, protocol: options.protocol, httpVersion: options.httpVersion, ca: options.ca, token: () => this.accessToken };
    // Two connections: the long stream on one, unary calls on the other, so a slow or lost
    // stream never holds up a heartbeat or an answer (and a balancer may put them on different replicas).
    this.channelTransport = createRunnerTransport(transportOptions);
    this.callTransport = createRunnerTransport(transportOptions);
    this.runner = createClient(RunnerInteractionService, this.callTransport.transport);
    this.channel = createClient(RunnerInteractionService, this.channelTransport.transport);
  }

  /** Asks the runner to stop; run() then winds down and returns. */
  stop(reason: string): void {
    if (this.stopping.signal.aborted) return;
    this.stopReason = reason;
    this.log.info("stopping", { reason });
    this.stopping.abort();
  }

  /** Runs until stop() or a fatal error; resolves with the exit code. */
  async run(): Promise<number> {
    let exitCode = 0;
    let signedUp = false;
    try {
      this.state = StateDir.open(this.options.stateDir, (msg, fields) => this.log.warn(msg, fields));
      await this.authenticate();
      this.keys = await this.keyPair();
      await this.signup();
      signedUp = true;
      await this.readConfiguration("start");
      await this.checkLatestVersion();
      await this.reportStatus(await this.startStatus());
      this.scheduleHeartbeat(0);
      await this.watch();
    } catch (err) {
      const fatal = err instanceof FatalError || err instanceof StateError;
      if (!this.stopped || fatal) {
        this.failed = true;
        this.log.error(fatal ? err.message : "the runner failed", fatal ? {} : { error: describe(err) });
        this.stop("error");
      }
    } finally {
      if (this.failed) exitCode = 1;
      clearTimeout(this.heartbeatTimer);
      await this.drain();
      if (signedUp && exitCode === 0) {
        await this.reportStatus({ degredationMessage: `stopped (${this.stopReason})` }).catch((err: unknown) =>
          this.log.warn("could not send the last status report", { error: describe(err) }),
        );
      }
      this.channelTransport.close();
      this.callTransport.close();
      this.state?.close();
      this.log.info("stopped", { exitCode });
    }
    return exitCode;
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  // --- registration -------------------------------------------------------------------------

  /** The saved access token, or the one the exchange token is traded for (once, ever). */
  private async authenticate(): Promise<void> {
    const record = this.state.record();
    if (record.url && record.url !== this.options.url) {
      this.log.warn("the state directory was registered with another URL; using the saved credentials with the new one", { saved: record.url, url: this.options.url });
    }
    this.state.saveRecord({ ...record, url: this.options.url });
    const given = this.options.exchangeToken;
    const spent = given !== undefined && hashToken(given) === record.spentExchangeToken;
    const saved = this.state.accessToken;
    if (saved) {
      this.accessToken = saved;
      if (spent) this.log.info("--exchange-token was exchanged before: using the saved access token", { stateDir: this.options.stateDir });
      else if (given) {
        this.spareExchangeToken = given;
        this.log.info("using the saved access token; the new --exchange-token is kept for if it is refused", { stateDir: this.options.stateDir });
      } else this.log.info("using the saved access token", { stateDir: this.options.stateDir });
      return;
    }
    if (!given) {
      throw new FatalError(`no access token in ${this.options.stateDir} and no --exchange-token: create a runner (CreateRunner) or a new token (CreateRunnerToken) and pass its exchange token`);
    }
    if (spent) {
      throw new FatalError(`this exchange token was already exchanged, and its access token is gone from ${this.options.stateDir}: create a new one with CreateRunnerToken`);
    }
    await this.exchange(given);
  }

  private async exchange(exchangeToken: string): Promise<void> {
    const identity = createClient(IdentityService, this.callTransport.transport);
    try {
      const { accessToken } = await this.retrying("ExchangeToken", () => identity.exchangeToken({ exchangeToken }, { timeoutMs: RPC_TIMEOUT_MS }));
      this.state.saveAccessToken(accessToken, exchangeToken);
      this.accessToken = accessToken;
      this.spareExchangeToken = undefined;
      this.log.info("exchanged the exchange token for an access token", { stateDir: this.options.stateDir });
    } catch (err) {
      if (ConnectError.from(err).code === Code.Unauthenticated) {
        throw new FatalError("the exchange token was refused (used, expired or unknown): create a new one with CreateRunnerToken");
      }
      throw err;
    }
  }

  /**
   * The control plane refused the access token: trade a spare exchange token (once, also when
   * several calls are refused at the same time), or give up.
   */
  private tokenRefused(): Promise<void> {
    this.refusal ??= this.replaceToken();
    return this.refusal;
  }

  private async replaceToken(): Promise<void> {
    const spare = this.spareExchangeToken;
    if (spare) {
      this.log.warn("the saved access token was refused; exchanging the new --exchange-token");
      this.state.forgetAccessToken();
      await this.exchange(spare);
      this.refusal = undefined;
      return;
    }
    throw new FatalError(
      "the control plane refused the runner's access token (the runner was deleted or the token revoked): create a new exchange token with CreateRunnerToken and start the runner with --exchange-token",
    );
  }

  private async keyPair(): Promise<KeyPair> {
    const saved = this.state.keyPair();
    if (saved) {
      if (!(await matches(saved))) throw new FatalError(`the key pair in ${this.options.stateDir} does not match (x25519-public-key is not the key of x25519-secret-key)`);
      return saved;
    }
    const keys = await generateKeyPair();
    this.state.saveKeyPair(keys);
    this.log.info("generated the runner's X25519 key pair", { stateDir: this.options.stateDir });
    return keys;
  }

  private async signup(): Promise<void> {
    // The development runner runs no environments, so it offers no environment classes.
    const { runnerId } = await this.authenticated("Signup", () => this.runner.signup({ publicKey: this.keys.publicKey, environmentClasses: [] }, { timeoutMs: RPC_TIMEOUT_MS }));
    this.runnerId = runnerId;
    const record = this.state.record();
    if (record.runnerId !== runnerId) this.state.saveRecord({ ...record, runnerId });
    this.log.info("signed up", { runnerId, url: this.options.url, protocol: this.options.protocol, httpVersion: this.options.httpVersion });
    this.options.handlers.scm.useCredentials({ tokenFor: (principalId, host) => this.tokenFor(principalId, host), integrationFor: (host) => this.integrationFor(host) });
  }

  /**
   * A user's token for a host, as the control plane keeps it for this runner: fetched for each
   * call (so a deleted or replaced token applies at once), opened with the runner's private key,
   * never logged. undefined when the user stored none.
   */
  private async tokenFor(principalId: string, host: string): Promise<string | undefined> {
    try {
      const { value } = await this.authenticated("GetHostAuthenticationTokenValue", () =>
        this.runner.getHostAuthenticationTokenValue({ runnerId: this.runnerId, principalId, host }, { timeoutMs: RPC_TIMEOUT_MS }),
      );
      const opened = await openSealed(value, this.keys);
      return opened === undefined ? undefined : new TextDecoder().decode(opened);
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.NotFound) return undefined;
      throw err;
    }
  }

  /** This runner's SCM integration for a host (ListRunnerSCMIntegrations, every page). */
  private async integrationFor(host: string): Promise<{ scmId: string; pat: boolean } | undefined> {
    let token = "";
    for (let page = 0; page < 20; page++) {
      const { scmIntegrations, pagination } = await this.authenticated("ListRunnerSCMIntegrations", () =>
        this.runner.listRunnerSCMIntegrations({ runnerId: this.runnerId, pagination: { pageSize: 100, token } }, { timeoutMs: RPC_TIMEOUT_MS }),
      );
      const found = scmIntegrations.find((integration) => integration.host === host.toLowerCase());
      if (found) return { scmId: found.scmId, pat: found.pat };
      token = pagination?.nextToken ?? "";
      if (token === "") return undefined;
    }
    return undefined;
  }

  // --- configuration, version, status, heartbeat ---------------------------------------------

  /** Reads the configuration; concurrent reasons coalesce into one more read. */
  private readConfiguration(reason: "start" | "event" | "reconnect"): Promise<void> {
    if (this.configurationRead) {
      this.configurationAgain = true;
      return this.configurationRead;
    }
    this.configurationRead = (async () => {
      do {
        this.configurationAgain = false;
        await this.readConfigurationOnce(reason);
      } while (this.configurationAgain && !this.stopped);
    })().finally(() => (this.configurationRead = undefined));
    return this.configurationRead;
  }

  private async readConfigurationOnce(reason: string): Promise<void> {
    let configuration: RunnerConfiguration | undefined;
    try {
      ({ configuration } = await this.authenticated("GetRunnerConfiguration", () => this.runner.getRunnerConfiguration({ runnerId: this.runnerId }, { timeoutMs: RPC_TIMEOUT_MS })));
    } catch (err) {
      const error = ConnectError.from(err);
      if (error.code === Code.Unimplemented) {
        if (this.configurationServed) this.log.warn("the control plane does not serve GetRunnerConfiguration: running with the defaults", { message: error.rawMessage });
        this.configurationServed = false;
        return;
      }
      if (err instanceof FatalError) throw err;
      this.log.warn("could not read the configuration", { reason, code: Code[error.code], message: error.rawMessage });
      return;
    }
    const summary = await this.summarize(configuration);
    const previous = this.configuration;
    const changed = previous ? Object.keys(summary).filter((key) => JSON.stringify(summary[key]) !== JSON.stringify(previous[key])) : undefined;
    this.configuration = summary;
    const level = configuration ? LOG_LEVELS[configuration.logLevel] : undefined;
    if (level && !this.options.logLevelFixed && level !== this.log.level) this.log.setLevel(level);
    this.log.info("configuration read", { reason, revision: ++this.configurationReads, changed, ...summary });
    if (changed?.includes("releaseChannel") || changed?.includes("autoUpdate")) await this.checkLatestVersion();
  }

  /** What the log may show of a configuration: everything but the secrets (only whether they open). */
  private async summarize(configuration: RunnerConfiguration | undefined): Promise<Record<string, unknown>> {
    const metrics = configuration?.metrics;
    const opened = async (box: Uint8Array | undefined): Promise<string> => {
      try {
        return (await openSealed(box ?? new Uint8Array(), this.keys)) === undefined ? "none" : "opened";
      } catch {
        return "does not open with this runner's key";
      }
    };
    const window = configuration?.updateWindow;
    return {
      region: configuration?.region ?? "",
      releaseChannel: RunnerReleaseChannel[configuration?.releaseChannel ?? 0],
      autoUpdate: configuration?.autoUpdate ?? false,
      logLevel: LogLevel[configuration?.logLevel ?? 0],
      updateWindow: window?.startHour !== undefined ? `${window.startHour}-${window.endHour ?? (window.startHour + 2) % 24} UTC` : "any time",
      metricsEnabled: metrics?.enabled ?? false,
      metricsUrl: metrics?.url ? redactUrl(metrics.url) : "",
      managedMetricsEnabled: metrics?.managedMetricsEnabled ?? false,
      metricsUsername: await opened(metrics?.encryptedUsername),
      metricsPassword: await opened(metrics?.encryptedPassword),
      honeycombApiKey: await opened(configuration?.encryptedHoneycombApiKey),
    };
  }

  private async checkLatestVersion(): Promise<void> {
    try {
      const latest = await this.authenticated("GetLatestVersion", () =>
        this.runner.getLatestVersion({ runnerId: this.runnerId, currentVersion: RUNNER_VERSION }, { timeoutMs: RPC_TIMEOUT_MS }),
      );
      const updateAvailable = latest.version !== "" && latest.version !== RUNNER_VERSION;
      this.log.info("latest version", { current: RUNNER_VERSION, latest: latest.version, autoUpdate: latest.autoUpdate, hotfix: latest.hotfix, updateAvailable });
      if (updateAvailable && latest.autoUpdate) {
        this.log.warn("a newer runner version is available; the development runner does not update itself: update this checkout and restart it", { latest: latest.version });
      }
    } catch (err) {
      if (err instanceof FatalError) throw err;
      const error = ConnectError.from(err);
      this.log[error.code === Code.Unimplemented ? "debug" : "warn"]("could not read the latest version", { code: Code[error.code], message: error.rawMessage });
    }
  }

  private async startStatus() {
    const git = await gitVersion();
    if (!git) this.log.error("git is not installed or not on PATH: ParseContextURL and CheckRepositoryAccess will fail");
    const capabilities = [
      ...(git ? [RunnerCapability.CHECK_REPOSITORY_ACCESS] : []),
      ...(this.options.handlers.repos ? [RunnerCapability.LIST_SCM_ORGANIZATIONS] : []),
    ];
    return {
      version: RUNNER_VERSION,
      systemDetails: `rcp-dev-runner/${RUNNER_VERSION} (${osType()} ${release()} ${arch()}; node ${process.version}; ${git ?? "no git"}; host ${hostname()})`,
      // An empty list would leave the stored capabilities alone; [UNSPECIFIED] clears them.
      capabilities: capabilities.length > 0 ? capabilities : [RunnerCapability.UNSPECIFIED],
      degredationMessage: "",
    };
  }

  private async reportStatus(status: Omit<MessageInitShape<typeof UpdateRunnerStatusRequestSchema>, "runnerId" | "$typeName">): Promise<void> {
    await this.authenticated("UpdateRunnerStatus", () => this.runner.updateRunnerStatus({ ...status, runnerId: this.runnerId }, { timeoutMs: RPC_TIMEOUT_MS }));
    this.log.info("reported status", { ...status, capabilities: status.capabilities?.map((c) => RunnerCapability[c]) });
  }

  private scheduleHeartbeat(delayMs: number): void {
    if (this.stopped) return;
    this.heartbeatTimer = setTimeout(() => void this.heartbeat(), delayMs);
  }

  private async heartbeat(): Promise<void> {
    try {
      await this.authenticated("MarkRunnerActive", () => this.runner.markRunnerActive({ runnerId: this.runnerId }, { timeoutMs: RPC_TIMEOUT_MS }), false);
      this.log.debug("heartbeat");
    } catch (err) {
      if (err instanceof FatalError) return this.fail(err);
      const error = ConnectError.from(err);
      this.log.warn("heartbeat failed", { code: Code[error.code], message: error.rawMessage });
    }
    this.scheduleHeartbeat(this.options.heartbeatMs * (0.9 + Math.random() * 0.2));
  }

  // --- the channel -----------------------------------------------------------------------------

  private async watch(): Promise<void> {
    let attempt = 0;
    let opened = 0;
    while (!this.stopped) {
      const stream = new AbortController();
      const stop = () => stream.abort();
      this.stopping.signal.addEventListener("abort", stop, { once: true });
      let idle = false;
      let received = false;
      let openedAt: number | undefined;
      const streamToken = this.accessToken;
      let watchdog: NodeJS.Timeout | undefined;
      const quiet = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          idle = true;
          stream.abort();
        }, this.options.streamIdleMs);
      };
      try {
        quiet();
        const messages = this.channel.watchRequests(
          { runnerId: this.runnerId, workerId: this.options.workerId ?? this.state.record().workerId, shardIds: this.options.shardIds },
          {
            signal: stream.signal,
            onHeader: () => (openedAt = performance.now()),
          },
        );
        for await (const message of messages) {
          quiet();
          // The first message (this server sends a ping at once) shows the stream works end to end.
          if (!received) {
            received = true;
            opened++;
            this.log.info("channel open", { reconnect: opened > 1, workerId: this.options.workerId ?? this.state.record().workerId });
            // Whatever changed while the stream was down: read it again.
            if (opened > 1) void this.readConfiguration("reconnect").catch((err: unknown) => this.fail(err));
          }
          this.dispatch(message);
        }
        if (this.stopped) break;
        this.log.warn("the control plane closed the channel");
      } catch (err) {
        if (this.stopped) break;
        const error = ConnectError.from(err);
        if (idle) this.log.warn("the channel brought nothing (not even a ping) for too long; reopening it", { idleMs: this.options.streamIdleMs });
        else this.log.warn("the channel was lost", { code: Code[error.code], message: error.rawMessage });
        if (error.code === Code.Unauthenticated && this.accessToken === streamToken) await this.tokenRefused();
        else if (error.code === Code.PermissionDenied) throw new FatalError(`the control plane refused the channel: ${error.rawMessage}`);
        else if (error.code === Code.FailedPrecondition) await this.signup();
      } finally {
        clearTimeout(watchdog);
        this.stopping.signal.removeEventListener("abort", stop);
      }
      // A stream that worked (it brought a message, or lasted) starts the backoff over.
      if (received || (openedAt !== undefined && performance.now() - openedAt > STREAM_WORKED_MS)) attempt = 0;
      const cap = Math.min(this.options.reconnectMaxMs, MIN_RECONNECT_MS * 2 ** Math.min(attempt++, 20));
      const delay = Math.round(cap / 2 + (Math.random() * cap) / 2);
      this.log.info("reconnecting", { inMs: delay, attempt });
      await sleep(delay, this.stopping.signal);
    }
  }

  private dispatch(message: WatchRequestsResponse): void {
    const request = message.request;
    if (isCall(request)) {
      this.track(this.answer(message, request));
    } else if (request.case === "eventRunnerConfigurationChange") {
      this.log.info("event", { event: request.case, requestId: message.requestId });
      void this.readConfiguration("event").catch((err: unknown) => this.fail(err));
    } else if (request.case === "eventScmIntegrationChange" || request.case === "eventHostAuthenticationTokenDeleted") {
      // Integrations and tokens are read for each call, so the next call already sees the change.
      this.log.info("event", { event: request.case, requestId: message.requestId });
    } else if (request.case !== undefined) {
      this.log.debug("event ignored (nothing of it runs here)", { event: request.case, requestId: message.requestId });
    } else {
      // A member newer than this runner: if it was a call, say so rather than let it time out.
      this.log.warn("unknown message on the channel", { requestId: message.requestId });
      if (message.requestId) {
        this.track(this.send(message, { case: "error", value: { code: ErrorCode.UNIMPLEMENTED, message: "the development runner does not know this call" } }, "unknown", performance.now()));
      }
    }
  }

  private async answer(message: WatchRequestsResponse, call: Extract<WatchRequestsResponse["request"], { case: `call${string}` }>): Promise<void> {
    const started = performance.now();
    const name = CALL_NAMES[call.case];
    if (call.case !== "callPing") this.log.info("call received", { requestId: message.requestId, call: name, ...callFields(call) });
    const answer = await answerCall(call, this.options.handlers);
    await this.send(message, answer, name, started);
  }

  private async send(message: WatchRequestsResponse, answer: Answer, name: string, started: number): Promise<void> {
    const headers = new Headers();
    for (const key of ["traceparent", "tracestate"]) {
      const value = message.traceContext[key];
      if (value) headers.set(key, value);
    }
    const outcome = answer.case === "error" ? { outcome: "error", code: ErrorCode[answer.value.code ?? 0], message: answer.value.message } : { outcome: "ok" };
    for (let attempt = 1; ; attempt++) {
      try {
        await this.runner.sendResponse(responseTo(this.runnerId, message.requestId, answer), { headers, timeoutMs: RPC_TIMEOUT_MS });
        this.log[name === "Ping" ? "debug" : "info"]("call answered", { requestId: message.requestId, call: name, ms: Math.round(performance.now() - started), ...outcome });
        return;
      } catch (err) {
        const error = ConnectError.from(err);
        if (attempt < 3 && TRANSIENT.has(error.code)) {
          await sleep(200 * attempt, this.stopping.signal);
          continue;
        }
        // Refused: typically the caller's deadline passed and the call is gone.
        this.log.warn("the control plane did not take the answer", { requestId: message.requestId, call: name, code: Code[error.code], message: error.rawMessage });
        return;
      }
    }
  }

  private track(work: Promise<void>): void {
    const tracked = work.catch((err: unknown) => this.log.error("a call failed", { error: describe(err) })).finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  /** Calls in flight get STOP_CALLS_MS to be answered. */
  private async drain(): Promise<void> {
    if (this.inFlight.size === 0) return;
    this.log.info("waiting for calls in flight", { calls: this.inFlight.size });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((resolve) => (timer = setTimeout(resolve, STOP_CALLS_MS)))]);
    clearTimeout(timer);
  }

  private fail(err: unknown): void {
    if (err instanceof FatalError) {
      this.failed = true;
      this.log.error(err.message);
      this.stop("error");
    } else this.log.error("unexpected error", { error: describe(err) });
  }

  // --- helpers ---------------------------------------------------------------------------------

  /** A call with the access token: a refused token is traded for a spare one, then tried once more. */
  private async authenticated<T>(name: string, call: () => Promise<T>, retry = true): Promise<T> {
    const attempt = () => (retry ? this.retrying(name, call) : call());
    const used = this.accessToken;
    try {
      return await attempt();
    } catch (err) {
      if (ConnectError.from(err).code !== Code.Unauthenticated) throw err;
      // Refused with a token that was replaced meanwhile: just try again with the new one.
      if (this.accessToken === used) await this.tokenRefused();
      return attempt();
    }
  }

  /** Retries while the control plane is unreachable or overloaded, with backoff, until stopped. */
  private async retrying<T>(name: string, call: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        const error = ConnectError.from(err);
        if (!TRANSIENT.has(error.code) || this.stopped) throw err;
        const delay = Math.min(this.options.reconnectMaxMs, MIN_RECONNECT_MS * 2 ** Math.min(attempt, 20));
        this.log.warn(`${name} failed; retrying`, { code: Code[error.code], message: error.rawMessage, inMs: delay });
        await sleep(delay, this.stopping.signal);
        if (this.stopped) throw err;
      }
    }
  }
}

function callFields(call: Extract<WatchRequestsResponse["request"], { case: `call${string}` }>): Record<string, unknown> {
  switch (call.case) {
    case "callParseContext":
      return { principalId: call.value.principalId, contextUrl: redactUrl(call.value.contextUrl) };
    case "callCheckRepositoryAccess":
      return { principalId: call.value.principalId, repositoryUrl: redactUrl(call.value.repositoryUrl) };
    case "callCheckAuthenticationForHost":
      return { principalId: call.value.principalId, host: call.value.host };
    case "callSearchRepositories":
      return { principalId: call.value.principalId, searchString: call.value.searchString, scmHost: call.value.scmHost };
    case "callListScmOrganizations":
      return { principalId: call.value.principalId, scmHost: call.value.scmHost, query: call.value.query };
    default:
      return {};
  }
}

function describe(err: unknown): string {
  if (err instanceof ConnectError) return `${Code[err.code]}: ${err.rawMessage}`;
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

function gitVersion(): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile("git", ["--version"], { timeout: 5_000 }, (error, stdout) => resolve(error ? undefined : stdout.trim()));
  });
}

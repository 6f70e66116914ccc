// The runner channel: each runner holds WatchRequests streams on some replicas; the control
// plane pushes events (to every stream of a runner) and calls (to exactly one stream) down
// them, and the runner answers calls with SendResponse, on whichever replica its request lands.
//
// Replicas share nothing but PostgreSQL (src/store/runner-channel-store.ts): a call is a row
// that the caller's replica inserts and waits on; the replica holding a stream of that runner
// claims it (one UPDATE, so exactly one stream gets it) and writes it down the stream; the
// replica that receives the SendResponse stores the answer; NOTIFY wakes each of them. The
// waiting caller is bounded by its deadline (or RUNNER_CALL_TIMEOUT_SECONDS), so it always ends.
// docs/operations.md ("The runner channel") describes the behaviour an operator sees.
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  SendResponseRequestSchema,
  WatchRequestsResponseSchema,
  type SendResponseRequest,
  type WatchRequestsResponse,
} from "../../gen/gitpod/v1/runner_interaction_pb.js";
import type { Database } from "../store/db/database.js";
import { parseChannelNotice, RUNNER_CHANNEL, type ChannelNotice, type RunnerChannelStore } from "../store/runner-channel-store.js";
import { invalidArgument } from "./errors.js";

type RequestMember = Extract<NonNullable<MessageInitShape<typeof WatchRequestsResponseSchema>["request"]>, { case: string }>;
/** A call of the channel, as the oneof member of WatchRequestsResponse.request. */
export type CallRequest = Extract<RequestMember, { case: `call${string}` }>;
/** An event of the channel, as the oneof member of WatchRequestsResponse.request. */
export type EventRequest = Extract<RequestMember, { case: `event${string}` }>;
type ResponseMember = Extract<SendResponseRequest["response"], { case: string }>;
/** The runner's answer to a call of member C. */
export type CallResponse<C extends CallRequest["case"]> = Extract<ResponseMember, { case: C }>["value"];

export interface CallOptions {
  /** How long to wait for the runner's answer. */
  timeoutMs: number;
  /** Aborted when the caller goes away (or its deadline passes). */
  signal?: AbortSignal;
  /** W3C trace context of the caller (traceparent, tracestate), passed on to the runner. */
  traceContext?: Record<string, string>;
  /** Names the public RPC in errors ("ParseContextURL"). */
  method: string;
}

export interface RunnerChannelOptions {
  /** A stream that sent nothing for this long gets a CallPing. */
  keepaliveMs: number;
  /** Secret shared by all replicas, for the ids of pings (answered without a database row). */
  pingKey: Uint8Array;
  /** Warnings an operator should see (lost database notifications, failed clean-ups). */
  warn: (fields: Record<string, unknown>, message: string) => void;
}

/** Replicas renew their lease this often; a replica silent for LEASE_MS is taken for dead. */
export const LEASE_RENEW_MS = 5_000;
export const LEASE_MS = 15_000;
/** Every this many renewals a bounded clean-up of old rows runs (about once a minute). */
const GARBAGE_EVERY = 12;
/** A ping's answer is accepted this long after the ping was sent. */
const PING_ANSWER_WINDOW_S = 600;

const ERROR_MEMBER = SendResponseRequestSchema.field.error.number;

/** One WatchRequests stream held by this process. */
class LocalStream {
  readonly queue: WatchRequestsResponse[] = [];
  ended: ConnectError | undefined;
  lastSentAt = performance.now();
  private wake: (() => void) | undefined;

  constructor(
    readonly id: string,
    readonly runnerId: string,
    readonly workerId: string,
  ) {}

  push(message: WatchRequestsResponse): void {
    if (this.ended) return;
    this.queue.push(message);
    this.wake?.();
  }

  end(reason: ConnectError): void {
    this.ended ??= reason;
    this.wake?.();
  }

  /** The next message; throws the reason the stream ended (canceled: the client went away). */
  async take(signal: AbortSignal): Promise<WatchRequestsResponse> {
    for (;;) {
      if (this.ended) throw this.ended;
      // The deadline passed (Connect's reason), or the client went away.
      if (signal.aborted) throw signal.reason instanceof ConnectError ? signal.reason : new ConnectError("the client closed the stream", Code.Canceled);
      const next = this.queue.shift();
      if (next) return next;
      await new Promise<void>((resolve) => {
        const done = () => {
          this.wake = undefined;
          signal.removeEventListener("abort", done);
          resolve();
        };
        this.wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }
}

/** A caller waiting for the answer to one call. */
class Waiter {
  private wake: (() => void) | undefined;
  private pending = false;

  /** Something may have changed: look at the database again. */
  poke(): void {
    this.pending = true;
    this.wake?.();
  }

  /** Resolves on a poke, or with "timeout" / "aborted". */
  wait(untilMs: number, signal: AbortSignal | undefined): Promise<"poked" | "timeout" | "aborted"> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve("poked");
    }
    if (signal?.aborted) return Promise.resolve("aborted");
    return new Promise((resolve) => {
      const finish = (outcome: "poked" | "timeout" | "aborted") => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.wake = undefined;
        this.pending = false;
        resolve(outcome);
      };
      const onAbort = () => finish("aborted");
      const timer = setTimeout(() => finish("timeout"), Math.max(0, untilMs - performance.now()));
      signal?.addEventListener("abort", onAbort, { once: true });
      this.wake = () => finish("poked");
    });
  }
}

export interface ChannelStats {
  streams: number;
  calls: Record<"answered" | "failed" | "timed_out" | "not_connected" | "canceled", number>;
}

export class RunnerChannel {
  readonly replicaId = randomUUID();
  private readonly byRunner = new Map<string, LocalStream[]>();
  private readonly byId = new Map<string, LocalStream>();
  private readonly waiters = new Map<string, Waiter>();
  private roundRobin = 0;
  private stopping = false;
  private leaseTimer: NodeJS.Timeout | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private renewals = 0;
  private notificationsLostAt: number | undefined;
  readonly stats: ChannelStats = { streams: 0, calls: { answered: 0, failed: 0, timed_out: 0, not_connected: 0, canceled: 0 } };

  constructor(
    private readonly store: RunnerChannelStore,
    private readonly options: RunnerChannelOptions,
  ) {}

  /** Joins the channel: a lease for this replica, and the notifications of all replicas. */
  async start(db: Database): Promise<void> {
    this.unlisten = await db.listen(
      RUNNER_CHANNEL,
      (payload) => {
        const notice = parseChannelNotice(payload);
        if (notice) this.onNotice(notice);
      },
      (live) => this.onListenState(live),
    );
    await this.store.registerReplica(this.replicaId, LEASE_MS);
    await this.store.collectGarbage().catch((err: unknown) => this.options.warn({ err }, "runner channel: clean-up failed"));
    this.leaseTimer = setInterval(() => void this.renewLease(), LEASE_RENEW_MS);
    this.leaseTimer.unref();
    const tick = Math.max(50, Math.min(1_000, Math.floor(this.options.keepaliveMs / 4)));
    this.keepaliveTimer = setInterval(() => this.keepalive(), tick);
    this.keepaliveTimer.unref();
  }

  /**
   * Stops taking streams and ends the open ones with `unavailable` (their runners reconnect to
   * another replica, where the calls these streams held wait for them). Calls this replica is
   * waiting on go on until they end.
   */
  async drain(): Promise<void> {
    this.stopping = true;
    clearInterval(this.leaseTimer);
    clearInterval(this.keepaliveTimer);
    const shutdown = new ConnectError("the server is shutting down: reconnect (another replica will take the stream)", Code.Unavailable);
    for (const stream of this.byId.values()) stream.end(shutdown);
    await this.store.removeReplica(this.replicaId).catch((err: unknown) => this.options.warn({ err }, "runner channel: could not hand this replica's calls back"));
  }

  async close(): Promise<void> {
    if (!this.stopping) await this.drain();
    await this.unlisten?.().catch(() => {});
  }

  // --- streams --------------------------------------------------------------------------

  /** The messages of one WatchRequests stream of `runnerId`, until the client goes away. */
  async *watch(runnerId: string, request: { workerId: string; shardIds: number[] }, signal: AbortSignal): AsyncGenerator<WatchRequestsResponse> {
    if (this.stopping) throw new ConnectError("the server is shutting down: connect to another replica", Code.Unavailable);
    const stream = new LocalStream(randomUUID(), runnerId, request.workerId);
    // Known locally before the database knows it, so that no notification for it is missed.
    this.addLocal(stream);
    try {
      const opened = await this.store.openStream({
        id: stream.id, runnerId, replicaId: this.replicaId, workerId: request.workerId, shardIds: request.shardIds,
      });
      // The first message flushes the response headers at once, and shows the runner the round trip works.
      stream.push(this.ping(runnerId));
      await this.replayMissedEvents(stream, opened.missedSince);
      for (const bytes of await this.store.claimWaiting(runnerId, stream.id)) stream.push(fromBinary(WatchRequestsResponseSchema, bytes));
      for (;;) {
        const message = await stream.take(signal);
        stream.lastSentAt = performance.now();
        yield message;
      }
    } finally {
      this.removeLocal(stream);
      // Calls this stream held but the runner has not answered go back to waiting for a stream.
      await this.store.closeStream(stream.id).catch((err: unknown) => this.options.warn({ err, runnerId }, "runner channel: could not close a stream's record"));
    }
  }

  private addLocal(stream: LocalStream): void {
    this.byId.set(stream.id, stream);
    const list = this.byRunner.get(stream.runnerId);
    if (list) list.push(stream);
    else this.byRunner.set(stream.runnerId, [stream]);
    this.stats.streams = this.byId.size;
  }

  private removeLocal(stream: LocalStream): void {
    this.byId.delete(stream.id);
    const list = this.byRunner.get(stream.runnerId)?.filter((s) => s !== stream);
    if (list && list.length > 0) this.byRunner.set(stream.runnerId, list);
    else this.byRunner.delete(stream.runnerId);
    this.stats.streams = this.byId.size;
  }

  /** One of this process's live streams of the runner (round robin), if any. */
  private localStream(runnerId: string): LocalStream | undefined {
    const list = this.byRunner.get(runnerId)?.filter((s) => !s.ended);
    if (!list || list.length === 0) return undefined;
    return list[this.roundRobin++ % list.length];
  }

  private async replayMissedEvents(stream: LocalStream, since: Date | null): Promise<void> {
    const events = await this.store.missedEvents(stream.runnerId, since);
    for (const message of distinctEvents(events)) stream.push(message);
    await this.store.markEventsDelivered(events.map((event) => event.id));
  }

  private keepalive(): void {
    const due = performance.now() - this.options.keepaliveMs;
    for (const stream of this.byId.values()) {
      if (stream.lastSentAt <= due && stream.queue.length === 0) {
        stream.lastSentAt = performance.now();
        stream.push(this.ping(stream.runnerId));
      }
    }
  }

  // --- events ---------------------------------------------------------------------------

  /** Sends `event` to every open stream of the runner; a stream that opens later gets it when it did not see it. */
  async sendEvent(runnerId: string, event: EventRequest): Promise<void> {
    const eventId = randomUUID();
    const payload = toBinary(WatchRequestsResponseSchema, create(WatchRequestsResponseSchema, { requestId: eventId, request: event }));
    await this.store.insertEvent(eventId, runnerId, payload);
  }

  // --- calls ----------------------------------------------------------------------------

  /** True for the runners of `runnerIds` with at least one live stream (on any replica). */
  liveRunners(runnerIds: string[]): Promise<Set<string>> {
    return this.store.liveRunners(runnerIds);
  }

  /**
   * Calls the runner through one of its streams and waits for its answer. Fails `unavailable`
   * when the runner has no stream, `deadline_exceeded` when it does not answer in time, and
   * with the runner's own CallError (code, message, details) when it answers with one.
   */
  async call<C extends CallRequest["case"]>(runnerId: string, call: Extract<CallRequest, { case: C }>, options: CallOptions): Promise<CallResponse<C>> {
    const requestId = randomUUID();
    const message = create(WatchRequestsResponseSchema, { requestId, traceContext: options.traceContext ?? {}, request: call });
    const kind = WatchRequestsResponseSchema.field[call.case].number;
    const deadline = performance.now() + options.timeoutMs;
    const waiter = new Waiter();
    this.waiters.set(requestId, waiter);
    try {
      // Same replica as a stream of the runner: deliver it directly, no round trip through NOTIFY.
      const local = this.localStream(runnerId);
      const stored = await this.store.insertCall({
        requestId, runnerId, kind, request: toBinary(WatchRequestsResponseSchema, message), timeoutMs: options.timeoutMs, localStreamId: local?.id ?? null,
      });
      if (!stored) {
        this.stats.calls.not_connected++;
        throw new ConnectError(`runner ${runnerId} is not connected: it has no open WatchRequests stream, so it cannot answer ${options.method}`, Code.Unavailable);
      }
      if (local) this.deliver(local, message);
      for (;;) {
        const outcome = await waiter.wait(deadline, options.signal);
        // Stopped waiting, unless the answer came in just before (then it is taken below).
        const abandoned = outcome !== "poked" && (await this.store.abandon(requestId));
        const answer = abandoned ? undefined : await this.store.takeAnswer(requestId);
        if (answer) return this.unpack<C>(fromBinary(SendResponseRequestSchema, answer));
        if (outcome === "poked") continue; // a wake-up without an answer (after a reconnect of the notifications)
        if (outcome === "aborted") {
          this.stats.calls.canceled++;
          throw options.signal?.reason instanceof ConnectError ? options.signal.reason : new ConnectError("the call was canceled", Code.Canceled);
        }
        this.stats.calls.timed_out++;
        throw new ConnectError(`runner ${runnerId} did not answer ${options.method} within ${options.timeoutMs} ms`, Code.DeadlineExceeded);
      }
    } finally {
      this.waiters.delete(requestId);
    }
  }

  /** A stream that ended while a call was being handed to it gives the call back at once. */
  private deliver(stream: LocalStream, message: WatchRequestsResponse): void {
    if (!stream.ended && this.byId.has(stream.id)) {
      stream.push(message);
      return;
    }
    void this.store.closeStream(stream.id).catch((err: unknown) => this.options.warn({ err }, "runner channel: could not hand a call back"));
  }

  private unpack<C extends CallRequest["case"]>(answer: SendResponseRequest): CallResponse<C> {
    const response = answer.response;
    if (response.case === "error") {
      this.stats.calls.failed++;
      const { code, message, details } = response.value;
      // ErrorCode numbers are the Connect/gRPC codes; UNSPECIFIED (and anything unknown) is `unknown`.
      const connectCode = code >= 1 && code <= 16 ? (code as number as Code) : Code.Unknown;
      const error = new ConnectError(message, connectCode);
      // The runner's details as they came (type name and bytes): no need to know their types.
      for (const any of details) error.details.push({ type: any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1), value: any.value });
      throw error;
    }
    this.stats.calls.answered++;
    return response.value as CallResponse<C>;
  }

  /**
   * Stores the runner's answer to one of its calls. Refused, changing nothing, when the
   * request_id is not a call to this runner (`not_found`), was answered already
   * (`already_exists`), no longer has a caller (`failed_precondition`), or the answer is not
   * the call's member nor `error` (`invalid_argument`).
   */
  async answer(runnerId: string, answer: SendResponseRequest): Promise<void> {
    const member = answer.response.case;
    if (member === undefined) {
      throw invalidArgument("response", "must be set: the member of the call being answered, or error", "send_response.response_required");
    }
    const requestId = answer.requestId.toLowerCase();
    const ping = this.pingAnswer(runnerId, requestId);
    if (ping !== "not-a-ping") {
      if (ping === "expired") throw new ConnectError(`request ${requestId} expired: pings are answered within ${PING_ANSWER_WINDOW_S} s`, Code.FailedPrecondition);
      if (member !== "callPing" && member !== "error") throw wrongMember(requestId, "callPing", member);
      return; // a ping's answer changes nothing: accepted, also twice
    }
    const kind = SendResponseRequestSchema.field[member].number;
    if (await this.store.recordAnswer(requestId, runnerId, kind, toBinary(SendResponseRequestSchema, answer))) return;
    const state = await this.store.callState(requestId);
    // Another runner's call is indistinguishable from no call.
    if (!state || state.runnerId !== runnerId) throw new ConnectError(`request ${requestId} is unknown: no call with this request_id was sent to runner ${runnerId}`, Code.NotFound);
    if (state.answered) throw new ConnectError(`request ${requestId} was already answered`, Code.AlreadyExists);
    if (kind !== state.kind && kind !== ERROR_MEMBER) {
      throw wrongMember(requestId, WatchRequestsResponseSchema.fields.find((f) => f.number === state.kind)?.localName ?? String(state.kind), member);
    }
    throw new ConnectError(`request ${requestId} expired: its caller stopped waiting for the answer`, Code.FailedPrecondition);
  }

  // --- pings ----------------------------------------------------------------------------

  /** A CallPing whose id any replica can check without a database row (UUID version 8: time + MAC). */
  private ping(runnerId: string): WatchRequestsResponse {
    return create(WatchRequestsResponseSchema, { requestId: this.pingId(runnerId, Math.floor(Date.now() / 1000)), request: { case: "callPing", value: {} } });
  }

  private pingId(runnerId: string, seconds: number): string {
    const bytes = Buffer.alloc(16);
    bytes.writeUInt32BE(seconds >>> 0, 0);
    createHmac("sha256", this.options.pingKey).update(`${runnerId}:${seconds}`).digest().copy(bytes, 4, 0, 12);
    bytes[6] = (bytes[6]! & 0x0f) | 0x80; // version 8 (custom)
    bytes[8] = (bytes[8]! & 0x3f) | 0x80; // RFC 4122 variant
    const hex = bytes.toString("hex");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  private pingAnswer(runnerId: string, requestId: string): "valid" | "expired" | "not-a-ping" {
    if (requestId[14] !== "8") return "not-a-ping"; // calls use random (version 4) ids
    const seconds = parseInt(requestId.slice(0, 8), 16);
    const expected = Buffer.from(this.pingId(runnerId, seconds));
    const given = Buffer.from(requestId);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return "not-a-ping";
    const age = Date.now() / 1000 - seconds;
    return age >= -60 && age <= PING_ANSWER_WINDOW_S ? "valid" : "expired";
  }

  // --- notifications and lease ----------------------------------------------------------

  private onNotice(notice: ChannelNotice): void {
    switch (notice.kind) {
      case "answer":
        this.waiters.get(notice.requestId)?.poke();
        return;
      case "call": {
        const stream = this.localStream(notice.runnerId);
        if (!stream) return;
        this.store.claimOne(notice.runnerId, notice.requestId, stream.id).then(
          (bytes) => bytes && this.deliver(stream, fromBinary(WatchRequestsResponseSchema, bytes)),
          (err: unknown) => this.options.warn({ err, runnerId: notice.runnerId }, "runner channel: could not take a call for a stream"),
        );
        return;
      }
      case "event": {
        const streams = this.byRunner.get(notice.runnerId);
        if (!streams) return;
        const message = fromBinary(WatchRequestsResponseSchema, notice.payload);
        for (const stream of streams) stream.push(message);
        this.store.markEventsDelivered([notice.eventId]).catch(() => {});
        return;
      }
      case "superseded":
        this.byId.get(notice.streamId)?.end(new ConnectError("this stream was replaced by a newer WatchRequests stream of the same worker_id", Code.Aborted));
        return;
    }
  }

  /** While notifications were interrupted some may be lost: look again at what they would have said. */
  private onListenState(live: boolean): void {
    if (!live) {
      this.notificationsLostAt ??= Date.now();
      this.options.warn({}, "runner channel: database notifications interrupted; catching up when they resume");
      return;
    }
    if (this.notificationsLostAt === undefined) return;
    const since = new Date(this.notificationsLostAt - 5_000);
    this.notificationsLostAt = undefined;
    for (const waiter of this.waiters.values()) waiter.poke();
    for (const [runnerId, streams] of this.byRunner) {
      const stream = streams[0]!;
      void (async () => {
        for (const bytes of await this.store.claimWaiting(runnerId, stream.id)) this.deliver(stream, fromBinary(WatchRequestsResponseSchema, bytes));
        const missed = distinctEvents(await this.store.missedEvents(runnerId, since));
        for (const message of missed) for (const s of streams) s.push(message);
      })().catch((err: unknown) => this.options.warn({ err, runnerId }, "runner channel: catching up failed"));
    }
  }

  private async renewLease(): Promise<void> {
    try {
      if (!(await this.store.renewLease(this.replicaId, LEASE_MS))) await this.store.registerReplica(this.replicaId, LEASE_MS);
      if (++this.renewals % GARBAGE_EVERY === 0) await this.store.collectGarbage();
    } catch (err) {
      this.options.warn({ err }, "runner channel: renewing this replica's lease failed; other replicas may take its streams for closed");
    }
  }
}

/**
 * Events mean "re-read this": of several equal events (same member, same ids) only the last is
 * kept, in the order of their last occurrence.
 */
function distinctEvents(events: { payload: Uint8Array }[]): WatchRequestsResponse[] {
  const latest = new Map<string, WatchRequestsResponse>();
  for (const event of events) {
    const message = fromBinary(WatchRequestsResponseSchema, event.payload);
    const key = Buffer.from(toBinary(WatchRequestsResponseSchema, create(WatchRequestsResponseSchema, { request: message.request }))).toString("base64");
    latest.delete(key);
    latest.set(key, message);
  }
  return [...latest.values()];
}

function wrongMember(requestId: string, expected: string, got: string): ConnectError {
  return invalidArgument(
    "response",
    `request ${requestId} is a ${expected} call: answer it with ${expected} or error, not ${got}`,
    "send_response.response_matches_call",
  );
}

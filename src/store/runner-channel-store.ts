// All SQL of the runner channel: replicas and their leases, open streams, pending calls and
// recent events (migrations/0002_runner_channel.sql), and the one NOTIFY channel on which
// replicas tell each other about them. Times are the database's (now()), so every replica
// compares against the same clock. Notifications carry ids only (or a small event), never an
// answer: a NOTIFY payload is limited to 8000 bytes, answers are read from the table.
import { sql, type Database } from "./db/database.js";

/** The NOTIFY channel of the runner channel, and the payloads sent on it. */
export const RUNNER_CHANNEL = "rcp_runner_channel";

export type ChannelNotice =
  /** A call waits for delivery to a stream of the runner. */
  | { kind: "call"; runnerId: string; requestId: string }
  /** A call was answered (or failed) by its runner. */
  | { kind: "answer"; requestId: string }
  /** An event for every open stream of the runner (payload: binary WatchRequestsResponse). */
  | { kind: "event"; runnerId: string; eventId: string; payload: Uint8Array }
  /** A stream was replaced by a newer one of the same worker and must end. */
  | { kind: "superseded"; streamId: string };

export function parseChannelNotice(payload: string): ChannelNotice | undefined {
  const [kind, a, b, c] = payload.split(":");
  if (kind === "c" && a && b) return { kind: "call", runnerId: a, requestId: b };
  if (kind === "a" && a) return { kind: "answer", requestId: a };
  if (kind === "e" && a && b && c !== undefined) return { kind: "event", runnerId: a, eventId: b, payload: Buffer.from(c, "base64") };
  if (kind === "s" && a) return { kind: "superseded", streamId: a };
  return undefined;
}

const notify = (payloadSql: string) => `pg_notify('${RUNNER_CHANNEL}', ${payloadSql})`;

/** A stream is live while open and its replica's lease is current. */
const LIVE_REPLICA = (replicaColumn: string) =>
  `EXISTS (SELECT 1 FROM runner_channel_replicas rr WHERE rr.id = ${replicaColumn} AND rr.lease_until > now())`;
/** Streams of runner $1 that are known to be gone (closed, or their replica died). */
const DEAD_STREAMS_OF_RUNNER = `SELECT s.id FROM runner_streams s
  WHERE s.runner_id = $1 AND (s.closed_at IS NOT NULL OR NOT ${LIVE_REPLICA("s.replica_id")})`;
/** A call that still waits for an answer and for its caller. */
const WAITING = "c.answered_at IS NULL AND c.finished_at IS NULL AND c.expires_at > now()";

/**
 * Channel rows matter only for the seconds a call or stream lives, so their transactions commit
 * without waiting for the WAL flush (synchronous_commit off, set for that transaction only). A
 * transaction that NOTIFYs holds a cluster-wide lock until its commit is flushed; waiting for
 * the disk there capped the channel at a few dozen calls a second (bench/README.md). A
 * PostgreSQL crash may lose the last moments of them: those callers time out, nothing else.
 */
const ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true) AS async";

/** How long finished calls, closed streams, dead replicas and old events are kept. */
export const RETENTION_MS = 10 * 60 * 1000;

const q = {
  registerReplica: sql(
    "channel_replica_register",
    `INSERT INTO runner_channel_replicas (id, started_at, lease_until) VALUES ($1, now(), now() + $2 * interval '1 millisecond')`,
  ),
  renewLease: sql(
    "channel_replica_renew",
    `UPDATE runner_channel_replicas SET lease_until = now() + $2 * interval '1 millisecond' WHERE id = $1 RETURNING id`,
  ),
  // A clean stop: streams closed, the calls they held released for other streams.
  removeReplica: sql(
    "channel_replica_remove",
    `WITH closed AS (
       UPDATE runner_streams SET closed_at = now() WHERE replica_id = $1 AND closed_at IS NULL RETURNING id
     ), released AS (
       UPDATE runner_calls c SET stream_id = NULL, delivered_at = NULL
         FROM closed WHERE c.stream_id = closed.id AND ${WAITING}
       RETURNING c.runner_id, c.request_id
     ), gone AS (
       DELETE FROM runner_channel_replicas WHERE id = $1
     )
     SELECT ${notify("'c:' || runner_id || ':' || request_id")} FROM released`,
  ),
  // Bounded clean-up of what is past its retention; any replica may run it.
  collectGarbage: sql(
    "channel_collect_garbage",
    `WITH calls AS (
       DELETE FROM runner_calls WHERE request_id IN (
         SELECT request_id FROM runner_calls WHERE expires_at < now() - $1 * interval '1 millisecond' LIMIT 1000)
     ), events AS (
       DELETE FROM runner_events WHERE id IN (
         SELECT id FROM runner_events WHERE created_at < now() - $1 * interval '1 millisecond' LIMIT 1000)
     ), dead AS (
       DELETE FROM runner_channel_replicas WHERE lease_until < now() - $1 * interval '1 millisecond' RETURNING id
     )
     DELETE FROM runner_streams WHERE id IN (
       SELECT id FROM runner_streams
        WHERE closed_at < now() - $1 * interval '1 millisecond' OR replica_id IN (SELECT id FROM dead)
        LIMIT 1000)`,
  ),
  // Opens a stream; an older open stream of the same (non-empty) worker is superseded. Returns
  // the superseded ids and, for the replay of events, since when this worker may have missed some.
  openStream: sql(
    "channel_stream_open",
    `WITH previous AS (
       SELECT id, opened_at, closed_at, superseded FROM runner_streams
        WHERE runner_id = $2 AND worker_id = $4 AND $4 <> '' ORDER BY opened_at DESC LIMIT 1
     ), superseded AS (
       UPDATE runner_streams SET closed_at = now(), superseded = true
        WHERE runner_id = $2 AND worker_id = $4 AND $4 <> '' AND closed_at IS NULL
        RETURNING id
     ), inserted AS (
       INSERT INTO runner_streams (id, runner_id, replica_id, worker_id, shard_ids, opened_at)
       VALUES ($1, $2, $3, $4, $5::integer[], now())
     ), notified AS (
       SELECT ${notify("'s:' || id")} FROM superseded
     )
     SELECT ${ASYNC_COMMIT}, (SELECT count(*) FROM notified)::integer AS superseded,
            (SELECT CASE WHEN closed_at IS NOT NULL AND NOT superseded THEN closed_at - interval '5 seconds' ELSE opened_at END
               FROM previous) AS "missedSince"`,
  ),
  closeStream: sql(
    "channel_stream_close",
    `WITH closed AS (
       UPDATE runner_streams SET closed_at = COALESCE(closed_at, now()) WHERE id = $1 RETURNING id
     ), released AS (
       UPDATE runner_calls c SET stream_id = NULL, delivered_at = NULL
        WHERE c.stream_id = $1 AND ${WAITING}
       RETURNING c.runner_id, c.request_id
     )
     SELECT ${notify("'c:' || runner_id || ':' || request_id")} FROM released`,
  ),
  // Calls of the runner that no live stream holds, now delivered to stream $2.
  claimWaiting: sql(
    "channel_calls_claim_waiting",
    `UPDATE runner_calls c SET stream_id = $2, delivered_at = now()
      WHERE c.runner_id = $1 AND ${WAITING}
        AND (c.stream_id IS NULL OR c.stream_id IN (${DEAD_STREAMS_OF_RUNNER}))
      RETURNING c.request, c.created_at AS "createdAt", ${ASYNC_COMMIT}`,
  ),
  claimOne: sql(
    "channel_call_claim",
    `UPDATE runner_calls c SET stream_id = $3, delivered_at = now()
      WHERE c.request_id = $2 AND c.runner_id = $1 AND ${WAITING}
        AND (c.stream_id IS NULL OR c.stream_id IN (${DEAD_STREAMS_OF_RUNNER}))
      RETURNING c.request, ${ASYNC_COMMIT}`,
  ),
  // A call is made only while the runner has a live stream. $6: a stream of this replica that
  // takes it at once (no notification), else null.
  insertCall: sql(
    "channel_call_insert",
    `WITH live AS (
       SELECT 1 FROM runner_streams s
        WHERE s.runner_id = $2 AND s.closed_at IS NULL AND ${LIVE_REPLICA("s.replica_id")} LIMIT 1
     ), inserted AS (
       INSERT INTO runner_calls (request_id, runner_id, kind, request, created_at, expires_at, stream_id, delivered_at)
       SELECT $1, $2, $3, $4, now(), now() + $5 * interval '1 millisecond', $6::uuid, CASE WHEN $6::uuid IS NULL THEN NULL ELSE now() END
         FROM live
       RETURNING request_id, runner_id, stream_id
     )
     SELECT CASE WHEN stream_id IS NULL THEN ${notify("'c:' || runner_id || ':' || request_id")} END, ${ASYNC_COMMIT} FROM inserted`,
  ),
  recordAnswer: sql(
    "channel_call_answer",
    `WITH answered AS (
       UPDATE runner_calls c SET answered_at = now(), response = $4
        WHERE c.request_id = $1 AND c.runner_id = $2 AND (c.kind = $3 OR $3 = 5) AND ${WAITING}
        RETURNING c.request_id
     )
     SELECT ${notify("'a:' || request_id")}, ${ASYNC_COMMIT} FROM answered`,
  ),
  callState: sql(
    "channel_call_state",
    `SELECT runner_id AS "runnerId", kind, answered_at IS NOT NULL AS answered,
            finished_at IS NOT NULL OR expires_at <= now() AS expired
       FROM runner_calls WHERE request_id = $1`,
  ),
  takeAnswer: sql(
    "channel_call_take_answer",
    `WITH answer AS (
       SELECT request_id, response FROM runner_calls
        WHERE request_id = $1 AND answered_at IS NOT NULL AND finished_at IS NULL FOR UPDATE
     )
     UPDATE runner_calls c SET finished_at = now(), response = NULL FROM answer
      WHERE c.request_id = answer.request_id
      RETURNING answer.response, ${ASYNC_COMMIT}`,
  ),
  abandon: sql(
    "channel_call_abandon",
    `UPDATE runner_calls SET finished_at = now() WHERE request_id = $1 AND finished_at IS NULL AND answered_at IS NULL RETURNING request_id, ${ASYNC_COMMIT}`,
  ),
  insertEvent: sql(
    "channel_event_insert",
    `WITH inserted AS (
       INSERT INTO runner_events (id, runner_id, created_at, payload) VALUES ($1, $2, now(), $3) RETURNING id
     )
     SELECT ${notify("'e:' || $2 || ':' || $1 || ':' || translate(encode($3, 'base64'), E'\\n', '')")}, ${ASYNC_COMMIT} FROM inserted`,
  ),
  markEventsDelivered: sql(
    "channel_events_delivered",
    `UPDATE runner_events SET delivered_at = now() WHERE id = ANY($1::uuid[]) AND delivered_at IS NULL RETURNING ${ASYNC_COMMIT}`,
  ),
  // What a new stream missed: events no stream got, and (for a known worker) those since its
  // previous stream may have stopped receiving. Oldest first.
  missedEvents: sql(
    "channel_events_missed",
    `SELECT id, payload FROM runner_events
      WHERE runner_id = $1 AND created_at > now() - $3 * interval '1 millisecond'
        AND (delivered_at IS NULL OR ($2::timestamptz IS NOT NULL AND created_at > $2::timestamptz))
      ORDER BY created_at, id`,
  ),
  liveRunners: sql(
    "channel_live_runners",
    `SELECT DISTINCT s.runner_id AS "runnerId" FROM runner_streams s
      WHERE s.runner_id = ANY($1::uuid[]) AND s.closed_at IS NULL AND ${LIVE_REPLICA("s.replica_id")}`,
  ),
};

export interface CallState {
  runnerId: string;
  kind: number;
  answered: boolean;
  expired: boolean;
}

export class RunnerChannelStore {
  constructor(private readonly db: Database) {}

  async registerReplica(replicaId: string, leaseMs: number): Promise<void> {
    await this.db.query(q.registerReplica, [replicaId, leaseMs]);
  }

  /** False when the replica's row is gone (another replica collected it after a long stall). */
  async renewLease(replicaId: string, leaseMs: number): Promise<boolean> {
    return (await this.db.query(q.renewLease, [replicaId, leaseMs])).rowCount === 1;
  }

  async removeReplica(replicaId: string): Promise<void> {
    await this.db.query(q.removeReplica, [replicaId]);
  }

  async collectGarbage(): Promise<void> {
    await this.db.query(q.collectGarbage, [RETENTION_MS]);
  }

  async openStream(stream: { id: string; runnerId: string; replicaId: string; workerId: string; shardIds: number[] }): Promise<{ superseded: number; missedSince: Date | null }> {
    const { rows } = await this.db.query<{ superseded: number; missedSince: Date | null }>(q.openStream, [
      stream.id, stream.runnerId, stream.replicaId, stream.workerId, stream.shardIds,
    ]);
    return rows[0] ?? { superseded: 0, missedSince: null };
  }

  async closeStream(streamId: string): Promise<void> {
    await this.db.query(q.closeStream, [streamId]);
  }

  /** The calls now delivered to this stream, oldest first (binary WatchRequestsResponse each). */
  async claimWaiting(runnerId: string, streamId: string): Promise<Uint8Array[]> {
    const { rows } = await this.db.query<{ request: Uint8Array; createdAt: Date }>(q.claimWaiting, [runnerId, streamId]);
    return rows.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime()).map((row) => row.request);
  }

  /** The call, when this stream got it (no other stream holds it, it still waits). */
  async claimOne(runnerId: string, requestId: string, streamId: string): Promise<Uint8Array | undefined> {
    const { rows } = await this.db.query<{ request: Uint8Array }>(q.claimOne, [runnerId, requestId, streamId]);
    return rows[0]?.request;
  }

  /** False when the runner has no live stream (nothing was stored). */
  async insertCall(call: { requestId: string; runnerId: string; kind: number; request: Uint8Array; timeoutMs: number; localStreamId: string | null }): Promise<boolean> {
    const { rowCount } = await this.db.query(q.insertCall, [
      call.requestId, call.runnerId, call.kind, call.request, Math.max(1, Math.round(call.timeoutMs)), call.localStreamId,
    ]);
    return rowCount === 1;
  }

  /** True when stored; false when the call does not take it (then `callState` says why). `kind` 5 is the error member. */
  async recordAnswer(requestId: string, runnerId: string, kind: number, response: Uint8Array): Promise<boolean> {
    return (await this.db.query(q.recordAnswer, [requestId, runnerId, kind, response])).rowCount === 1;
  }

  async callState(requestId: string): Promise<CallState | undefined> {
    return (await this.db.query<CallState>(q.callState, [requestId])).rows[0];
  }

  /** The answer (binary SendResponseRequest), once; undefined when there is none (yet). */
  async takeAnswer(requestId: string): Promise<Uint8Array | undefined> {
    return (await this.db.query<{ response: Uint8Array }>(q.takeAnswer, [requestId])).rows[0]?.response;
  }

  /** The caller stopped waiting. False when an answer had arrived first. */
  async abandon(requestId: string): Promise<boolean> {
    return (await this.db.query(q.abandon, [requestId])).rowCount === 1;
  }

  async insertEvent(eventId: string, runnerId: string, payload: Uint8Array): Promise<void> {
    await this.db.query(q.insertEvent, [eventId, runnerId, payload]);
  }

  async markEventsDelivered(eventIds: string[]): Promise<void> {
    if (eventIds.length > 0) await this.db.query(q.markEventsDelivered, [eventIds]);
  }

  async missedEvents(runnerId: string, since: Date | null): Promise<{ id: string; payload: Uint8Array }[]> {
    return (await this.db.query<{ id: string; payload: Uint8Array }>(q.missedEvents, [runnerId, since, RETENTION_MS])).rows;
  }

  /** The runners among `runnerIds` that have at least one live stream. */
  async liveRunners(runnerIds: string[]): Promise<Set<string>> {
    if (runnerIds.length === 0) return new Set();
    const { rows } = await this.db.query<{ runnerId: string }>(q.liveRunners, [runnerIds]);
    return new Set(rows.map((row) => row.runnerId));
  }
}

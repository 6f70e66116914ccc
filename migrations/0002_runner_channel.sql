-- The runner channel (RunnerInteractionService.WatchRequests / SendResponse) across replicas.
-- Every time below is the database's clock (now()), so replicas agree on it.

-- Server processes that hold runner streams. A replica renews its lease every few seconds;
-- when the lease lapses (the process died), its streams count as closed.
CREATE TABLE runner_channel_replicas (
  id uuid PRIMARY KEY,
  started_at timestamptz NOT NULL,
  lease_until timestamptz NOT NULL
);

-- Open (and recently closed) WatchRequests streams. A stream is live while closed_at is null
-- and its replica's lease is current.
CREATE TABLE runner_streams (
  id uuid PRIMARY KEY,
  runner_id uuid NOT NULL,
  replica_id uuid NOT NULL,
  worker_id text NOT NULL,
  shard_ids integer[] NOT NULL DEFAULT '{}',
  opened_at timestamptz NOT NULL,
  closed_at timestamptz,
  -- true when a newer stream of the same worker replaced it (it may have been half-open)
  superseded boolean NOT NULL DEFAULT false
);
CREATE INDEX runner_streams_open_by_runner ON runner_streams (runner_id) WHERE closed_at IS NULL;
CREATE INDEX runner_streams_by_worker ON runner_streams (runner_id, worker_id, opened_at);
CREATE INDEX runner_streams_open_by_replica ON runner_streams (replica_id) WHERE closed_at IS NULL;

-- Calls to runners, from the moment a public RPC makes one until its caller has the answer
-- (or stopped waiting); then kept a while (without the answer) to refuse late or repeated
-- SendResponses with the right reason.
CREATE TABLE runner_calls (
  request_id uuid PRIMARY KEY,
  runner_id uuid NOT NULL,
  -- the oneof member of the call (its field number in WatchRequestsResponse.request)
  kind smallint NOT NULL,
  -- the WatchRequestsResponse to deliver, binary protobuf
  request bytea NOT NULL,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  -- the stream it was delivered to (null: waiting for one)
  stream_id uuid,
  delivered_at timestamptz,
  answered_at timestamptz,
  -- the SendResponseRequest, binary protobuf, until the caller takes it
  response bytea,
  -- the caller took the answer, or stopped waiting
  finished_at timestamptz
);
CREATE INDEX runner_calls_waiting ON runner_calls (runner_id) WHERE answered_at IS NULL AND finished_at IS NULL;
CREATE INDEX runner_calls_by_stream ON runner_calls (stream_id) WHERE answered_at IS NULL AND finished_at IS NULL;
CREATE INDEX runner_calls_by_expiry ON runner_calls (expires_at);

-- Events sent to runners, kept a while so that a stream that (re)connects gets the ones it missed.
CREATE TABLE runner_events (
  id uuid PRIMARY KEY,
  runner_id uuid NOT NULL,
  created_at timestamptz NOT NULL,
  -- the WatchRequestsResponse, binary protobuf
  payload bytea NOT NULL,
  -- when a stream first got it (null: no stream was open)
  delivered_at timestamptz
);
CREATE INDEX runner_events_by_runner ON runner_events (runner_id, created_at);
CREATE INDEX runner_events_by_age ON runner_events (created_at);

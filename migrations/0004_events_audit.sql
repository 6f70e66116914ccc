-- Events (EventService.WatchEvents) and the audit log (ListAuditLogs, GetAuditLog): docs/events.md.
--
-- Every change to a watched table raises one NOTIFY on channel rcp_events from a trigger, in
-- the transaction of the change: it reaches every replica's one LISTEN session
-- (src/store/db/notifications.ts) when, and only when, the change commits. The payload is the
-- whole event (a few ids, well under NOTIFY's 8000 bytes), so no table is read to deliver it.
--
-- The same triggers write the audit log entry, in the same transaction, when the statement
-- carries an audit context: the transaction-local setting rcp.audit, set by the statement
-- itself (src/store/db/audit-context.ts). Changes without one (the sweeper, a runner's own
-- reports) are events only.

-- Whether the runner is live as the events last said: true from Signup (and every heartbeat),
-- false once the elected sweeper saw its heartbeats stop (src/domain/event-sweeper.ts). Its
-- change is the runner's ACTIVE <-> INACTIVE UPDATE_STATUS event, raised exactly once because
-- the row update that flips it is conditional.
ALTER TABLE runners ADD COLUMN live boolean NOT NULL DEFAULT false;
UPDATE runners SET live = true WHERE signed_up_at IS NOT NULL;
-- The sweeper looks for live runners whose heartbeats are old.
CREATE INDEX runners_live ON runners (last_active_at) WHERE live AND deleted_at IS NULL;

CREATE TABLE audit_log (
  id uuid PRIMARY KEY,
  organization_id uuid NOT NULL,
  actor_id uuid,
  actor_principal smallint NOT NULL,      -- gitpod.v1.Principal
  subject_id uuid,
  subject_type smallint NOT NULL,         -- gitpod.v1.ResourceType
  action text NOT NULL,                   -- the RPC, e.g. "DeleteRunner"
  kind smallint NOT NULL DEFAULT 3,       -- gitpod.v1.AuditLogEntryKind RESOURCE_CHANGE
  request_id text NOT NULL,
  client_address text,                    -- only with AUDIT_CLIENT_ADDRESS=true
  created_at timestamptz NOT NULL
);
-- ListAuditLogs walks this index (newest first by default); retention deletes by time.
CREATE INDEX audit_log_listing ON audit_log (organization_id, created_at, id);
CREATE INDEX audit_log_by_time ON audit_log (created_at);

-- One lease per deployment-wide job: the replica holding it (and renewing it) does the job.
CREATE TABLE leases (
  name text PRIMARY KEY,
  holder uuid NOT NULL,
  expires_at timestamptz NOT NULL
);

-- Writes the audit entry of a change when the statement carries an audit context for this
-- table: {"t": table, "a": action, "i": actor id, "p": principal, "r": request id, "c": address,
-- "at": time}, or {"t": table, "rows": {"<resource id>": {…}}} for batched statements.
CREATE FUNCTION rcp_audit(table_name text, resource_id uuid, organization_id uuid, subject_type smallint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  ctx jsonb := NULLIF(current_setting('rcp.audit', true), '')::jsonb;
BEGIN
  IF ctx IS NULL OR ctx->>'t' IS DISTINCT FROM table_name THEN RETURN; END IF;
  IF ctx ? 'rows' THEN ctx := ctx->'rows'->(resource_id::text); END IF;
  IF ctx IS NULL OR NOT ctx ? 'a' THEN RETURN; END IF;
  INSERT INTO audit_log (id, organization_id, actor_id, actor_principal, subject_id, subject_type, action, request_id, client_address, created_at)
  VALUES (gen_random_uuid(), organization_id, NULLIF(ctx->>'i', '')::uuid, COALESCE((ctx->>'p')::smallint, 0), resource_id,
          subject_type, ctx->>'a', COALESCE(ctx->>'r', ''), ctx->>'c', COALESCE((ctx->>'at')::timestamptz, now()));
END $$;

-- {"o": operation, "t": resource type, "r": resource id, "g": organization, "c": creator, "x": group}
CREATE FUNCTION rcp_event(operation int, resource_type int, resource_id uuid, organization_id uuid, creator_id uuid, group_id uuid) RETURNS void
LANGUAGE sql AS $$
  SELECT pg_notify('rcp_events', json_strip_nulls(json_build_object(
    'o', operation, 't', resource_type, 'r', resource_id, 'g', organization_id, 'c', creator_id, 'x', group_id))::text);
$$;

-- Operations: 1 CREATE, 2 UPDATE, 3 DELETE, 4 UPDATE_STATUS. Resource types: 2 RUNNER, 12 GROUP,
-- 41 GROUP_MEMBERSHIP_CHANGED, 47 ROLE_ASSIGNMENT.
CREATE FUNCTION rcp_runner_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  op int;
BEGIN
  IF TG_OP = 'INSERT' THEN
    op := 1;
  ELSIF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
    op := 3;
  ELSIF NEW.deleted_at IS NOT NULL THEN
    RETURN NULL;
  ELSIF (OLD.name, OLD.desired_phase, OLD.variant, OLD.region, OLD.release_channel, OLD.auto_update, OLD.log_level,
         OLD.devcontainer_image_cache_enabled, OLD.continuous_profiling, OLD.update_window_start, OLD.update_window_end,
         OLD.metrics_enabled, OLD.metrics_url, OLD.metrics_username, OLD.metrics_password, OLD.metrics_managed_enabled,
         OLD.metrics_include_verbose, OLD.honeycomb_api_key)
        IS DISTINCT FROM
        (NEW.name, NEW.desired_phase, NEW.variant, NEW.region, NEW.release_channel, NEW.auto_update, NEW.log_level,
         NEW.devcontainer_image_cache_enabled, NEW.continuous_profiling, NEW.update_window_start, NEW.update_window_end,
         NEW.metrics_enabled, NEW.metrics_url, NEW.metrics_username, NEW.metrics_password, NEW.metrics_managed_enabled,
         NEW.metrics_include_verbose, NEW.honeycomb_api_key) THEN
    op := 2; -- the spec changed (also when the status changed with it: one UPDATE)
  ELSIF (OLD.public_key, OLD.signed_up_at, OLD.environment_classes, OLD.status_version, OLD.status_system_details,
         OLD.status_log_url, OLD.status_region, OLD.status_llm_url, OLD.status_support_bundle_url, OLD.degradation_message,
         OLD.additional_info, OLD.capabilities, OLD.gateway_info, OLD.live)
        IS DISTINCT FROM
        (NEW.public_key, NEW.signed_up_at, NEW.environment_classes, NEW.status_version, NEW.status_system_details,
         NEW.status_log_url, NEW.status_region, NEW.status_llm_url, NEW.status_support_bundle_url, NEW.degradation_message,
         NEW.additional_info, NEW.capabilities, NEW.gateway_info, NEW.live) THEN
    op := 4; -- only the reported status or liveness changed
  ELSE
    RETURN NULL; -- a heartbeat or a report that changed nothing
  END IF;
  PERFORM rcp_event(op, 2, NEW.id, NEW.organization_id, NEW.creator_id, NULL);
  PERFORM rcp_audit(TG_TABLE_NAME, NEW.id, NEW.organization_id, 2::smallint);
  RETURN NULL;
END $$;
CREATE TRIGGER runners_events AFTER INSERT OR UPDATE ON runners FOR EACH ROW EXECUTE FUNCTION rcp_runner_changed();

CREATE FUNCTION rcp_group_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM rcp_event(3, 12, OLD.id, OLD.organization_id, NULL, OLD.id);
    PERFORM rcp_audit(TG_TABLE_NAME, OLD.id, OLD.organization_id, 12::smallint);
  ELSIF TG_OP = 'INSERT' OR (OLD.name, OLD.description) IS DISTINCT FROM (NEW.name, NEW.description) THEN
    PERFORM rcp_event(CASE TG_OP WHEN 'INSERT' THEN 1 ELSE 2 END, 12, NEW.id, NEW.organization_id, NULL, NEW.id);
    PERFORM rcp_audit(TG_TABLE_NAME, NEW.id, NEW.organization_id, 12::smallint);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER groups_events AFTER INSERT OR UPDATE OR DELETE ON groups FOR EACH ROW EXECUTE FUNCTION rcp_group_changed();

-- A membership change is an UPDATE of GROUP_MEMBERSHIP_CHANGED for the group (re-list its
-- members); the audit entry names the membership.
CREATE FUNCTION rcp_membership_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  m group_memberships;
  org uuid;
BEGIN
  m := CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
  SELECT g.organization_id INTO org FROM groups g WHERE g.id = m.group_id;
  IF org IS NULL THEN RETURN NULL; END IF; -- the group itself is being deleted: its DELETE says it
  PERFORM rcp_event(2, 41, m.group_id, org, NULL, m.group_id);
  PERFORM rcp_audit(TG_TABLE_NAME, m.id, org, 41::smallint);
  RETURN NULL;
END $$;
CREATE TRIGGER group_memberships_events AFTER INSERT OR DELETE ON group_memberships FOR EACH ROW EXECUTE FUNCTION rcp_membership_changed();

CREATE FUNCTION rcp_policy_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  p runner_policies;
BEGIN
  p := CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
  IF TG_OP = 'UPDATE' AND OLD.role IS NOT DISTINCT FROM NEW.role THEN RETURN NULL; END IF;
  PERFORM rcp_event(CASE TG_OP WHEN 'INSERT' THEN 1 WHEN 'UPDATE' THEN 2 ELSE 3 END, 47, p.id, p.organization_id, NULL, p.group_id);
  PERFORM rcp_audit(TG_TABLE_NAME, p.id, p.organization_id, 47::smallint);
  RETURN NULL;
END $$;
CREATE TRIGGER runner_policies_events AFTER INSERT OR UPDATE OR DELETE ON runner_policies FOR EACH ROW EXECUTE FUNCTION rcp_policy_changed();

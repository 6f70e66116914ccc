-- Events and audit entries for the runner configuration of migration 0008 (docs/events.md).
--
-- 0008 moved runners.environment_classes to a table of its own and added the sealed secret
-- columns, so the runner trigger of 0004 is replaced: the environment classes are no longer part
-- of the runner's status, and a change of a sealed secret is a spec change (its value never
-- leaves the database in an event or an audit entry: only ids do).
CREATE OR REPLACE FUNCTION rcp_runner_changed() RETURNS trigger
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
         OLD.metrics_include_verbose, OLD.honeycomb_api_key, OLD.metrics_password_sealed, OLD.honeycomb_api_key_sealed)
        IS DISTINCT FROM
        (NEW.name, NEW.desired_phase, NEW.variant, NEW.region, NEW.release_channel, NEW.auto_update, NEW.log_level,
         NEW.devcontainer_image_cache_enabled, NEW.continuous_profiling, NEW.update_window_start, NEW.update_window_end,
         NEW.metrics_enabled, NEW.metrics_url, NEW.metrics_username, NEW.metrics_password, NEW.metrics_managed_enabled,
         NEW.metrics_include_verbose, NEW.honeycomb_api_key, NEW.metrics_password_sealed, NEW.honeycomb_api_key_sealed) THEN
    -- The spec changed (sealing an earlier version's plaintext secret at start is one too: the
    -- columns changed, though the secret did not).
    op := 2;
  ELSIF (OLD.public_key, OLD.signed_up_at, OLD.status_version, OLD.status_system_details,
         OLD.status_log_url, OLD.status_region, OLD.status_llm_url, OLD.status_support_bundle_url, OLD.degradation_message,
         OLD.additional_info, OLD.capabilities, OLD.gateway_info, OLD.live)
        IS DISTINCT FROM
        (NEW.public_key, NEW.signed_up_at, NEW.status_version, NEW.status_system_details,
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

-- The event of a resource that belongs to a runner: "u" names the runner, so that members see
-- it exactly when they may use that runner (src/domain/events.ts).
CREATE FUNCTION rcp_runner_resource_event(operation int, resource_type int, resource_id uuid, organization_id uuid, creator_id uuid, runner_id uuid) RETURNS void
LANGUAGE sql AS $$
  SELECT pg_notify('rcp_events', json_strip_nulls(json_build_object(
    'o', operation, 't', resource_type, 'r', resource_id, 'g', organization_id, 'c', creator_id, 'u', runner_id))::text);
$$;

-- Resource types: 9 ENVIRONMENT_CLASS, 10 RUNNER_SCM_INTEGRATION, 11 HOST_AUTHENTICATION_TOKEN.
-- An UPDATE that changes no column a client reads (a reseal with a new secrets key) is no event.
CREATE FUNCTION rcp_scm_integration_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  i scm_integrations;
BEGIN
  i := CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
  IF TG_OP = 'UPDATE' AND (OLD.scm_id, OLD.host, OLD.oauth_client_id, OLD.issuer_url, OLD.pat, OLD.virtual_directory, OLD.updated_at)
       IS NOT DISTINCT FROM (NEW.scm_id, NEW.host, NEW.oauth_client_id, NEW.issuer_url, NEW.pat, NEW.virtual_directory, NEW.updated_at) THEN
    RETURN NULL;
  END IF;
  PERFORM rcp_runner_resource_event(CASE TG_OP WHEN 'INSERT' THEN 1 WHEN 'UPDATE' THEN 2 ELSE 3 END, 10, i.id, i.organization_id, NULL, i.runner_id);
  PERFORM rcp_audit(TG_TABLE_NAME, i.id, i.organization_id, 10::smallint);
  RETURN NULL;
END $$;
CREATE TRIGGER scm_integrations_events AFTER INSERT OR UPDATE OR DELETE ON scm_integrations FOR EACH ROW EXECUTE FUNCTION rcp_scm_integration_changed();

-- A host token's creator is its subject: members see the events of their own tokens only.
CREATE FUNCTION rcp_host_token_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  t host_authentication_tokens;
BEGIN
  t := CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
  IF TG_OP = 'UPDATE' AND (OLD.host, OLD.source, OLD.expires_at, OLD.integration_id, OLD.scopes, OLD.updated_at)
       IS NOT DISTINCT FROM (NEW.host, NEW.source, NEW.expires_at, NEW.integration_id, NEW.scopes, NEW.updated_at) THEN
    RETURN NULL;
  END IF;
  PERFORM rcp_runner_resource_event(CASE TG_OP WHEN 'INSERT' THEN 1 WHEN 'UPDATE' THEN 2 ELSE 3 END, 11, t.id, t.organization_id, t.subject_id, t.runner_id);
  PERFORM rcp_audit(TG_TABLE_NAME, t.id, t.organization_id, 11::smallint);
  RETURN NULL;
END $$;
CREATE TRIGGER host_authentication_tokens_events AFTER INSERT OR UPDATE OR DELETE ON host_authentication_tokens FOR EACH ROW EXECUTE FUNCTION rcp_host_token_changed();

CREATE FUNCTION rcp_environment_class_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND (OLD.display_name, OLD.description, OLD.configuration, OLD.enabled)
       IS NOT DISTINCT FROM (NEW.display_name, NEW.description, NEW.configuration, NEW.enabled) THEN
    RETURN NULL;
  END IF;
  PERFORM rcp_runner_resource_event(CASE TG_OP WHEN 'INSERT' THEN 1 ELSE 2 END, 9, NEW.id, NEW.organization_id, NULL, NEW.runner_id);
  PERFORM rcp_audit(TG_TABLE_NAME, NEW.id, NEW.organization_id, 9::smallint);
  RETURN NULL;
END $$;
CREATE TRIGGER environment_classes_events AFTER INSERT OR UPDATE ON environment_classes FOR EACH ROW EXECUTE FUNCTION rcp_environment_class_changed();

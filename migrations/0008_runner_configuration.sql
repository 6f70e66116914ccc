-- Runner configuration (RunnerConfigurationService, docs/runner-configuration.md): SCM
-- integrations, users' host authentication tokens and environment classes, each in a table of
-- its own. Enum columns hold gitpod.v1 wire numbers.

-- An SCM host a runner works with. The OAuth client secret is a libsodium sealed box to the
-- runner's public key (only the runner opens it); oauth_client_id null = no OAuth configured.
CREATE TABLE scm_integrations (
  id uuid PRIMARY KEY,
  runner_id uuid NOT NULL REFERENCES runners (id),
  organization_id uuid NOT NULL REFERENCES organizations (id),
  scm_id text NOT NULL,
  host text NOT NULL, -- lower case
  oauth_client_id text,
  oauth_client_secret_sealed bytea,
  issuer_url text NOT NULL DEFAULT '',
  pat boolean NOT NULL,
  virtual_directory text,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  UNIQUE (runner_id, host)
);
CREATE INDEX scm_integrations_listing ON scm_integrations (organization_id, created_at DESC, id DESC);

-- A user's credential for a host on a runner: one per (runner, host, subject). token and
-- refresh_token are sealed with the server secrets key (src/domain/secrets.ts, envelope
-- encryption bound to the row id), and sealed again to the runner's key on every read.
-- source: 1 OAUTH, 2 PAT.
CREATE TABLE host_authentication_tokens (
  id uuid PRIMARY KEY,
  runner_id uuid NOT NULL REFERENCES runners (id),
  organization_id uuid NOT NULL REFERENCES organizations (id),
  host text NOT NULL, -- lower case
  subject_id uuid NOT NULL,
  subject_principal smallint NOT NULL,
  source smallint NOT NULL,
  token_sealed bytea NOT NULL,
  refresh_token_sealed bytea, -- null: none
  expires_at timestamptz,
  integration_id uuid,
  scopes text[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  UNIQUE (runner_id, host, subject_id)
);
CREATE INDEX host_authentication_tokens_by_subject ON host_authentication_tokens (subject_id, created_at DESC, id DESC);
CREATE INDEX host_authentication_tokens_by_runner ON host_authentication_tokens (runner_id, created_at DESC, id DESC);

-- Environment classes: created by admins (CreateEnvironmentClass) or offered by the runner at
-- Signup (until now kept in runners.environment_classes, moved here).
CREATE TABLE environment_classes (
  id uuid PRIMARY KEY,
  runner_id uuid NOT NULL REFERENCES runners (id),
  organization_id uuid NOT NULL REFERENCES organizations (id),
  display_name text NOT NULL,
  description text NOT NULL,
  configuration jsonb NOT NULL DEFAULT '[]', -- [{key, value}]
  enabled boolean NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE INDEX environment_classes_listing ON environment_classes (organization_id, created_at DESC, id DESC);
CREATE INDEX environment_classes_by_runner ON environment_classes (runner_id);

-- A class id the runner offered that is not a UUID gets the UUID derived from (runner, id), as
-- src/domain/environment-classes.ts derives it for later Signups.
INSERT INTO environment_classes (id, runner_id, organization_id, display_name, description, configuration, enabled, created_at, updated_at)
SELECT CASE WHEN c.value->>'id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
            THEN (c.value->>'id')::uuid
            ELSE md5(r.id::text || ':' || (c.value->>'id'))::uuid END,
       r.id, r.organization_id, COALESCE(c.value->>'displayName', ''), COALESCE(c.value->>'description', ''),
       COALESCE(c.value->'configuration', '[]'::jsonb), COALESCE((c.value->>'enabled')::boolean, false),
       COALESCE(r.signed_up_at, r.created_at), COALESCE(r.signed_up_at, r.created_at)
  FROM runners r, jsonb_array_elements(r.environment_classes) AS c(value)
ON CONFLICT (id) DO NOTHING;

ALTER TABLE runners DROP COLUMN environment_classes;

-- The runner secrets set with CreateRunner/UpdateRunner (metrics password, Honeycomb API key)
-- move under the same envelope encryption, bound to the runner id. Values stored in the plaintext
-- columns before this migration are sealed by the first server that starts with a secrets key
-- (src/domain/runner-registry.ts sealPlaintextSecrets: the key is not in the database, so SQL
-- cannot do it), which then empties the plaintext columns.
ALTER TABLE runners ADD COLUMN metrics_password_sealed bytea;
ALTER TABLE runners ADD COLUMN honeycomb_api_key_sealed bytea;

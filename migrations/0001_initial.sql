-- Identity: organizations, their users and the users' API keys.
CREATE TABLE organizations (
  id uuid PRIMARY KEY,
  slug text NOT NULL UNIQUE,
  name text NOT NULL,
  tier text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL
);

CREATE TABLE users (
  id uuid PRIMARY KEY,
  organization_id uuid NOT NULL REFERENCES organizations (id),
  email text NOT NULL,
  created_at timestamptz NOT NULL,
  UNIQUE (organization_id, email)
);

-- Secrets are stored only as SHA-256 hashes of the whole token.
CREATE TABLE api_keys (
  id uuid PRIMARY KEY,
  token_hash bytea NOT NULL UNIQUE,
  user_id uuid NOT NULL REFERENCES users (id),
  organization_id uuid NOT NULL REFERENCES organizations (id),
  description text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL,
  revoked_at timestamptz
);
CREATE INDEX api_keys_by_organization ON api_keys (organization_id, created_at);

-- Runners. Enum columns hold the gitpod.v1 enum numbers.
CREATE TABLE runners (
  id uuid PRIMARY KEY,
  organization_id uuid NOT NULL REFERENCES organizations (id),
  creator_id uuid, -- null for the system-created LOCAL_CONFIGURATION runner
  creator_principal smallint NOT NULL DEFAULT 0,
  name text NOT NULL,
  kind smallint NOT NULL,
  provider smallint NOT NULL,
  runner_manager_id uuid,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  deleted_at timestamptz,

  -- spec
  desired_phase smallint NOT NULL,
  variant smallint NOT NULL DEFAULT 0,
  region text NOT NULL DEFAULT '',
  release_channel smallint NOT NULL DEFAULT 0,
  auto_update boolean NOT NULL DEFAULT false,
  log_level smallint NOT NULL DEFAULT 0,
  devcontainer_image_cache_enabled boolean NOT NULL DEFAULT false,
  continuous_profiling boolean NOT NULL DEFAULT false,
  update_window_start smallint, -- both null: updates may happen at any time
  update_window_end smallint,
  metrics_enabled boolean NOT NULL DEFAULT false,
  metrics_url text NOT NULL DEFAULT '',
  metrics_username text NOT NULL DEFAULT '',
  metrics_password text NOT NULL DEFAULT '',
  metrics_managed_enabled boolean NOT NULL DEFAULT false,
  metrics_include_verbose boolean NOT NULL DEFAULT false,
  honeycomb_api_key text NOT NULL DEFAULT '',

  -- reported by the runner process (RunnerInteractionService)
  public_key bytea,
  environment_classes jsonb NOT NULL DEFAULT '[]',
  signed_up_at timestamptz,
  last_active_at timestamptz,
  status_reported_at timestamptz,
  status_version text NOT NULL DEFAULT '',
  status_system_details text NOT NULL DEFAULT '',
  status_log_url text NOT NULL DEFAULT '',
  status_region text NOT NULL DEFAULT '',
  status_llm_url text NOT NULL DEFAULT '',
  status_support_bundle_url text NOT NULL DEFAULT '',
  degradation_message text NOT NULL DEFAULT '',
  additional_info jsonb NOT NULL DEFAULT '[]',
  capabilities integer[] NOT NULL DEFAULT '{}',
  gateway_info jsonb
);
-- ListRunners walks this index: newest first, then id, live runners of one organization.
CREATE INDEX runners_listing ON runners (organization_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
-- Exactly one LOCAL_CONFIGURATION runner (kind 3) per organization.
CREATE UNIQUE INDEX runners_one_local_configuration ON runners (organization_id) WHERE kind = 3;

-- One-time exchange tokens: valid until expires_at and only while used_at is null.
CREATE TABLE runner_exchange_tokens (
  token_hash bytea PRIMARY KEY,
  runner_id uuid NOT NULL REFERENCES runners (id),
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);
CREATE INDEX runner_exchange_tokens_by_runner ON runner_exchange_tokens (runner_id);

CREATE TABLE runner_access_tokens (
  token_hash bytea PRIMARY KEY,
  runner_id uuid NOT NULL REFERENCES runners (id),
  created_at timestamptz NOT NULL,
  revoked_at timestamptz
);
CREATE INDEX runner_access_tokens_by_runner ON runner_access_tokens (runner_id);

-- Server-wide values every replica must agree on (e.g. the page-token signing key).
CREATE TABLE server_settings (
  key text PRIMARY KEY,
  value bytea NOT NULL
);

-- Who may do what: organization roles, groups and their members, and runner policies (a
-- group's role on one runner). The rules are in src/domain/access.ts.

-- Organization roles hold gitpod.v1.OrganizationRole numbers: 1 ADMIN, 2 MEMBER. Every user
-- that exists when this runs becomes an admin, so nobody loses access by upgrading. New users
-- are members unless the statement that creates them says otherwise (the first user of an
-- organization is made its admin: src/store/identity-store.ts).
ALTER TABLE users ADD COLUMN role smallint NOT NULL DEFAULT 1 CHECK (role IN (1, 2));
ALTER TABLE users ALTER COLUMN role SET DEFAULT 2;

CREATE TABLE groups (
  id uuid PRIMARY KEY,
  organization_id uuid NOT NULL REFERENCES organizations (id),
  name text NOT NULL,
  description text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  -- GetGroup finds a group by its name within the organization.
  UNIQUE (organization_id, name)
);
-- ListGroups walks this index: oldest first, then id.
CREATE INDEX groups_listing ON groups (organization_id, created_at, id);

CREATE TABLE group_memberships (
  id uuid PRIMARY KEY,
  group_id uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES users (id),
  created_at timestamptz NOT NULL,
  UNIQUE (group_id, user_id)
);
-- Authentication reads the groups of a user.
CREATE INDEX group_memberships_by_user ON group_memberships (user_id);
CREATE INDEX group_memberships_listing ON group_memberships (group_id, created_at, id);

-- A runner policy is also the group's role assignment on the runner (GroupService), with
-- its own id. role holds gitpod.v1.RunnerRole numbers: 1 ADMIN, 2 USER. Deleting a group
-- removes its policies; the runner falls back to "whole organization" when none are left.
CREATE TABLE runner_policies (
  id uuid NOT NULL UNIQUE,
  runner_id uuid NOT NULL REFERENCES runners (id),
  group_id uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
  organization_id uuid NOT NULL REFERENCES organizations (id),
  role smallint NOT NULL CHECK (role IN (1, 2)),
  created_at timestamptz NOT NULL,
  PRIMARY KEY (runner_id, group_id)
);
CREATE INDEX runner_policies_by_group ON runner_policies (group_id);
CREATE INDEX runner_policies_listing ON runner_policies (organization_id, created_at, id);

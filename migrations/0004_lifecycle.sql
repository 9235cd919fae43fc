-- What WorkOS tells authbridge about people and organizations (webhooks, the Events API, sign-in), kept where
-- InsForge's API cannot reach it, and the one check `todos` makes against it.
--
-- Everything lives in the private `authbridge` schema (the migrator creates it for its own bookkeeping, see
-- migrations/README.md). No API role (anon, authenticated, project_admin) gets USAGE on it or anything in it, so
-- even though InsForge makes every schema routable, a request through its records API can neither read nor write
-- these tables: only authbridge's own connection (DATABASE_URL) can.
--
-- Versions. Webhooks arrive in no guaranteed order and are retried for days, so every row remembers the version it
-- was written at: the WorkOS object's `updated_at`, then the event's `created_at`, then the event id. A write only
-- lands when its version is greater (a row comparison in the upsert itself, so two writers cannot interleave).
-- Rows written from WorkOS's REST API (at sign-in, or the consumer's reconciliation) have no event: their
-- `version_event_at` is -infinity and their `version_event_id` empty, so any event about the same object state wins.
--
-- Deletes are tombstones (`deleted_at` set, never removed): no later, retried or replayed event for that id can
-- bring the object back, because every upsert below skips a tombstoned row.

CREATE TABLE authbridge.users (
    id text PRIMARY KEY,
    email text,
    deleted_at timestamptz,
    version_updated_at timestamptz NOT NULL,
    version_event_at timestamptz NOT NULL,
    version_event_id text NOT NULL
);

COMMENT ON TABLE authbridge.users IS
    'WorkOS users authbridge has heard of. A deleted user keeps a tombstone (deleted_at) forever: todos RLS refuses them.';

CREATE TABLE authbridge.organizations (
    id text PRIMARY KEY,
    name text,
    deleted_at timestamptz,
    version_updated_at timestamptz NOT NULL,
    version_event_at timestamptz NOT NULL,
    version_event_id text NOT NULL
);

CREATE TABLE authbridge.organization_memberships (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    organization_id text NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'inactive', 'pending')),
    -- The membership's main role (WorkOS `role.slug`) and every role when several are enabled (`roles[].slug`).
    role text,
    role_slugs text[] NOT NULL DEFAULT '{}',
    directory_managed boolean NOT NULL DEFAULT false,
    deleted_at timestamptz,
    version_updated_at timestamptz NOT NULL,
    version_event_at timestamptz NOT NULL,
    version_event_id text NOT NULL
);

-- "The organizations of this user": /api/organizations on every request that asks.
CREATE INDEX organization_memberships_user_idx ON authbridge.organization_memberships (user_id);

-- Directory Sync users (SCIM). WorkOS links them to AuthKit users by email within the organization; authbridge uses
-- a directory user whose state is not `active` as a deny signal for that user's membership in that organization.
CREATE TABLE authbridge.directory_users (
    id text PRIMARY KEY,
    directory_id text,
    organization_id text,
    email text,
    state text NOT NULL,
    deleted_at timestamptz,
    version_updated_at timestamptz NOT NULL,
    version_event_at timestamptz NOT NULL,
    version_event_id text NOT NULL
);

CREATE INDEX directory_users_organization_email_idx ON authbridge.directory_users (organization_id, lower(email));

-- Sessions that have ended before their access tokens did (WorkOS `session.revoked`, or a sign-out here). Checked
-- on every signed-in request, by every replica.
CREATE TABLE authbridge.revoked_sessions (
    id text PRIMARY KEY,
    user_id text,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    -- 'event' (a WorkOS event, either channel) or 'sign_out' (this app).
    source text NOT NULL,
    version_updated_at timestamptz NOT NULL,
    version_event_at timestamptz NOT NULL,
    version_event_id text NOT NULL
);

-- The idempotency ledger: every event id authbridge has seen, from either channel, recorded in the same
-- transaction as its effect. A second delivery (a webhook retry, the same event through the Events API, a replayed
-- page) finds its id here and changes nothing.
CREATE TABLE authbridge.applied_events (
    id text PRIMARY KEY,
    event_type text NOT NULL,
    -- 'webhook' or 'events_api': which channel got there first.
    source text NOT NULL,
    -- 'applied', 'ignored' (an event type authbridge does not handle) or 'rejected' (a payload it cannot read).
    outcome text NOT NULL,
    event_created_at timestamptz,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX applied_events_applied_at_idx ON authbridge.applied_events (applied_at);

-- Where the Events API consumer is: the id of the last event it applied (advanced in the same transaction as that
-- event), and that event's time, to resume with `range_start` should WorkOS ever refuse the cursor. One row.
CREATE TABLE authbridge.events_cursor (
    id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    after_event_id text,
    last_event_at timestamptz,
    -- When the consumer first reconciled from the REST API, so it can start reading events from shortly before it.
    reconciled_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Nothing for the API roles, said explicitly: some installations hand PUBLIC or the API roles privileges through
-- default privileges.
REVOKE ALL ON ALL TABLES IN SCHEMA authbridge FROM PUBLIC;
REVOKE ALL ON SCHEMA authbridge FROM PUBLIC;
DO $$
DECLARE
    api_role text;
BEGIN
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated', 'project_admin'] LOOP
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA authbridge FROM %I', api_role);
        EXECUTE format('REVOKE ALL ON SCHEMA authbridge FROM %I', api_role);
    END LOOP;
END
$$;

-- The database's own check, so a deleted user's queries are refused even if the app had a bug: true when the
-- requesting user (the token's `sub`) has been deleted at WorkOS.
--
-- SECURITY DEFINER, because `authenticated` may not read authbridge.users itself; the pinned search_path and the
-- schema-qualified names stop a caller from substituting objects of their own. It takes no argument, so nobody can
-- ask about another user. A deny-list: a user the tables have never heard of (a brand-new sign-up whose
-- `user.created` has not arrived) is not deprovisioned.
CREATE FUNCTION public.requesting_user_deprovisioned() RETURNS boolean
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT 1 FROM authbridge.users
        WHERE id = public.requesting_user_id() AND deleted_at IS NOT NULL
    )
$$;

COMMENT ON FUNCTION public.requesting_user_deprovisioned() IS
    'True when the requesting user (request.jwt.claims sub) has been deleted at WorkOS. Used by the todos policies.';

REVOKE ALL ON FUNCTION public.requesting_user_deprovisioned() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.requesting_user_deprovisioned() FROM anon;
GRANT EXECUTE ON FUNCTION public.requesting_user_deprovisioned() TO authenticated;

-- The todos policies gain the check. `(SELECT …)` makes PostgreSQL evaluate it once per statement, not per row.
ALTER POLICY todos_select_own ON public.todos
    USING (user_id = public.requesting_user_id() AND NOT (SELECT public.requesting_user_deprovisioned()));

ALTER POLICY todos_insert_own ON public.todos
    WITH CHECK (user_id = public.requesting_user_id() AND NOT (SELECT public.requesting_user_deprovisioned()));

ALTER POLICY todos_update_own ON public.todos
    USING (user_id = public.requesting_user_id() AND NOT (SELECT public.requesting_user_deprovisioned()))
    WITH CHECK (user_id = public.requesting_user_id() AND NOT (SELECT public.requesting_user_deprovisioned()));

ALTER POLICY todos_delete_own ON public.todos
    USING (user_id = public.requesting_user_id() AND NOT (SELECT public.requesting_user_deprovisioned()));

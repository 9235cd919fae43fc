-- Organizations: todos shared by the active members of an organization, decided by PostgreSQL.
--
-- InsForge hands PostgreSQL only `{sub, email, role}` of the token (request.jwt.claims): the WorkOS access token's
-- `org_id`, `role` and `permissions` never get here. So who belongs to which organization is read from the
-- lifecycle's own tables (0004: authbridge.organization_memberships and friends, kept current by webhooks, the
-- Events API and every sign-in), through SECURITY DEFINER functions that answer only about the requesting user. A
-- membership removed, deactivated or deprovisioned stops access on the very next query, even while an old access
-- token still names the organization.
--
-- Rules (organization_id NULL = a personal todo):
--   personal todos   as before: only their author, who is not deleted at WorkOS;
--   organization     seen, created, renamed and (un)completed by every active member; deleted by the author or an
--   todos            admin (role slug `admin`) of the organization, while still an active member.
-- Nobody can move a todo between spaces or hand it to someone else: `authenticated` may update only `title` and
-- `is_complete` (column privileges), so `user_id` and `organization_id` are fixed at insert.

ALTER TABLE public.todos ADD COLUMN organization_id text;

COMMENT ON COLUMN public.todos.organization_id IS
    'The WorkOS organization the todo is shared with (its active members see it), or NULL for a personal todo.';
COMMENT ON TABLE public.todos IS
    'Todos: personal ones (organization_id NULL) visible to their author only; organization ones to the organization''s active members (RLS).';

-- "The organization's todos, newest first".
CREATE INDEX todos_organization_id_created_at_idx ON public.todos (organization_id, created_at DESC, id DESC)
    WHERE organization_id IS NOT NULL;

-- The organizations the requesting user is an active member of: the same rule as `GET /api/organizations`
-- (src/lifecycle/store.rs `active_memberships`): membership not deleted and `active`, organization not deleted,
-- not deprovisioned by the organization's directory (directory users with the user's email, none of them active),
-- and the user not deleted. An array, so a policy asks once per statement, not once per row.
CREATE FUNCTION public.requesting_user_organization_ids() RETURNS text[]
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT m.organization_id), '{}')
    FROM authbridge.organization_memberships m
    LEFT JOIN authbridge.organizations o ON o.id = m.organization_id
    LEFT JOIN authbridge.users u ON u.id = m.user_id
    WHERE m.user_id = public.requesting_user_id()
      AND m.deleted_at IS NULL AND m.status = 'active'
      AND o.deleted_at IS NULL
      AND u.deleted_at IS NULL
      AND coalesce((
            SELECT bool_or(d.state = 'active' AND d.deleted_at IS NULL) FROM authbridge.directory_users d
            WHERE d.organization_id = m.organization_id AND lower(d.email) = lower(u.email)
          ), true)
$$;

COMMENT ON FUNCTION public.requesting_user_organization_ids() IS
    'The organizations the requesting user (request.jwt.claims sub) is an active member of now. Used by the todos policies.';

-- Those of them in which the user's membership carries the role slug `admin`.
CREATE FUNCTION public.requesting_user_admin_organization_ids() RETURNS text[]
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT m.organization_id), '{}')
    FROM authbridge.organization_memberships m
    WHERE m.user_id = public.requesting_user_id()
      AND m.deleted_at IS NULL AND m.status = 'active'
      AND (m.role = 'admin' OR 'admin' = ANY (m.role_slugs))
      AND m.organization_id = ANY (public.requesting_user_organization_ids())
$$;

COMMENT ON FUNCTION public.requesting_user_admin_organization_ids() IS
    'The organizations in which the requesting user is an active member with the role slug admin. Used by the todos delete policy.';

REVOKE ALL ON FUNCTION public.requesting_user_organization_ids() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.requesting_user_organization_ids() FROM anon;
GRANT EXECUTE ON FUNCTION public.requesting_user_organization_ids() TO authenticated;
REVOKE ALL ON FUNCTION public.requesting_user_admin_organization_ids() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.requesting_user_admin_organization_ids() FROM anon;
GRANT EXECUTE ON FUNCTION public.requesting_user_admin_organization_ids() TO authenticated;

-- The policies, replaced (same names, one per command, `authenticated` only). `(SELECT …)` makes PostgreSQL
-- evaluate each function once per statement.
ALTER POLICY todos_select_own ON public.todos
    USING (
        NOT (SELECT public.requesting_user_deprovisioned())
        AND CASE WHEN organization_id IS NULL THEN user_id = public.requesting_user_id()
                 ELSE organization_id = ANY ((SELECT public.requesting_user_organization_ids())::text[]) END
    );

ALTER POLICY todos_insert_own ON public.todos
    WITH CHECK (
        NOT (SELECT public.requesting_user_deprovisioned())
        AND user_id = public.requesting_user_id()
        AND (organization_id IS NULL OR organization_id = ANY ((SELECT public.requesting_user_organization_ids())::text[]))
    );

ALTER POLICY todos_update_own ON public.todos
    USING (
        NOT (SELECT public.requesting_user_deprovisioned())
        AND CASE WHEN organization_id IS NULL THEN user_id = public.requesting_user_id()
                 ELSE organization_id = ANY ((SELECT public.requesting_user_organization_ids())::text[]) END
    )
    WITH CHECK (
        NOT (SELECT public.requesting_user_deprovisioned())
        AND CASE WHEN organization_id IS NULL THEN user_id = public.requesting_user_id()
                 ELSE organization_id = ANY ((SELECT public.requesting_user_organization_ids())::text[]) END
    );

ALTER POLICY todos_delete_own ON public.todos
    USING (
        NOT (SELECT public.requesting_user_deprovisioned())
        AND CASE WHEN organization_id IS NULL THEN user_id = public.requesting_user_id()
                 ELSE organization_id = ANY ((SELECT public.requesting_user_organization_ids())::text[])
                      AND (user_id = public.requesting_user_id()
                           OR organization_id = ANY ((SELECT public.requesting_user_admin_organization_ids())::text[]))
            END
    );

-- Updates may touch the title and the completion only: the author and the space of a todo never change, whoever
-- asks (the WITH CHECK above would let a member re-point an organization todo's author otherwise).
REVOKE UPDATE ON TABLE public.todos FROM authenticated;
GRANT UPDATE (title, is_complete) ON TABLE public.todos TO authenticated;

-- What an impersonated session did: one row per request of a session WorkOS marked as impersonated (support staff
-- signed in as the user), whatever its outcome. Written by authbridge's own connection; never readable through
-- InsForge's API.
CREATE TABLE authbridge.impersonation_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    impersonator text NOT NULL,
    reason text,
    user_id text NOT NULL,
    session_id text,
    method text NOT NULL,
    path text NOT NULL,
    status smallint NOT NULL
);

CREATE INDEX impersonation_audit_user_at_idx ON authbridge.impersonation_audit (user_id, at);

-- Audit Log events for the customer, on their way to WorkOS (`POST /audit_logs/events`). A request writes its
-- event here and goes on; a background deliverer sends each row with its own Idempotency-Key, retrying with
-- backoff, so a WorkOS outage neither loses an event nor slows a request, and a resend after a lost answer is
-- recognised by WorkOS as the same event.
CREATE TABLE authbridge.audit_log_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key uuid NOT NULL UNIQUE,
    organization_id text NOT NULL,
    -- The `event` object exactly as it is sent, every attempt the same bytes.
    event jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    -- When the row may be tried (again); a deliverer that claims it moves this ahead, as a lease.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    -- WorkOS refused the event for good (a 4xx other than 408/409/429: e.g. an action not configured in the
    -- dashboard). Kept, not retried.
    failed_at timestamptz,
    last_error text
);

CREATE INDEX audit_log_outbox_due_idx ON authbridge.audit_log_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

REVOKE ALL ON ALL TABLES IN SCHEMA authbridge FROM PUBLIC;
DO $$
DECLARE
    api_role text;
BEGIN
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated', 'project_admin'] LOOP
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA authbridge FROM %I', api_role);
    END LOOP;
END
$$;

-- The three SECURITY DEFINER helpers of 0009 stop calling anything in `public`, and `authenticated` loses a schema
-- privilege it never needed.
--
-- Why: a definer function runs as its owner (since 0009, the role that runs the migrations, on self-hosted InsForge
-- the superuser), and the helpers read the requester's id through `public.requesting_user_id()`. InsForge makes
-- `project_admin` the owner of everything in `public` (docs/insforge.md §4.4), and the owner of a function may
-- replace it: through the admin key, the dashboard's SQL editor or the MCP raw SQL tool, `project_admin` could
-- have put its own code in that function and had the helpers run it with the migrating role's rights at the next
-- todo request. The helpers now read the claim through `authbridge_rls.requesting_user_id()`, a copy of the public
-- helper owned like them and callable by nobody else. (`public.requesting_user_id()` itself stays: the policies and
-- the `user_id` default call it as the requesting role, which gains nothing from a replaced body.)
--
-- And: the policies refer to the helpers themselves, not to their names, and inside a definer function names are
-- looked up as the owner, so `authenticated` needs EXECUTE on the three helpers but no USAGE on their schema.
-- Without it they cannot be called by name through InsForge's API (which exposes every schema) either.

CREATE OR REPLACE FUNCTION authbridge_rls.requesting_user_id() RETURNS text
    LANGUAGE sql
    STABLE
AS $$
    SELECT NULLIF(NULLIF(current_setting('request.jwt.claims', true), '')::json ->> 'sub', '')::text
$$;

REVOKE ALL ON FUNCTION authbridge_rls.requesting_user_id() FROM PUBLIC;

CREATE OR REPLACE FUNCTION authbridge_rls.requesting_user_deprovisioned() RETURNS boolean
    LANGUAGE plpgsql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM authbridge.users
        WHERE id = (SELECT authbridge_rls.requesting_user_id()) AND deleted_at IS NOT NULL
    );
END
$$;

CREATE OR REPLACE FUNCTION authbridge_rls.requesting_user_organization_ids() RETURNS text[]
    LANGUAGE plpgsql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(DISTINCT m.organization_id), '{}')
        FROM authbridge.organization_memberships m
        LEFT JOIN authbridge.organizations o ON o.id = m.organization_id
        LEFT JOIN authbridge.users u ON u.id = m.user_id
        WHERE m.user_id = (SELECT authbridge_rls.requesting_user_id())
          AND m.deleted_at IS NULL AND m.status = 'active'
          AND o.deleted_at IS NULL
          AND u.deleted_at IS NULL
          AND coalesce((
                SELECT bool_or(d.state = 'active' AND d.deleted_at IS NULL) FROM authbridge.directory_users d
                WHERE d.organization_id = m.organization_id AND lower(d.email) = lower(u.email)
              ), true)
    );
END
$$;

CREATE OR REPLACE FUNCTION authbridge_rls.requesting_user_admin_organization_ids() RETURNS text[]
    LANGUAGE plpgsql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(DISTINCT m.organization_id), '{}')
        FROM authbridge.organization_memberships m
        WHERE m.user_id = (SELECT authbridge_rls.requesting_user_id())
          AND m.deleted_at IS NULL AND m.status = 'active'
          AND (m.role = 'admin' OR 'admin' = ANY (m.role_slugs))
          AND m.organization_id = ANY (authbridge_rls.requesting_user_organization_ids())
    );
END
$$;

REVOKE USAGE ON SCHEMA authbridge_rls FROM authenticated;

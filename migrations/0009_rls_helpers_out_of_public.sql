-- The three SECURITY DEFINER helpers the todos policies call move out of `public` into a schema of their own,
-- `authbridge_rls`. What each answers, its grants, definer and pinned search_path are unchanged.
--
-- Why: InsForge hands every table and function in `public` that `project_admin` does not own to `project_admin`:
-- once in its migration 063 and again after every DDL statement run through its unrestricted SQL endpoint (the
-- dashboard's SQL editor, the MCP server's raw SQL tool). A SECURITY DEFINER function runs as its owner, and
-- `project_admin` has no USAGE on the private `authbridge` schema (0004 revokes it on purpose), so after an
-- operator's first `CREATE TABLE` in the SQL editor every policy check failed with "permission denied for schema
-- authbridge" and every todo request with it. InsForge sweeps `public` only.
--
-- The policies refer to the functions themselves, not to their names, so moving them changes no policy. Calling
-- them by name (as `requesting_user_admin_organization_ids()` calls the membership helper) needs USAGE on the new
-- schema, given to `authenticated` only; the schema holds nothing but these three functions.

CREATE SCHEMA IF NOT EXISTS authbridge_rls;
REVOKE ALL ON SCHEMA authbridge_rls FROM PUBLIC;
GRANT USAGE ON SCHEMA authbridge_rls TO authenticated;

-- On a database InsForge has already swept, the functions belong to `project_admin`: they come back to the role
-- that runs the migrations (the owner that created them), so that they read `authbridge` as before.
ALTER FUNCTION public.requesting_user_deprovisioned() OWNER TO CURRENT_USER;
ALTER FUNCTION public.requesting_user_organization_ids() OWNER TO CURRENT_USER;
ALTER FUNCTION public.requesting_user_admin_organization_ids() OWNER TO CURRENT_USER;

ALTER FUNCTION public.requesting_user_deprovisioned() SET SCHEMA authbridge_rls;
ALTER FUNCTION public.requesting_user_organization_ids() SET SCHEMA authbridge_rls;
ALTER FUNCTION public.requesting_user_admin_organization_ids() SET SCHEMA authbridge_rls;

-- The one body that named another helper by its old place.
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
        WHERE m.user_id = (SELECT public.requesting_user_id())
          AND m.deleted_at IS NULL AND m.status = 'active'
          AND (m.role = 'admin' OR 'admin' = ANY (m.role_slugs))
          AND m.organization_id = ANY (authbridge_rls.requesting_user_organization_ids())
    );
END
$$;

-- `authbridge_rls.requesting_user_id()` resolves its names in `pg_catalog` only, whatever the caller's search_path.
--
-- Why: 0011 wrote it as a plain SQL function, which PostgreSQL inlines into the policies and the `user_id` default
-- that call it (0014), and the names in its body (`current_setting`, `json`, the `->>` and `=` operators) were then
-- looked up with the *requesting* session's search_path. Where that path lists `public` before `pg_catalog` (a
-- PostgREST `db-extra-search-path`, a role's default), a function or operator that `project_admin` put in `public`
-- (which InsForge makes it the owner of, docs/insforge.md §4.4) could answer another user's id, which is what 0014
-- set out to prevent. Now the path is pinned (which also stops the inlining: the policies evaluate it once per
-- statement, so that costs nothing measurable) and the names are written with their schema.

CREATE OR REPLACE FUNCTION authbridge_rls.requesting_user_id() RETURNS text
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NULLIF(NULLIF(pg_catalog.current_setting('request.jwt.claims', true), '')::pg_catalog.json ->> 'sub', '')
$$;

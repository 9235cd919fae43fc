-- The three database roles InsForge's API switches to for each request.
--
-- InsForge creates them itself, so on a real InsForge database every statement below is a no-op. A bare
-- PostgreSQL (the tests, `authbridge demo`) has none of them, and the policies and grants of the next migrations
-- need them to exist. Roles are cluster-wide, not per database: several databases of one cluster may run this
-- migration at the same moment, so "already exists" from a concurrent CREATE ROLE is caught rather than checked
-- beforehand only.
--
-- anon, authenticated: NOLOGIN, nobody connects as them; the API does `SET ROLE` inside its own connection.
-- project_admin: what InsForge's admin API key (`ik_…`) runs as. InsForge gives it BYPASSRLS, so we do too when
-- we create it; we never alter a role that already exists.

DO $$
DECLARE
    wanted record;
BEGIN
    FOR wanted IN
        SELECT * FROM (VALUES
            ('anon', 'NOLOGIN'),
            ('authenticated', 'NOLOGIN'),
            ('project_admin', 'NOLOGIN BYPASSRLS')
        ) AS r(name, options)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = wanted.name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I %s', wanted.name, wanted.options);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                -- Another database of this cluster created it between our check and our CREATE.
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

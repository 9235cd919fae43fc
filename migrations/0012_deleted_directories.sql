-- Directories deleted at WorkOS (`dsync.deleted`). A deleted directory vouches for nobody: its users' `active` rows
-- are removed in the same transaction as this record, and a late event saying one of them is active is not
-- recorded. What it said against someone (a user `inactive`, `suspended` or deleted) stays: deleting a directory
-- (to change identity provider, say) must not give back access it had taken away, and WorkOS leaves the
-- organization's memberships as they were.
CREATE TABLE authbridge.deleted_directories (
    id text PRIMARY KEY,
    organization_id text,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    version_event_id text NOT NULL
);

-- Nothing for the API roles, said explicitly (default privileges may hand them some).
REVOKE ALL ON TABLE authbridge.deleted_directories FROM PUBLIC;
DO $$
DECLARE
    api_role text;
BEGIN
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated', 'project_admin'] LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON TABLE authbridge.deleted_directories FROM %I', api_role);
    END LOOP;
END
$$;

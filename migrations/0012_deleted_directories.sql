-- Directories deleted at WorkOS (`dsync.deleted`). A deleted directory no longer speaks for anyone: its users' rows
-- are removed in the same transaction as this record, so the deny rule (a directory user not `active`) stops
-- applying to them, and a late event about one of its users is not recorded. Access then follows the organization
-- membership alone, as it does for an organization that never used Directory Sync.
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

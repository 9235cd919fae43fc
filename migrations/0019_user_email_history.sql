-- A directory's denial follows the person through a change of email address at WorkOS.
--
-- Why: WorkOS links a directory user to a user by email, and 0017's rule compared the directory users with the
-- user's *current* address only. A `user.updated` with a new address (a company renaming its domain, an admin
-- correcting a typo) while WorkOS left the membership active (no directory provisioning) matched no directory user
-- any more, and the membership the directory had taken away came back, in the app and in RLS.
--
-- Now every address a user has had, as far as the lifecycle has been told (each event about them, whether or not it
-- was newer than what was stored, and each sign-in), is kept in `authbridge.user_email_history` (written by the app,
-- `store::record_user_email`), and a directory user with any of those addresses may deny the membership. Only one
-- with the user's current address may vouch for it (be the active directory user that outweighs a denial): an old
-- address WorkOS or the directory has since given to someone else (a new hire) must not give a deprovisioned
-- person their organization back. With the current address only, the rule is exactly 0017's.

CREATE TABLE authbridge.user_email_history (
    user_id text NOT NULL,
    -- Lower-cased, as the rule compares addresses.
    email text NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, email)
);

-- Nothing for the API roles, said explicitly (default privileges may hand them some).
REVOKE ALL ON TABLE authbridge.user_email_history FROM PUBLIC;
DO $$
DECLARE
    api_role text;
BEGIN
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated', 'project_admin'] LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON TABLE authbridge.user_email_history FROM %I', api_role);
    END LOOP;
END
$$;

-- The addresses known until now: the current ones (earlier ones were overwritten and are lost).
INSERT INTO authbridge.user_email_history (user_id, email)
SELECT id, lower(email) FROM authbridge.users WHERE email IS NOT NULL
ON CONFLICT DO NOTHING;

-- 0017's rule, with the member's directory users found by every address they have had to deny, and by their current
-- address only to vouch. CREATE OR REPLACE keeps its owner and grants (none for any API role).
CREATE OR REPLACE FUNCTION authbridge.active_organization_ids(member_id text) RETURNS text[]
    LANGUAGE plpgsql
    STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(DISTINCT m.organization_id), '{}')
        FROM authbridge.organization_memberships m
        LEFT JOIN authbridge.organizations o ON o.id = m.organization_id
        LEFT JOIN authbridge.users u ON u.id = m.user_id
        WHERE m.user_id = member_id
          AND m.deleted_at IS NULL AND m.status = 'active'
          AND o.deleted_at IS NULL
          AND u.deleted_at IS NULL
          -- Denied: a directory user with one of the member's addresses is not active and stopped being active no
          -- earlier than the membership last turned active (an unknown time on either side counts: a membership
          -- from before 0015, with no `active_since`, or a row not active with no `denied_since`, which the app
          -- never writes: failing closed)...
          AND NOT (
                EXISTS (
                    SELECT 1
                    FROM authbridge.directory_users d
                    WHERE d.organization_id = m.organization_id
                      AND lower(d.email) IN (SELECT h.email FROM authbridge.user_email_history h
                                             WHERE h.user_id = m.user_id
                                             UNION ALL SELECT lower(u.email))
                      AND NOT (d.state = 'active' AND d.deleted_at IS NULL)
                      AND coalesce(d.denied_since >= m.active_since, true)
                )
                -- ... unless a directory user with their current address is active.
                AND NOT EXISTS (
                    SELECT 1
                    FROM authbridge.directory_users d
                    WHERE d.organization_id = m.organization_id
                      AND lower(d.email) = lower(u.email)
                      AND d.state = 'active' AND d.deleted_at IS NULL
                )
              )
    );
END
$$;

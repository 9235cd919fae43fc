-- A directory's denial follows the person through a change of email address at WorkOS.
--
-- Why: WorkOS links a directory user to a user by email, and 0017's rule compared the directory users with the
-- user's *current* address only. A `user.updated` with a new address (a company renaming its domain, an admin
-- correcting a typo) while WorkOS left the membership active (no directory provisioning) matched no directory user
-- any more, and the membership the directory had taken away came back, in the app and in RLS.
--
-- Now every address a user has had, as far as the lifecycle has seen them (events, sign-ins), is kept in
-- `authbridge.user_email_history`, written by a trigger on `authbridge.users` so that no writer can forget it, and
-- the rule compares the directory users with all of them. Comparing with more addresses can only deny more (a
-- directory user who is active still vouches, as before): an address WorkOS later gives to someone else denies them
-- too, until the directory says the new holder is active, which fails closed.

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

CREATE FUNCTION authbridge.users_record_email() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.email IS NOT NULL THEN
        INSERT INTO authbridge.user_email_history (user_id, email)
        VALUES (NEW.id, lower(NEW.email))
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION authbridge.users_record_email() FROM PUBLIC;

CREATE TRIGGER users_record_email
    AFTER INSERT OR UPDATE OF email ON authbridge.users
    FOR EACH ROW
    EXECUTE FUNCTION authbridge.users_record_email();

-- The addresses known until now: the current ones (earlier ones were overwritten and are lost).
INSERT INTO authbridge.user_email_history (user_id, email)
SELECT id, lower(email) FROM authbridge.users WHERE email IS NOT NULL
ON CONFLICT DO NOTHING;

-- 0017's rule, with the directory users of the organization compared with every address the member has had.
-- CREATE OR REPLACE keeps its owner and grants (none for any API role).
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
          -- An unknown time on either side counts as denied: a membership from before 0015 (no `active_since`),
          -- or a row not active with no `denied_since` (which the app never writes): failing closed.
          AND NOT coalesce((
                SELECT NOT bool_or(d.state = 'active' AND d.deleted_at IS NULL)
                       AND bool_or(coalesce(d.denied_since >= m.active_since, true))
                FROM authbridge.directory_users d
                WHERE d.organization_id = m.organization_id
                  AND lower(d.email) IN (SELECT h.email FROM authbridge.user_email_history h
                                         WHERE h.user_id = m.user_id)
              ), false)
    );
END
$$;

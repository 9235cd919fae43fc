-- A directory's denial is dated by when the directory user stopped being active, not by their latest change; and
-- the membership rule is one function, `authbridge.active_organization_ids()`, which the RLS helper and the app
-- both call.
--
-- Why: 0015 let a directory denial count only when the directory user's own change was at least as recent as the
-- moment the membership turned active (`active_since`), and took the directory user's `updated_at` from any change.
-- That was wrong both ways. (a) For `dsync.user.deleted`, that time is the deleted payload's `updated_at`, which
-- WorkOS does not document as moving forward on deletion: an active directory user created before the membership
-- and then hard-deleted with an unchanged `updated_at` denied nothing, so a deprovisioned person kept access (before
-- 0015 a deletion always denied). (b) Any later change to a directory user who was already inactive (an attribute
-- sync, a group removal, WorkOS deleting inactive users) counted as a new denial, taking back a membership an admin
-- had reactivated at WorkOS after the denial.
--
-- `denied_since` is set when a directory user goes from active (or unknown) to not active, or is deleted while
-- active: to the later of its `updated_at` and the event's `created_at` (a deletion event is created when the
-- deletion happens, whatever the payload's `updated_at` says). It is kept through other changes of a row already
-- denying, and cleared when the directory user is active again (written by the app, `store::upsert_directory_user`
-- and `store::tombstone_directory_user`). A denial counts when `denied_since >= active_since`.
--
-- Rows stored before: a directory user deleted while active has as its version the deletion event itself, so its
-- denial dates from that event, as it would now. For an inactive one, when it stopped being active is unknown: its
-- last change is the best date there is (what 0015 compared), so those rows deny exactly as before.

ALTER TABLE authbridge.directory_users ADD COLUMN denied_since timestamptz;

UPDATE authbridge.directory_users
SET denied_since = CASE WHEN state = 'active' THEN greatest(version_updated_at, version_event_at)
                        ELSE version_updated_at END
WHERE state <> 'active' OR deleted_at IS NOT NULL;

-- The organizations a user is an active member of, by the lifecycle's tables: the membership not deleted and
-- `active`, its organization not deleted, the user not deleted, and the organization's directory not denying it.
-- The directory rule: the directory users of that organization with the person's email (WorkOS links them by email)
-- deny the membership when there are some, none of them is active, and one of them stopped being active no earlier
-- than the membership last turned active (a membership with no known `active_since`, recorded before 0015, is denied
-- by any of them). One copy for RLS and the app, so that the two cannot drift apart.
--
-- Not a definer and granted to no API role: RLS reaches it through `authbridge_rls.requesting_user_organization_ids()`
-- (which runs as the owner), the app through its own connection (the owner). PL/pgSQL, as the helpers (0008), so
-- that a pooled connection keeps its plan: RLS calls it once per statement.
CREATE FUNCTION authbridge.active_organization_ids(member_id text) RETURNS text[]
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
                WHERE d.organization_id = m.organization_id AND lower(d.email) = lower(u.email)
              ), false)
    );
END
$$;

REVOKE ALL ON FUNCTION authbridge.active_organization_ids(text) FROM PUBLIC, anon, authenticated, project_admin;

-- Same definer, pinned search_path, owner and grants (CREATE OR REPLACE keeps them); the answer is the rule above
-- for the requesting user.
CREATE OR REPLACE FUNCTION authbridge_rls.requesting_user_organization_ids() RETURNS text[]
    LANGUAGE plpgsql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN authbridge.active_organization_ids((SELECT authbridge_rls.requesting_user_id()));
END
$$;

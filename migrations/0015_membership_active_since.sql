-- A membership WorkOS made active again after a directory denied its person is no longer denied by that directory.
--
-- Why: a directory user who is inactive, suspended or deleted denies the person's membership in that organization
-- (0004), as long as no active directory user shares their email. That stays right for a membership WorkOS has not
-- touched since (the point of the rule: the directory's word takes effect at once). But an admin who re-adds or
-- reactivates the membership at WorkOS afterwards (after the directory was deleted, say) is the later word: WorkOS
-- then says active, and before this migration authbridge kept hiding the organization, and RLS its data, for good.
--
-- `active_since` is the WorkOS `updated_at` at which the membership last turned active (written by the app when a
-- membership is recorded as active, or changes to active from another status; kept through other changes, such as
-- a role, so that those do not lift a denial; NULL while not active). A directory denial counts only when the
-- directory user's own change is at least as recent. Rows recorded before this migration have NULL (when they
-- turned active is unknown): any denial holds for them, as before, until WorkOS changes their status again.

ALTER TABLE authbridge.organization_memberships ADD COLUMN active_since timestamptz;

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
          -- Denied: directory users with the person's email, none of them active, one of them changed no earlier
          -- than the membership turned active. The same rule as `store::active_memberships`.
          AND NOT coalesce((
                SELECT NOT bool_or(d.state = 'active' AND d.deleted_at IS NULL)
                       AND bool_or(m.active_since IS NULL OR d.version_updated_at >= m.active_since)
                FROM authbridge.directory_users d
                WHERE d.organization_id = m.organization_id AND lower(d.email) = lower(u.email)
              ), false)
    );
END
$$;

-- The `todos` policies and the `user_id` default read the requester's id through `authbridge_rls.requesting_user_id()`,
-- no longer `public.requesting_user_id()`. Who may do what is unchanged (the same four policies as 0007).
--
-- Why: InsForge makes `project_admin` the owner of everything in `public` (docs/insforge.md §4.4), and the owner of
-- a function may replace its body. A `public.requesting_user_id()` rewritten to answer another id (read from a
-- request header, say), by a careless operator's SQL or a leaked admin key, would let any signed-in user act as
-- anyone, through policies that call it as the requesting role. The copy in `authbridge_rls` (0011) is beyond
-- InsForge's sweep. (After the sweep `project_admin` owns `public.todos` itself, and could alter these policies:
-- whoever holds the admin key is trusted as the table's owner; this only takes away the quiet way in.) `authenticated` gets EXECUTE on it (policies and defaults run as the requesting role, and hold the function
-- itself, so no USAGE on the schema is needed). `public.requesting_user_id()` stays for operators' own policies, as
-- InsForge's guides use it.

GRANT EXECUTE ON FUNCTION authbridge_rls.requesting_user_id() TO authenticated;

ALTER TABLE public.todos ALTER COLUMN user_id SET DEFAULT authbridge_rls.requesting_user_id();

ALTER POLICY todos_select_own ON public.todos
    USING (
        NOT (SELECT authbridge_rls.requesting_user_deprovisioned())
        AND (
            (organization_id IS NULL AND user_id = (SELECT authbridge_rls.requesting_user_id()))
            OR organization_id = ANY ((SELECT authbridge_rls.requesting_user_organization_ids())::text[])
        )
    );

ALTER POLICY todos_insert_own ON public.todos
    WITH CHECK (
        NOT (SELECT authbridge_rls.requesting_user_deprovisioned())
        AND user_id = (SELECT authbridge_rls.requesting_user_id())
        AND (
            organization_id IS NULL
            OR organization_id = ANY ((SELECT authbridge_rls.requesting_user_organization_ids())::text[])
        )
    );

ALTER POLICY todos_update_own ON public.todos
    USING (
        NOT (SELECT authbridge_rls.requesting_user_deprovisioned())
        AND (
            (organization_id IS NULL AND user_id = (SELECT authbridge_rls.requesting_user_id()))
            OR organization_id = ANY ((SELECT authbridge_rls.requesting_user_organization_ids())::text[])
        )
    )
    WITH CHECK (
        NOT (SELECT authbridge_rls.requesting_user_deprovisioned())
        AND (
            (organization_id IS NULL AND user_id = (SELECT authbridge_rls.requesting_user_id()))
            OR organization_id = ANY ((SELECT authbridge_rls.requesting_user_organization_ids())::text[])
        )
    );

ALTER POLICY todos_delete_own ON public.todos
    USING (
        NOT (SELECT authbridge_rls.requesting_user_deprovisioned())
        AND (
            (organization_id IS NULL AND user_id = (SELECT authbridge_rls.requesting_user_id()))
            OR (
                organization_id = ANY ((SELECT authbridge_rls.requesting_user_organization_ids())::text[])
                AND (
                    user_id = (SELECT authbridge_rls.requesting_user_id())
                    OR organization_id = ANY ((SELECT authbridge_rls.requesting_user_admin_organization_ids())::text[])
                )
            )
        )
    );

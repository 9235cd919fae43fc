-- What an end user sets on a todo: its id (authbridge chooses one, so that a create InsForge sends twice meets its
-- own row), title, completion and space. Never its author (the default: the token's `sub`) and never its times
-- (the database's clock): until now INSERT was granted on every column, so a member could pin a todo to the top
-- of an organization's list for good with a `created_at` in the far future.
REVOKE INSERT ON TABLE public.todos FROM authenticated;
GRANT INSERT (id, title, is_complete, organization_id) ON TABLE public.todos TO authenticated;

-- The same rule once more in a trigger, which holds whatever the grants become: InsForge has granted every table
-- in `public` to its roles wholesale before (docs/insforge.md), which would give table-wide INSERT and UPDATE
-- back, and the update policy alone does not pin an organization todo's author. Only `authenticated` is held to
-- it; the admin key (`project_admin`) and the migrating role may still correct anything.
CREATE FUNCTION authbridge_rls.todos_keep_what_users_may_not_set() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_user <> 'authenticated' THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        NEW.created_at := now();
        NEW.updated_at := NEW.created_at;
    ELSIF NEW.id IS DISTINCT FROM OLD.id
        OR NEW.user_id IS DISTINCT FROM OLD.user_id
        OR NEW.organization_id IS DISTINCT FROM OLD.organization_id
        OR NEW.created_at IS DISTINCT FROM OLD.created_at
    THEN
        RAISE EXCEPTION 'a todo''s id, author, space and creation time cannot be changed'
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;

REVOKE ALL ON FUNCTION authbridge_rls.todos_keep_what_users_may_not_set() FROM PUBLIC;

CREATE TRIGGER todos_keep_what_users_may_not_set
    BEFORE INSERT OR UPDATE ON public.todos
    FOR EACH ROW
    EXECUTE FUNCTION authbridge_rls.todos_keep_what_users_may_not_set();

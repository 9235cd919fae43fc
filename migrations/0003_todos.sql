-- The todos table, locked down by row-level security in the same migration that creates it.
--
-- On InsForge, default privileges grant every new table in `public` to anon, authenticated and project_admin:
-- a table that exists for even one moment without RLS is readable and writable by every signed-in user (and by
-- anyone holding the anon key). So the table, RLS, its policies and its grants are created together, in one
-- transaction.

CREATE TABLE public.todos (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Filled from the token by default, so clients never send it; the policies below refuse any other value.
    user_id text NOT NULL DEFAULT public.requesting_user_id(),
    title text NOT NULL,
    is_complete boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- The same rule as `Title::parse` in src/todo.rs: 1 to 500 characters once surrounding whitespace is removed.
    -- The set trimmed here is Unicode's White_Space property, which is what Rust's `str::trim` removes, so a
    -- title is valid in the app exactly when it is valid here. char_length counts characters, not bytes.
    CONSTRAINT todos_title_length CHECK (
        char_length(btrim(title, E' \t\n\v\f\r\u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000'))
            BETWEEN 1 AND 500
    )
);

COMMENT ON TABLE public.todos IS 'Per-user todos. Every row is visible only to the user whose id is in user_id (RLS).';

-- "My todos, newest first" is the only list query: equality on user_id (from the RLS policy), then the order
-- the client asks for (created_at desc, id desc).
CREATE INDEX todos_user_id_created_at_idx ON public.todos (user_id, created_at DESC, id DESC);

-- updated_at is maintained by the database, so no client can forget it or forge it.
CREATE OR REPLACE FUNCTION public.todos_set_updated_at() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER todos_set_updated_at
    BEFORE UPDATE ON public.todos
    FOR EACH ROW
    EXECUTE FUNCTION public.todos_set_updated_at();

-- Row-level security: one policy per command, all for the end-user role only, all keyed on the token's `sub`.
-- `WITH CHECK` on insert and update means nobody can create a row owned by someone else or hand a row over to
-- another user. A row that a policy hides is simply not there: updates and deletes of it match nothing.
ALTER TABLE public.todos ENABLE ROW LEVEL SECURITY;

CREATE POLICY todos_select_own ON public.todos
    FOR SELECT TO authenticated
    USING (user_id = public.requesting_user_id());

CREATE POLICY todos_insert_own ON public.todos
    FOR INSERT TO authenticated
    WITH CHECK (user_id = public.requesting_user_id());

CREATE POLICY todos_update_own ON public.todos
    FOR UPDATE TO authenticated
    USING (user_id = public.requesting_user_id())
    WITH CHECK (user_id = public.requesting_user_id());

CREATE POLICY todos_delete_own ON public.todos
    FOR DELETE TO authenticated
    USING (user_id = public.requesting_user_id());

-- Grants. InsForge's default privileges have already granted this new table to anon (and PUBLIC may hold
-- privileges on some installations), so "anon gets nothing" has to be said explicitly.
REVOKE ALL ON TABLE public.todos FROM PUBLIC;
REVOKE ALL ON TABLE public.todos FROM anon;

-- authenticated is the only end-user role with access; RLS above limits it to the user's own rows.
REVOKE ALL ON TABLE public.todos FROM authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.todos TO authenticated;

-- project_admin is not an end user: it is the operator's admin API key (`ik_…`), which InsForge gives BYPASSRLS
-- precisely so the project owner can see all data. BYPASSRLS skips policies but not privileges, so without this
-- grant the admin key could not read the table at all. Granting it keeps InsForge's own model (the admin sees
-- everything) without giving any end-user role more than its own rows.
REVOKE ALL ON TABLE public.todos FROM project_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.todos TO project_admin;

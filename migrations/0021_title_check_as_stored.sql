-- A todo's title is written as the app stores it: `Title::parse`'s output, no more.
--
-- Why: the title check (0010) trims a title before measuring it and checks nothing else, so a write that bypassed
-- the app (any holder of an `authenticated` token) could store 50 MB of leading spaces before one letter, control
-- characters (ESC sequences, U+0085…), or a title of only zero-width spaces or direction marks, which the pages
-- would then show to every member of an organization. The rule for a title as written:
--
-- - no surrounding White_Space (Rust's `str::trim`, the same set as 0010's);
-- - 1 to 500 characters;
-- - no control character (Unicode Cc) but tab, line feed and carriage return (NUL cannot be in text anyway);
-- - at least one character that is neither White_Space nor one that shows nothing (`todo::shows_nothing`: Unicode's
--   Default_Ignorable_Code_Point, the blank Braille pattern, the interlinear annotation controls). The same list is
--   in `src/todo.rs`: change both (a test compares them character by character).
--
-- A trigger on inserts and on updates that set the title, not a CHECK constraint: PostgreSQL checks a constraint
-- on every update of a row, whatever column changes, and titles the app itself accepted before (control characters
-- until 2026-11-27, invisible-only titles until 2026-11-28) would then make their todos impossible to mark done.
-- Those rows stay as they are, can be completed, reopened and deleted, and are checked when renamed. 0010's check
-- stays. For every role (the admin key, too): nobody needs to write a title the app cannot show.

CREATE FUNCTION authbridge_rls.title_as_stored(title text) RETURNS boolean
    LANGUAGE sql
    IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT title = btrim(title, E' \t\n\x0B\f\r\u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000')
        AND char_length(title) BETWEEN 1 AND 500
        AND title !~ '[\u0001-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]'
        AND title ~ '[^\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFF8\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0000-\U000E0FFF\u2800\uFFF9-\uFFFB]'
$$;

REVOKE ALL ON FUNCTION authbridge_rls.title_as_stored(text) FROM PUBLIC;

-- A definer, so that the requesting role needs no right on `authbridge_rls` (0011 took its USAGE away); it only
-- reads the row it is given.
CREATE FUNCTION authbridge_rls.todos_title_as_stored() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT authbridge_rls.title_as_stored(NEW.title) THEN
        RAISE EXCEPTION 'a todo''s title must be trimmed, 1 to 500 characters, without control characters, and show something'
            USING ERRCODE = 'check_violation', TABLE = 'todos', COLUMN = 'title';
    END IF;
    RETURN NEW;
END
$$;

REVOKE ALL ON FUNCTION authbridge_rls.todos_title_as_stored() FROM PUBLIC;

CREATE TRIGGER todos_title_as_stored
    BEFORE INSERT OR UPDATE OF title ON public.todos
    FOR EACH ROW
    EXECUTE FUNCTION authbridge_rls.todos_title_as_stored();

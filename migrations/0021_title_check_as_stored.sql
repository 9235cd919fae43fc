-- The title check accepts exactly the titles the app stores: `Title::parse`'s output, no more.
--
-- Why: 0010's check trimmed the title before measuring it, and checked nothing else, so a write that bypassed the
-- app (any holder of an `authenticated` token) could store 50 MB of leading spaces before one letter, control
-- characters (ESC sequences, U+0085…), or a title of only zero-width spaces or direction marks, all of which the
-- app refuses and which the pages would then show to every member of an organization. The app always stores the
-- trimmed title, so the database now asks for the title as stored:
--
-- - no surrounding White_Space (Rust's `str::trim`, the same set as 0010's);
-- - 1 to 500 characters;
-- - no control character (Unicode Cc) but tab, line feed and carriage return (NUL cannot be in text anyway);
-- - at least one character that is neither White_Space nor one that shows nothing (`todo::shows_nothing`: Unicode's
--   Default_Ignorable_Code_Point, the blank Braille pattern, the interlinear annotation controls).
--
-- A test (`tests/api/migrations.rs`) checks that the database accepts a title exactly when `Title::parse` returns
-- it unchanged. NOT VALID, as 0010: rows already stored are not re-read (one that only the old check let in must
-- not stop the migration; it can still be deleted); every insert and update from now on is checked.

ALTER TABLE public.todos DROP CONSTRAINT todos_title_length;
ALTER TABLE public.todos ADD CONSTRAINT todos_title_length CHECK (
    title = btrim(title, E' \t\n\x0B\f\r\u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000')
    AND char_length(title) BETWEEN 1 AND 500
    AND title !~ '[\u0001-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]'
    AND title ~ '[^\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFF8\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0000-\U000E0FFF\u2800\uFFF9-\uFFFB]'
) NOT VALID;

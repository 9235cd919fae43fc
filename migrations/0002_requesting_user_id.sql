-- Who is asking: the `sub` claim of the token the request came with, as text.
--
-- InsForge (through PostgREST) puts the verified claims `{sub, email, role}` in the transaction-local setting
-- `request.jwt.claims`. WorkOS user ids (`user_01…`) are not UUIDs, so InsForge's own `auth.uid()` (which casts
-- to uuid) cannot be used; this is the helper InsForge's third-party-auth guides use instead.
--
-- NULL when there is no claim, so a policy comparing with it matches nothing. The inner NULLIF matters: once a
-- pooled connection has seen the setting in an earlier transaction, it reads back as '' rather than NULL, and
-- ''::json is an error, not NULL.

CREATE OR REPLACE FUNCTION public.requesting_user_id() RETURNS text
    LANGUAGE sql
    STABLE
AS $$
    SELECT NULLIF(NULLIF(current_setting('request.jwt.claims', true), '')::json ->> 'sub', '')::text
$$;

COMMENT ON FUNCTION public.requesting_user_id() IS
    'The sub claim of the current request''s token (request.jwt.claims), or NULL when there is none.';

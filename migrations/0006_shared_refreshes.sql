-- Refreshes shared between replicas.
--
-- A refresh token is single-use. When two replicas behind one load balancer receive the same near-expiry session
-- cookie at the same moment (two tabs, parallel fetches), both would spend its refresh token; the second gets
-- `invalid_grant` and signs the user out. So the first replica to refresh a token claims it here, calls the
-- identity provider, and records what came out: the new session, sealed with the cookie keys (only replicas holding
-- the session cookie password can read it), or the provider's refusal. The other replicas wait for that answer and
-- reuse it instead of calling the provider.
--
-- Keyed by a SHA-256 of the old refresh token, never the token. Rows are kept for seconds (the app deletes those
-- older than a minute whenever it claims a new one), so the table stays a few rows per active refresh.
-- Private to authbridge like the lifecycle's tables: no API role has USAGE on the schema.

CREATE TABLE authbridge.refresh_results (
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    claimed_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- NULL while the claiming replica is still asking the provider.
    outcome text CHECK (outcome IN ('refreshed', 'rejected')),
    -- The new session (sealed) when refreshed; the provider's reason when rejected.
    sealed_session text,
    rejected_reason text,
    CHECK (
        (outcome IS NULL AND finished_at IS NULL AND sealed_session IS NULL AND rejected_reason IS NULL)
        OR (outcome = 'refreshed' AND finished_at IS NOT NULL AND sealed_session IS NOT NULL)
        OR (outcome = 'rejected' AND finished_at IS NOT NULL AND sealed_session IS NULL)
    )
);

COMMENT ON TABLE authbridge.refresh_results IS
    'Session refreshes in progress or just finished, shared by replicas so a refresh token is spent once. Kept ~1 minute.';

-- Nothing for the API roles, said explicitly (default privileges may hand them some).
REVOKE ALL ON authbridge.refresh_results FROM PUBLIC;
DO $$
DECLARE
    api_role text;
BEGIN
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated', 'project_admin'] LOOP
        EXECUTE format('REVOKE ALL ON authbridge.refresh_results FROM %I', api_role);
    END LOOP;
END
$$;

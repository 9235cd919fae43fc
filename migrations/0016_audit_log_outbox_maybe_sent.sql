-- When an attempt to send an Audit Log event may have reached WorkOS. The deliverer gives an undelivered event up
-- 23 hours after this, not after the row was written: WorkOS forgets an Idempotency-Key 24 hours after it saw it,
-- so only a resend after an attempt that may have been recorded could record the event twice. An event whose
-- attempts were all refused before WorkOS could record it (no connection, 401, 403, 429…) keeps being sent: giving
-- it up would lose a record WorkOS never had (a day with a rotated API key would otherwise lose a day of events).
ALTER TABLE authbridge.audit_log_outbox
    -- The first attempt whose outcome was unclear (a timeout, a 5xx, a connection broken mid-request, a 2xx that
    -- could not be read), or that never got its outcome recorded.
    ADD COLUMN maybe_sent_at timestamptz,
    -- When the attempt in flight started; NULL between attempts. Still set when the row is claimed again, the
    -- previous attempt's outcome was never recorded (the deliverer stopped mid-send): it may have reached WorkOS.
    ADD COLUMN sending_at timestamptz;

-- Rows already tried when this runs: what their attempts' outcomes were is not known, so each is taken as one that
-- may have reached WorkOS when it was written, the rule these rows were queued under.
UPDATE authbridge.audit_log_outbox SET maybe_sent_at = created_at
WHERE attempts > 0 AND delivered_at IS NULL AND failed_at IS NULL;

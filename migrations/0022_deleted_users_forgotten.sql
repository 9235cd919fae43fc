-- A user WorkOS deleted is forgotten down to their id: the tombstone's email, and every address in
-- `authbridge.user_email_history`, are removed.
--
-- Why: the tombstone (0004) kept the email the deletion event carried, and the history (0019) every address the user
-- had had. Nothing reads either for a deleted user: `authbridge.active_organization_ids()` ends every membership
-- of a user whose row is deleted before it looks at addresses, and the deny-list (`requesting_user_deprovisioned`)
-- goes by id. But the app named the authors of an organization's shared todos from `authbridge.users`, so the other
-- members went on seeing a deleted person's address next to their todos, with no end; and the addresses stayed in
-- the database (and its backups) after the person was gone, which an erasure request must not find.
--
-- From now on the app writes tombstones without an email and deletes the history with them
-- (`store::tombstone_user`), never records an address for a deleted user (`store::record_user_email`), and names
-- only users not deleted. This migration does the same for the users deleted before it.

UPDATE authbridge.users SET email = NULL WHERE deleted_at IS NOT NULL AND email IS NOT NULL;

DELETE FROM authbridge.user_email_history h
USING authbridge.users u
WHERE u.id = h.user_id AND u.deleted_at IS NOT NULL;

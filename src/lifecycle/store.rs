//! Every SQL statement of the lifecycle, against the private `authbridge` schema (`migrations/0004_lifecycle.sql`).
//!
//! Each write is one statement that decides for itself whether it lands: an upsert whose `WHERE` compares versions
//! (and skips tombstones), so two writers racing on one object cannot interleave a read and a write, and an older
//! event never overwrites newer state. The functions take a connection, so callers put them in the transaction of
//! the event they belong to.

use serde::Serialize;
use sqlx::PgConnection;
use std::time::Duration;
use time::OffsetDateTime;

use crate::workos::objects::{Directory, DirectoryUser, Membership, Organization};

/// The version a row was written at: the object's `updated_at`, then the event's `created_at`, then the event id.
/// Compared in that order, as a PostgreSQL row comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub updated_at: OffsetDateTime,
    pub event_at: OffsetDateTime,
    pub event_id: String,
}

/// `version_event_at` of rows read from the REST API (no event): before any event, so an event about the same
/// object state wins.
const NO_EVENT_AT: OffsetDateTime = time::macros::datetime!(0001-01-01 0:00 UTC);

impl Version {
    /// The version of an object read from WorkOS's REST API rather than delivered by an event.
    pub fn of_object(updated_at: OffsetDateTime) -> Self {
        Self { updated_at, event_at: NO_EVENT_AT, event_id: String::new() }
    }

    /// Lower than anything WorkOS will ever send: for what the app learns at sign-in without a version.
    pub fn lowest() -> Self {
        Self::of_object(NO_EVENT_AT)
    }
}

/// Which channel delivered an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Webhook,
    EventsApi,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::EventsApi => "events_api",
        }
    }
}

/// Records an event id in the idempotency ledger. `false` when it was already there: the event has been handled
/// before (by either channel) and must change nothing now. An entry recorded as `rejected` (a payload that could
/// not be read) is not final: a later delivery that can be read takes it over and is applied (a fix deployed while
/// WorkOS still retries, or the other channel's copy).
pub async fn record_event(
    conn: &mut PgConnection,
    id: &str,
    event_type: &str,
    source: Source,
    outcome: &str,
    created_at: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let recorded = sqlx::query(
        "INSERT INTO authbridge.applied_events AS t (id, event_type, source, outcome, event_created_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET source = EXCLUDED.source, outcome = EXCLUDED.outcome, applied_at = now() \
         WHERE t.outcome = 'rejected' AND EXCLUDED.outcome <> 'rejected'",
    )
    .bind(id)
    .bind(event_type)
    .bind(source.as_str())
    .bind(outcome)
    .bind(created_at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(recorded == 1)
}

/// Remembers that `email` is, or was, the address of user `id`: a directory's denial follows the person through a
/// change of address (`migrations/0019_user_email_history.sql`). Recorded whatever else the caller writes, even
/// from an event older than what is stored: an address the user had at some time can only deny more. Never for a
/// deleted user: their addresses were forgotten with them ([`tombstone_user`]), and a late event or a token still
/// in flight must not write them back.
async fn record_user_email(conn: &mut PgConnection, id: &str, email: Option<&str>) -> Result<(), sqlx::Error> {
    let Some(email) = email else { return Ok(()) };
    // Called once the user's row exists, and reads it `FOR SHARE`: a deletion under way is waited for and then
    // seen, and a deletion that comes after waits for this insert and then removes it with the rest. (Checked
    // without the lock, an address written while a deletion was under way outlived it: the deletion's removal of
    // the history cannot see a row that is not committed yet.)
    sqlx::query(
        "INSERT INTO authbridge.user_email_history (user_id, email) \
         SELECT id, lower($2) FROM authbridge.users WHERE id = $1 AND deleted_at IS NULL FOR SHARE \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(email)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn upsert_user(
    conn: &mut PgConnection,
    id: &str,
    email: Option<&str>,
    version: &Version,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO authbridge.users AS t (id, email, version_updated_at, version_event_at, version_event_id) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, \
             version_updated_at = EXCLUDED.version_updated_at, version_event_at = EXCLUDED.version_event_at, \
             version_event_id = EXCLUDED.version_event_id \
         WHERE t.deleted_at IS NULL AND (EXCLUDED.version_updated_at, EXCLUDED.version_event_at, EXCLUDED.version_event_id) \
             > (t.version_updated_at, t.version_event_at, t.version_event_id)",
    )
    .bind(id)
    .bind(email)
    .bind(version.updated_at)
    .bind(version.event_at)
    .bind(&version.event_id)
    .execute(&mut *conn)
    .await?;
    record_user_email(conn, id, email).await
}

/// A user as sign-in knows them (id and email, no version): written only when the user is not known at all, so
/// any event about them wins and a tombstone is never touched.
pub async fn note_signed_in_user(conn: &mut PgConnection, id: &str, email: Option<&str>) -> Result<(), sqlx::Error> {
    let version = Version::lowest();
    sqlx::query(
        "INSERT INTO authbridge.users (id, email, version_updated_at, version_event_at, version_event_id) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(email)
    .bind(version.updated_at)
    .bind(version.event_at)
    .bind(&version.event_id)
    .execute(&mut *conn)
    .await?;
    record_user_email(conn, id, email).await
}

/// Deletes a user for good: a tombstone, written even for a user never seen before (so a late `user.created`
/// cannot bring them back), and left alone once written. The tombstone keeps the id only: the user's addresses
/// (current and past) are forgotten, since nothing needs them once every membership of a deleted user counts as
/// ended, and the other members must stop seeing the address as the author of shared todos
/// (`migrations/0022_deleted_users_forgotten.sql`).
pub async fn tombstone_user(conn: &mut PgConnection, id: &str, version: &Version) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO authbridge.users AS t (id, email, deleted_at, version_updated_at, version_event_at, version_event_id) \
         VALUES ($1, NULL, now(), $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET email = NULL, deleted_at = now(), \
             version_updated_at = EXCLUDED.version_updated_at, \
             version_event_at = EXCLUDED.version_event_at, version_event_id = EXCLUDED.version_event_id \
         WHERE t.deleted_at IS NULL",
    )
    .bind(id)
    .bind(version.updated_at)
    .bind(version.event_at)
    .bind(&version.event_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM authbridge.user_email_history WHERE user_id = $1").bind(id).execute(conn).await?;
    Ok(())
}

pub async fn upsert_organization(
    conn: &mut PgConnection,
    organization: &Organization,
    version: &Version,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO authbridge.organizations AS t (id, name, version_updated_at, version_event_at, version_event_id) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, \
             version_updated_at = EXCLUDED.version_updated_at, version_event_at = EXCLUDED.version_event_at, \
             version_event_id = EXCLUDED.version_event_id \
         WHERE t.deleted_at IS NULL AND (EXCLUDED.version_updated_at, EXCLUDED.version_event_at, EXCLUDED.version_event_id) \
             > (t.version_updated_at, t.version_event_at, t.version_event_id)",
    )
    .bind(&organization.id)
    .bind(&organization.name)
    .bind(version.updated_at)
    .bind(version.event_at)
    .bind(&version.event_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn tombstone_organization(
    conn: &mut PgConnection,
    organization: &Organization,
    version: &Version,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO authbridge.organizations AS t (id, name, deleted_at, version_updated_at, version_event_at, version_event_id) \
         VALUES ($1, $2, now(), $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET deleted_at = now(), version_updated_at = EXCLUDED.version_updated_at, \
             version_event_at = EXCLUDED.version_event_at, version_event_id = EXCLUDED.version_event_id \
         WHERE t.deleted_at IS NULL",
    )
    .bind(&organization.id)
    .bind(&organization.name)
    .bind(version.updated_at)
    .bind(version.event_at)
    .bind(&version.event_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn organization_is_known(conn: &mut PgConnection, id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM authbridge.organizations WHERE id = $1)")
        .bind(id)
        .fetch_one(conn)
        .await
}

/// A membership as WorkOS says it is now. `active_since` (migrations/0015) records the version at which it turned
/// active: set when it is first recorded as active or changes to active, kept while it stays active (a role change
/// is no reactivation), cleared otherwise; moved forward to a late non-active event's `updated_at` when that event is
/// older than the active state stored (it was reactivated after it). A directory denial older than that no longer holds
/// ([`active_memberships`]).
pub async fn upsert_membership(
    conn: &mut PgConnection,
    membership: &Membership,
    version: &Version,
) -> Result<(), sqlx::Error> {
    let roles = membership.role_slugs();
    sqlx::query(
        "INSERT INTO authbridge.organization_memberships AS t \
             (id, user_id, organization_id, status, role, role_slugs, directory_managed, \
              version_updated_at, version_event_at, version_event_id, active_since) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $4 = 'active' THEN $8 END) \
         ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, organization_id = EXCLUDED.organization_id, \
             status = EXCLUDED.status, role = EXCLUDED.role, role_slugs = EXCLUDED.role_slugs, \
             directory_managed = EXCLUDED.directory_managed, \
             active_since = CASE WHEN EXCLUDED.status <> 'active' THEN NULL \
                                 WHEN t.status = 'active' THEN t.active_since \
                                 ELSE EXCLUDED.active_since END, \
             version_updated_at = EXCLUDED.version_updated_at, version_event_at = EXCLUDED.version_event_at, \
             version_event_id = EXCLUDED.version_event_id \
         WHERE t.deleted_at IS NULL AND (EXCLUDED.version_updated_at, EXCLUDED.version_event_at, EXCLUDED.version_event_id) \
             > (t.version_updated_at, t.version_event_at, t.version_event_id)",
    )
    .bind(&membership.id)
    .bind(&membership.user_id)
    .bind(&membership.organization_id)
    .bind(membership.status.as_str())
    .bind(membership.primary_role())
    .bind(&roles)
    .bind(membership.directory_managed)
    .bind(version.updated_at)
    .bind(version.event_at)
    .bind(&version.event_id)
    .execute(&mut *conn)
    .await?;
    // A late event saying the membership was not active, older than the active state stored: it was reactivated
    // after that moment, so it has been active since then at the earliest, not since `active_since` (the
    // reactivation's own event came first and found it active, as an event lost would have left it). A directory
    // denial older than the deactivation no longer holds, as when the events come in order; one between the two
    // still does (the exact moment of the reactivation is not known here: failing closed).
    if membership.status.as_str() != "active" {
        sqlx::query(
            "UPDATE authbridge.organization_memberships AS t SET active_since = $2 \
             WHERE t.id = $1 AND t.deleted_at IS NULL AND t.status = 'active' AND t.active_since < $2 \
               AND (t.version_updated_at, t.version_event_at, t.version_event_id) > ($2, $3, $4)",
        )
        .bind(&membership.id)
        .bind(version.updated_at)
        .bind(version.event_at)
        .bind(&version.event_id)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// What a listing from WorkOS covered: every organization, every organization's memberships (the consumer's
/// reconciliation), or one user's memberships (`lifecycle::sync`).
#[derive(Debug, Clone, Copy)]
pub enum Listing<'a> {
    Organizations,
    Memberships,
    MembershipsOf(&'a str),
}

impl Listing<'_> {
    fn table(self) -> &'static str {
        match self {
            Self::Organizations => "authbridge.organizations",
            Self::Memberships | Self::MembershipsOf(_) => "authbridge.organization_memberships",
        }
    }
}

/// The objects a complete `listing` from WorkOS (`listed`, every status) did not contain, not ended yet, that last
/// changed before `changed_before`: deleted at WorkOS with their deletion event lost, or left out of the listing
/// by WorkOS itself. Which is which only WorkOS can say (`Lifecycle::gone_at_workos`), before [`end_for_good`].
pub async fn not_listed(
    conn: &mut PgConnection,
    listing: Listing<'_>,
    listed: &[String],
    changed_before: OffsetDateTime,
) -> Result<Vec<String>, sqlx::Error> {
    match listing {
        Listing::MembershipsOf(user_id) => {
            sqlx::query_scalar(
                "SELECT id FROM authbridge.organization_memberships \
                 WHERE user_id = $3 AND deleted_at IS NULL AND NOT (id = ANY($1)) AND version_updated_at < $2 \
                 ORDER BY id",
            )
            .bind(listed)
            .bind(changed_before)
            .bind(user_id)
            .fetch_all(conn)
            .await
        }
        Listing::Organizations | Listing::Memberships => {
            let statement = format!(
                "SELECT id FROM {} WHERE deleted_at IS NULL AND NOT (id = ANY($1)) AND version_updated_at < $2 \
                 ORDER BY id",
                listing.table()
            );
            sqlx::query_scalar(sqlx::AssertSqlSafe(statement)).bind(listed).bind(changed_before).fetch_all(conn).await
        }
    }
}

/// Ends the objects `ids` of `listing`'s table for good, WorkOS having confirmed each is gone: the same tombstone a
/// deletion event leaves (`deleted_at`, which every later upsert skips), with the row's version kept, since what
/// deleted it is unknown. An object changed since `changed_before` (an event applied meanwhile) is left alone.
/// Returns how many were ended.
pub async fn end_for_good(
    conn: &mut PgConnection,
    listing: Listing<'_>,
    ids: &[String],
    changed_before: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    let statement = format!(
        "UPDATE {} SET deleted_at = now() WHERE id = ANY($1) AND deleted_at IS NULL AND version_updated_at < $2",
        listing.table()
    );
    let ended = sqlx::query(sqlx::AssertSqlSafe(statement)).bind(ids).bind(changed_before).execute(conn).await?;
    Ok(ended.rows_affected())
}

/// Ends a membership for good. The tombstone keeps the membership as the event described it, status and all, but
/// a tombstoned membership is never listed.
pub async fn tombstone_membership(
    conn: &mut PgConnection,
    membership: &Membership,
    version: &Version,
) -> Result<(), sqlx::Error> {
    let roles = membership.role_slugs();
    sqlx::query(
        "INSERT INTO authbridge.organization_memberships AS t \
             (id, user_id, organization_id, status, role, role_slugs, directory_managed, deleted_at, \
              version_updated_at, version_event_at, version_event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8, $9, $10) \
         ON CONFLICT (id) DO UPDATE SET deleted_at = now(), version_updated_at = EXCLUDED.version_updated_at, \
             version_event_at = EXCLUDED.version_event_at, version_event_id = EXCLUDED.version_event_id \
         WHERE t.deleted_at IS NULL",
    )
    .bind(&membership.id)
    .bind(&membership.user_id)
    .bind(&membership.organization_id)
    .bind(membership.status.as_str())
    .bind(membership.primary_role())
    .bind(&roles)
    .bind(membership.directory_managed)
    .bind(version.updated_at)
    .bind(version.event_at)
    .bind(&version.event_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A directory user as the directory says now. For a directory deleted since ([`delete_directory`]) only a denial
/// is recorded: a deleted directory vouches for nobody, but what it said against someone before it went still holds.
///
/// `denied_since` (migrations/0017) dates the denial: set when the directory user stops being active (or is first
/// recorded as not active), to the later of its `updated_at` and the event's time; kept through further changes of a
/// user already not active (an attribute sync or a group removal is no new denial, and must not take back a
/// membership an admin reactivated at WorkOS since); cleared when active again; moved forward to the stored state's
/// own time when an "active" event older than it arrives late (it was active again in between). [`active_memberships`]
/// compares it with the membership's `active_since`.
pub async fn upsert_directory_user(
    conn: &mut PgConnection,
    user: &DirectoryUser,
    version: &Version,
) -> Result<(), sqlx::Error> {
    lock_directory(&mut *conn, user.directory_id.as_deref()).await?;
    sqlx::query(
        "INSERT INTO authbridge.directory_users AS t \
             (id, directory_id, organization_id, email, state, version_updated_at, version_event_at, version_event_id, \
              denied_since) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $5::text <> 'active' THEN greatest($6, $7) END \
         WHERE $5::text <> 'active' OR NOT EXISTS (SELECT 1 FROM authbridge.deleted_directories d WHERE d.id = $2) \
         ON CONFLICT (id) DO UPDATE SET directory_id = EXCLUDED.directory_id, \
             organization_id = EXCLUDED.organization_id, email = EXCLUDED.email, state = EXCLUDED.state, \
             denied_since = CASE WHEN EXCLUDED.state = 'active' THEN NULL \
                                 ELSE coalesce(t.denied_since, EXCLUDED.denied_since) END, \
             version_updated_at = EXCLUDED.version_updated_at, version_event_at = EXCLUDED.version_event_at, \
             version_event_id = EXCLUDED.version_event_id \
         WHERE t.deleted_at IS NULL AND (EXCLUDED.version_updated_at, EXCLUDED.version_event_at, EXCLUDED.version_event_id) \
             > (t.version_updated_at, t.version_event_at, t.version_event_id)",
    )
    .bind(&user.id)
    .bind(&user.directory_id)
    .bind(&user.organization_id)
    .bind(&user.email)
    .bind(&user.state)
    .bind(version.updated_at)
    .bind(version.event_at)
    .bind(&version.event_id)
    .execute(&mut *conn)
    .await?;
    // A late event saying the directory user was active, older than the denial stored: they stopped being active
    // again after it, so the denial dates from then at the latest (the stored state's own time), not from an earlier
    // denial kept through the changes in between. Without this, a denial dated before a membership was reactivated
    // would let a person the directory deprovisioned again keep the organization whenever the "active" event in
    // between came late.
    if user.state == "active" {
        sqlx::query(
            "UPDATE authbridge.directory_users AS t \
             SET denied_since = greatest(t.denied_since, t.version_updated_at, t.version_event_at) \
             WHERE t.id = $1 AND NOT (t.state = 'active' AND t.deleted_at IS NULL) \
               AND t.denied_since < greatest($2, $3) \
               AND (t.version_updated_at, t.version_event_at, t.version_event_id) > ($2, $3, $4)",
        )
        .bind(&user.id)
        .bind(version.updated_at)
        .bind(version.event_at)
        .bind(&version.event_id)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// A directory user removed from the directory: a tombstone, which also counts as "not active" for the deny rule
/// (a denial, so recorded even for a deleted directory, as [`upsert_directory_user`]). Removing a user who was active
/// denies from the event's time too: WorkOS does not say that a deleted payload's `updated_at` moves forward, and an
/// unchanged one would be older than a membership added since, so the removal would deny nothing. Removing a user who
/// was already not active keeps the earlier denial's date, as any other change would, unless the removal's own
/// payload, newer than what is stored, says they were active (a reactivation whose event was lost): then it denies
/// from the removal.
pub async fn tombstone_directory_user(
    conn: &mut PgConnection,
    user: &DirectoryUser,
    version: &Version,
) -> Result<(), sqlx::Error> {
    lock_directory(&mut *conn, user.directory_id.as_deref()).await?;
    sqlx::query(
        "INSERT INTO authbridge.directory_users AS t \
             (id, directory_id, organization_id, email, state, deleted_at, \
              version_updated_at, version_event_at, version_event_id, denied_since) \
         VALUES ($1, $2, $3, $4, $5, now(), $6, $7, $8, greatest($6, $7)) \
         ON CONFLICT (id) DO UPDATE SET deleted_at = now(), \
             denied_since = CASE WHEN EXCLUDED.state = 'active' \
                                      AND (EXCLUDED.version_updated_at, EXCLUDED.version_event_at, EXCLUDED.version_event_id) \
                                          > (t.version_updated_at, t.version_event_at, t.version_event_id) \
                                 THEN greatest(t.denied_since, EXCLUDED.denied_since) \
                                 ELSE coalesce(t.denied_since, EXCLUDED.denied_since) END, \
             version_updated_at = EXCLUDED.version_updated_at, \
             version_event_at = EXCLUDED.version_event_at, version_event_id = EXCLUDED.version_event_id \
         WHERE t.deleted_at IS NULL",
    )
    .bind(&user.id)
    .bind(&user.directory_id)
    .bind(&user.organization_id)
    .bind(&user.email)
    .bind(&user.state)
    .bind(version.updated_at)
    .bind(version.event_at)
    .bind(&version.event_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A directory deleted at WorkOS: recorded for good, and its users' `active` rows removed, since a deleted directory
/// vouches for nobody (an `active` row would outweigh another directory's denial of the same person). Its denials
/// stay: deleting a directory (to change identity provider, say) must not give back access it had taken away.
/// WorkOS does not deactivate the organization's memberships when a directory is deleted.
pub async fn delete_directory(
    conn: &mut PgConnection,
    directory: &Directory,
    event_id: &str,
) -> Result<(), sqlx::Error> {
    lock_directory(&mut *conn, Some(&directory.id)).await?;
    sqlx::query(
        "INSERT INTO authbridge.deleted_directories (id, organization_id, version_event_id) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&directory.id)
    .bind(&directory.organization_id)
    .bind(event_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM authbridge.directory_users WHERE directory_id = $1 AND state = 'active' AND deleted_at IS NULL",
    )
    .bind(&directory.id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Serializes the changes to one directory's users with its deletion, transaction by transaction: under READ
/// COMMITTED a user event and the deletion running at once would each miss the other's uncommitted row.
async fn lock_directory(conn: &mut PgConnection, directory_id: Option<&str>) -> Result<(), sqlx::Error> {
    if let Some(directory_id) = directory_id {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('authbridge.directory:' || $1, 0))")
            .bind(directory_id)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Whose request ended the session.
#[derive(Debug, Clone, Copy)]
pub enum RevokedBy {
    Event,
    SignOut,
}

/// A session that has ended. Permanent: revoking twice changes nothing.
pub async fn revoke_session(
    conn: &mut PgConnection,
    id: &str,
    user_id: Option<&str>,
    by: RevokedBy,
    version: &Version,
) -> Result<(), sqlx::Error> {
    let source = match by {
        RevokedBy::Event => "event",
        RevokedBy::SignOut => "sign_out",
    };
    sqlx::query(
        "INSERT INTO authbridge.revoked_sessions (id, user_id, source, version_updated_at, version_event_at, version_event_id) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(user_id)
    .bind(source)
    .bind(version.updated_at)
    .bind(version.event_at)
    .bind(&version.event_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a request's user has been deleted, or its session revoked: either ends its access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessState {
    pub user_deleted: bool,
    pub session_revoked: bool,
}

impl AccessState {
    pub fn ended(self) -> bool {
        self.user_deleted || self.session_revoked
    }
}

pub async fn access_state(
    conn: &mut PgConnection,
    user_id: &str,
    session_id: Option<&str>,
) -> Result<AccessState, sqlx::Error> {
    let (user_deleted, session_revoked): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM authbridge.users WHERE id = $1 AND deleted_at IS NOT NULL), \
                EXISTS (SELECT 1 FROM authbridge.revoked_sessions WHERE id = $2)",
    )
    .bind(user_id)
    .bind(session_id)
    .fetch_one(conn)
    .await?;
    Ok(AccessState { user_deleted, session_revoked })
}

/// Whether this session has ended (signed out on any replica, or revoked by WorkOS): all there is to ask where no
/// deleted users are recorded (an OpenID Connect provider).
pub async fn session_revoked(conn: &mut PgConnection, session_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM authbridge.revoked_sessions WHERE id = $1)")
        .bind(session_id)
        .fetch_one(conn)
        .await
}

/// One organization a user is an active member of, as `GET /api/organizations` shows it: one entry per organization,
/// even in the moments when two of the user's memberships in it are active (WorkOS replaced one, and the old one's
/// deletion is not known yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveMembership {
    /// The organization's id.
    pub id: String,
    /// `None` only until the organization itself has been fetched or delivered.
    pub name: Option<String>,
    /// The main role of the user's membership in it that WorkOS updated last (`version_updated_at`).
    pub role: Option<String>,
    /// Every role slug of the user's active memberships in it (several when WorkOS has multiple roles enabled; the
    /// main one when WorkOS sent no list), so that [`ActiveMembership::is_admin`] agrees with the delete policy,
    /// which lets any active admin membership count. Shown beside `role`, as WorkOS shows `roles` beside `role`: a
    /// client deciding from `role` alone would miss an admin whose main role is another.
    pub roles: Vec<String>,
}

impl ActiveMembership {
    /// An admin of the organization: the role slug `admin`, as the todos' delete policy has it.
    pub fn is_admin(&self) -> bool {
        self.role.as_deref() == Some("admin") || self.roles.iter().any(|role| role == "admin")
    }
}

/// The user's memberships that are active now: not deleted, status `active`, in an organization that is not
/// deleted, and not deprovisioned by the directory. The rule is one SQL function, `authbridge.active_organization_ids`
/// (migrations/0017), which RLS calls too (through `authbridge_rls.requesting_user_organization_ids()`), so the app
/// and the database cannot disagree. The directory rule: the directory users of that organization with the user's
/// email (WorkOS links them by email) deny the membership when there are some, none of them is active, and one of
/// them stopped being active (`denied_since`, [`upsert_directory_user`]) no earlier than the membership last turned
/// active (`active_since`). So a directory's denial takes effect at once, while WorkOS's own later word wins:
/// re-adding the person to the directory (a new, active directory user), or reactivating or re-adding the membership
/// at WorkOS afterwards, restores it. The function also leaves out every membership of a deleted user, which the app
/// refuses before asking.
pub async fn active_memberships(conn: &mut PgConnection, user_id: &str) -> Result<Vec<ActiveMembership>, sqlx::Error> {
    /// Organization id, its name, the main role, every role.
    type Row = (String, Option<String>, Option<String>, Vec<String>);
    // The function in an uncorrelated sub-select: called once, not once per membership row. Within an organization
    // the latest membership comes first, for `merge_by_organization`.
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT m.organization_id, o.name, m.role, m.role_slugs \
         FROM authbridge.organization_memberships m \
         LEFT JOIN authbridge.organizations o ON o.id = m.organization_id \
         WHERE m.user_id = $1 AND m.deleted_at IS NULL AND m.status = 'active' \
           AND m.organization_id IN (SELECT unnest(authbridge.active_organization_ids($1))) \
         ORDER BY o.name NULLS LAST, m.organization_id, m.version_updated_at DESC, m.id",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    Ok(merge_by_organization(rows.into_iter().map(|(id, name, role, roles)| ActiveMembership {
        // Rows written before role_slugs existed (migrations/0004's default) have only the main role.
        roles: if roles.is_empty() { role.iter().cloned().collect() } else { roles },
        id,
        name,
        role,
    })))
}

/// One entry per organization out of memberships ordered by organization, the latest of each first: its role is the
/// latest membership's, its role slugs every membership's.
fn merge_by_organization(memberships: impl Iterator<Item = ActiveMembership>) -> Vec<ActiveMembership> {
    let mut merged: Vec<ActiveMembership> = Vec::new();
    for membership in memberships {
        match merged.last_mut() {
            Some(last) if last.id == membership.id => {
                let more = membership.roles.into_iter().chain(membership.role);
                for role in more {
                    if !last.roles.contains(&role) {
                        last.roles.push(role);
                    }
                }
            }
            _ => merged.push(membership),
        }
    }
    merged
}

/// Where the Events API consumer stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The id of the last event applied, passed as `after`.
    pub after_event_id: Option<String>,
    /// That event's time, for resuming with `range_start` should WorkOS refuse the cursor.
    pub last_event_at: Option<OffsetDateTime>,
    /// When the current state was first read from the REST API; `None` until then.
    pub reconciled_at: Option<OffsetDateTime>,
    /// When the last poll that read the event list to its end started (migrations/0018): every event created before
    /// then has been seen, however long ago the last one was.
    pub polled_at: Option<OffsetDateTime>,
}

pub async fn cursor(conn: &mut PgConnection) -> Result<Cursor, sqlx::Error> {
    type Row = (Option<String>, Option<OffsetDateTime>, Option<OffsetDateTime>, Option<OffsetDateTime>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT after_event_id, last_event_at, reconciled_at, polled_at FROM authbridge.events_cursor WHERE id = 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(row
        .map(|(after_event_id, last_event_at, reconciled_at, polled_at)| Cursor {
            after_event_id,
            last_event_at,
            reconciled_at,
            polled_at,
        })
        .unwrap_or_default())
}

/// Moves the cursor to `event_id`; called in the transaction that applies that event.
pub async fn advance_cursor(
    conn: &mut PgConnection,
    event_id: &str,
    event_at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO authbridge.events_cursor (id, after_event_id, last_event_at, updated_at) VALUES (1, $1, $2, now()) \
         ON CONFLICT (id) DO UPDATE SET after_event_id = EXCLUDED.after_event_id, \
             last_event_at = EXCLUDED.last_event_at, updated_at = now()",
    )
    .bind(event_id)
    .bind(event_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Drops the cursor's event id (WorkOS refused it) and keeps its time, from which reading resumes with
/// `range_start`.
pub async fn forget_cursor_event(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE authbridge.events_cursor SET after_event_id = NULL, updated_at = now() WHERE id = 1")
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a reconciliation done because the cursor had fallen behind WorkOS's window, once the events WorkOS
/// still had were read: the cursor's event id is dropped if it is still `expired_event_id` (WorkOS may not know it
/// any more; an event applied since has replaced it otherwise), and reading by time resumes from `reconciled_at`.
pub async fn mark_reread(
    conn: &mut PgConnection,
    expired_event_id: Option<&str>,
    reconciled_at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE authbridge.events_cursor SET reconciled_at = $2, updated_at = now(), \
             after_event_id = CASE WHEN after_event_id = $1 THEN NULL ELSE after_event_id END \
         WHERE id = 1",
    )
    .bind(expired_event_id)
    .bind(reconciled_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that a poll which started at `started_at` read the event list to its end. Never called for a poll that
/// stopped part way (an error, its page limit): what it did not reach may hold events.
pub async fn mark_polled(conn: &mut PgConnection, started_at: OffsetDateTime) -> Result<(), sqlx::Error> {
    set_cursor_moment(conn, "polled_at", started_at).await
}

pub async fn mark_reconciled(conn: &mut PgConnection, at: OffsetDateTime) -> Result<(), sqlx::Error> {
    set_cursor_moment(conn, "reconciled_at", at).await
}

/// `column`: one of the cursor's moments named above, never outside input.
async fn set_cursor_moment(
    conn: &mut PgConnection,
    column: &'static str,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let statement = format!(
        "INSERT INTO authbridge.events_cursor (id, {column}, updated_at) VALUES (1, $1, now()) \
         ON CONFLICT (id) DO UPDATE SET {column} = EXCLUDED.{column}, updated_at = now()"
    );
    sqlx::query(sqlx::AssertSqlSafe(statement)).bind(at).execute(conn).await?;
    Ok(())
}

/// Forgets ledger entries older than any delivery WorkOS can still make (webhook retries last days, the Events
/// API reaches back 30 days, 90 by its guide); the versions on each row keep protecting against anything older.
pub async fn prune_ledger(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM authbridge.applied_events WHERE applied_at < now() - interval '120 days'")
        .execute(conn)
        .await?
        .rows_affected())
}

/// Forgets what no request can need any more, so that the bookkeeping tables stay bounded whatever the traffic:
/// the event ledger (as [`prune_ledger`]: the consumer prunes it after each poll, but a deployment may run on
/// webhooks alone); ended sessions once no browser can still hold their cookie (browsers keep a cookie 400 days
/// at most, and a copy replayed later still needs its refresh token, which WorkOS revoked at sign-out); and Audit
/// Log events delivered a week ago (what WorkOS keeps is the record; ours was only the queue, and is kept that long
/// only so that a create sent again late is still known as the same event), or given up on 90 days ago (the
/// operator's record of what never reached WorkOS). The rows hold personal data (names, addresses, titles), so none
/// stays longer than that use. And any address still kept for a deleted user ([`forget_deleted_users_addresses`]). (Shared refresh results are removed every minute instead:
/// `session::shared_refresh::remove_old_results`.) Returns the rows removed.
pub async fn prune_bookkeeping(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let mut removed = prune_ledger(&mut *conn).await?;
    removed += sqlx::query("DELETE FROM authbridge.revoked_sessions WHERE revoked_at < now() - interval '401 days'")
        .execute(&mut *conn)
        .await?
        .rows_affected();
    removed += sqlx::query(
        "DELETE FROM authbridge.audit_log_outbox \
         WHERE delivered_at < now() - interval '7 days' OR failed_at < now() - interval '90 days'",
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    removed += forget_deleted_users_addresses(conn).await?;
    Ok(removed)
}

/// Removes every address still kept for a deleted user (what `migrations/0022` did once), counting the rows changed.
/// [`tombstone_user`] forgets them at the deletion, and an address written at the same moment waits for it (a lock
/// on the user's row); this catches what a replica of an older version writes during a rolling deploy.
async fn forget_deleted_users_addresses(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let emails =
        sqlx::query("UPDATE authbridge.users SET email = NULL WHERE deleted_at IS NOT NULL AND email IS NOT NULL")
            .execute(&mut *conn)
            .await?
            .rows_affected();
    let history = sqlx::query(
        "DELETE FROM authbridge.user_email_history h USING authbridge.users u \
         WHERE u.id = h.user_id AND u.deleted_at IS NOT NULL",
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(emails + history)
}

/// A PostgreSQL advisory lock held by this connection's session: at most one holder in the whole cluster.
pub async fn try_lock(conn: &mut PgConnection, key: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(conn).await
}

/// Makes PostgreSQL end this connection's session once it has waited `limit` for its next statement, in a
/// transaction or not (`None`: the server's defaults again). Each setting apart: PostgreSQL before 14 has no
/// `idle_session_timeout`, and its error must not cost the other; the first error is returned once both were tried.
pub async fn limit_idle(conn: &mut PgConnection, limit: Option<Duration>) -> Result<(), sqlx::Error> {
    let millis = limit.map(|limit| u64::try_from(limit.as_millis()).unwrap_or(u64::MAX).clamp(1, i32::MAX as u64));
    let mut first_error = None;
    for setting in ["idle_in_transaction_session_timeout", "idle_session_timeout"] {
        let done = match millis {
            Some(millis) => sqlx::query("SELECT set_config($1, $2, false)")
                .bind(setting)
                .bind(millis.to_string())
                .execute(&mut *conn)
                .await
                .map(|_| ()),
            None => {
                sqlx::query("SELECT set_config($1, NULL, false)").bind(setting).execute(&mut *conn).await.map(|_| ())
            }
        };
        if let Err(error) = done {
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

pub async fn unlock(conn: &mut PgConnection, key: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_advisory_unlock($1)").bind(key).fetch_one(conn).await
}

/// The emails the database knows for `ids` (users it has heard of, and not deleted), to name the authors of shared
/// todos.
pub async fn user_emails(conn: &mut PgConnection, ids: &[String]) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, email FROM authbridge.users WHERE id = ANY($1) AND email IS NOT NULL AND deleted_at IS NULL",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// The users and organizations WorkOS has deleted, as recorded here: their ids, whose tombstones are kept forever
/// (migrations/0004).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    pub users: Vec<String>,
    pub organizations: Vec<String>,
}

pub async fn deleted(conn: &mut PgConnection) -> Result<Deleted, sqlx::Error> {
    let users = sqlx::query_scalar("SELECT id FROM authbridge.users WHERE deleted_at IS NOT NULL ORDER BY id")
        .fetch_all(&mut *conn)
        .await?;
    let organizations =
        sqlx::query_scalar("SELECT id FROM authbridge.organizations WHERE deleted_at IS NOT NULL ORDER BY id")
            .fetch_all(conn)
            .await?;
    Ok(Deleted { users, organizations })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(organization: &str, role: &str, roles: &[&str]) -> ActiveMembership {
        ActiveMembership {
            id: organization.to_owned(),
            name: Some(organization.to_uppercase()),
            role: Some(role.to_owned()),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        }
    }

    #[test]
    fn two_memberships_in_one_organization_are_one_entry_with_the_latest_role_and_every_slug() {
        let merged = merge_by_organization(
            [
                membership("org_a", "member", &["member"]),
                membership("org_a", "admin", &[]),
                membership("org_a", "member", &["member", "billing"]),
                membership("org_b", "member", &["member"]),
            ]
            .into_iter(),
        );
        assert_eq!(merged.len(), 2, "{merged:?}");
        assert_eq!(merged[0].role.as_deref(), Some("member"), "the latest membership's role");
        assert_eq!(merged[0].roles, ["member", "admin", "billing"]);
        assert!(merged[0].is_admin(), "an admin membership counts, as in the delete policy");
        assert_eq!(merged[1], membership("org_b", "member", &["member"]));
        assert!(!merged[1].is_admin());
    }
}

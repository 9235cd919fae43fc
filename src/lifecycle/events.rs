//! WorkOS events as typed changes, and the one way any of them is applied, whichever channel delivered it.
//!
//! [`apply`] runs one transaction per event: record the event id in the idempotency ledger (a second delivery finds
//! it there and changes nothing), make the change with versioned writes (`store`), and, for the Events API
//! consumer, move its cursor past the event. Either all of it is committed or none of it is.

use sqlx::{Connection, PgConnection};

use super::store::{self, RevokedBy, Source, Version};
use crate::workos::objects::{
    Directory, DirectoryGroupChange, DirectoryUser, EventEnvelope, Membership, Organization, Session, User,
};

/// The event types authbridge acts on: asked for from the Events API, and the only ones applied from either
/// channel. Anything else is recorded and ignored.
pub const HANDLED_EVENT_TYPES: [&str; 16] = [
    "user.created",
    "user.updated",
    "user.deleted",
    "organization.created",
    "organization.updated",
    "organization.deleted",
    "organization_membership.created",
    "organization_membership.updated",
    "organization_membership.deleted",
    "session.revoked",
    "dsync.user.created",
    "dsync.user.updated",
    "dsync.user.deleted",
    "dsync.group.user_added",
    "dsync.group.user_removed",
    "dsync.deleted",
];

/// What an event changes, parsed from its `data`.
#[derive(Debug, Clone)]
pub enum Change {
    UserUpserted(User),
    UserDeleted(User),
    OrganizationUpserted(Organization),
    OrganizationDeleted(Organization),
    MembershipUpserted(Membership),
    MembershipDeleted(Membership),
    SessionRevoked(Session),
    /// `dsync.user.created/updated`, and the directory user carried by `dsync.group.user_added/removed`: its
    /// `state` is what matters (anything but `active` deprovisions).
    DirectoryUserUpserted(DirectoryUser),
    DirectoryUserDeleted(DirectoryUser),
    /// The whole directory connection deleted: it vouches for nobody any more, and its denials stay.
    DirectoryDeleted(Directory),
}

/// An event as authbridge understands it.
#[derive(Debug, Clone)]
pub enum Parsed {
    Known(Change),
    /// A type authbridge does not handle: recorded and ignored.
    Unknown,
    /// A handled type whose `data` cannot be read: recorded as rejected, changes nothing.
    Unreadable(String),
}

pub fn parse(envelope: &EventEnvelope) -> Parsed {
    fn data<T: serde::de::DeserializeOwned>(envelope: &EventEnvelope) -> Result<T, String> {
        serde_json::from_value(envelope.data.clone()).map_err(|error| error.to_string())
    }
    let change = match envelope.event_type.as_str() {
        "user.created" | "user.updated" => data(envelope).map(Change::UserUpserted),
        "user.deleted" => data(envelope).map(Change::UserDeleted),
        "organization.created" | "organization.updated" => data(envelope).map(Change::OrganizationUpserted),
        "organization.deleted" => data(envelope).map(Change::OrganizationDeleted),
        "organization_membership.created" | "organization_membership.updated" => {
            data(envelope).map(Change::MembershipUpserted)
        }
        "organization_membership.deleted" => data(envelope).map(Change::MembershipDeleted),
        "session.revoked" => data(envelope).map(Change::SessionRevoked),
        "dsync.user.created" | "dsync.user.updated" => data(envelope).map(Change::DirectoryUserUpserted),
        "dsync.user.deleted" => data(envelope).map(Change::DirectoryUserDeleted),
        "dsync.deleted" => data(envelope).map(Change::DirectoryDeleted),
        // Group membership itself changes no organization membership (WorkOS sends role changes as
        // `organization_membership.updated`), but the directory user it carries may have been deactivated.
        "dsync.group.user_added" | "dsync.group.user_removed" => {
            data::<DirectoryGroupChange>(envelope).map(|change| Change::DirectoryUserUpserted(change.user))
        }
        _ => return Parsed::Unknown,
    };
    match change {
        Ok(change) => Parsed::Known(change),
        Err(why) => Parsed::Unreadable(why),
    }
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Already in the ledger: nothing changed.
    Duplicate,
    /// A type authbridge does not handle: recorded, nothing changed.
    Ignored,
    /// A handled type whose payload could not be read: recorded, nothing changed.
    Rejected(String),
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Rejected(_) => "rejected",
        }
    }
}

/// What the rest of the app must hear about at once (the database already has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    SessionRevoked {
        session_id: String,
    },
    UserDeleted {
        user_id: String,
    },
    /// A membership names an organization the database has no row for: fetch it, for its name.
    OrganizationMissing {
        organization_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    pub effects: Vec<Effect>,
}

/// Applies one event in one transaction. With `advance_cursor`, the Events API cursor moves past this event in the
/// same transaction, duplicate or not, so a restart resumes after it and never re-reads it.
pub async fn apply(
    conn: &mut PgConnection,
    envelope: &EventEnvelope,
    source: Source,
    advance_cursor: bool,
) -> Result<Applied, sqlx::Error> {
    let parsed = parse(envelope);
    let recorded_as = match &parsed {
        Parsed::Known(_) => "applied",
        Parsed::Unknown => "ignored",
        Parsed::Unreadable(_) => "rejected",
    };
    let mut tx = conn.begin().await?;
    let first =
        store::record_event(&mut tx, &envelope.id, &envelope.event_type, source, recorded_as, envelope.created_at)
            .await?;
    let mut effects = Vec::new();
    let outcome = match parsed {
        // Unreadable is unreadable however often it comes: every delivery is refused alike (a webhook retry too,
        // so WorkOS's dashboard keeps showing the failure).
        Parsed::Unreadable(why) => Outcome::Rejected(why),
        _ if !first => Outcome::Duplicate,
        Parsed::Known(change) => {
            effects = apply_change(&mut tx, &change, envelope).await?;
            Outcome::Applied
        }
        Parsed::Unknown => Outcome::Ignored,
    };
    if advance_cursor {
        store::advance_cursor(&mut tx, &envelope.id, envelope.created_at).await?;
    }
    tx.commit().await?;
    record_metrics(envelope, source, &outcome);
    Ok(Applied { outcome, effects })
}

/// Records an event that could be parsed but not applied, again and again (see `consumer`), as rejected, and moves
/// the Events API cursor past it, in one transaction: the events after it are read again. As for an unreadable
/// payload, the entry is not final: a later delivery that applies (a webhook retry after a fix) takes it over.
pub async fn reject(
    conn: &mut PgConnection,
    envelope: &EventEnvelope,
    source: Source,
    why: String,
) -> Result<Applied, sqlx::Error> {
    let mut tx = conn.begin().await?;
    store::record_event(&mut tx, &envelope.id, &envelope.event_type, source, "rejected", envelope.created_at).await?;
    store::advance_cursor(&mut tx, &envelope.id, envelope.created_at).await?;
    tx.commit().await?;
    let outcome = Outcome::Rejected(why);
    record_metrics(envelope, source, &outcome);
    Ok(Applied { outcome, effects: Vec::new() })
}

/// Counts the event by channel and outcome and, for the first handling only, how long after its creation at WorkOS
/// it took effect here (a duplicate's lag would say nothing about freshness).
fn record_metrics(envelope: &EventEnvelope, source: Source, outcome: &Outcome) {
    metrics::counter!("authbridge_webhook_events_total", "source" => source.as_str(), "outcome" => outcome.as_str())
        .increment(1);
    if matches!(outcome, Outcome::Applied | Outcome::Ignored) {
        let lag = time::OffsetDateTime::now_utc() - envelope.created_at;
        metrics::histogram!("authbridge_webhook_event_lag_seconds", "source" => source.as_str())
            .record(lag.as_seconds_f64().max(0.0));
    }
}

fn version(updated_at: time::OffsetDateTime, envelope: &EventEnvelope) -> Version {
    Version { updated_at, event_at: envelope.created_at, event_id: envelope.id.clone() }
}

async fn apply_change(
    conn: &mut PgConnection,
    change: &Change,
    envelope: &EventEnvelope,
) -> Result<Vec<Effect>, sqlx::Error> {
    let mut effects = Vec::new();
    match change {
        Change::UserUpserted(user) => {
            store::upsert_user(conn, &user.id, user.email.as_deref(), &version(user.updated_at, envelope)).await?;
        }
        Change::UserDeleted(user) => {
            store::tombstone_user(conn, &user.id, &version(user.updated_at, envelope)).await?;
            effects.push(Effect::UserDeleted { user_id: user.id.clone() });
        }
        Change::OrganizationUpserted(organization) => {
            store::upsert_organization(conn, organization, &version(organization.updated_at, envelope)).await?;
        }
        Change::OrganizationDeleted(organization) => {
            store::tombstone_organization(conn, organization, &version(organization.updated_at, envelope)).await?;
        }
        Change::MembershipUpserted(membership) => {
            store::upsert_membership(conn, membership, &version(membership.updated_at, envelope)).await?;
            if !store::organization_is_known(conn, &membership.organization_id).await? {
                effects.push(Effect::OrganizationMissing { organization_id: membership.organization_id.clone() });
            }
        }
        Change::MembershipDeleted(membership) => {
            store::tombstone_membership(conn, membership, &version(membership.updated_at, envelope)).await?;
        }
        Change::SessionRevoked(session) => {
            let updated_at = session.updated_at.unwrap_or(envelope.created_at);
            let version = version(updated_at, envelope);
            store::revoke_session(conn, &session.id, session.user_id.as_deref(), RevokedBy::Event, &version).await?;
            effects.push(Effect::SessionRevoked { session_id: session.id.clone() });
        }
        Change::DirectoryUserUpserted(user) => {
            store::upsert_directory_user(conn, user, &version(user.updated_at, envelope)).await?;
        }
        Change::DirectoryUserDeleted(user) => {
            store::tombstone_directory_user(conn, user, &version(user.updated_at, envelope)).await?;
        }
        Change::DirectoryDeleted(directory) => {
            store::delete_directory(conn, directory, &envelope.id).await?;
        }
    }
    Ok(effects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(event_type: &str, data: serde_json::Value) -> EventEnvelope {
        serde_json::from_value(json!({
            "id": "event_1", "event": event_type, "data": data, "created_at": "2026-01-15T12:00:00.000Z"
        }))
        .expect("envelope")
    }

    #[test]
    fn every_handled_type_parses_and_others_are_unknown() {
        let user = json!({"id": "user_1", "email": "a@b.c", "updated_at": "2026-01-15T12:00:00.000Z"});
        assert!(matches!(parse(&envelope("user.deleted", user)), Parsed::Known(Change::UserDeleted(_))));
        let directory_user = json!({"id": "directory_user_1", "state": "inactive",
                                    "updated_at": "2026-01-15T12:00:00.000Z"});
        let group = json!({"directory_id": "directory_1", "user": directory_user, "group": {"id": "g"}});
        assert!(matches!(
            parse(&envelope("dsync.group.user_removed", group)),
            Parsed::Known(Change::DirectoryUserUpserted(user)) if user.state == "inactive"
        ));
        assert!(matches!(parse(&envelope("session.created", json!({}))), Parsed::Unknown));
        assert!(matches!(parse(&envelope("connection.activated", json!(null))), Parsed::Unknown));
    }

    #[test]
    fn a_handled_type_with_an_unreadable_payload_is_rejected_not_guessed() {
        let parsed = parse(&envelope("organization_membership.updated", json!({"id": "om_1"})));
        assert!(matches!(parsed, Parsed::Unreadable(_)), "{parsed:?}");
    }
}

//! The WorkOS objects authbridge reads for the enterprise lifecycle (users, organizations, memberships, sessions,
//! directory users, events), as `docs/workos.md` §4–§6 records them.
//!
//! Parsing is lenient where WorkOS's own sources disagree (the event envelope's `object`, `roles`, timestamps with
//! or without a zone) and strict where authbridge depends on a field (ids, `updated_at`); a membership status it
//! does not know counts as inactive (it grants nothing) rather than making the object unreadable.
//! Unknown fields are ignored: WorkOS adds fields without notice.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Reads a WorkOS answer or webhook body as `T`, with every U+0000 in its strings replaced by U+FFFD. JSON can
/// carry U+0000 (`\u0000`) but PostgreSQL's `text` cannot hold it, so a WorkOS string with one (an organization
/// renamed with it) would fail every statement that stores it: the webhook answered 500 on every retry, the Events
/// API consumer held up behind the event for its retries. U+FFFD is what a character that cannot be kept becomes.
pub fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    fn clean(value: &mut Value) {
        match value {
            Value::String(text) if text.contains('\0') => *text = text.replace('\0', "\u{FFFD}"),
            Value::Array(items) => items.iter_mut().for_each(clean),
            // Keys are not stored: only what they name is.
            Value::Object(fields) => fields.values_mut().for_each(clean),
            _ => {}
        }
    }
    // JSON carries U+0000 only as the escape `\u0000` (a raw NUL byte is not JSON): without one, one parse as usual.
    if !bytes.windows(6).any(|window| window == br"\u0000") {
        return serde_json::from_slice(bytes);
    }
    let mut value: Value = serde_json::from_slice(bytes)?;
    clean(&mut value);
    serde_json::from_value(value)
}

/// An event envelope, from a webhook body or a page of `GET /events` (§4.3). `data` stays raw until its type is
/// known: unknown event types are recorded, not parsed.
#[derive(Debug, Clone, Deserialize)]
pub struct EventEnvelope {
    pub id: String,
    #[serde(rename = "event")]
    pub event_type: String,
    #[serde(default)]
    pub data: Value,
    #[serde(deserialize_with = "timestamp")]
    pub created_at: OffsetDateTime,
}

/// A page of a WorkOS list endpoint (§6): `{"data": […], "list_metadata": {"after": …}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ListPage<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub list_metadata: ListMetadata,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListMetadata {
    #[serde(default)]
    pub after: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(deserialize_with = "timestamp")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Organization {
    pub id: String,
    pub name: String,
    #[serde(deserialize_with = "timestamp")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipStatus {
    Active,
    Pending,
    /// Also any status this code does not know (WorkOS's own generated SDKs accept unknown values): such a
    /// membership grants nothing, and one odd value cannot make a whole page of memberships unreadable.
    #[serde(other)]
    Inactive,
}

impl MembershipStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Pending => "pending",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RoleRef {
    pub slug: String,
}

/// An organization membership, from an `organization_membership.*` event or the REST API (§5.3, §6.2).
#[derive(Debug, Clone, Deserialize)]
pub struct Membership {
    pub id: String,
    pub user_id: String,
    pub organization_id: String,
    /// The organization's name: on REST memberships, never in events (§5.3, §6.2; optional in the spec).
    #[serde(default)]
    pub organization_name: Option<String>,
    pub status: MembershipStatus,
    #[serde(default)]
    pub role: Option<RoleRef>,
    /// Present when the environment has multiple roles enabled.
    #[serde(default)]
    pub roles: Option<Vec<RoleRef>>,
    #[serde(default)]
    pub directory_managed: bool,
    #[serde(deserialize_with = "timestamp")]
    pub updated_at: OffsetDateTime,
}

impl Membership {
    /// The primary role: `role`, which WorkOS documents as "the primary role assigned to the user within the
    /// organization" (the order of `roles` is not documented); the first of `roles` only when `role` is absent.
    pub fn primary_role(&self) -> Option<&str> {
        self.role
            .as_ref()
            .or_else(|| self.roles.as_ref().and_then(|roles| roles.first()))
            .map(|role| role.slug.as_str())
    }

    pub fn role_slugs(&self) -> Vec<String> {
        match (&self.roles, &self.role) {
            (Some(roles), _) if !roles.is_empty() => roles.iter().map(|role| role.slug.clone()).collect(),
            (_, Some(role)) => vec![role.slug.clone()],
            _ => Vec::new(),
        }
    }
}

/// A session, from `session.revoked` (§5.4). Only its id and user matter: the event type is the signal.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub id: String,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default, deserialize_with = "optional_timestamp")]
    pub updated_at: Option<OffsetDateTime>,
}

/// A Directory Sync user (§5.5). `state` other than `active` (`inactive`, `suspended`) means deprovisioned.
#[derive(Debug, Clone, Deserialize)]
pub struct DirectoryUser {
    pub id: String,
    #[serde(default)]
    pub directory_id: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    pub state: String,
    #[serde(deserialize_with = "timestamp")]
    pub updated_at: OffsetDateTime,
}

/// A Directory Sync connection, from `dsync.deleted`: only which directory it was matters.
#[derive(Debug, Clone, Deserialize)]
pub struct Directory {
    pub id: String,
    #[serde(default)]
    pub organization_id: Option<String>,
}

/// `dsync.group.user_added` / `dsync.group.user_removed`: the directory user as it is now, and the group.
#[derive(Debug, Clone, Deserialize)]
pub struct DirectoryGroupChange {
    pub user: DirectoryUser,
}

/// ISO 8601 with a zone first, then without one, `T` or space between date and time (`YYYY-MM-DD HH:MM:SS[.fraction]`,
/// as some published samples have it, §4.4), read as UTC.
pub fn parse_timestamp(raw: &str) -> Option<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Some(at);
    }
    let forms = [
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ];
    forms
        .iter()
        .find_map(|form| time::PrimitiveDateTime::parse(raw, form).ok())
        .map(time::PrimitiveDateTime::assume_utc)
}

fn timestamp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OffsetDateTime, D::Error> {
    let raw = String::deserialize(deserializer)?;
    parse_timestamp(&raw).ok_or_else(|| serde::de::Error::custom(format!("not a timestamp: {raw:?}")))
}

fn optional_timestamp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<OffsetDateTime>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(raw) => parse_timestamp(&raw).map(Some).ok_or_else(|| serde::de::Error::custom("not a timestamp")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_any_string_becomes_a_replacement_character_and_nothing_else_changes() {
        let body =
            br#"{"id":"org_1\u0000","name":"a\u0000b","domains":[{"domain":"\u0000"}],"n":1,"t":true,"k\u0000":"x"}"#;
        let value: Value = from_json(body).expect("readable");
        assert_eq!(
            value,
            json!({"id": "org_1\u{FFFD}", "name": "a\u{FFFD}b", "domains": [{"domain": "\u{FFFD}"}], "n": 1, "t": true, "k\u{0}": "x"})
        );
        assert!(from_json::<Value>(b"{").is_err(), "not JSON: refused as before");
    }
    use serde_json::json;

    #[test]
    fn both_timestamp_forms_parse_as_utc() {
        let iso = parse_timestamp("2026-01-15T12:00:00.000Z").expect("ISO 8601");
        let spaced = parse_timestamp("2026-01-15 12:00:00.000").expect("the spaced sample form");
        assert_eq!(iso, spaced);
        assert_eq!(parse_timestamp("2020-05-06 04:21:48"), parse_timestamp("2020-05-06T04:21:48Z"));
        assert_eq!(parse_timestamp("2026-01-15T12:00:00.000"), Some(iso), "ISO 8601 without a zone: UTC");
        assert_eq!(parse_timestamp("2020-05-06T04:21:48"), parse_timestamp("2020-05-06T04:21:48Z"));
        assert!(parse_timestamp("yesterday").is_none());
    }

    #[test]
    fn a_membership_status_this_code_does_not_know_grants_nothing() {
        let membership = |status: &str| {
            serde_json::from_value::<Membership>(serde_json::json!({
                "id": "om_1", "user_id": "user_1", "organization_id": "org_1", "status": status,
                "updated_at": "2026-01-15T12:00:00.000Z",
            }))
            .expect("a membership")
            .status
        };
        assert_eq!(membership("active"), MembershipStatus::Active);
        assert_eq!(membership("pending"), MembershipStatus::Pending);
        assert_eq!(membership("inactive"), MembershipStatus::Inactive);
        assert_eq!(membership("suspended"), MembershipStatus::Inactive);
        assert_eq!(membership("Active"), MembershipStatus::Inactive, "only the exact value grants access");
    }

    #[test]
    fn an_envelope_parses_with_or_without_object_and_context() {
        let envelope: EventEnvelope = serde_json::from_value(json!({
            "id": "event_1", "event": "user.deleted", "data": {"id": "user_1"},
            "created_at": "2026-01-15T12:00:00.000Z"
        }))
        .expect("no object, no context");
        assert_eq!(envelope.event_type, "user.deleted");
        let envelope: EventEnvelope = serde_json::from_value(json!({
            "object": "event", "id": "event_2", "event": "x.y", "data": {}, "context": {"actor": null},
            "created_at": "2023-04-28 20:05:31.093", "extra": 1
        }))
        .expect("object, context and unknown fields");
        assert_eq!(envelope.id, "event_2");
    }

    #[test]
    fn membership_roles_prefer_the_list_then_the_single_role() {
        let membership: Membership = serde_json::from_value(json!({
            "id": "om_1", "user_id": "user_1", "organization_id": "org_1", "status": "active",
            "role": {"slug": "member"}, "roles": [{"slug": "admin"}, {"slug": "billing"}],
            "updated_at": "2026-01-15T12:00:00.000Z"
        }))
        .expect("membership");
        assert_eq!(membership.role_slugs(), ["admin", "billing"]);
        assert_eq!(membership.primary_role(), Some("member"), "the primary role is `role`, not the first of `roles`");
        assert!(!membership.directory_managed);

        let only_roles: Membership = serde_json::from_value(json!({
            "id": "om_1", "user_id": "user_1", "organization_id": "org_1", "status": "active",
            "roles": [{"slug": "billing"}, {"slug": "admin"}], "updated_at": "2026-01-15T12:00:00.000Z"
        }))
        .expect("membership");
        assert_eq!(only_roles.primary_role(), Some("billing"));
        assert_eq!(only_roles.organization_name, None, "events carry no organization name");
    }

    #[test]
    fn a_membership_without_a_list_of_roles_has_its_single_role() {
        for roles in [json!(null), json!([])] {
            let membership: Membership = serde_json::from_value(json!({
                "id": "om_1", "user_id": "user_1", "organization_id": "org_1", "status": "active",
                "role": {"slug": "admin"}, "roles": roles, "updated_at": "2026-01-15T12:00:00.000Z"
            }))
            .expect("membership");
            assert_eq!(membership.role_slugs(), ["admin"], "roles: {roles}");
        }
        let no_role: Membership = serde_json::from_value(json!({
            "id": "om_1", "user_id": "user_1", "organization_id": "org_1", "status": "active",
            "updated_at": "2026-01-15T12:00:00.000Z"
        }))
        .expect("membership");
        assert!(no_role.role_slugs().is_empty());
    }

    #[test]
    fn a_revoked_sessions_time_is_read_when_given_and_refused_when_unreadable() {
        let session: Session =
            serde_json::from_value(json!({"id": "session_1", "updated_at": "2026-01-15T12:00:00.000Z"})).expect("read");
        assert_eq!(session.updated_at, Some(time::macros::datetime!(2026-01-15 12:00 UTC)));
        let without: Session = serde_json::from_value(json!({"id": "session_1"})).expect("no time: read");
        assert_eq!(without.updated_at, None);
        assert!(serde_json::from_value::<Session>(json!({"id": "session_1", "updated_at": "yesterday"})).is_err());
    }

    #[test]
    fn a_rest_membership_names_its_organization() {
        let membership: Membership = serde_json::from_value(json!({
            "object": "organization_membership", "id": "om_1", "user_id": "user_1", "organization_id": "org_1",
            "organization_name": "Acme Corp", "status": "active", "updated_at": "2023-07-18T02:07:19.911Z"
        }))
        .expect("membership");
        assert_eq!(membership.organization_name.as_deref(), Some("Acme Corp"));
    }
}

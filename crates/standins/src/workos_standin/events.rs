//! The stand-in's event history: every change it makes is recorded as a WorkOS event (docs/workos.md §4), readable
//! through `GET /events` and pushed to registered webhook endpoints.
//!
//! Event ids are opaque and deliberately not sortable (random), as the real ones must be treated: a client that
//! compares or parses them is caught here. Timestamps are in WorkOS's millisecond ISO 8601 form, from a clock that
//! never goes back. Separate changes never share a millisecond, but the events of one cascade (a user deletion's
//! `session.revoked`, `organization_membership.deleted` and `user.deleted`, say) share one `created_at`, as they
//! can at WorkOS: their order is then only the list's order, which is the order they were made in ("a consistent
//! order is guaranteed", docs `/events/data-syncing`), so a client that sorts or pages by time alone is caught.

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

/// One event, as recorded when its change was made.
#[derive(Debug, Clone)]
pub struct StandInEvent {
    pub id: String,
    pub event_type: String,
    pub data: Value,
    pub created_at: OffsetDateTime,
}

impl StandInEvent {
    /// The envelope WorkOS sends and lists (§4.3): `object`, `id`, `event`, `data`, `created_at`.
    pub fn envelope(&self) -> Value {
        json!({
            "object": "event",
            "id": self.id,
            "event": self.event_type,
            "data": self.data,
            "created_at": timestamp(self.created_at),
        })
    }

    /// The organization an event is about, for `GET /events?organization_id=` ("user events are not organization
    /// specific", §4.1).
    fn organization_id(&self) -> Option<&str> {
        if self.event_type.starts_with("organization.") {
            return self.data.get("id").and_then(Value::as_str);
        }
        if self.event_type.starts_with("user.") {
            return None;
        }
        self.data
            .get("organization_id")
            .or_else(|| self.data.get("group").and_then(|group| group.get("organization_id")))
            .and_then(Value::as_str)
    }
}

/// The history and the clock that stamps it.
#[derive(Debug, Default)]
pub struct StandInEventLog {
    events: Vec<StandInEvent>,
    last_tick: Option<OffsetDateTime>,
    /// The time every tick returns while a cascade is open, and how many cascades are open (they nest).
    cascade: Option<(OffsetDateTime, usize)>,
    /// Cursors `GET /events` no longer knows (as if past retention): an `after` naming one is unknown.
    forgotten_cursors: std::collections::HashSet<String>,
    /// Events past retention: neither listed nor known as cursors.
    expired: std::collections::HashSet<String>,
}

/// How `GET /events` treats an `after` it does not know: WorkOS does not document it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownCursor {
    /// Start again from the first event, as WorkOS's own emulator does.
    #[default]
    Restart,
    /// Answer 400 `{"message"}`.
    Refuse,
    /// Answer an empty page, as if nothing came after it: a consumer that trusts it reads nothing ever again.
    Empty,
}

/// A `GET /events` request as the stand-in understood it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StandInEventsQuery {
    pub types: Vec<String>,
    pub after: Option<String>,
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    pub order: Option<String>,
    pub limit: Option<String>,
    pub organization_id: Option<String>,
}

/// Why `GET /events` refused a query: the message for a 400/422 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsQueryError(pub String);

/// A page of events and the cursor to the next one.
pub struct EventsPage {
    pub data: Vec<Value>,
    pub after: Option<String>,
}

impl StandInEventLog {
    /// Now, in milliseconds. Inside a cascade, the cascade's time; otherwise strictly after every earlier tick, so
    /// two separate changes never share a timestamp.
    pub fn tick(&mut self) -> OffsetDateTime {
        match self.cascade {
            Some((at, _)) => at,
            None => self.next_tick(),
        }
    }

    /// Opens a cascade: until the matching [`Self::end_cascade`], every change and event is stamped with one time.
    pub fn begin_cascade(&mut self) {
        self.cascade = match self.cascade {
            Some((at, depth)) => Some((at, depth + 1)),
            None => Some((self.next_tick(), 1)),
        };
    }

    pub fn end_cascade(&mut self) {
        self.cascade = match self.cascade {
            Some((at, depth)) if depth > 1 => Some((at, depth - 1)),
            _ => None,
        };
    }

    fn next_tick(&mut self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        let now = now.replace_nanosecond(now.millisecond() as u32 * 1_000_000).unwrap_or(now);
        let next = match self.last_tick {
            Some(last) if now <= last => last + time::Duration::milliseconds(1),
            _ => now,
        };
        self.last_tick = Some(next);
        next
    }

    /// Records an event; returns its id.
    pub fn emit(&mut self, event_type: &str, data: Value) -> String {
        let created_at = self.tick();
        let id = format!("event_{}", Uuid::new_v4().simple());
        self.events.push(StandInEvent { id: id.clone(), event_type: event_type.to_owned(), data, created_at });
        id
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn since(&self, index: usize) -> &[StandInEvent] {
        self.events.get(index..).unwrap_or_default()
    }

    pub fn all(&self) -> &[StandInEvent] {
        &self.events
    }

    pub fn forget_cursors(&mut self) {
        self.forgotten_cursors.extend(self.events.iter().map(|event| event.id.clone()));
    }

    /// Every event so far is past retention: gone from listings, and unknown as a cursor.
    pub fn expire_all(&mut self) {
        self.forget_cursors();
        self.expired.extend(self.events.iter().map(|event| event.id.clone()));
    }

    /// `GET /events`, as WorkOS documents it: `order` defaults to `desc`, `limit` to 10 (at most 100), `after` is an
    /// event id, `range_start`/`range_end` are ISO 8601. With `honour_types` false the type filter is ignored, as
    /// some servers do.
    pub fn page(
        &self,
        query: &StandInEventsQuery,
        honour_types: bool,
        unknown_cursor: UnknownCursor,
    ) -> Result<EventsPage, EventsQueryError> {
        let limit = match query.limit.as_deref() {
            None => 10,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=100).contains(limit))
                .ok_or_else(|| EventsQueryError("limit must be between 1 and 100".to_owned()))?,
        };
        let ascending = match query.order.as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            // WorkOS's `normal` is descending with its cursors reversed; no client here sends it, so it is refused
            // rather than imitated wrongly.
            Some("normal") => return Err(EventsQueryError("order=normal is not imitated by the stand-in".to_owned())),
            Some(_) => return Err(EventsQueryError("order must be asc, desc or normal".to_owned())),
        };
        let range = |raw: &Option<String>| -> Result<Option<OffsetDateTime>, EventsQueryError> {
            raw.as_deref()
                .map(|raw| {
                    super::sdk_time(raw).ok_or_else(|| {
                        EventsQueryError(format!("{raw:?} is not an ISO 8601 time as the SDKs send one"))
                    })
                })
                .transpose()
        };
        let (range_start, range_end) = (range(&query.range_start)?, range(&query.range_end)?);
        // WorkOS reads either a cursor or a time range, never both (docs `/events/data-syncing/events-api`).
        if query.after.is_some() && (range_start.is_some() || range_end.is_some()) {
            return Err(EventsQueryError("after cannot be combined with range_start or range_end".to_owned()));
        }

        // Each event with its place in the history: the list's order, which times alone cannot give (a cascade's
        // events share one).
        let mut ordered: Vec<(usize, &StandInEvent)> = self
            .events
            .iter()
            .enumerate()
            .filter(|(_, event)| !self.expired.contains(&event.id))
            .filter(|(_, event)| !honour_types || query.types.is_empty() || query.types.contains(&event.event_type))
            .filter(|(_, event)| {
                query.organization_id.as_deref().is_none_or(|org| event.organization_id() == Some(org))
            })
            .filter(|(_, event)| range_start.is_none_or(|start| event.created_at >= start))
            .filter(|(_, event)| range_end.is_none_or(|end| event.created_at < end))
            .collect();
        if !ascending {
            ordered.reverse();
        }
        // The cursor is found in the whole history in the page's order, so it works even for an event the filter
        // drops.
        let start = match query.after.as_deref() {
            None => 0,
            Some(after) => {
                let known = !self.forgotten_cursors.contains(after);
                let position = self.events.iter().position(|event| event.id == after).filter(|_| known);
                match (position, unknown_cursor) {
                    (Some(position), _) => ordered
                        .iter()
                        .position(|(index, _)| if ascending { *index > position } else { *index < position })
                        .unwrap_or(ordered.len()),
                    (None, UnknownCursor::Restart) => 0,
                    (None, UnknownCursor::Refuse) => {
                        return Err(EventsQueryError(format!("No event with id {after:?} can be paged from.")));
                    }
                    (None, UnknownCursor::Empty) => ordered.len(),
                }
            }
        };
        let rest = ordered.get(start..).unwrap_or_default();
        let page: Vec<&StandInEvent> = rest.iter().take(limit).map(|(_, event)| *event).collect();
        let after = (rest.len() > limit).then(|| page.last().map(|event| event.id.clone())).flatten();
        Ok(EventsPage { data: page.iter().map(|event| event.envelope()).collect(), after })
    }
}

/// WorkOS's timestamp form: ISO 8601, UTC, milliseconds (`2026-01-15T12:00:00.000Z`).
pub fn timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(types: &[&str]) -> StandInEventLog {
        let mut log = StandInEventLog::default();
        for event_type in types {
            log.emit(event_type, json!({"id": "x"}));
        }
        log
    }

    fn ids(page: &EventsPage) -> Vec<String> {
        page.data.iter().map(|event| event["id"].as_str().unwrap_or_default().to_owned()).collect()
    }

    #[test]
    fn the_clock_never_repeats_and_prints_milliseconds() {
        let mut log = StandInEventLog::default();
        let (a, b) = (log.tick(), log.tick());
        assert!(b > a);
        assert!(timestamp(a).ends_with('Z') && timestamp(a).len() == 24, "{}", timestamp(a));
    }

    #[test]
    fn a_cascade_shares_one_time_and_pages_still_follow_the_list_order() {
        let mut log = StandInEventLog::default();
        log.emit("before", json!({}));
        log.begin_cascade();
        log.emit("session.revoked", json!({}));
        log.begin_cascade();
        log.emit("organization_membership.deleted", json!({}));
        log.end_cascade();
        log.emit("user.deleted", json!({}));
        log.end_cascade();
        log.emit("after", json!({}));
        let times: Vec<OffsetDateTime> = log.all().iter().map(|event| event.created_at).collect();
        assert!(times[0] < times[1], "a cascade starts after the change before it");
        assert_eq!((times[1], times[2]), (times[3], times[3]), "one time for the whole (nested) cascade");
        assert!(times[3] < times[4], "and the next change comes after it");

        let all: Vec<String> = log.all().iter().map(|event| event.id.clone()).collect();
        let cases = [
            ("asc", &all[1], vec![all[2].clone(), all[3].clone()]),
            ("desc", &all[3], vec![all[2].clone(), all[1].clone()]),
        ];
        for (order, cursor, expected) in cases {
            let query = StandInEventsQuery {
                after: Some(cursor.clone()),
                order: Some(order.into()),
                limit: Some("2".into()),
                ..StandInEventsQuery::default()
            };
            let page = log.page(&query, true, UnknownCursor::Restart).expect("page");
            assert_eq!(ids(&page), expected, "{order}: the events after the cursor in the list, though at its time");
        }
    }

    #[test]
    fn pages_follow_the_cursor_in_either_order_and_filter_types() {
        let log = log_of(&["a", "b", "a", "a", "b"]);
        let all: Vec<String> = log.all().iter().map(|event| event.id.clone()).collect();
        let query = |after: Option<&str>, order: &str| StandInEventsQuery {
            types: vec!["a".into()],
            after: after.map(str::to_owned),
            order: Some(order.into()),
            limit: Some("2".into()),
            ..StandInEventsQuery::default()
        };
        let first = log.page(&query(None, "asc"), true, UnknownCursor::Restart).expect("page");
        assert_eq!(ids(&first), [all[0].clone(), all[2].clone()]);
        assert_eq!(first.after.as_deref(), Some(all[2].as_str()));
        let second = log.page(&query(first.after.as_deref(), "asc"), true, UnknownCursor::Restart).expect("page");
        assert_eq!(ids(&second), [all[3].clone()]);
        assert_eq!(second.after, None, "the end");

        let newest_first = log.page(&StandInEventsQuery::default(), true, UnknownCursor::Restart).expect("page");
        assert_eq!(ids(&newest_first).first(), all.last(), "desc by default");
        let unfiltered = log.page(&query(None, "asc"), false, UnknownCursor::Restart).expect("page");
        assert_eq!(ids(&unfiltered), [all[0].clone(), all[1].clone()], "types ignored on request");
    }

    #[test]
    fn an_unknown_cursor_restarts_is_refused_or_ends_the_list() {
        let mut log = log_of(&["a", "a"]);
        let first = log.all()[0].id.clone();
        let query = StandInEventsQuery { after: Some(first.clone()), order: Some("asc".into()), ..Default::default() };
        assert_eq!(log.page(&query, true, UnknownCursor::Restart).expect("page").data.len(), 1);
        log.forget_cursors();
        assert_eq!(log.page(&query, true, UnknownCursor::Restart).expect("page").data.len(), 2, "from the start");
        assert!(log.page(&query, true, UnknownCursor::Refuse).is_err());
        let empty = log.page(&query, true, UnknownCursor::Empty).expect("page");
        assert!(empty.data.is_empty() && empty.after.is_none(), "nothing after it, and the end of the list");
    }
}

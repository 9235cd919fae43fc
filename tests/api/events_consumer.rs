//! The Events API consumer: it reconciles on first start, resumes from its cursor after a restart, never applies an
//! event twice even with two consumers at once, rides out WorkOS being down with backoff and loses nothing, and
//! takes a server that ignores its filter or forgets its cursor in its stride.

use std::time::{Duration, Instant};

use authbridge::lifecycle::consumer::{ConsumerOptions, LOCK_KEY, MAX_PAGES_PER_POLL, MAX_RECONCILE_PAGES};
use serde_json::json;
use standins::workos_standin::{ACME_ORGANIZATION_ID, Endpoint, StandInEventsQuery, UnknownCursor};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::app::{ALICE, AppOptions, BOB, LifecycleOptions, TestApp, spawn_app_with};
use crate::helpers::lifecycle::{ORGANIZATIONS, eventually, organization_ids, ts};
use crate::helpers::logs;

/// The lifecycle with neither webhooks nor the app's own consumer: the test drives consumers itself.
async fn app_without_push() -> TestApp {
    let app = spawn_app_with(
        AppOptions::default()
            .lifecycle_with(LifecycleOptions { webhooks_from_standin: false, ..LifecycleOptions::default() }),
    )
    .await;
    // The start-up check of the API key lists organizations once: done before the tests count such calls.
    let checked =
        eventually(Duration::from_secs(10), || async { app.workos.calls(Endpoint::Organizations) >= 1 }).await;
    assert!(checked, "the API key was checked at start-up");
    app
}

fn options() -> ConsumerOptions {
    ConsumerOptions {
        poll_interval: Duration::from_millis(200),
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        // Ten minutes in service; long enough here that the five tries alone (about 3 s of backoff) do not decide.
        reject_after: Duration::from_secs(1),
        max_pages_per_poll: MAX_PAGES_PER_POLL,
        max_reconcile_pages: MAX_RECONCILE_PAGES,
        hung_after: Duration::from_secs(60),
    }
}

/// Takes the consumers' advisory lock on `conn` if nobody holds it.
async fn try_lock(conn: &mut sqlx::PgConnection) -> bool {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LOCK_KEY).fetch_one(conn).await.expect("try the lock")
}

/// The cursor's event id, and when the last poll that read the event list to its end started.
async fn cursor_row(app: &TestApp) -> (Option<String>, Option<OffsetDateTime>) {
    let mut conn = app.db.connect().await;
    sqlx::query_as("SELECT after_event_id, polled_at FROM authbridge.events_cursor WHERE id = 1")
        .fetch_optional(&mut conn)
        .await
        .expect("cursor")
        .unwrap_or_default()
}

async fn cursor(app: &TestApp) -> Option<String> {
    cursor_row(app).await.0
}

async fn polled_at(app: &TestApp) -> Option<OffsetDateTime> {
    cursor_row(app).await.1
}

/// A consumer that did not run for `days`: its cursor's event and its last complete poll are both that old, so
/// events may have been missed.
async fn stopped_for(app: &TestApp, days: i32) {
    let mut conn = app.db.connect().await;
    sqlx::query(
        "UPDATE authbridge.events_cursor \
         SET last_event_at = now() - make_interval(days => $1), polled_at = now() - make_interval(days => $1) \
         WHERE id = 1",
    )
    .bind(days)
    .execute(&mut conn)
    .await
    .expect("a consumer stopped");
}

/// Whether the database has the organization as deleted (`None`: it does not know it).
async fn organization_deleted(app: &TestApp, id: &str) -> Option<bool> {
    sqlx::query_scalar("SELECT deleted_at IS NOT NULL FROM authbridge.organizations WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut app.db.connect().await)
        .await
        .expect("the organizations table")
}

/// Emits an event this app's database refuses every time it is applied; its id. (A trigger the test adds refuses the
/// organization `org_poisoned`, as a constraint an operator added, or a value PostgreSQL cannot hold, would.)
async fn emit_poisoned(app: &TestApp) -> String {
    let mut conn = app.db.connect().await;
    sqlx::raw_sql(
        "CREATE FUNCTION authbridge.refuse_poisoned() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.id = 'org_poisoned' THEN RAISE EXCEPTION 'refused by the test' USING ERRCODE = '23514'; END IF; \
             RETURN NEW; END $$; \
         CREATE TRIGGER refuse_poisoned BEFORE INSERT OR UPDATE ON authbridge.organizations \
             FOR EACH ROW EXECUTE FUNCTION authbridge.refuse_poisoned();",
    )
    .execute(&mut conn)
    .await
    .expect("the refusing trigger");
    let now = time::OffsetDateTime::now_utc();
    app.workos.emit_event(
        "organization.created",
        json!({ "object": "organization", "id": "org_poisoned", "name": "Poisoned Corp", "updated_at": ts(now) }),
    )
}

/// Whether the database knows the organization `id` (from an event or a reconciliation).
async fn organization_known(app: &TestApp, id: &str) -> bool {
    app.query_scalar_i64("SELECT count(*) FROM authbridge.organizations WHERE id = $1", id).await == 1
}

/// The `range_start` of a query, which must have one.
fn range_start(query: &StandInEventsQuery) -> OffsetDateTime {
    let raw = query.range_start.as_deref().expect("read by time");
    OffsetDateTime::parse(raw, &Rfc3339).expect("an RFC 3339 time")
}

#[tokio::test]
async fn the_first_poll_reconciles_from_the_rest_api_then_reads_events() {
    let app = app_without_push().await;
    let report = app.consumer(options()).poll_once().await.expect("a poll");
    assert!(report.leader && report.reconciled, "{report:?}");
    assert!(app.workos.calls(Endpoint::Organizations) >= 1 && app.workos.calls(Endpoint::Memberships) >= 1);
    let first_query = app.workos.events_queries().into_iter().next().expect("an events request");
    assert_eq!(first_query.order.as_deref(), Some("asc"), "oldest first, said explicitly");
    assert_eq!(first_query.limit.as_deref(), Some("100"));
    assert!(first_query.range_start.is_some() && first_query.after.is_none(), "{first_query:?}");
    assert!(first_query.types.contains(&"organization_membership.deleted".to_owned()));
    assert_eq!(cursor(&app).await, app.workos.events().last().map(|event| event.id.clone()));

    let browser = app.signed_in(ALICE).await;
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);
    let again = app.consumer(options()).poll_once().await.expect("a poll");
    assert!(!again.reconciled, "only once");
}

/// An environment without a single event to move the cursor (new, or all its events past WorkOS's window) is read
/// from the REST API at its first poll only, not at every poll: a large tenant's listing is costly.
#[tokio::test]
async fn an_environment_without_events_is_read_from_the_rest_api_once() {
    let app = app_without_push().await;
    app.workos.expire_events();
    let first = app.consumer(options()).poll_once().await.expect("a poll");
    assert!(first.reconciled && first.applied == 0, "{first:?}");
    assert_eq!(cursor(&app).await, None, "no event to move the cursor to");
    let organizations_read = app.workos.calls(Endpoint::Organizations);

    let again = app.consumer(options()).poll_once().await.expect("the next poll");
    assert!(!again.reconciled, "only once: {again:?}");
    assert_eq!(app.workos.calls(Endpoint::Organizations), organizations_read);
}

#[tokio::test]
async fn a_restart_resumes_from_the_cursor() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("the first run");
    let cursor_before = cursor(&app).await.expect("a cursor");

    let bob = app.user_id(BOB);
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("seeded");
    app.workos.delete_membership(&acme.id).expect("removed");
    app.workos.create_organization("Initech");

    // A new process: nothing in memory, only the database.
    let report = app.consumer(options()).poll_once().await.expect("after the restart");
    assert_eq!((report.applied, report.duplicates, report.reconciled), (2, 0, false), "{report:?}");
    let query = app.workos.events_queries().pop().expect("a query");
    assert_eq!(query.after.as_deref(), Some(cursor_before.as_str()), "it asked for what came after its cursor");
    assert_eq!(cursor(&app).await, app.workos.events().last().map(|event| event.id.clone()), "and moved it on");
    assert_eq!(app.membership_row(&acme.id).await.map(|row| row.2), Some(true));
}

#[tokio::test]
async fn two_consumers_at_once_never_apply_an_event_twice() {
    let app = app_without_push().await;
    let (first, second) = (app.consumer(options()), app.consumer(options()));

    // While one consumer is inside a poll (its Events API call held for a second), the other steps aside.
    app.workos.set_latency(Endpoint::Events, Duration::from_secs(1));
    let calls = app.workos.calls(Endpoint::Events);
    let (a, b) = tokio::join!(first.poll_once(), async {
        assert!(eventually(Duration::from_secs(10), || async { app.workos.calls(Endpoint::Events) > calls }).await);
        second.poll_once().await
    });
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert!(a.leader && !b.leader, "{a:?} {b:?}");
    app.workos.set_latency(Endpoint::Events, Duration::from_millis(100));

    // Racing rounds with new events each time: every event applied by exactly one of them, once.
    let mut applied = a.applied;
    for round in 0..4 {
        for i in 0..5 {
            app.workos.create_organization(&format!("Org {round}.{i}"));
        }
        let (a, b) = tokio::join!(first.poll_once(), second.poll_once());
        let (a, b) = (a.expect("first"), b.expect("second"));
        applied += a.applied + b.applied;
        assert_eq!(a.duplicates + b.duplicates, 0, "nothing was read twice: {a:?} {b:?}");
    }
    let ledger = app.ledger().await;
    assert_eq!(applied, ledger.len(), "every application is one ledger row");
    assert!(ledger.len() >= 20, "the 20 new events at least: {}", ledger.len());

    // The lock is a real PostgreSQL advisory lock: held by anyone else, nobody consumes.
    let mut holder = app.db.connect().await;
    assert!(try_lock(&mut holder).await);
    let blocked = first.poll_once().await.expect("a poll");
    assert!(!blocked.leader, "{blocked:?}");
}

#[tokio::test]
async fn workos_down_is_retried_with_backoff_and_no_event_is_lost() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    let bob = app.user_id(BOB);
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("seeded");
    app.workos.deactivate_membership(&acme.id).expect("deactivated");
    app.workos.create_organization("Hooli");
    let last_event = app.workos.events().last().map(|event| event.id.clone());

    let calls_before = app.workos.calls(Endpoint::Events);
    app.workos.fail_next(Endpoint::Events, 3, 503);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let running = tokio::spawn(app.consumer(options()).run(stopping));
    let caught_up = eventually(Duration::from_secs(15), || async { cursor(&app).await == last_event }).await;
    let took = started.elapsed();
    stop.send_replace(true);
    running.await.expect("the consumer stops when told");

    assert!(caught_up, "the events after the outage were applied");
    assert!(app.workos.calls(Endpoint::Events) >= calls_before + 4, "three failures, then success");
    // 200 ms, 400 ms, 800 ms (each plus up to 25 % jitter) before the fourth attempt.
    assert!(took >= Duration::from_millis(1400), "retried with backoff, not in a tight loop: {took:?}");
    assert_eq!(app.membership_row(&acme.id).await.map(|row| row.0), Some("inactive".to_owned()));
    assert!(logs::captured().contains("reading the WorkOS Events API failed; will retry"));
}

/// The consumer's own database failing is logged as that, not as the Events API failing: an on-call reading the
/// line must be sent to the right dependency.
#[tokio::test]
async fn the_consumers_database_failing_is_logged_as_the_database() {
    let app = spawn_app_with(AppOptions::default().lifecycle_with(LifecycleOptions {
        webhooks_from_standin: false,
        through_proxy: true,
        ..LifecycleOptions::default()
    }))
    .await;
    let proxy = app.db_proxy.as_ref().expect("a proxy");
    proxy.cut();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(app.consumer(options()).run(stopping));
    let said = eventually(Duration::from_secs(20), || async {
        logs::captured().contains("the Events API consumer could not use the database; will retry")
    })
    .await;
    stop.send_replace(true);
    proxy.restore();
    running.await.expect("the consumer stops when told");
    assert!(said, "the database named");
}

/// A 429 from the Events API is answered by waiting at least its `Retry-After`, however short the backoff.
#[tokio::test]
async fn a_rate_limited_poll_waits_for_retry_after() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    app.workos.set_rate_limit_retry_after(Duration::from_secs(3));
    let calls_before = app.workos.calls(Endpoint::Events);
    app.workos.fail_next(Endpoint::Events, 1, 429);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(app.consumer(options()).run(stopping));
    let limited =
        eventually(Duration::from_secs(10), || async { app.workos.calls(Endpoint::Events) > calls_before }).await;
    assert!(limited, "the first poll was made");
    // The backoff alone (200 ms) would have polled again several times by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = app.workos.calls(Endpoint::Events);
    let resumed =
        eventually(Duration::from_secs(10), || async { app.workos.calls(Endpoint::Events) > calls_before + 1 }).await;
    stop.send_replace(true);
    running.await.expect("the consumer stops when told");
    assert_eq!(during, calls_before + 1, "no poll within the Retry-After");
    assert!(resumed, "polled again once it had passed");
}

#[tokio::test]
async fn a_server_that_ignores_the_type_filter_or_forgets_the_cursor_does_no_harm() {
    let app = app_without_push().await;
    app.workos.honour_events_type_filter(false);
    app.workos.emit_event("connection.activated", json!({ "id": "conn_1" }));
    app.workos.emit_event("session.created", json!({ "id": "session_x", "user_id": "user_x" }));
    let first = app.consumer(options()).poll_once().await.expect("a poll");
    assert!(first.ignored >= 2, "types not asked for are recorded and ignored: {first:?}");
    let ledger = app.ledger().await;
    assert!(
        ledger.iter().any(|(_, event_type, _, outcome)| event_type == "connection.activated" && outcome == "ignored")
    );

    // The server forgets every cursor and starts again from the first event: all duplicates, nothing changes.
    let state_before = app.ledger().await.len();
    app.workos.forget_event_cursors();
    let replay = app.consumer(options()).poll_once().await.expect("a poll");
    assert_eq!(replay.applied, 0, "{replay:?}");
    assert!(replay.duplicates > 0, "{replay:?}");
    assert_eq!(app.ledger().await.len(), state_before);
    assert_eq!(cursor(&app).await, app.workos.events().last().map(|event| event.id.clone()), "back at the end");
    assert!(logs::captured().contains("the Events API returned events already applied"));
    assert!(logs::captured().contains("returned event types that were not asked for"));
}

#[tokio::test]
async fn a_refused_cursor_falls_back_to_the_last_events_time() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    app.workos.set_unknown_event_cursor(UnknownCursor::Refuse);
    app.workos.forget_event_cursors();
    let org = app.workos.create_organization("Umbrella");
    let report = app.consumer(options()).poll_once().await.expect("a poll despite the refused cursor");
    assert_eq!(report.applied, 1, "{report:?}");
    assert!(organization_known(&app, &org.id).await);
    assert!(logs::captured().contains("WorkOS refused the Events API cursor"));
}

/// Only a refused *cursor* is read around: a refused read by time (nothing to fall back to) fails the poll, which
/// is tried again at the next one, rather than being taken for a refused cursor and sent again.
#[tokio::test]
async fn a_refused_read_by_time_fails_the_poll() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    // No cursor event (as after a refused cursor): the next poll reads by time.
    let mut conn = app.db.connect().await;
    sqlx::query("UPDATE authbridge.events_cursor SET after_event_id = NULL, last_event_at = NULL WHERE id = 1")
        .execute(&mut conn)
        .await
        .expect("no cursor event");
    let calls = app.workos.calls(Endpoint::Events);
    app.workos.fail_next(Endpoint::Events, 1, 422);
    assert!(app.consumer(options()).poll_once().await.is_err(), "the refusal is the poll's error");
    assert_eq!(app.workos.calls(Endpoint::Events), calls + 1, "asked once, not again as if a cursor had been refused");
}

/// WorkOS keeps events about 30 days, and what it does with a cursor naming an expired event is undocumented: one
/// answering an empty page would stop a consumer that trusts it for good. A cursor past the window is not sent; the
/// organizations and memberships are read again, then every event WorkOS still has.
#[tokio::test]
async fn a_cursor_older_than_the_events_window_is_not_trusted_and_the_state_is_read_again() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    let stale = cursor(&app).await.expect("a cursor");
    stopped_for(&app, 31).await;
    app.workos.set_unknown_event_cursor(UnknownCursor::Empty);
    app.workos.forget_event_cursors();
    let bob = app.user_id(BOB);
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("seeded");
    app.workos.deactivate_membership(&acme.id).expect("deactivated");
    let organizations_read = app.workos.calls(Endpoint::Organizations);

    let report = app.consumer(options()).poll_once().await.expect("a poll");
    assert_eq!(report.applied, 1, "the deactivation was read: {report:?}");
    assert!(report.reconciled, "the state was read again: {report:?}");
    assert!(app.workos.calls(Endpoint::Organizations) > organizations_read);
    assert_eq!(app.membership_row(&acme.id).await.map(|row| row.0), Some("inactive".to_owned()));
    let asked = app.workos.events_queries();
    assert!(asked.iter().all(|query| query.after.as_deref() != Some(stale.as_str())), "{asked:?}");
    assert!(logs::captured().contains("the Events API cursor is older than WorkOS keeps events"));

    // Once past the gap, polls go on from the new cursor without reading the state again.
    app.workos.create_organization("Umbrella");
    let next = app.consumer(options()).poll_once().await.expect("the next poll");
    assert_eq!((next.applied, next.reconciled), (1, false), "{next:?}");
    assert_ne!(cursor(&app).await, Some(stale));
}

/// A deletion WorkOS no longer has the event for (lost in a gap longer than it keeps events) is found by the
/// reconciliation: a membership or organization the complete listing no longer shows is ended, so a client that
/// only presents bearer tokens (never listed again at a refresh) loses it too, in the app and in RLS. A row changed
/// in the minute before the listing (it may be newer than the listing) is left alone.
#[tokio::test]
async fn the_gap_reconciliation_ends_what_was_deleted_while_the_events_were_lost() {
    let app = app_without_push().await;
    let bob = app.user_id(BOB);
    let initech = app.workos.create_organization("Initech");
    app.workos.add_membership(&bob, &initech.id, &[]).expect("Bob joins Initech");
    let hooli = app.workos.create_organization("Hooli");
    let kept = app.workos.add_membership(&bob, &hooli.id, &[]).expect("Bob joins Hooli");
    app.consumer(options()).poll_once().await.expect("caught up");
    let bearer = app.bearer_client(app.workos.mint_access_token(&bob, Duration::from_secs(300)));
    let listed = organization_ids(&bearer.get(ORGANIZATIONS).await);
    assert_eq!(listed, [ACME_ORGANIZATION_ID, hooli.id.as_str(), initech.id.as_str()]);

    // A month without the consumer: Bob leaves Acme and Initech is deleted, and WorkOS no longer has those events.
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("seeded");
    app.workos.delete_membership(&acme.id).expect("removed");
    app.workos.delete_organization(&initech.id).expect("deleted");
    app.workos.expire_events();
    // And WorkOS's listings leave out Hooli and Bob's membership there, which both still exist: not ended.
    app.workos.leave_out_of_lists(&hooli.id);
    app.workos.leave_out_of_lists(&kept.id);
    stopped_for(&app, 31).await;
    let mut conn = app.db.connect().await;
    for statement in [
        "UPDATE authbridge.organizations SET version_updated_at = now() - interval '1 hour'",
        "UPDATE authbridge.organization_memberships SET version_updated_at = now() - interval '1 hour'",
        // Recorded moments ago and not listed: it may have been created while the listing was read.
        "INSERT INTO authbridge.organization_memberships \
             (id, user_id, organization_id, status, role, role_slugs, directory_managed, \
              version_updated_at, version_event_at, version_event_id) \
         VALUES ('om_just_created', 'user_other', 'org_other', 'active', 'member', '{member}', false, \
                 now(), now(), 'event_x')",
    ] {
        sqlx::query(statement).execute(&mut conn).await.expect("a month later");
    }

    let report = app.consumer(options()).poll_once().await.expect("a poll");
    assert!(report.reconciled, "{report:?}");
    assert_eq!(app.membership_row(&acme.id).await.map(|row| row.2), Some(true), "the lost deletion is applied");
    assert_eq!(organization_deleted(&app, &initech.id).await, Some(true), "the lost organization deletion is applied");
    assert_eq!(organization_deleted(&app, ACME_ORGANIZATION_ID).await, Some(false), "a listed organization stays");
    assert_eq!(app.membership_row("om_just_created").await.map(|row| row.2), Some(false), "too recent to end");
    assert_eq!(organization_deleted(&app, &hooli.id).await, Some(false), "left out of the listing, but there");
    assert_eq!(app.membership_row(&kept.id).await.map(|row| row.2), Some(false), "asked for, and found");
    assert_eq!(
        organization_ids(&bearer.get(ORGANIZATIONS).await),
        [hooli.id.as_str()],
        "the bearer client keeps Hooli only"
    );
    assert!(logs::captured().contains("WorkOS's listing left out an object that still exists"));

    use sqlx::Connection;
    let mut tx = conn.begin().await.expect("transaction");
    sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
        .bind(json!({ "sub": bob, "role": "authenticated" }).to_string())
        .execute(&mut *tx)
        .await
        .expect("claims");
    let rls: Vec<String> = sqlx::query_scalar("SELECT authbridge_rls.requesting_user_organization_ids()")
        .fetch_one(&mut *tx)
        .await
        .expect("the RLS helper");
    assert_eq!(rls, std::slice::from_ref(&hooli.id), "RLS grants what is left");
    tx.rollback().await.expect("rollback");
    assert!(logs::captured().contains("those it no longer lists are ended"));
}

/// A membership the consumer applies in an organization the database does not know (its own event not read, or
/// lost) has that organization fetched for its name at once, so its members see it by name.
#[tokio::test]
async fn an_organization_a_consumed_membership_names_is_fetched() {
    let app = app_without_push().await;
    let bob = app.user_id(BOB);
    let hooli = app.workos.create_organization("Hooli");
    app.consumer(options()).poll_once().await.expect("caught up");
    sqlx::query("DELETE FROM authbridge.organizations WHERE id = $1")
        .bind(&hooli.id)
        .execute(&mut app.db.connect().await)
        .await
        .expect("forgotten");
    app.workos.add_membership(&bob, &hooli.id, &[]).expect("Bob joins Hooli");
    let fetched = app.workos.calls(Endpoint::Organizations);
    let report = app.consumer(options()).poll_once().await.expect("a poll");
    assert_eq!(report.applied, 1, "{report:?}");
    assert_eq!(app.workos.calls(Endpoint::Organizations), fetched + 1, "GET /organizations/{{id}}");
    let named = app
        .query_scalar_i64("SELECT count(*) FROM authbridge.organizations WHERE id = $1 AND name = 'Hooli'", &hooli.id)
        .await;
    assert_eq!(named, 1, "recorded with its name");
}

/// The reconciliation reads every page of organizations and of each one's memberships (here one item a page, as a
/// server may answer), ending only what no page listed; a listing cut short at its page limit ends nothing, since
/// it says nothing about what it did not reach.
#[tokio::test]
async fn the_reconciliation_reads_every_page_and_a_listing_cut_short_ends_nothing() {
    let app = app_without_push().await;
    let (alice, bob, carol) = (app.user_id(ALICE), app.user_id(BOB), app.user_id("carol@example.test"));
    let initech = app.workos.create_organization("Initech");
    let lost = app.workos.add_membership(&bob, &initech.id, &[]).expect("Bob joins Initech");
    app.workos.add_membership(&carol, ACME_ORGANIZATION_ID, &[]).expect("Carol joins Acme");
    app.consumer(options()).poll_once().await.expect("caught up");
    let acme: Vec<String> = [&alice, &bob, &carol]
        .into_iter()
        .map(|user| app.workos.membership_of(user, ACME_ORGANIZATION_ID).expect("in Acme").id)
        .collect();

    // Bob leaves Initech while the consumer is stopped for a month, and WorkOS no longer has the event.
    app.workos.delete_membership(&lost.id).expect("removed");
    app.workos.expire_events();
    app.workos.set_page_cap(1);
    let stop_for_a_month = || async {
        stopped_for(&app, 31).await;
        let mut conn = app.db.connect().await;
        for statement in [
            "UPDATE authbridge.organizations SET version_updated_at = now() - interval '1 hour'",
            "UPDATE authbridge.organization_memberships SET version_updated_at = now() - interval '1 hour'",
            // The last reconciliation too, when there was one: it was a month ago as well.
            "UPDATE authbridge.events_cursor SET reconciled_at = now() - interval '31 days' WHERE id = 1",
        ] {
            sqlx::query(statement).execute(&mut conn).await.expect("a month later");
        }
    };
    let deleted = |id: String| {
        let app = &app;
        async move { app.membership_row(&id).await.map(|row| row.2) }
    };

    // Two pages at most: both organizations are read, but not Acme's third membership.
    stop_for_a_month().await;
    let short = app.consumer(ConsumerOptions { max_reconcile_pages: 2, ..options() });
    assert!(short.poll_once().await.expect("a poll").reconciled);
    assert_eq!(deleted(lost.id.clone()).await, Some(false), "nothing is ended on an incomplete listing");
    for id in &acme {
        assert_eq!(deleted(id.clone()).await, Some(false), "{id}");
    }
    assert!(logs::captured().contains("the listing was cut short at its page limit"));

    // Every page: the lost deletion is applied, and what any page listed stays.
    stop_for_a_month().await;
    assert!(app.consumer(options()).poll_once().await.expect("a poll").reconciled);
    assert_eq!(deleted(lost.id.clone()).await, Some(true), "the lost deletion is applied");
    for id in &acme {
        assert_eq!(deleted(id.clone()).await, Some(false), "listed on some page: {id}");
    }
    for organization in [ACME_ORGANIZATION_ID, initech.id.as_str()] {
        assert_eq!(organization_deleted(&app, organization).await, Some(false), "{organization} is on some page");
    }
}

/// In a quiet environment no new event moves a refused cursor on: it is forgotten, not sent again on every poll.
#[tokio::test]
async fn a_refused_cursor_is_not_sent_again_when_no_event_follows() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    let refused = cursor(&app).await.expect("a cursor");
    app.workos.set_unknown_event_cursor(UnknownCursor::Refuse);
    app.workos.expire_events();
    app.consumer(options()).poll_once().await.expect("a poll despite the refused cursor");
    let asked_before = app.workos.events_queries().len();
    let report = app.consumer(options()).poll_once().await.expect("the next poll");
    assert_eq!(report.applied, 0, "{report:?}");
    let next: Vec<_> = app.workos.events_queries().into_iter().skip(asked_before).collect();
    assert!(!next.is_empty(), "the next poll asked WorkOS");
    assert!(
        next.iter().all(|query| query.after.as_deref() != Some(refused.as_str())),
        "the refused cursor was sent again: {next:?}"
    );

    // And the first event after that moves the consumer on as usual.
    let org = app.workos.create_organization("Umbrella");
    let report = app.consumer(options()).poll_once().await.expect("a poll with news");
    assert_eq!(report.applied, 1, "{report:?}");
    assert!(organization_known(&app, &org.id).await);
}

/// An event the database refuses every time (here refused by a trigger) would
/// stop the consumer at it for good: after a few tries it is recorded as rejected, and the events after it apply.
#[tokio::test]
async fn an_event_the_database_always_refuses_is_rejected_after_a_few_tries_and_the_next_ones_apply() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    let poisoned = emit_poisoned(&app).await;
    let after = app.workos.create_organization("Initech");
    let last_event = app.workos.events().last().map(|event| event.id.clone());

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(app.consumer(options()).run(stopping));
    let caught_up = eventually(Duration::from_secs(20), || async { cursor(&app).await == last_event }).await;
    stop.send_replace(true);
    running.await.expect("the consumer stops when told");

    assert!(caught_up, "the consumer got past the event it could not apply");
    let ledger = app.ledger().await;
    let outcome = ledger.iter().find(|(id, ..)| *id == poisoned).map(|(.., outcome)| outcome.as_str());
    assert_eq!(outcome, Some("rejected"), "{ledger:?}");
    assert!(organization_known(&app, &after.id).await, "the next event was applied");
    assert!(logs::captured().contains("a WorkOS event failed to apply on every try"));
}

/// Five quick failures are not enough to give an event up: failures must also have gone on for `reject_after`
/// (ten minutes in service), so a brief mistake cannot cost an event for good.
#[tokio::test]
async fn an_event_is_rejected_only_after_failing_for_the_minimum_time_as_well_as_five_times() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    let before = cursor(&app).await;
    let poisoned = emit_poisoned(&app).await;
    let consumer = app.consumer(ConsumerOptions { reject_after: Duration::from_secs(4), ..options() });
    let started = Instant::now();
    assert!(consumer.poll_once().await.is_err(), "attempt 1 failed");
    // The first failure was noted before this instant, however long the first poll took (it opens connections).
    let first_failed_by = Instant::now();
    for attempt in 2..=7 {
        assert!(consumer.poll_once().await.is_err(), "attempt {attempt} failed");
    }
    assert!(started.elapsed() < Duration::from_secs(4), "the attempts were quick: {:?}", started.elapsed());
    assert_eq!(cursor(&app).await, before, "seven tries in under four seconds did not give the event up");
    assert!(app.ledger().await.iter().all(|(id, ..)| *id != poisoned));

    tokio::time::sleep_until((first_failed_by + Duration::from_millis(4_100)).into()).await;
    let report = consumer.poll_once().await.expect("the event is given up");
    assert_eq!(report.rejected, 1, "{report:?}");
    assert_eq!(cursor(&app).await.as_deref(), Some(poisoned.as_str()));
}

/// With the minimum time already met, the fifth failure gives the event up: not the first, nor a sixth.
#[tokio::test]
async fn with_the_minimum_time_met_an_event_is_given_up_at_its_fifth_failure() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    let poisoned = emit_poisoned(&app).await;
    let consumer = app.consumer(ConsumerOptions { reject_after: Duration::ZERO, ..options() });
    for attempt in 1..=4 {
        assert!(consumer.poll_once().await.is_err(), "attempt {attempt} failed");
    }
    assert!(app.ledger().await.iter().all(|(id, ..)| *id != poisoned), "four failures did not give it up");
    let report = consumer.poll_once().await.expect("the fifth gives it up");
    assert_eq!(report.rejected, 1, "{report:?}");
}

/// A failure that is not about the event's data (here the table it writes is missing, as it may be while a
/// migration or a restore is under way) never gives the event up, however often and long it happens: once the
/// table is back, the event applies.
#[tokio::test]
async fn an_event_failing_for_a_reason_outside_its_data_is_never_given_up() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    let umbrella = app.workos.create_organization("Umbrella");
    let consumer = app.consumer(ConsumerOptions { reject_after: Duration::ZERO, ..options() });
    let mut conn = app.db.connect().await;
    let away = "ALTER TABLE authbridge.organizations RENAME TO organizations_away";
    sqlx::query(away).execute(&mut conn).await.expect("table moved");
    for attempt in 1..=6 {
        assert!(consumer.poll_once().await.is_err(), "attempt {attempt} failed");
    }
    let back = "ALTER TABLE authbridge.organizations_away RENAME TO organizations";
    sqlx::query(back).execute(&mut conn).await.expect("table back");
    let report = consumer.poll_once().await.expect("applied once the table is back");
    assert_eq!((report.applied, report.rejected), (1, 0), "{report:?}");
    assert!(organization_known(&app, &umbrella.id).await);
}

#[tokio::test]
async fn the_app_runs_the_consumer_when_configured_and_it_alone_keeps_the_app_right() {
    let app = spawn_app_with(AppOptions::default().lifecycle_with(LifecycleOptions {
        webhooks_from_standin: false,
        poll_seconds: 1,
        ..LifecycleOptions::default()
    }))
    .await;
    let bob = app.user_id(BOB);
    let browser = app.signed_in(BOB).await;
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("seeded");
    app.workos.delete_membership(&acme.id).expect("removed");
    let gone =
        eventually(Duration::from_secs(10), || async { browser.get(ORGANIZATIONS).await.json() == json!([]) }).await;
    assert!(gone, "the app's own consumer applied the removal");
}

/// A consumer that has never seen an event reads by time from its first reconciliation; if it then stops for two
/// months, that is past what WorkOS serves, so it never asks from further back than 29 days.
#[tokio::test]
async fn reading_by_time_never_reaches_past_the_events_api_window() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    let mut conn = app.db.connect().await;
    sqlx::query(
        "UPDATE authbridge.events_cursor SET after_event_id = NULL, last_event_at = NULL, \
         reconciled_at = now() - interval '60 days', polled_at = now() - interval '60 days' WHERE id = 1",
    )
    .execute(&mut conn)
    .await
    .expect("a consumer stopped for two months");
    let report = app.consumer(options()).poll_once().await.expect("a poll");
    assert!(report.reconciled, "events of the two months may be lost: the state is read again: {report:?}");
    let query = app.workos.events_queries().into_iter().last().expect("an events request");
    let range_start = range_start(&query);
    let oldest = OffsetDateTime::now_utc() - time::Duration::days(30);
    assert!(range_start > oldest, "range_start {range_start} is more than 30 days ago");
}

/// A tenant with no handled event for a month, whose consumer polled all along and read to the end each time, missed
/// nothing: its next poll neither reads the state again (costly for a large tenant) nor sends the cursor of an event
/// WorkOS no longer keeps (here a server that answers such a cursor with an empty page), but reads on by time from
/// its last complete poll, and applies what is new.
#[tokio::test]
async fn a_quiet_tenant_polled_all_along_is_not_taken_for_a_gap() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    let old = cursor(&app).await.expect("a cursor");
    let polled = polled_at(&app).await.expect("the poll read to the end");
    let mut conn = app.db.connect().await;
    sqlx::query("UPDATE authbridge.events_cursor SET last_event_at = now() - interval '31 days' WHERE id = 1")
        .execute(&mut conn)
        .await
        .expect("the last event a month old");
    app.workos.expire_events();
    app.workos.set_unknown_event_cursor(UnknownCursor::Empty);
    let organizations_read = app.workos.calls(Endpoint::Organizations);
    let asked_before = app.workos.events_queries().len();
    let umbrella = app.workos.create_organization("Umbrella");
    let umbrella_event = app.workos.events().last().map(|event| event.id.clone());

    let report = app.consumer(options()).poll_once().await.expect("a poll");
    assert!(!report.reconciled, "nothing was missed: {report:?}");
    assert_eq!(app.workos.calls(Endpoint::Organizations), organizations_read, "the state was not listed again");
    assert_eq!(report.applied, 1, "the new event was read: {report:?}");
    assert!(organization_known(&app, &umbrella.id).await);
    let asked: Vec<_> = app.workos.events_queries().into_iter().skip(asked_before).collect();
    assert!(asked.iter().all(|query| query.after.as_deref() != Some(old.as_str())), "{asked:?}");
    // By time, over all WorkOS still keeps (29 days back), not from the last complete poll: were WorkOS to have
    // answered the old cursor with empty pages while it still listed events, those are read too.
    let from = range_start(asked.first().expect("an events request"));
    let window_start = polled - time::Duration::days(29);
    assert!(
        from <= window_start + time::Duration::minutes(1) && from >= window_start - time::Duration::minutes(6),
        "read from the start of WorkOS's window ({window_start}), not from {from}"
    );

    // And the next poll goes on after the new event, as usual.
    app.workos.create_organization("Initech");
    let next = app.consumer(options()).poll_once().await.expect("the next poll");
    assert_eq!((next.applied, next.reconciled), (1, false), "{next:?}");
    let last = app.workos.events_queries().pop().expect("a query");
    assert_eq!(last.after, umbrella_event, "{last:?}");
}

/// The same for a consumer without a cursor event (one that has never seen an event, or whose cursor WorkOS
/// refused): reading by time goes on from its last complete poll, not from a reconciliation two months old.
#[tokio::test]
async fn a_quiet_environment_without_a_cursor_event_reads_on_from_its_last_complete_poll() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    let polled = polled_at(&app).await.expect("the poll read to the end");
    let mut conn = app.db.connect().await;
    sqlx::query(
        "UPDATE authbridge.events_cursor SET after_event_id = NULL, last_event_at = NULL, \
         reconciled_at = now() - interval '60 days' WHERE id = 1",
    )
    .execute(&mut conn)
    .await
    .expect("an environment quiet for two months");
    let organizations_read = app.workos.calls(Endpoint::Organizations);
    let report = app.consumer(options()).poll_once().await.expect("a poll");
    assert!(!report.reconciled, "nothing was missed: {report:?}");
    assert_eq!(app.workos.calls(Endpoint::Organizations), organizations_read);
    let from = range_start(&app.workos.events_queries().pop().expect("an events request"));
    assert!(from >= polled - time::Duration::minutes(6), "read from {from}, before the last complete poll");
}

/// A gap read again while WorkOS keeps no event from it: the cursor's expired event is dropped with it, so the polls
/// after it read on from that poll (less the overlap), not over all of WorkOS's window every time.
#[tokio::test]
async fn after_a_gap_with_no_events_left_the_next_poll_reads_on_from_the_gap_poll() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    stopped_for(&app, 31).await;
    app.workos.expire_events();
    let gap = app.consumer(options()).poll_once().await.expect("the gap poll");
    assert!(gap.reconciled && gap.applied == 0, "{gap:?}");
    assert_eq!(cursor(&app).await, None, "the expired event is the cursor no more");
    let polled = polled_at(&app).await.expect("the gap poll read to the end");

    app.consumer(options()).poll_once().await.expect("the next poll");
    let from = range_start(&app.workos.events_queries().pop().expect("an events request"));
    assert!(from >= polled - time::Duration::minutes(6), "read from {from}, not on from the gap poll at {polled}");
}

/// Only a poll that read the event list to its end records that it did: one that failed, or stopped at its page
/// limit, may have left events unread. A consumer stopped for a month whose first poll fails once it has read the
/// state again finds the gap again on the next.
#[tokio::test]
async fn a_poll_that_stops_part_way_does_not_count_as_having_read_everything() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");

    // A gap, and the first poll after it fails at its first events request.
    stopped_for(&app, 31).await;
    let before = polled_at(&app).await;
    let organizations_read = app.workos.calls(Endpoint::Organizations);
    app.workos.fail_next(Endpoint::Events, 1, 503);
    assert!(app.consumer(options()).poll_once().await.is_err(), "WorkOS failed");
    assert!(app.workos.calls(Endpoint::Organizations) > organizations_read, "the state was read first");
    assert_eq!(polled_at(&app).await, before, "a failed poll moved polled_at");
    let again = app.consumer(options()).poll_once().await.expect("a poll");
    assert!(again.reconciled, "the gap is still there: {again:?}");
    let polled = polled_at(&app).await;
    assert!(polled > before, "this poll read to the end");

    // A poll stopped by its page limit (one page here) with events left.
    for i in 0..100 {
        app.workos.create_organization(&format!("Org {i}"));
    }
    let last_org = app.workos.create_organization("Org 100");
    let short = app.consumer(ConsumerOptions { max_pages_per_poll: 1, ..options() });
    let report = short.poll_once().await.expect("a poll");
    assert_eq!(report.pages, 1, "{report:?}");
    assert!(report.more, "it says there is more to read, so that the next poll starts at once: {report:?}");
    assert!(!organization_known(&app, &last_org.id).await, "events were left unread");
    assert_eq!(polled_at(&app).await, polled, "a poll cut short by its page limit moved polled_at");

    // A poll that fails at an event, after applying the ones before it.
    emit_poisoned(&app).await;
    let failed = app.consumer(options()).poll_once().await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(organization_known(&app, &last_org.id).await, "the events before it were applied");
    assert_eq!(polled_at(&app).await, polled, "a poll that failed part way moved polled_at");
}

/// More objects missing from a listing than lost deletion events could explain (here 51, the organizations' own
/// deletions lost in a gap) is taken for a listing gone wrong: none is ended, and the operator is told.
#[tokio::test]
async fn a_listing_that_leaves_out_more_than_fifty_ends_none() {
    let app = app_without_push().await;
    let organizations: Vec<String> = (0..51).map(|i| app.workos.create_organization(&format!("Gone {i}")).id).collect();
    app.consumer(options()).poll_once().await.expect("caught up");
    for id in &organizations {
        app.workos.delete_organization(id).expect("deleted");
    }
    app.workos.expire_events();
    stopped_for(&app, 31).await;
    sqlx::query("UPDATE authbridge.organizations SET version_updated_at = now() - interval '1 hour'")
        .execute(&mut app.db.connect().await)
        .await
        .expect("a month later");
    let report = app.consumer(options()).poll_once().await.expect("a poll");
    assert!(report.reconciled, "{report:?}");
    for id in &organizations {
        assert_eq!(organization_deleted(&app, id).await, Some(false), "{id} is not ended on a listing's word alone");
    }
    assert!(logs::captured().contains("left out more known objects than deletions could explain"));
}

/// A poll stopped by its page limit with events left does not wait out the interval before reading on: a backlog
/// drains at the speed WorkOS answers (here 250 events: three pages of 100, one page a poll, an hour between polls).
#[tokio::test]
async fn a_backlog_beyond_the_page_limit_is_read_on_without_waiting_for_the_interval() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("caught up");
    let organizations: Vec<String> =
        (0..250).map(|i| app.workos.create_organization(&format!("Backlog {i}")).id).collect();
    let slow = ConsumerOptions { poll_interval: Duration::from_secs(3600), max_pages_per_poll: 1, ..options() };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(app.consumer(slow).run(stopping));
    let last = organizations.last().expect("organizations");
    let drained = eventually(Duration::from_secs(15), || async { organization_known(&app, last).await }).await;
    stop.send_replace(true);
    running.await.expect("the consumer stops when told");
    assert!(drained, "every page read, poll after poll");
}

/// The consumer's lock is released only when PostgreSQL drops the connection holding it. A replica that vanished
/// without closing it (a host lost, a network cut) is noticed by TCP keepalive probes: about two minutes with the
/// app's settings, two hours with the operating system's default, during which no replica could read events.
#[tokio::test]
async fn the_app_asks_postgresql_to_probe_its_connections_for_a_vanished_replica() {
    let app = app_without_push().await;
    let lifecycle = app.lifecycle();
    let mut conn = lifecycle.database().pool().acquire().await.expect("a connection over TCP, as the tests' database");
    for (setting, expected) in [
        ("tcp_keepalives_idle", "60"),
        ("tcp_keepalives_interval", "10"),
        ("tcp_keepalives_count", "6"),
        ("tcp_user_timeout", "120000"),
    ] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(&mut *conn)
            .await
            .expect("SHOW");
        assert_eq!(value, expected, "{setting}");
    }
}

/// A replica that hangs mid-poll (a stopped process: its kernel still answers TCP keepalives) loses the lock once
/// its connection has waited `hung_after` for a statement: PostgreSQL ends the session, and another replica reads
/// events again.
#[tokio::test]
async fn a_replica_hung_mid_poll_loses_the_lock_to_the_others() {
    let app = app_without_push().await;
    app.consumer(options()).poll_once().await.expect("the first poll reconciles");
    // The next poll's request to WorkOS hangs far longer than the limit, as a stopped process would.
    app.workos.set_latency(Endpoint::Events, Duration::from_secs(5));
    let hung = app.consumer(ConsumerOptions { hung_after: Duration::from_millis(500), ..options() });
    let polling = tokio::spawn(async move { hung.poll_once().await });
    let conn = app.db.connect().await;
    let free = eventually(Duration::from_secs(4), || async { try_lock(&mut app.db.connect().await).await }).await;
    assert!(free, "the hung poll's session was ended, and its lock with it");
    app.workos.set_latency(Endpoint::Events, Duration::ZERO);
    let outcome = polling.await.expect("the poll does not panic");
    assert!(outcome.is_err(), "the hung poll fails when it resumes: its connection is gone");
    drop(conn);

    // The limit is for the poll only: the connection goes back to the pool without it. (A pool of one, so that the
    // connection taken after the poll is the poll's, taken at once, before a limit left on it could end it.)
    let mut config = app.config.database.clone().expect("the lifecycle's database");
    config.max_connections = 1;
    let workos = app.config.workos().expect("WorkOS is the provider");
    let lifecycle = std::sync::Arc::new(authbridge::lifecycle::Lifecycle::new(
        authbridge::db::Database::connect_lazy(&config).expect("a pool"),
        authbridge::workos::WorkosClient::new(workos).expect("a WorkOS client"),
    ));
    // A limit no working poll comes near, even on a loaded machine: what matters is that it is gone afterwards.
    let limited = ConsumerOptions { hung_after: Duration::from_secs(60), ..options() };
    authbridge::lifecycle::consumer::EventsConsumer::new(std::sync::Arc::clone(&lifecycle), None, limited)
        .poll_once()
        .await
        .expect("a working poll");
    let mut pooled = lifecycle.database().pool().acquire().await.expect("the poll's connection");
    for setting in ["idle_session_timeout", "idle_in_transaction_session_timeout"] {
        let limit: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(&mut *pooled)
            .await
            .expect("SHOW");
        assert_eq!(limit, "0", "{setting}");
    }
}

//! Applying events: once per event id whichever channel and however often it arrives, and in any order without an
//! older event overwriting newer state or a deleted object coming back.

use std::time::Duration;

use authbridge::lifecycle::consumer::ConsumerOptions;
use futures::future::join_all;
use standins::workos_standin::StandInWebhookOrder;

use crate::helpers::app::{ALICE, AppOptions, BOB, LifecycleOptions, spawn_app_with};
use crate::helpers::lifecycle::{
    ORGANIZATIONS, at, event, eventually, membership, organization, organization_ids, user,
};

fn lifecycle_without_standin_webhooks() -> AppOptions {
    AppOptions::default()
        .lifecycle_with(LifecycleOptions { webhooks_from_standin: false, ..LifecycleOptions::default() })
}

#[tokio::test]
async fn the_same_event_five_times_at_once_is_applied_once() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    let created = event(
        "organization_membership.created",
        membership("om_5x", "user_5x", "org_5x", "active", "member", 1),
        at(1),
    );
    let outcomes: Vec<String> = join_all((0..5).map(|_| app.deliver_ok(&created))).await;
    assert_eq!(outcomes.iter().filter(|outcome| *outcome == "applied").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|outcome| *outcome == "duplicate").count(), 4, "{outcomes:?}");
    assert_eq!(app.ledger().await.len(), 1);

    // A retry long after, once the membership has moved on, changes nothing either.
    let deactivated = event(
        "organization_membership.updated",
        membership("om_5x", "user_5x", "org_5x", "inactive", "member", 2),
        at(2),
    );
    assert_eq!(app.deliver_ok(&deactivated).await, "applied");
    assert_eq!(app.deliver_ok(&created).await, "duplicate");
    assert_eq!(app.membership_row("om_5x").await, Some(("inactive".into(), Some("member".into()), false)));
}

#[tokio::test]
async fn an_event_delivered_by_webhook_and_read_from_the_events_api_is_applied_once() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    let bob = app.user_id(BOB);
    let acme = app.workos.membership_of(&bob, standins::workos_standin::ACME_ORGANIZATION_ID).expect("Bob is in Acme");
    app.workos.set_membership_roles(&acme.id, &["admin"]).expect("known membership");
    let updated = app.workos.events().last().cloned().expect("the update's event");
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.ledger().await.iter().any(|(id, _, source, _)| *id == updated.id && source == "webhook")
        })
        .await,
        "the webhook delivered it"
    );

    let report = app
        .consumer(ConsumerOptions::every(Duration::from_secs(60), Duration::from_secs(10)))
        .poll_once()
        .await
        .expect("a poll");
    assert!(report.duplicates >= 1, "the consumer met it again: {report:?}");
    let rows = app.ledger().await;
    assert_eq!(rows.iter().filter(|(id, ..)| *id == updated.id).count(), 1, "one ledger row");
    assert_eq!(app.membership_row(&acme.id).await, Some(("active".into(), Some("admin".into()), false)));
}

#[tokio::test]
async fn deleted_before_created_stays_deleted() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    let deleted =
        event("organization_membership.deleted", membership("om_d", "user_d", "org_d", "active", "member", 1), at(2));
    let created =
        event("organization_membership.created", membership("om_d", "user_d", "org_d", "active", "member", 1), at(1));
    assert_eq!(app.deliver_ok(&deleted).await, "applied");
    assert_eq!(app.deliver_ok(&created).await, "applied");
    assert_eq!(app.membership_row("om_d").await.map(|row| row.2), Some(true), "still a tombstone");

    // The same for users: a late `user.created` (or a retried `user.updated`) cannot bring a deleted user back.
    assert_eq!(app.deliver_ok(&event("user.deleted", user("user_d", "d@example.com", 1), at(3))).await, "applied");
    assert_eq!(app.deliver_ok(&event("user.created", user("user_d", "d@example.com", 0), at(1))).await, "applied");
    assert_eq!(app.deliver_ok(&event("user.updated", user("user_d", "d@example.com", 9), at(9))).await, "applied");
    let deleted_users = app
        .query_scalar_i64("SELECT count(*) FROM authbridge.users WHERE id = $1 AND deleted_at IS NOT NULL", "user_d")
        .await;
    assert_eq!(deleted_users, 1);
}

#[tokio::test]
async fn updated_before_created_keeps_the_update() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    let updated =
        event("organization_membership.updated", membership("om_u", "user_u", "org_u", "active", "admin", 2), at(2));
    let created =
        event("organization_membership.created", membership("om_u", "user_u", "org_u", "active", "member", 1), at(1));
    app.deliver_ok(&updated).await;
    app.deliver_ok(&created).await;
    assert_eq!(app.membership_row("om_u").await, Some(("active".into(), Some("admin".into()), false)));
}

/// With multiple roles, `role` is WorkOS's primary role and the order of `roles` is undocumented: the primary role
/// recorded (and shown) is `role`, with every slug of `roles` kept beside it.
#[tokio::test]
async fn the_primary_role_is_roles_own_field_not_the_first_of_the_list() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    let mut data = membership("om_r", "user_r", "org_r", "active", "member", 1);
    data["roles"] = serde_json::json!([{ "slug": "admin" }, { "slug": "member" }]);
    app.deliver_ok(&event("organization_membership.created", data, at(1))).await;
    assert_eq!(app.membership_row("om_r").await, Some(("active".into(), Some("member".into()), false)));
}

#[tokio::test]
async fn an_old_update_after_a_new_one_changes_nothing() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    let old =
        event("organization_membership.updated", membership("om_o", "user_o", "org_o", "active", "member", 1), at(1));
    let new =
        event("organization_membership.updated", membership("om_o", "user_o", "org_o", "inactive", "member", 2), at(2));
    app.deliver_ok(&new).await;
    app.deliver_ok(&old).await;
    assert_eq!(app.membership_row("om_o").await, Some(("inactive".into(), Some("member".into()), false)));

    // Organizations too: an old name arriving late does not replace the new one.
    app.deliver_ok(&event("organization.updated", organization("org_o", "New Name", 5), at(5))).await;
    app.deliver_ok(&event("organization.updated", organization("org_o", "Old Name", 4), at(4))).await;
    let renamed = app
        .query_scalar_i64("SELECT count(*) FROM authbridge.organizations WHERE id = $1 AND name = 'New Name'", "org_o")
        .await;
    assert_eq!(renamed, 1);
}

/// Users' emails, which the organization pages name other authors by, follow `user.created` and `user.updated`, and
/// an older update arriving late does not bring an old email back.
#[tokio::test]
async fn a_users_email_follows_their_events_and_an_old_one_does_not_come_back() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    let has_email = |email: &'static str| {
        app.query_scalar_i64("SELECT count(*) FROM authbridge.users WHERE id = 'user_e' AND email = $1", email)
    };
    assert_eq!(app.deliver_ok(&event("user.created", user("user_e", "first@example.com", 1), at(1))).await, "applied");
    assert_eq!(has_email("first@example.com").await, 1);
    assert_eq!(app.deliver_ok(&event("user.updated", user("user_e", "new@example.com", 3), at(3))).await, "applied");
    assert_eq!(has_email("new@example.com").await, 1);
    assert_eq!(app.deliver_ok(&event("user.updated", user("user_e", "old@example.com", 2), at(2))).await, "applied");
    assert_eq!(has_email("new@example.com").await, 1, "the older update changed nothing");
}

/// `organization.deleted` alone ends its members' access (whether WorkOS also sends each membership's deletion is
/// its business), and a late `organization.updated` does not bring the organization back.
#[tokio::test]
async fn a_deleted_organization_is_nobodys_even_before_its_memberships_are_deleted() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    let active =
        || app.query_scalar_i64("SELECT count(*) FROM unnest(authbridge.active_organization_ids($1))", "user_x");
    app.deliver_ok(&event("organization.created", organization("org_x", "Closing", 1), at(1))).await;
    let joined = membership("om_x", "user_x", "org_x", "active", "member", 1);
    app.deliver_ok(&event("organization_membership.created", joined, at(1))).await;
    assert_eq!(active().await, 1, "a member");

    let deleted = event("organization.deleted", organization("org_x", "Closing", 2), at(2));
    assert_eq!(app.deliver_ok(&deleted).await, "applied");
    assert_eq!(active().await, 0, "the organization is gone, and the membership with it");
    assert_eq!(
        app.deliver_ok(&event("organization.updated", organization("org_x", "Closing", 3), at(3))).await,
        "applied"
    );
    assert_eq!(active().await, 0, "still gone");
}

#[tokio::test]
async fn with_equal_updated_at_the_event_time_decides_and_a_delete_wins() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    // Two updates of one object state moment: the event created later wins.
    let first =
        event("organization_membership.updated", membership("om_t", "user_t", "org_t", "active", "member", 3), at(3));
    let second =
        event("organization_membership.updated", membership("om_t", "user_t", "org_t", "active", "admin", 3), at(4));
    app.deliver_ok(&second).await;
    app.deliver_ok(&first).await;
    assert_eq!(app.membership_row("om_t").await, Some(("active".into(), Some("admin".into()), false)));
    // A delete carrying the same updated_at as the update before it still deletes, whatever order they come in.
    let deleted =
        event("organization_membership.deleted", membership("om_t", "user_t", "org_t", "active", "admin", 3), at(5));
    app.deliver_ok(&deleted).await;
    app.deliver_ok(&second).await;
    assert_eq!(app.membership_row("om_t").await.map(|row| row.2), Some(true));
}

#[tokio::test]
async fn the_stand_ins_events_released_in_reverse_end_in_the_right_state() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    let alice = app.user_id(ALICE);
    let browser = app.signed_in(ALICE).await;
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), ["org_standin_acme"]);

    // Created, promoted, then deleted at WorkOS; delivered newest first, each one retried (sent twice).
    app.workos.hold_webhooks();
    let globex = app.workos.create_organization("Globex");
    let membership = app.workos.add_membership(&alice, &globex.id, &[]).expect("member");
    app.workos.set_membership_roles(&membership.id, &["admin"]).expect("promoted");
    app.workos.delete_membership(&membership.id).expect("deleted");
    assert!(eventually(Duration::from_secs(5), || async { app.workos.held_webhooks() >= 4 }).await);
    app.workos.duplicate_next_webhooks(10);
    app.workos.release_held_webhooks(StandInWebhookOrder::Reversed).await;

    assert_eq!(app.membership_row(&membership.id).await.map(|row| row.2), Some(true), "deleted, not resurrected");
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), ["org_standin_acme"], "Globex is not listed");
    let created = app
        .workos
        .events()
        .into_iter()
        .find(|e| e.event_type == "organization_membership.created" && e.data["id"] == membership.id.as_str())
        .expect("the created event");
    let sent = app.workos.webhook_attempts().into_iter().filter(|attempt| attempt.event_id == created.id).count();
    assert_eq!(sent, 2, "the late created event arrived twice");
    let recorded = app.ledger().await.into_iter().filter(|(id, ..)| *id == created.id).count();
    assert_eq!(recorded, 1, "and was recorded once");
}

/// The bookkeeping tables stay bounded: ledger entries past any redelivery, ended sessions past any cookie's life,
/// Audit Log events delivered a week ago or given up on long ago are removed; everything still needed stays.
#[tokio::test]
async fn the_bookkeeping_tables_are_pruned_of_what_no_request_can_need() {
    let db = crate::helpers::TestDb::new().await;
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "INSERT INTO authbridge.applied_events (id, event_type, source, outcome, applied_at) VALUES
           ('event_old', 'user.deleted', 'webhook', 'applied', now() - interval '121 days'),
           ('event_older', 'user.deleted', 'events_api', 'applied', now() - interval '200 days'),
           ('event_new', 'user.deleted', 'webhook', 'applied', now() - interval '119 days');
         INSERT INTO authbridge.revoked_sessions
             (id, user_id, revoked_at, source, version_updated_at, version_event_at, version_event_id) VALUES
           ('session_old', 'user_1', now() - interval '402 days', 'sign_out', now(), now(), 'e1'),
           ('session_new', 'user_1', now() - interval '399 days', 'sign_out', now(), now(), 'e2');
         INSERT INTO authbridge.audit_log_outbox
             (idempotency_key, organization_id, event, created_at, delivered_at, failed_at) VALUES
           (gen_random_uuid(), 'org_1', '{\"n\":\"delivered 8 days ago\"}', now() - interval '9 days', now() - interval '8 days', NULL),
           (gen_random_uuid(), 'org_1', '{\"n\":\"failed long ago\"}', now() - interval '100 days', NULL, now() - interval '91 days'),
           (gen_random_uuid(), 'org_1', '{\"n\":\"delivered lately\"}', now() - interval '7 days', now() - interval '6 days', NULL),
           (gen_random_uuid(), 'org_1', '{\"n\":\"failed lately\"}', now() - interval '30 days', NULL, now() - interval '29 days'),
           (gen_random_uuid(), 'org_1', '{\"n\":\"never delivered\"}', now() - interval '200 days', NULL, NULL);
         -- Addresses written for a deleted user after the deletion (a replica from before 0022, a racing write).
         INSERT INTO authbridge.users (id, email, deleted_at, version_updated_at, version_event_at, version_event_id)
           VALUES ('user_gone', 'gone@acme.test', now(), now(), now(), 'e3'),
                  ('user_here', 'here@acme.test', NULL, now(), now(), 'e4');
         INSERT INTO authbridge.user_email_history (user_id, email)
           VALUES ('user_gone', 'gone@acme.test'), ('user_here', 'here@acme.test');",
    )
    .execute(&mut conn)
    .await
    .expect("rows old and new");

    let removed = authbridge::lifecycle::store::prune_bookkeeping(&mut conn).await.expect("pruned");
    assert_eq!(removed, 7, "two ledger entries, one ended session, two Audit Log events, a deleted user's addresses");
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM authbridge.applied_events UNION ALL SELECT id FROM authbridge.revoked_sessions \
         UNION ALL SELECT event->>'n' FROM authbridge.audit_log_outbox \
         UNION ALL SELECT id || ' ' || coalesce(email, 'no email') FROM authbridge.users \
         UNION ALL SELECT 'history ' || email FROM authbridge.user_email_history ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("what is left");
    assert_eq!(
        left,
        [
            "delivered lately",
            "event_new",
            "failed lately",
            "history here@acme.test",
            "never delivered",
            "session_new",
            "user_gone no email",
            "user_here here@acme.test"
        ]
    );
}

/// Shared refresh results, sealed sessions with live refresh tokens, are removed once no replica can read them
/// (twice their 30 s), claims abandoned long ago too; the latest stay.
#[tokio::test]
async fn shared_refresh_results_are_removed_once_no_replica_can_read_them() {
    let db = crate::helpers::TestDb::new().await;
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "INSERT INTO authbridge.refresh_results (token_hash, claimed_at, finished_at, outcome, sealed_session) VALUES
           (sha256('old'), now() - interval '61 seconds', now() - interval '61 seconds', 'refreshed', 'sealed old'),
           (sha256('new'), now() - interval '50 seconds', now() - interval '50 seconds', 'refreshed', 'sealed new'),
           (sha256('taken'), now() - interval '3 hours', NULL, NULL, NULL);",
    )
    .execute(&mut conn)
    .await
    .expect("results old and new");
    let pool = sqlx::PgPool::connect(&db.url).await.expect("a pool");

    let removed = authbridge::session::shared_refresh::remove_old_results(&pool).await.expect("removed");
    assert_eq!(removed, 2);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(sealed_session, 'a claim') FROM authbridge.refresh_results")
            .fetch_all(&mut conn)
            .await
            .expect("what is left");
    assert_eq!(left, ["sealed new"]);
}

/// What one of the two racing transactions does to the directory `directory_race` (the test below).
#[derive(Clone, Copy, Debug)]
enum DirectoryChange {
    AddActiveUser,
    DeleteDirectory,
}

/// A change the race tests apply in a transaction of its own.
trait RacingChange: Copy + std::fmt::Debug + Send + 'static {
    fn apply(self, conn: &mut sqlx::PgConnection) -> impl std::future::Future<Output = ()> + Send;
}

/// `first` applied in a transaction held open while `second` starts in another, then both committed: under READ
/// COMMITTED each would miss the other's uncommitted rows unless the code makes them take turns. Slowness here can
/// only make the second start after the first committed, which a correct change passes too.
async fn race<C: RacingChange>(app: &crate::helpers::app::TestApp, first: C, second: C) {
    use sqlx::Connection;
    let mut holder = app.db.connect().await;
    let mut other = app.db.connect().await;
    let mut held = holder.begin().await.expect("begin");
    first.apply(&mut held).await;
    let racing = tokio::spawn(async move {
        let mut transaction = other.begin().await.expect("begin");
        second.apply(&mut transaction).await;
        transaction.commit().await.expect("commit");
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.commit().await.expect("commit");
    racing.await.expect("the second change");
}

impl RacingChange for DirectoryChange {
    async fn apply(self, conn: &mut sqlx::PgConnection) {
        apply_directory_change(conn, self).await;
    }
}

async fn apply_directory_change(conn: &mut sqlx::PgConnection, change: DirectoryChange) {
    use authbridge::lifecycle::store;
    use authbridge::workos::objects::{Directory, DirectoryUser};
    let organization_id = Some("org_race".to_owned());
    match change {
        DirectoryChange::AddActiveUser => {
            let user = DirectoryUser {
                id: "directory_user_race".to_owned(),
                directory_id: Some("directory_race".to_owned()),
                organization_id,
                email: Some("race@example.com".to_owned()),
                state: "active".to_owned(),
                updated_at: at(1),
            };
            store::upsert_directory_user(conn, &user, &store::Version::of_object(at(1))).await.expect("user added");
        }
        DirectoryChange::DeleteDirectory => {
            let directory = Directory { id: "directory_race".to_owned(), organization_id };
            store::delete_directory(conn, &directory, "event_race").await.expect("directory deleted");
        }
    }
}

/// A directory user's event and the directory's deletion applied at the same moment, in either order, leave no
/// `active` row vouching for the person in a deleted directory: under READ COMMITTED each would miss the other's
/// uncommitted row, so changes to one directory take turns ([`race`]).
#[tokio::test]
async fn a_directory_user_added_while_the_directory_is_deleted_is_not_left_active() {
    for (first, second) in [
        (DirectoryChange::AddActiveUser, DirectoryChange::DeleteDirectory),
        (DirectoryChange::DeleteDirectory, DirectoryChange::AddActiveUser),
    ] {
        let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
        race(&app, first, second).await;
        let active = app
            .query_scalar_i64(
                "SELECT count(*) FROM authbridge.directory_users \
                 WHERE directory_id = $1 AND state = 'active' AND deleted_at IS NULL",
                "directory_race",
            )
            .await;
        assert_eq!(active, 0, "{first:?} then {second:?}");
    }
}

fn directory_user(state: &str, updated: i64) -> serde_json::Value {
    serde_json::json!({
        "object": "directory_user", "id": "directory_user_late", "directory_id": "directory_late",
        "organization_id": "org_late", "email": "late@example.com", "state": state,
        "created_at": crate::helpers::lifecycle::ts(at(0)), "updated_at": crate::helpers::lifecycle::ts(at(updated)),
    })
}

/// How many organizations the rule gives `user_late` now.
async fn late_members_organizations(app: &crate::helpers::app::TestApp) -> i64 {
    app.query_scalar_i64("SELECT count(*) FROM unnest(authbridge.active_organization_ids($1))", "user_late").await
}

/// A member of `org_late` (`user_late`, late@example.com, active since `at(1)`), in its directory since `at(2)`.
async fn member_in_a_directory(app: &crate::helpers::app::TestApp) {
    app.deliver_ok(&event("user.created", user("user_late", "late@example.com", 1), at(1))).await;
    app.deliver_ok(&event("organization.created", organization("org_late", "Late", 1), at(1))).await;
    let joined = membership("om_late", "user_late", "org_late", "active", "member", 1);
    app.deliver_ok(&event("organization_membership.created", joined, at(1))).await;
    app.deliver_ok(&event("dsync.user.created", directory_user("active", 2), at(2))).await;
}

/// `organization_membership.updated` for `om_late` in `status`, changed (and sent) at `at(moment)`; what the webhook
/// answered.
async fn late_membership(app: &crate::helpers::app::TestApp, status: &str, moment: i64) -> String {
    let updated = membership("om_late", "user_late", "org_late", status, "member", moment);
    app.deliver_ok(&event("organization_membership.updated", updated, at(moment))).await
}

/// Deprovisioned again by the directory after an admin gave the membership back: the denial holds even when the
/// directory's "active" event in between comes last (it dates the second denial, not the first).
#[tokio::test]
async fn a_directory_denial_holds_when_the_active_event_before_it_comes_late() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    let active = || late_members_organizations(&app);
    member_in_a_directory(&app).await;
    assert_eq!(active().await, 1, "a member");
    app.deliver_ok(&event("dsync.user.updated", directory_user("inactive", 10), at(10))).await;
    assert_eq!(active().await, 0, "deprovisioned by the directory");
    // An admin deactivates and reactivates the membership at WorkOS: the earlier denial no longer holds.
    late_membership(&app, "inactive", 14).await;
    late_membership(&app, "active", 15).await;
    assert_eq!(active().await, 1, "given back by the admin");
    // The directory: active at 20, inactive again at 25; the second arrives first.
    app.deliver_ok(&event("dsync.user.updated", directory_user("inactive", 25), at(25))).await;
    assert_eq!(app.deliver_ok(&event("dsync.user.updated", directory_user("active", 20), at(20))).await, "applied");
    assert_eq!(active().await, 0, "deprovisioned again at 25, after the admin's reactivation");
}

/// The other way round: an admin's reactivation that arrives before the deactivation it undoes still lifts a
/// directory denial older than both.
#[tokio::test]
async fn a_reactivation_that_comes_before_its_deactivation_still_lifts_an_older_denial() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    let active = || late_members_organizations(&app);
    member_in_a_directory(&app).await;
    app.deliver_ok(&event("dsync.user.updated", directory_user("inactive", 10), at(10))).await;
    assert_eq!(active().await, 0, "deprovisioned by the directory");
    late_membership(&app, "active", 15).await;
    assert_eq!(late_membership(&app, "inactive", 14).await, "applied");
    assert_eq!(active().await, 1, "reactivated at 15, after the denial at 10");
}

/// A directory user removed while active by their last word (a reactivation whose own event was lost) denies from
/// the removal, not from an older denial that a reactivation at WorkOS has since outweighed.
#[tokio::test]
async fn a_removal_whose_payload_says_active_denies_from_the_removal() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    let active = || late_members_organizations(&app);
    member_in_a_directory(&app).await;
    app.deliver_ok(&event("dsync.user.updated", directory_user("inactive", 10), at(10))).await;
    late_membership(&app, "inactive", 14).await;
    late_membership(&app, "active", 15).await;
    assert_eq!(active().await, 1, "given back by the admin");
    // Active again at 20 (that event lost), then removed from the directory at 30.
    assert_eq!(app.deliver_ok(&event("dsync.user.deleted", directory_user("active", 20), at(30))).await, "applied");
    assert_eq!(active().await, 0, "deprovisioned at 30, after the admin's reactivation");
}

/// A late "active" event never moves a denial to an earlier time than the one stored: with event times out of step
/// with `updated_at` (a group event carrying an older copy of the user), the stored state's own time can be the
/// earlier one.
#[tokio::test]
async fn a_late_active_event_never_moves_a_denial_earlier() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    let active = || late_members_organizations(&app);
    member_in_a_directory(&app).await;
    app.deliver_ok(&event("dsync.user.updated", directory_user("inactive", 15), at(40))).await;
    app.deliver_ok(&event("dsync.user.updated", directory_user("inactive", 20), at(21))).await;
    late_membership(&app, "inactive", 29).await;
    late_membership(&app, "active", 30).await;
    assert_eq!(active().await, 0, "the denial dated 40 holds over the reactivation at 30");
    assert_eq!(app.deliver_ok(&event("dsync.user.updated", directory_user("active", 12), at(50))).await, "applied");
    assert_eq!(active().await, 0, "still denied");
}

#[derive(Debug, Clone, Copy)]
enum UserChange {
    NewAddress,
    SignedIn,
    Delete,
}

impl RacingChange for UserChange {
    async fn apply(self, conn: &mut sqlx::PgConnection) {
        apply_user_change(conn, self).await;
    }
}

async fn apply_user_change(conn: &mut sqlx::PgConnection, change: UserChange) {
    use authbridge::lifecycle::store;
    let id = "user_race";
    match change {
        UserChange::NewAddress => {
            store::upsert_user(conn, id, Some("new@example.com"), &store::Version::of_object(at(2)))
                .await
                .expect("address changed")
        }
        UserChange::SignedIn => {
            store::note_signed_in_user(conn, id, Some("token@example.com")).await.expect("sign-in noted")
        }
        UserChange::Delete => {
            store::tombstone_user(conn, id, &store::Version::of_object(at(3))).await.expect("user deleted")
        }
    }
}

/// A user's new address (from an event, or from a sign-in) written at the same moment as the user's deletion, in
/// either order, leaves no address behind: under READ COMMITTED the deletion's removal of the address history
/// would miss an address not yet committed, so the history is written under a lock on the user's row ([`race`]).
#[tokio::test]
async fn an_address_written_while_the_user_is_deleted_is_forgotten_with_them() {
    for (first, second) in [
        (UserChange::Delete, UserChange::NewAddress),
        (UserChange::Delete, UserChange::SignedIn),
        (UserChange::NewAddress, UserChange::Delete),
        (UserChange::SignedIn, UserChange::Delete),
    ] {
        let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
        let mut holder = app.db.connect().await;
        authbridge::lifecycle::store::upsert_user(
            &mut holder,
            "user_race",
            Some("old@example.com"),
            &authbridge::lifecycle::store::Version::of_object(at(1)),
        )
        .await
        .expect("the user");
        race(&app, first, second).await;
        let addresses = app
            .query_scalar_i64("SELECT count(*) FROM authbridge.user_email_history WHERE user_id = $1", "user_race")
            .await;
        let email = app
            .query_scalar_i64(
                "SELECT count(*) FROM authbridge.users WHERE id = $1 AND email IS NULL AND deleted_at IS NOT NULL",
                "user_race",
            )
            .await;
        assert_eq!((addresses, email), (0, 1), "{first:?} then {second:?}");
    }
}

/// JSON can carry U+0000 and PostgreSQL's `text` cannot: an organization renamed with one in it (and a user whose
/// address has one) is stored with U+FFFD in its place, rather than answered 500 on every delivery and holding up
/// the Events API consumer behind it.
#[tokio::test]
async fn a_nul_character_from_workos_is_stored_as_a_replacement_character() {
    let app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    let renamed = event("organization.updated", organization("org_nul", "Glo\u{0}bex", 2), at(2));
    assert_eq!(app.deliver_ok(&renamed).await, "applied");
    let created = event("user.created", user("user_nul", "nul\u{0}@example.com", 1), at(1));
    assert_eq!(app.deliver_ok(&created).await, "applied");
    let mut conn = app.db.connect().await;
    let name: String = sqlx::query_scalar("SELECT name FROM authbridge.organizations WHERE id = 'org_nul'")
        .fetch_one(&mut conn)
        .await
        .expect("stored");
    assert_eq!(name, "Glo\u{FFFD}bex");
    let email: String = sqlx::query_scalar("SELECT email FROM authbridge.users WHERE id = 'user_nul'")
        .fetch_one(&mut conn)
        .await
        .expect("stored");
    assert_eq!(email, "nul\u{FFFD}@example.com");
}

/// A webhook naming an organization authbridge has not recorded is answered at once, and its name is looked up
/// from WorkOS after: a stop waits for that look-up, as for every background task, rather than leave it to log
/// after the server said it stopped (or be cut off with the process).
#[tokio::test]
async fn a_stop_waits_for_a_webhooks_look_up_of_an_organizations_name() {
    let mut app = spawn_app_with(lifecycle_without_standin_webhooks()).await;
    app.workos.set_latency(standins::workos_standin::Endpoint::Organizations, Duration::from_millis(700));
    let acme = standins::workos_standin::ACME_ORGANIZATION_ID;
    let joined = membership("om_late", "user_late", acme, "active", "member", 1);
    app.deliver_ok(&event("organization_membership.created", joined, at(1))).await;
    let named = "SELECT count(*) FROM authbridge.organizations WHERE id = $1";
    assert_eq!(app.query_scalar_i64(named, acme).await, 0, "looked up after the answer");
    app.shutdown().await.expect("stops");
    assert_eq!(app.query_scalar_i64(named, acme).await, 1, "recorded before the server stopped");
}

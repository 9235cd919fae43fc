//! Deprovisioning, as a user experiences it: a membership removed, deactivated or deprovisioned by the directory is
//! gone from `/api/organizations` on the next request; a deleted user or a revoked session has no access at all on
//! the next request, with a cookie or a bearer token, and PostgreSQL itself refuses a deleted user's queries.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use standins::workos_standin::{ACME_ORGANIZATION_ID, StandInDirectoryUser};

use crate::helpers::app::{ALICE, AppOptions, BOB, LifecycleOptions, TestApp, spawn_app_with};
use crate::helpers::browser::Browser;
use crate::helpers::lifecycle::{
    ORGANIZATIONS, SqlAccess, at, delivered, event, eventually, membership, organization_ids, session, ts, user,
};
use crate::helpers::session::{read_session, session_id};

async fn lifecycle_app() -> TestApp {
    spawn_app_with(AppOptions::default().lifecycle()).await
}

#[tokio::test]
async fn a_membership_removed_at_workos_is_gone_on_the_next_request_with_a_cookie_or_a_bearer_token() {
    let app = lifecycle_app().await;
    let bob = app.user_id(BOB);
    let browser = app.signed_in(BOB).await;
    let bearer = app.bearer_client(app.workos.mint_access_token(&bob, Duration::from_secs(300)));
    let listed = browser.get(ORGANIZATIONS).await;
    assert_eq!(
        listed.json(),
        json!([{ "id": ACME_ORGANIZATION_ID, "name": "Acme", "role": "member", "roles": ["member"] }])
    );
    assert_eq!(organization_ids(&bearer.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);

    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("Bob's membership");
    app.workos.delete_membership(&acme.id).expect("removed");
    delivered(&app, "organization_membership.deleted").await;

    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]));
    assert_eq!(bearer.get(ORGANIZATIONS).await.json(), json!([]));
    assert_eq!(browser.get("/api/me").await.status, 200, "Bob himself still has access");
}

/// A membership deleted at WorkOS whose deletion event never reached the app (no webhook, no consumer: as after
/// webhooks given up for days, or a consumer down past the Events API's 30 days) is ended by the next complete
/// listing of the user's memberships, at sign-in or refresh. A membership the listing does not show but that changed
/// moments ago (created while the list was being read) is left alone.
#[tokio::test]
async fn a_membership_whose_deletion_event_was_lost_is_ended_at_the_next_sign_in() {
    let options = LifecycleOptions { webhooks_from_standin: false, ..LifecycleOptions::default() };
    let app = spawn_app_with(AppOptions::default().lifecycle_with(options)).await;
    let bob = app.user_id(BOB);
    let browser = app.signed_in(BOB).await;
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("Bob's membership");

    let pool = sqlx::PgPool::connect(&app.db.url).await.expect("connect as owner");
    // Recorded an hour ago; and another membership recorded a moment ago that WorkOS will not list.
    sqlx::query(
        "UPDATE authbridge.organization_memberships SET version_updated_at = now() - interval '1 hour' WHERE id = $1",
    )
    .bind(&acme.id)
    .execute(&pool)
    .await
    .expect("backdate");
    sqlx::query(
        "INSERT INTO authbridge.organization_memberships \
             (id, user_id, organization_id, status, role, role_slugs, directory_managed, \
              version_updated_at, version_event_at, version_event_id) \
         VALUES ('om_just_created', $1, $2, 'active', 'admin', '{admin}', false, now(), now(), 'event_x')",
    )
    .bind(&bob)
    .bind(ACME_ORGANIZATION_ID)
    .execute(&pool)
    .await
    .expect("a membership recorded moments ago");
    assert_eq!(
        browser.get(ORGANIZATIONS).await.json(),
        json!([{ "id": ACME_ORGANIZATION_ID, "name": "Acme", "role": "admin", "roles": ["admin", "member"] }]),
        "two active memberships in Acme: Acme listed once, with the latest membership's role and both's roles"
    );

    app.workos.delete_membership(&acme.id).expect("removed at WorkOS");
    assert_eq!(
        live_memberships(&pool, &bob).await,
        [acme.id.clone(), "om_just_created".to_owned()],
        "no event arrived: the app cannot know yet"
    );

    app.signed_in(BOB).await;
    let after = live_memberships(&pool, &bob).await;
    pool.close().await;
    assert_eq!(after, ["om_just_created"], "the deleted one is ended; the one of a moment ago is kept");
}

/// A user in more organizations than one page of WorkOS's list holds (100): the listing reads every page before it
/// ends anything, so the memberships on the later pages are kept.
#[tokio::test]
async fn the_listing_reads_every_page_before_it_ends_a_membership() {
    let options = LifecycleOptions { webhooks_from_standin: false, ..LifecycleOptions::default() };
    let app = spawn_app_with(AppOptions::default().lifecycle_with(options)).await;
    let bob = app.user_id(BOB);
    // (A member of several organizations would be asked to pick one at sign-in.)
    app.workos.set_organization_selection(false);
    let pool = sqlx::PgPool::connect(&app.db.url).await.expect("connect as owner");
    for i in 0..120 {
        let organization = app.workos.create_organization(&format!("Organization {i}"));
        app.workos.add_membership(&bob, &organization.id, &[]).expect("a member");
        // Known to the database already, so the sign-in does not fetch 120 organizations within its time limit.
        sqlx::query(
            "INSERT INTO authbridge.organizations (id, name, version_updated_at, version_event_at, version_event_id) \
             VALUES ($1, $2, now(), now(), '')",
        )
        .bind(&organization.id)
        .bind(&organization.name)
        .execute(&pool)
        .await
        .expect("an organization");
    }
    app.signed_in(BOB).await;
    assert_eq!(live_memberships(&pool, &bob).await.len(), 121, "all recorded, Acme's too");
    sqlx::query(
        "UPDATE authbridge.organization_memberships SET version_updated_at = now() - interval '1 hour' \
         WHERE user_id = $1",
    )
    .bind(&bob)
    .execute(&pool)
    .await
    .expect("backdate");

    app.signed_in(BOB).await;
    assert_eq!(live_memberships(&pool, &bob).await.len(), 121, "none ended: every page was read");
    pool.close().await;
}

/// The ids of `user`'s memberships the database holds and has not ended.
async fn live_memberships(pool: &sqlx::PgPool, user: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT id FROM authbridge.organization_memberships WHERE user_id = $1 AND deleted_at IS NULL ORDER BY id",
    )
    .bind(user)
    .fetch_all(pool)
    .await
    .expect("read memberships")
}

#[tokio::test]
async fn a_deactivated_membership_is_gone_on_the_next_request() {
    let app = lifecycle_app().await;
    let bob = app.user_id(BOB);
    let browser = app.signed_in(BOB).await;
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("Bob's membership");
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);

    // The event alone (as from a directory deprovisioning): inactive, newer than what the database has.
    let now = time::OffsetDateTime::now_utc();
    let mut inactive = membership(&acme.id, &bob, ACME_ORGANIZATION_ID, "inactive", "member", 0);
    inactive["updated_at"] = json!(ts(now));
    app.deliver_ok(&event("organization_membership.updated", inactive, now)).await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]));
}

#[tokio::test]
async fn deactivation_at_workos_also_revokes_the_sessions_and_signing_in_again_shows_no_membership() {
    let app = lifecycle_app().await;
    let bob = app.user_id(BOB);
    let browser = app.signed_in(BOB).await;
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("Bob's membership");

    app.workos.deactivate_membership(&acme.id).expect("deactivated");
    delivered(&app, "session.revoked").await;
    delivered(&app, "organization_membership.updated").await;
    assert_eq!(browser.get(ORGANIZATIONS).await.status, 401, "WorkOS revoked Bob's sessions");

    let again = app.signed_in(BOB).await;
    assert_eq!(again.get(ORGANIZATIONS).await.json(), json!([]), "the membership is inactive");
}

/// With WorkOS's directory provisioning (docs/workos.md §5.3), a directory deprovisioning reaches the app as the
/// membership turned `inactive` (with the default role) and every session of the person revoked; the directory
/// making the person active again gives the organization back.
#[tokio::test]
async fn a_directory_deprovisioning_reaches_the_app_as_an_inactive_membership_and_revoked_sessions() {
    let app = lifecycle_app().await;
    let bob = app.user_id(BOB);
    let directory_user = app.workos.provision_directory_user(ACME_ORGANIZATION_ID, BOB).expect("provisioned");
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("Bob's membership");
    app.workos.set_membership_roles(&acme.id, &["admin"]).expect("made an admin");
    let browser = app.signed_in(BOB).await;
    delivered(&app, "organization_membership.updated").await;
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);

    app.workos.set_directory_user_state(&directory_user.id, "inactive").expect("deprovisioned");
    delivered(&app, "dsync.user.updated").await;
    delivered(&app, "organization_membership.updated").await;
    delivered(&app, "session.revoked").await;
    assert_eq!(app.membership_row(&acme.id).await, Some(("inactive".to_owned(), Some("member".to_owned()), false)));
    assert_eq!(browser.get(ORGANIZATIONS).await.status, 401, "WorkOS revoked Bob's sessions");
    let again = app.signed_in(BOB).await;
    assert_eq!(again.get(ORGANIZATIONS).await.json(), json!([]), "the membership is inactive");

    app.workos.set_directory_user_state(&directory_user.id, "active").expect("reactivated");
    delivered(&app, "organization_membership.updated").await;
    assert_eq!(app.membership_row(&acme.id).await, Some(("active".to_owned(), Some("member".to_owned()), false)));
    assert_eq!(organization_ids(&again.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);
}

/// Directory Sync without WorkOS's directory provisioning (set up per environment by WorkOS; docs/workos.md §5.5):
/// the `dsync.*` events alone say the person is gone, and must take the membership away.
#[tokio::test]
async fn a_directory_user_set_inactive_takes_the_membership_away_and_reactivation_brings_it_back() {
    let app = lifecycle_app().await;
    app.workos.set_directory_provisioning(false);
    let directory_user = app.workos.provision_directory_user(ACME_ORGANIZATION_ID, BOB).expect("provisioned");
    let browser = app.signed_in(BOB).await;
    delivered(&app, "dsync.user.created").await;
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);

    // Soft deprovisioning: `dsync.user.updated` with `state: "inactive"`, and nothing else.
    app.workos.set_directory_user_state(&directory_user.id, "inactive").expect("deprovisioned");
    delivered(&app, "dsync.user.updated").await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]));

    app.workos.set_directory_user_state(&directory_user.id, "active").expect("reactivated");
    delivered(&app, "dsync.user.updated").await;
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);

    // A group change carries the directory user as it is now: suspended there, deprovisioned here.
    app.workos.set_directory_user_state(&directory_user.id, "suspended").expect("suspended");
    app.workos.set_directory_group_member(&directory_user.id, "Engineering", false).expect("removed from group");
    delivered(&app, "dsync.group.user_removed").await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]));
}

/// WorkOS links directory users to users by email. A user whose address changes at WorkOS after the directory
/// deprovisioned them (a company renaming its domain) is the same person: the denial stays, in the app and in RLS.
#[tokio::test]
async fn a_directory_denial_survives_a_change_of_the_users_email() {
    let app = lifecycle_app().await;
    let (bob, directory_user, browser) = bob_with_an_acme_todo_under_plain_directory_sync(&app).await;
    app.workos.set_directory_user_state(&directory_user.id, "inactive").expect("deprovisioned");
    delivered(&app, "dsync.user.updated").await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]), "denied by the directory");

    let renamed = json!({
        "object": "user", "id": bob, "email": "bob@acme-renamed.test", "email_verified": true,
        "first_name": null, "last_name": null, "profile_picture_url": null,
        "created_at": ts(at(0)), "updated_at": ts(time::OffsetDateTime::now_utc() + time::Duration::seconds(5)),
    });
    let applied = app.deliver_ok(&event("user.updated", renamed, time::OffsetDateTime::now_utc())).await;
    assert_eq!(applied, "applied");
    let mut conn = app.db.connect().await;
    let email: Option<String> = sqlx::query_scalar("SELECT email FROM authbridge.users WHERE id = $1")
        .bind(&bob)
        .fetch_one(&mut conn)
        .await
        .expect("Bob's row");
    assert_eq!(email.as_deref(), Some("bob@acme-renamed.test"), "the new address is recorded");

    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]), "still denied under the new address");
    let listed = browser.get(&format!("/api/todos?organization_id={ACME_ORGANIZATION_ID}")).await;
    assert_eq!(listed.status, 403, "{}", listed.body);
    assert_eq!(app.as_authenticated(&bob).await.visible, 0, "and by RLS");

    // His old address given to a new hire, active in the directory: it vouches for the new hire, not for Bob.
    app.workos.provision_directory_user(ACME_ORGANIZATION_ID, BOB).expect("the new hire provisioned");
    delivered(&app, "dsync.user.created").await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]), "an old address never vouches");
    assert_eq!(app.as_authenticated(&bob).await.visible, 0, "nor in RLS");

    // The directory says the person under the new address is active: that vouches.
    app.workos.provision_directory_user(ACME_ORGANIZATION_ID, "bob@acme-renamed.test").expect("provisioned again");
    delivered(&app, "dsync.user.created").await;
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);
    assert_eq!(app.as_authenticated(&bob).await.visible, 1, "RLS shows his Acme todo again");
}

/// A directory connection deleted (`dsync.deleted`) vouches for nobody any more, but whom it had deprovisioned stays
/// denied (failing closed: WorkOS leaves the memberships as they were), even when a late event about the deleted
/// directory says otherwise.
#[tokio::test]
async fn a_deleted_directory_vouches_for_nobody_and_its_denials_stay() {
    let app = lifecycle_app().await;
    // The directory's own denial is under test: WorkOS does not carry it to the membership (no directory
    // provisioning), or that carrying was lost.
    app.workos.set_directory_provisioning(false);
    let directory_user = app.workos.provision_directory_user(ACME_ORGANIZATION_ID, BOB).expect("provisioned");
    let other = app.workos.provision_directory_user(ACME_ORGANIZATION_ID, "dana@acme.test").expect("provisioned");
    let browser = app.signed_in(BOB).await;
    delivered(&app, "dsync.user.created").await;
    app.workos.set_directory_user_state(&directory_user.id, "inactive").expect("deprovisioned");
    delivered(&app, "dsync.user.updated").await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]), "denied by the directory");

    let mut conn = app.db.connect().await;
    let active_other = "SELECT count(*) FROM authbridge.directory_users WHERE id = $1 AND state = 'active'";
    let vouched: i64 = sqlx::query_scalar(active_other).bind(&other.id).fetch_one(&mut conn).await.expect("count");
    assert_eq!(vouched, 1, "the directory vouched for Dana");

    app.workos.delete_directory(ACME_ORGANIZATION_ID).expect("the directory deleted");
    delivered(&app, "dsync.deleted").await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]), "the deletion gives nothing back");
    let vouched: i64 = sqlx::query_scalar(active_other).bind(&other.id).fetch_one(&mut conn).await.expect("count");
    assert_eq!(vouched, 0, "its active users count for nothing");

    // A late event saying Bob is active again, about the deleted directory: not recorded.
    let mut late = directory_user.to_value();
    late["state"] = json!("active");
    late["updated_at"] = json!(ts(time::OffsetDateTime::now_utc() + time::Duration::seconds(5)));
    app.deliver_ok(&event("dsync.user.updated", late, time::OffsetDateTime::now_utc())).await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]), "still denied");
}

/// A user who only ever comes with bearer tokens (an API client) never signs in here, so the sign-in's sync never
/// recorded their email, by which a directory's denial finds them: the bearer path records it (from the token, or
/// WorkOS's answer for the user), before the request's own check, so the directory's deactivation holds for them too.
#[tokio::test]
async fn a_directory_deactivation_holds_for_a_user_who_only_ever_came_with_bearer_tokens() {
    let app = lifecycle_app().await;
    let (bob, directory_user) = bob_in_acmes_directory_under_plain_directory_sync(&app).await;
    let alice = app.signed_in(ALICE).await;
    let plan = json!({ "title": "Acme plan", "organization_id": ACME_ORGANIZATION_ID });
    assert_eq!(alice.api(Method::POST, "/api/todos", Some(plan)).await.status, 201);
    // Bob's membership reaches the database by its event alone: he never signed in here.
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("Bob's membership");
    let now = time::OffsetDateTime::now_utc();
    let active = membership(&acme.id, &bob, ACME_ORGANIZATION_ID, "active", "member", 0);
    app.deliver_ok(&event("organization_membership.created", active, now)).await;
    app.workos.set_directory_user_state(&directory_user.id, "inactive").expect("deprovisioned");
    delivered(&app, "dsync.user.updated").await;

    let api = app.bearer_client(app.workos.mint_access_token(&bob, Duration::from_secs(300)));
    let listed = api.get(&format!("/api/todos?organization_id={ACME_ORGANIZATION_ID}")).await;
    assert_eq!((listed.status, listed.error_code()), (403, "not_a_member".to_owned()), "{}", listed.body);
    assert_eq!(app.as_authenticated(&bob).await.visible, 0, "RLS denies him too");
}

/// Bob provisioned into Acme's directory under plain Directory Sync (no AuthKit directory provisioning), the event
/// applied. Returns his id and his directory user.
async fn bob_in_acmes_directory_under_plain_directory_sync(app: &TestApp) -> (String, StandInDirectoryUser) {
    app.workos.set_directory_provisioning(false);
    let directory_user = app.workos.provision_directory_user(ACME_ORGANIZATION_ID, BOB).expect("provisioned");
    delivered(app, "dsync.user.created").await;
    (app.user_id(BOB), directory_user)
}

/// Bob, in Acme's directory under plain Directory Sync (no AuthKit directory provisioning: WorkOS leaves his
/// membership alone whatever the directory says, so only authbridge's directory rule can deny it), signed in, with a
/// todo in Acme. Returns his id, his directory user and his browser.
async fn bob_with_an_acme_todo_under_plain_directory_sync(app: &TestApp) -> (String, StandInDirectoryUser, Browser) {
    let (bob, directory_user) = bob_in_acmes_directory_under_plain_directory_sync(app).await;
    let browser = app.signed_in(BOB).await;
    let plan = json!({ "title": "Acme plan", "organization_id": ACME_ORGANIZATION_ID });
    let created = browser.api(Method::POST, "/api/todos", Some(plan)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    (bob, directory_user, browser)
}

/// A directory's denial holds at once and for as long as WorkOS leaves the membership alone, but WorkOS's own later
/// word wins: an admin who reactivates the membership at WorkOS after the directory deprovisioned and removed the
/// person gives the organization back, in the app and in RLS.
#[tokio::test]
async fn a_membership_reactivated_at_workos_after_a_directory_denial_is_active_again() {
    let app = lifecycle_app().await;
    let (bob, directory_user, browser) = bob_with_an_acme_todo_under_plain_directory_sync(&app).await;

    app.workos.set_directory_user_state(&directory_user.id, "inactive").expect("deprovisioned");
    delivered(&app, "dsync.user.updated").await;
    app.workos.remove_directory_user(&directory_user.id).expect("removed from the directory");
    delivered(&app, "dsync.user.deleted").await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]), "denied by the directory at once");
    assert_eq!(app.as_authenticated(&bob).await.visible, 0, "and by RLS");

    // A role change is not a reactivation: the denial stays.
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("Bob's membership");
    app.workos.set_membership_roles(&acme.id, &["admin"]).expect("made an admin");
    delivered(&app, "organization_membership.updated").await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]), "still denied after a role change");

    // An admin deactivates and reactivates the membership by hand (deactivating revokes Bob's sessions).
    app.workos.deactivate_membership(&acme.id).expect("deactivated");
    delivered(&app, "organization_membership.updated").await;
    app.workos.reactivate_membership(&acme.id).expect("reactivated");
    delivered(&app, "organization_membership.updated").await;
    let again = app.signed_in(BOB).await;
    assert_eq!(organization_ids(&again.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);
    assert_eq!(app.as_authenticated(&bob).await.visible, 1, "RLS shows his Acme todo again");
    let listed = again.get(&format!("/api/todos?organization_id={ACME_ORGANIZATION_ID}")).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(listed.body.contains("Acme plan"), "{}", listed.body);
}

/// WorkOS does not document that a `dsync.user.deleted` payload's `updated_at` moves forward on deletion. Deleting a
/// directory user who was active, provisioned before the membership was added, with the `updated_at` they had then,
/// is still a deprovisioning: dated by the event, it takes the newer membership away, in the app and in RLS.
#[tokio::test]
async fn a_directory_user_deleted_with_an_unchanged_updated_at_takes_a_newer_membership_away() {
    let app = lifecycle_app().await;
    let (bob, directory_user, browser) = bob_with_an_acme_todo_under_plain_directory_sync(&app).await;

    // The membership is newer than the directory user: removed and added again at WorkOS.
    membership_removed_and_added_again(&app, &bob).await;
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);
    assert_eq!(app.as_authenticated(&bob).await.visible, 1, "RLS shows his Acme todo");

    // The deletion as WorkOS may send it: the directory user as provisioned, active, `updated_at` unchanged.
    let deleted = directory_user.to_value();
    assert_eq!(deleted["state"], "active");
    app.deliver_ok(&event("dsync.user.deleted", deleted, time::OffsetDateTime::now_utc())).await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]), "denied by the directory");
    assert_eq!(app.as_authenticated(&bob).await.visible, 0, "and by RLS");
}

/// Bob's Acme membership removed and added again at WorkOS: a membership newer than anything the directory said.
async fn membership_removed_and_added_again(app: &TestApp, bob: &str) {
    let acme = app.workos.membership_of(bob, ACME_ORGANIZATION_ID).expect("Bob's membership");
    app.workos.delete_membership(&acme.id).expect("removed");
    delivered(app, "organization_membership.deleted").await;
    app.workos.add_membership(bob, ACME_ORGANIZATION_ID, &[]).expect("added again");
    delivered(app, "organization_membership.created").await;
}

/// The directory deprovisions Bob (denied at once), then an admin deactivates and reactivates his Acme membership by
/// hand (deactivating revokes his sessions): his new session, signed in again.
async fn reactivated_by_an_admin_after_a_directory_denial(
    app: &TestApp,
    bob: &str,
    directory_user: &StandInDirectoryUser,
    browser: &Browser,
) -> Browser {
    app.workos.set_directory_user_state(&directory_user.id, "inactive").expect("deprovisioned");
    delivered(app, "dsync.user.updated").await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]), "denied by the directory");
    let acme = app.workos.membership_of(bob, ACME_ORGANIZATION_ID).expect("Bob's membership");
    app.workos.deactivate_membership(&acme.id).expect("deactivated");
    delivered(app, "organization_membership.updated").await;
    app.workos.reactivate_membership(&acme.id).expect("reactivated");
    delivered(app, "organization_membership.updated").await;
    app.signed_in(BOB).await
}

/// A membership an admin reactivated at WorkOS after a directory denial stays active through later changes to the
/// directory user, who was already not active: a change of state among the inactive ones (an attribute sync moves
/// `updated_at` the same way) and WorkOS deleting the inactive user are no new denial.
#[tokio::test]
async fn later_changes_to_a_directory_user_already_inactive_do_not_take_back_a_reactivated_membership() {
    let app = lifecycle_app().await;
    let (bob, directory_user, browser) = bob_with_an_acme_todo_under_plain_directory_sync(&app).await;
    let again = reactivated_by_an_admin_after_a_directory_denial(&app, &bob, &directory_user, &browser).await;
    assert_eq!(organization_ids(&again.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);
    assert_eq!(app.as_authenticated(&bob).await.visible, 1, "RLS shows his Acme todo again");

    let suspended = app.workos.set_directory_user_state(&directory_user.id, "suspended").expect("suspended");
    assert!(suspended.updated_at > directory_user.updated_at, "the change moved updated_at");
    delivered(&app, "dsync.user.updated").await;
    assert_eq!(organization_ids(&again.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID], "after a later change");
    assert_eq!(app.as_authenticated(&bob).await.visible, 1, "and in RLS");

    app.workos.remove_directory_user(&directory_user.id).expect("deleted by WorkOS");
    delivered(&app, "dsync.user.deleted").await;
    assert_eq!(organization_ids(&again.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID], "after its deletion");
    assert_eq!(app.as_authenticated(&bob).await.visible, 1, "and in RLS");
}

/// A directory user active again and then deprovisioned again is a new denial, dated by that second change: it takes
/// away a membership an admin had reactivated at WorkOS after the first one.
#[tokio::test]
async fn a_directory_user_deprovisioned_again_after_a_reactivation_takes_the_membership_away_again() {
    let app = lifecycle_app().await;
    let (bob, directory_user, browser) = bob_with_an_acme_todo_under_plain_directory_sync(&app).await;
    let again = reactivated_by_an_admin_after_a_directory_denial(&app, &bob, &directory_user, &browser).await;
    assert_eq!(organization_ids(&again.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID], "reactivated at WorkOS");

    app.workos.set_directory_user_state(&directory_user.id, "active").expect("active again");
    delivered(&app, "dsync.user.updated").await;
    assert_eq!(organization_ids(&again.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);
    assert_eq!(app.as_authenticated(&bob).await.visible, 1, "RLS shows his Acme todo");
    app.workos.set_directory_user_state(&directory_user.id, "inactive").expect("deprovisioned again");
    delivered(&app, "dsync.user.updated").await;
    assert_eq!(again.get(ORGANIZATIONS).await.json(), json!([]), "denied by the directory again");
    assert_eq!(app.as_authenticated(&bob).await.visible, 0, "and by RLS");
}

/// After the organization deleted its directory, its denials stay (see above) until WorkOS says otherwise: a
/// membership removed and added again at WorkOS is active.
#[tokio::test]
async fn a_membership_added_again_after_the_directory_was_deleted_is_active() {
    let app = lifecycle_app().await;
    // Only the directory denies the membership (no directory provisioning), as in the test above.
    let (bob, directory_user) = bob_in_acmes_directory_under_plain_directory_sync(&app).await;
    let browser = app.signed_in(BOB).await;
    app.workos.set_directory_user_state(&directory_user.id, "inactive").expect("deprovisioned");
    delivered(&app, "dsync.user.updated").await;
    app.workos.delete_directory(ACME_ORGANIZATION_ID).expect("the directory deleted");
    delivered(&app, "dsync.deleted").await;
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]), "the deletion gives nothing back");

    membership_removed_and_added_again(&app, &bob).await;
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);
}

#[tokio::test]
async fn a_deleted_user_has_no_access_on_the_next_request_with_a_cookie_or_a_bearer_token() {
    let app = lifecycle_app().await;
    let alice = app.user_id(ALICE);
    let browser = app.signed_in(ALICE).await;
    assert_eq!(browser.api(Method::POST, "/api/todos", Some(json!({ "title": "mine" }))).await.status, 201);
    let token = app.workos.mint_access_token(&alice, Duration::from_secs(300));
    let bearer = app.bearer_client(token.clone());
    assert_eq!(bearer.get("/api/todos").await.status, 200);
    // A replica that will not receive the webhook, and has just seen this user.
    let replica = app.replica().await;
    let on_replica = replica.browser_like(&browser);
    assert_eq!(on_replica.api(Method::GET, "/api/me", None).await.status, 200);

    // Only `user.deleted` (no session events): the user id alone ends every session.
    app.deliver_ok(&event("user.deleted", user(&alice, ALICE, 1), at(1))).await;

    // A form posted from the page she still has open is answered "signed out", with a sign-in link; the cookie is
    // cleared.
    let form = browser.post_form("/todos", &[("title", "after deletion")]).await;
    assert_eq!(form.status, 401, "{}", form.body);
    assert!(form.body.contains(r#"href="/login""#), "{}", form.body);
    assert!(browser.cookie(authbridge::session::SESSION_COOKIE).is_none(), "the cookie is cleared");
    assert!(browser.get("/").await.body.contains("Sign in"), "the start page is the signed-out one");
    assert_eq!(app.all_todos().await.len(), 1, "nothing was written");
    let api = bearer.get("/api/todos").await;
    assert_eq!(api.status, 401, "{}", api.body);
    assert_eq!(api.error_code(), "invalid_token");
    assert_eq!(bearer.send(Method::POST, "/api/todos", Some(json!({ "title": "after" }))).await.status, 401);

    // The replica learns it from the database within its cache time, for the cookie and the token alike.
    let replica_bearer = crate::helpers::browser::ApiClient::new(replica.base_url.clone(), Some(token));
    let refused = eventually(Duration::from_secs(5), || async {
        on_replica.api(Method::GET, "/api/me", None).await.status == 401
            && replica_bearer.get("/api/me").await.status == 401
    })
    .await;
    assert!(refused, "the replica still lets the deleted user in");

    // Signed in by the provider all the same (WorkOS would not; a stand-in started afresh over a kept database
    // does): refused at the callback with a page that says why, rather than given a cookie the next request clears.
    let again = app.browser();
    let callback = again.sign_in(ALICE).await;
    assert_eq!(callback.status, 403, "{}", callback.body);
    assert!(callback.body.contains("Your access to this app has ended"), "{}", callback.body);
    assert!(again.cookie(authbridge::session::SESSION_COOKIE).is_none(), "no session cookie");
}

#[tokio::test]
async fn deleting_a_user_at_workos_ends_their_access_and_the_database_refuses_them_too() {
    let app = lifecycle_app().await;
    let carol = app.user_id("carol@example.test");
    let browser = app.signed_in("carol@example.test").await;
    let stolen = read_session(&browser);
    assert_eq!(browser.api(Method::POST, "/api/todos", Some(json!({ "title": "Carol's" }))).await.status, 201);
    let bearer = app.bearer_client(app.workos.mint_access_token(&carol, Duration::from_secs(300)));
    let before = SqlAccess { visible: 1, updated: 1, deleted: 1, inserted: Ok(()) };
    assert_eq!(app.as_authenticated(&carol).await, before, "before: Carol's todo, and she may change it");

    app.workos.delete_user(&carol).expect("deleted");
    delivered(&app, "user.deleted").await;
    let types: Vec<String> = app.ledger().await.into_iter().map(|(_, event_type, ..)| event_type).collect();
    let revoked = types.iter().position(|t| t == "session.revoked");
    let deleted = types.iter().position(|t| t == "user.deleted");
    assert!(revoked.is_some() && revoked < deleted, "session.revoked then user.deleted: {types:?}");

    assert_eq!(browser.api(Method::GET, "/api/todos", None).await.status, 401);
    assert_eq!(bearer.get("/api/me").await.status, 401);

    // PostgreSQL, as `authenticated` with Carol's claims: no rows to see, update or delete, and inserts refused.
    let after = SqlAccess { visible: 0, updated: 0, deleted: 0, inserted: Err("42501".to_owned()) };
    assert_eq!(app.as_authenticated(&carol).await, after, "a deleted user can do nothing");
    // Even if the app had a bug and let the request through, InsForge (and so RLS) refuses the user.
    let identity = stolen.identity();
    let listed = app
        .insforge_client()
        .list_todos(&identity, &authbridge::todo::Space::Personal, authbridge::todo::Page::default())
        .await
        .expect("a list");
    assert!(listed.is_empty(), "{listed:?}");
    let created = app
        .insforge_client()
        .create_todo(
            &identity,
            &authbridge::todo::Title::parse("x").expect("title"),
            &authbridge::todo::Space::Personal,
        )
        .await;
    assert!(created.is_err(), "the write is refused: {created:?}");
    assert_eq!(app.all_todos().await.len(), 1, "Carol's todo is still there, just out of her reach");
}

#[tokio::test]
async fn a_revoked_session_is_signed_out_on_the_next_request_and_other_sessions_are_not() {
    let app = lifecycle_app().await;
    let first = app.signed_in(ALICE).await;
    let second = app.signed_in(ALICE).await;
    let revoked_sid = session_id(&first);
    let token_of_that_session = read_session(&first).access_token;

    assert!(app.workos.revoke_session(&revoked_sid), "revoked at WorkOS (e.g. from the dashboard)");
    delivered(&app, "session.revoked").await;

    let api = first.api(Method::GET, "/api/me", None).await;
    assert_eq!(api.status, 401, "{}", api.body);
    assert!(first.cookie(authbridge::session::SESSION_COOKIE).is_none(), "the cookie is cleared");
    let bearer = app.bearer_client(token_of_that_session).get("/api/me").await;
    assert_eq!(bearer.status, 401, "the same session as a bearer token: {}", bearer.body);
    assert_eq!(second.api(Method::GET, "/api/me", None).await.status, 200, "Alice's other session is untouched");

    // Directly, as crafted by hand: a session.revoked for the second session.
    let sid = session_id(&second);
    app.deliver_ok(&event("session.revoked", session(&sid, &app.user_id(ALICE)), at(1))).await;
    let page = second.get("/").await;
    assert!(page.body.contains("Sign in") && !page.body.contains("csrf_token"), "signed out: {}", page.body);
    assert!(second.cookie(authbridge::session::SESSION_COOKIE).is_none(), "the cookie is cleared");
}

#[tokio::test]
async fn another_replica_honours_a_revocation_within_seconds() {
    let app = spawn_app_with(AppOptions::default().lifecycle_with(LifecycleOptions::default())).await;
    let replica = app.replica().await;
    let browser = app.signed_in(ALICE).await;
    let on_replica = replica.browser_like(&browser);
    assert_eq!(on_replica.api(Method::GET, "/api/me", None).await.status, 200, "the replica knows the session");

    app.workos.revoke_session(&session_id(&browser));
    delivered(&app, "session.revoked").await;
    let started = std::time::Instant::now();
    let refused = eventually(Duration::from_secs(5), || async {
        on_replica.api(Method::GET, "/api/me", None).await.status == 401
    })
    .await;
    assert!(refused, "the replica never refused the revoked session");
    assert!(started.elapsed() <= authbridge::session::revocations::SHARED_CACHE_TTL + Duration::from_millis(1500));
}

#[tokio::test]
async fn signing_out_is_recorded_for_every_replica() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    let replica = app.replica().await;
    let browser = app.signed_in(ALICE).await;
    let sid = session_id(&browser);
    let on_replica = replica.browser_like(&browser);

    assert_eq!(browser.submit("/logout", &[]).await.status, 302);
    let recorded = app.query_scalar_i64(
        "SELECT count(*) FROM authbridge.revoked_sessions WHERE id = $1 AND source = 'sign_out'",
        &sid,
    );
    assert_eq!(recorded.await, 1);
    // The replica never saw the sign-out, and the copy's access token is still valid: the database says no.
    assert_eq!(on_replica.api(Method::GET, "/api/me", None).await.status, 401);
}

#[tokio::test]
async fn a_brand_new_user_the_database_has_never_heard_of_still_works() {
    let app = lifecycle_app().await;
    // A sign-up whose `user.created` has not arrived yet (and no sign-in sync either): deny-list, not allow-list.
    let stranger = "user_brand_new";
    let access = app.as_authenticated(stranger).await;
    assert_eq!((access.visible, access.inserted), (0, Ok(())));
    let bearer = app.bearer_client(app.workos.mint_access_token(stranger, Duration::from_secs(300)));
    assert_eq!(bearer.send(Method::POST, "/api/todos", Some(json!({ "title": "first!" }))).await.status, 201);
}

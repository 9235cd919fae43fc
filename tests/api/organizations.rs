//! `GET /api/organizations`: the user's active memberships as the database has them, learnt at sign-in and on
//! every refresh even with no webhook configured; organizations the database does not know are fetched for their
//! names; a WorkOS failure there never fails a sign-in.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use standins::workos_standin::{ACME_ORGANIZATION_ID, Endpoint};

use crate::helpers::app::{ALICE, AppOptions, BOB, LifecycleOptions, TestApp, spawn_app, spawn_app_with};
use crate::helpers::browser::Browser;
use crate::helpers::lifecycle::{ORGANIZATIONS, organization_ids};
use crate::helpers::logs;
use crate::helpers::session::{read_session, write_session};

/// The lifecycle with no webhooks and no consumer: only sign-in and refresh tell the app anything.
fn sign_in_only() -> AppOptions {
    AppOptions::default()
        .lifecycle_with(LifecycleOptions { webhooks_from_standin: false, ..LifecycleOptions::default() })
}

/// An app with Alice's Acme membership given `roles` at WorkOS, and Alice signed in.
async fn alice_in_acme_as(roles: &[&str]) -> (TestApp, Browser) {
    let app = spawn_app_with(sign_in_only()).await;
    let acme = app.workos.membership_of(&app.user_id(ALICE), ACME_ORGANIZATION_ID).expect("seeded");
    app.workos.set_membership_roles(&acme.id, roles).expect("roles set");
    let browser = app.signed_in(ALICE).await;
    (app, browser)
}

#[tokio::test]
async fn active_memberships_are_listed_with_names_and_roles_for_cookies_and_bearer_tokens() {
    let (app, browser) = alice_in_acme_as(&["admin", "billing"]).await;
    let alice = app.user_id(ALICE);
    let expected =
        json!([{ "id": ACME_ORGANIZATION_ID, "name": "Acme", "role": "admin", "roles": ["admin", "billing"] }]);
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), expected);
    let bearer = app.bearer_client(app.workos.mint_access_token(&alice, Duration::from_secs(300)));
    assert_eq!(bearer.get(ORGANIZATIONS).await.json(), expected);

    let carol = app.signed_in("carol@example.test").await;
    assert_eq!(carol.get(ORGANIZATIONS).await.json(), json!([]), "no memberships: an empty array");
    assert_eq!(app.browser().get(ORGANIZATIONS).await.status, 401, "signed out");
}

/// With several roles, WorkOS's main `role` may be another than `admin` while `admin` is among them, which the
/// delete policy and the Admin Portal count: the answer lists every role, and the settings page shows them all.
#[tokio::test]
async fn every_role_is_listed_beside_the_main_one() {
    let (_app, browser) = alice_in_acme_as(&["member", "admin"]).await;
    let expected =
        json!([{ "id": ACME_ORGANIZATION_ID, "name": "Acme", "role": "member", "roles": ["member", "admin"] }]);
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), expected);
    let page = browser.get(&format!("/organizations/{ACME_ORGANIZATION_ID}")).await;
    assert!(page.body.contains(r#"Your roles: <strong id="organization-role">member, admin<"#), "{}", page.body);
    assert!(page.body.contains("<h1><bdi>Acme</bdi> settings</h1>"), "the name from WorkOS is isolated: {}", page.body);
    // In the window's title too, where markup cannot isolate it: with Unicode's own isolates (FSI … PDI), so a name
    // with direction controls cannot reorder the words after it.
    assert!(page.body.contains("<title>&#x2068;Acme&#x2069; settings · authbridge</title>"), "{}", page.body);
    assert!(page.body.contains(r#"id="portal-sso""#), "an admin's Admin Portal buttons: {}", page.body);
}

#[tokio::test]
async fn an_organization_the_database_does_not_know_is_fetched_for_its_name() {
    let app = spawn_app_with(sign_in_only()).await;
    let globex = app.workos.create_organization("Globex Corporation");
    app.workos.add_membership(&app.user_id(BOB), &globex.id, &["admin"]).expect("member");
    // Straight into his first organization (choosing one at sign-in has its own tests).
    app.workos.set_organization_selection(false);
    // The app's start-up check of its API key lists organizations once: counted before what this test counts.
    let checked = crate::helpers::lifecycle::eventually(std::time::Duration::from_secs(10), || async {
        app.workos.calls(Endpoint::Organizations) >= 1
    })
    .await;
    assert!(checked, "the API key was checked at start-up");
    let fetched_before = app.workos.calls(Endpoint::Organizations);

    let browser = app.signed_in(BOB).await;
    let listed = browser.get(ORGANIZATIONS).await.json();
    assert_eq!(
        listed,
        json!([
            { "id": ACME_ORGANIZATION_ID, "name": "Acme", "role": "member", "roles": ["member"] },
            { "id": globex.id, "name": "Globex Corporation", "role": "admin", "roles": ["admin"] },
        ])
    );
    assert_eq!(app.workos.calls(Endpoint::Organizations), fetched_before + 2, "GET /organizations/{{id}} for each");
    app.signed_in(BOB).await;
    assert_eq!(app.workos.calls(Endpoint::Organizations), fetched_before + 2, "known now: not fetched again");
}

#[tokio::test]
async fn each_refresh_reads_the_memberships_again() {
    let app = spawn_app_with(sign_in_only()).await;
    let bob = app.user_id(BOB);
    let browser = app.signed_in(BOB).await;
    assert_eq!(organization_ids(&browser.get(ORGANIZATIONS).await), [ACME_ORGANIZATION_ID]);

    // Promoted at WorkOS with no webhook to tell: the next refresh reads it.
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("seeded");
    app.workos.set_membership_roles(&acme.id, &["admin"]).expect("promoted");
    let mut session = read_session(&browser);
    session.access_token = app.workos.mint_access_token_with(
        &bob,
        std::time::SystemTime::now() - Duration::from_secs(400),
        std::time::SystemTime::now() - Duration::from_secs(100),
    );
    write_session(&browser, &session, crate::helpers::app::COOKIE_PASSWORD);
    let refreshed = browser.get(ORGANIZATIONS).await;
    assert_eq!(
        refreshed.json(),
        json!([{ "id": ACME_ORGANIZATION_ID, "name": "Acme", "role": "admin", "roles": ["admin"] }])
    );
    assert_eq!(app.workos.refresh_calls(), 1, "the request refreshed the session");
}

#[tokio::test]
async fn workos_failing_to_list_memberships_never_fails_a_sign_in() {
    let app = spawn_app_with(sign_in_only()).await;
    app.workos.fail_next(Endpoint::Memberships, 1, 500);
    let browser = app.signed_in(ALICE).await;
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200, "signed in all the same");
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]), "nothing known yet");
    assert!(logs::captured().contains("could not read the user's memberships from WorkOS"), "and it is logged");

    app.workos.hang_next(Endpoint::Memberships, 1);
    let started = std::time::Instant::now();
    let again = app.browser();
    assert_eq!(again.sign_in(ALICE).await.status, 302);
    assert!(started.elapsed() < Duration::from_secs(8), "a hanging WorkOS holds a sign-in for seconds at most");
}

/// Without `DATABASE_URL` the list answers as every other request for organizations does then (a list of an
/// organization's todos, a switch), so a client can branch on one code.
#[tokio::test]
async fn without_a_database_organizations_are_unavailable_as_everywhere_else() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    let listed = browser.get(ORGANIZATIONS).await;
    assert_eq!(listed.status, 404, "{}", listed.body);
    assert_eq!(listed.error_code(), "organizations_unavailable");
    let todos = browser.get(&format!("/api/todos?organization_id={ACME_ORGANIZATION_ID}")).await;
    assert_eq!((todos.status, todos.error_code()), (404, listed.error_code()), "{}", todos.body);
    let switch = browser
        .api(Method::POST, "/api/organizations/switch", Some(json!({ "organization_id": ACME_ORGANIZATION_ID })))
        .await;
    assert_eq!((switch.status, switch.error_code()), (404, listed.error_code()), "{}", switch.body);
}

#[tokio::test]
async fn a_webhook_naming_an_unknown_organization_gets_its_name_fetched() {
    let app = spawn_app_with(sign_in_only()).await;
    let bob = app.user_id(BOB);
    // The organization exists at WorkOS, but no event about it reached the app: only the membership's does.
    let initech = app.workos.create_organization("Initech");
    let membership = app.workos.add_membership(&bob, &initech.id, &[]).expect("member");
    let event = app.workos.events().into_iter().find(|e| e.data["id"] == membership.id.as_str()).expect("emitted");
    let payload = event.envelope();
    assert_eq!(app.deliver_ok(&payload).await, "applied");

    let bearer = app.bearer_client(app.workos.mint_access_token(&bob, Duration::from_secs(300)));
    let named = crate::helpers::lifecycle::eventually(Duration::from_secs(5), || async {
        bearer.get(ORGANIZATIONS).await.json()
            == json!([{ "id": initech.id, "name": "Initech", "role": "member", "roles": ["member"] }])
    })
    .await;
    assert!(named, "{}", bearer.get(ORGANIZATIONS).await.body);
}

//! Choosing an organization at sign-in: a member of several organizations gets `organization_selection_required`
//! from the code exchange; the pending token is sealed server-side (never in a URL, a page or a log), a page lists
//! the organizations by name, and picking one (with a CSRF token) finishes the sign-in with the
//! organization-selection grant.

use standins::workos_standin::{ACME_ORGANIZATION_ID, GLOBEX_ORGANIZATION_ID, SeedOrganization};

use crate::helpers::app::{AppOptions, BOB, TestApp, spawn_app_with};
use crate::helpers::browser::{Browser, enc, extract_csrf_token};
use crate::helpers::logs;
use crate::helpers::session::read_session;

const SELECTION_COOKIE: &str = "wos-org-selection";

async fn bob_in_two_organizations() -> TestApp {
    let mut options = AppOptions::default();
    options.workos.organizations.push(SeedOrganization { id: GLOBEX_ORGANIZATION_ID.into(), name: "Globex".into() });
    let app = spawn_app_with(options.lifecycle()).await;
    app.workos.add_membership(&app.user_id(BOB), GLOBEX_ORGANIZATION_ID, &[]).expect("member");
    app
}

/// `/login` → WorkOS → `/callback`, which answers with the selection page's address.
async fn start(app: &TestApp, browser: &Browser) -> crate::helpers::browser::TestResponse {
    let login = browser.get(&format!("/login?login_hint={}&return_to={}", enc(BOB), enc("/?offset=0"))).await;
    let callback = browser.authorize(&login.location().expect("to WorkOS")).await;
    let response = browser.get(&callback).await;
    assert!(app.workos.pending_authentication_tokens().len() == 1, "WorkOS asked for a selection");
    response
}

#[tokio::test]
async fn a_member_of_several_organizations_picks_one_and_the_pending_token_never_leaves_the_server() {
    let app = bob_in_two_organizations().await;
    let browser = app.browser();
    let callback = start(&app, &browser).await;
    assert_eq!(callback.status, 302, "{}", callback.body);
    assert_eq!(callback.location().as_deref(), Some("/login/organization"));
    assert!(browser.cookie(SELECTION_COOKIE).is_some(), "the pending sign-in is sealed in its cookie");
    assert!(browser.cookie(authbridge::session::SESSION_COOKIE).is_none(), "not signed in yet");
    let pending = app.workos.pending_authentication_tokens().remove(0);

    let page = browser.get("/login/organization").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(">Acme<") && page.body.contains(">Globex<"), "{}", page.body);
    for seen in
        [page.body.as_str(), &browser.cookie_header(), &logs::captured(), &callback.location().unwrap_or_default()]
    {
        assert!(!seen.contains(&pending), "the pending token leaked");
    }

    // Without the form's CSRF token nothing happens; an organization not offered is refused.
    let forged = browser.post_form("/login/organization", &[("organization_id", GLOBEX_ORGANIZATION_ID)]).await;
    assert_eq!(forged.status, 403);
    let token = extract_csrf_token(&page.body).expect("a CSRF token");
    let other = browser
        .post_form("/login/organization", &[("csrf_token", &token), ("organization_id", "org_someone_elses")])
        .await;
    assert_eq!(other.status, 400, "{}", other.body);
    assert_eq!(app.workos.pending_authentication_tokens(), std::slice::from_ref(&pending), "the grant was not tried");

    let chosen = browser
        .post_form("/login/organization", &[("csrf_token", &token), ("organization_id", GLOBEX_ORGANIZATION_ID)])
        .await;
    assert_eq!(chosen.status, 303, "{}", chosen.body);
    assert_eq!(chosen.location().as_deref(), Some("/?offset=0"), "back where the sign-in started");
    assert!(browser.cookie(SELECTION_COOKIE).is_none(), "the pending sign-in is cleared");
    assert!(app.workos.pending_authentication_tokens().is_empty(), "spent by the organization-selection grant");
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(GLOBEX_ORGANIZATION_ID));
    let me = browser.get("/api/me").await.json();
    assert_eq!(me["organization"]["name"], "Globex");
    assert!(!logs::captured().contains(&pending), "the pending token is not logged");
    // The sign-in is in the chosen organization's Audit Logs (written in the request, to the outbox), and only
    // there: the code exchange that asked for a choice signed nobody in.
    let mut conn = app.db.connect().await;
    let signed_in: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT organization_id, event FROM authbridge.audit_log_outbox WHERE event->>'action' = 'user.signed_in'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("outbox");
    assert_eq!(signed_in.len(), 1, "{signed_in:?}");
    let (organization_id, event) = &signed_in[0];
    assert_eq!(organization_id, GLOBEX_ORGANIZATION_ID);
    assert_eq!(event["actor"]["id"], app.user_id(BOB));
    assert_eq!(event["targets"][0], serde_json::json!({ "type": "organization", "id": GLOBEX_ORGANIZATION_ID }));

    // Replaying the form: the pending sign-in is gone.
    let again = browser
        .post_form("/login/organization", &[("csrf_token", &token), ("organization_id", ACME_ORGANIZATION_ID)])
        .await;
    assert_eq!(again.status, 400, "{}", again.body);
}

/// Picking an organization that enforces SSO: WorkOS answers "Must use SSO for selected organization". Signing in
/// again the ordinary way would only bring the same choice back, so the page links to a sign-in into that
/// organization (a link: a redirect after the form post would carry its `form-action` check on to the
/// organization's identity provider).
#[tokio::test]
async fn picking_an_organization_that_enforces_sso_leads_to_its_own_sign_in() {
    let app = bob_in_two_organizations().await;
    app.workos.require_sso_for_switch(GLOBEX_ORGANIZATION_ID);
    let browser = app.browser();
    start(&app, &browser).await;
    let page = browser.get("/login/organization").await;
    let token = extract_csrf_token(&page.body).expect("a CSRF token");
    let chosen = browser
        .post_form("/login/organization", &[("csrf_token", &token), ("organization_id", GLOBEX_ORGANIZATION_ID)])
        .await;
    assert_eq!(chosen.status, 403, "{}", chosen.body);
    let link = format!("/login?organization_id={GLOBEX_ORGANIZATION_ID}&#38;return_to=%2F%3Foffset%3D0");
    assert!(chosen.body.contains(&format!(r#"href="{link}""#)), "{}", chosen.body);
    assert!(browser.cookie(SELECTION_COOKIE).is_none(), "the pending sign-in is cleared");
    assert!(browser.cookie(authbridge::session::SESSION_COOKIE).is_none(), "not signed in");
}

#[tokio::test]
async fn the_selection_page_needs_a_pending_sign_in_of_this_browser() {
    let app = bob_in_two_organizations().await;
    let browser = app.browser();
    start(&app, &browser).await;
    let stranger = app.browser();
    assert_eq!(stranger.get("/login/organization").await.status, 400, "no pending sign-in");
    // A tampered cookie opens nothing.
    let mut sealed = browser.cookie(SELECTION_COOKIE).expect("cookie");
    sealed.push('x');
    stranger.set_cookie(SELECTION_COOKIE, &sealed);
    assert_eq!(stranger.get("/login/organization").await.status, 400);
    // A session cookie is not a pending sign-in either (its own seal purpose).
    let signed_in = app.signed_in("carol@example.test").await;
    let session = signed_in.cookie(authbridge::session::SESSION_COOKIE).expect("session");
    stranger.set_cookie(SELECTION_COOKIE, &session);
    assert_eq!(stranger.get("/login/organization").await.status, 400);
}

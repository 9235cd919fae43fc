//! Switching the active organization: the database's membership first (403 and nothing changes otherwise), then
//! a WorkOS refresh scoped to the organization, sharing the refresher's single flight; "Personal" is the app's own
//! choice; an organization that wants its own sign-in sends the browser through `/login?organization_id=…`;
//! ordinary refreshes keep the organization (and the personal choice).

use std::time::{Duration, SystemTime};

use reqwest::Method;
use serde_json::json;
use standins::workos_standin::{
    ACME_ORGANIZATION_ID, Endpoint, GLOBEX_ORGANIZATION_ID, SeedOrganization, StandInSignInRequirement,
};

use crate::helpers::app::{AppOptions, BOB, COOKIE_PASSWORD, TestApp, spawn_app_with};
use crate::helpers::browser::Browser;
use crate::helpers::session::{read_session, write_session};

const SWITCH_API: &str = "/api/organizations/switch";

/// Bob in Acme (his sign-in lands there) and Globex, with the lifecycle on.
async fn two_organizations() -> (TestApp, Browser) {
    let mut options = AppOptions::default();
    options.workos.organizations.push(SeedOrganization { id: GLOBEX_ORGANIZATION_ID.into(), name: "Globex".into() });
    options.workos.organization_selection = false;
    let app = spawn_app_with(options.lifecycle()).await;
    app.workos.add_membership(&app.user_id(BOB), GLOBEX_ORGANIZATION_ID, &["admin"]).expect("member");
    let browser = app.signed_in(BOB).await;
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(ACME_ORGANIZATION_ID));
    (app, browser)
}

fn expire_access_token(app: &TestApp, browser: &Browser) {
    let mut session = read_session(browser);
    session.access_token = app.workos.mint_access_token_with(
        &session.user.id,
        SystemTime::now() - Duration::from_secs(400),
        SystemTime::now() - Duration::from_secs(100),
    );
    write_session(browser, &session, COOKIE_PASSWORD);
}

async fn outbox_actions(app: &TestApp) -> Vec<String> {
    let mut conn = app.db.connect().await;
    sqlx::query_scalar("SELECT event->>'action' FROM authbridge.audit_log_outbox ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("outbox")
}

#[tokio::test]
async fn switching_to_an_organization_one_is_not_a_member_of_is_refused_and_changes_nothing() {
    let (app, browser) = two_organizations().await;
    let initech = app.workos.create_organization("Initech");
    let refreshes = app.workos.refresh_calls();
    let cookie_before = crate::helpers::session::sealed_value(&browser);

    let api = browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": initech.id }))).await;
    assert_eq!(api.status, 403, "{}", api.body);
    assert_eq!(api.error_code(), "not_a_member");
    assert!(api.set_cookies().is_empty(), "no new session");
    let form = browser.submit("/organizations/switch", &[("organization_id", &initech.id)]).await;
    assert_eq!(form.status, 403, "{}", form.body);
    assert_eq!(app.workos.refresh_calls(), refreshes, "WorkOS was never asked");
    assert_eq!(crate::helpers::session::sealed_value(&browser), cookie_before, "the session is as it was");
    assert_eq!(browser.get("/api/me").await.json()["organization"]["id"], ACME_ORGANIZATION_ID);
}

#[tokio::test]
async fn switching_refreshes_at_workos_with_the_organization_and_personal_needs_no_call() {
    let (app, browser) = two_organizations().await;
    browser.api(Method::POST, "/api/todos", Some(json!({ "title": "Acme work" }))).await;

    let switched = browser.submit("/organizations/switch", &[("organization_id", GLOBEX_ORGANIZATION_ID)]).await;
    assert_eq!(switched.status, 303, "{}", switched.body);
    assert_eq!(switched.location().as_deref(), Some("/"));
    assert_eq!(app.workos.refresh_calls(), 1, "one refresh, scoped to Globex");
    let session = read_session(&browser);
    assert_eq!(session.organization_id.as_deref(), Some(GLOBEX_ORGANIZATION_ID));
    #[derive(serde::Deserialize)]
    struct Claims {
        org_id: String,
        role: String,
    }
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(&session.access_token).expect("claims");
    assert_eq!((claims.org_id.as_str(), claims.role.as_str()), (GLOBEX_ORGANIZATION_ID, "admin"));
    let me = browser.get("/api/me").await.json();
    assert_eq!(
        me["organization"],
        json!({ "id": GLOBEX_ORGANIZATION_ID, "name": "Globex", "role": "admin", "roles": ["admin"] })
    );
    let listed = browser.get("/api/todos").await.json();
    assert_eq!(listed["organization_id"], GLOBEX_ORGANIZATION_ID);
    assert_eq!(listed["todos"], json!([]), "Acme's todo is not Globex's");
    let page = browser.get("/").await;
    assert!(page.body.contains(r#"<span class="space" id="active-space"><bdi>Globex</bdi></span>"#), "{}", page.body);
    // Names come from WorkOS: each is isolated, so right-to-left text (or a stray U+202E) in one cannot reorder the
    // words around it.
    assert!(page.body.contains("<h1><bdi>Globex</bdi>'s todos</h1>"), "{}", page.body);
    assert!(page.body.contains("<title>&#x2068;Globex&#x2069;'s todos · authbridge</title>"), "{}", page.body);
    assert!(outbox_actions(&app).await.contains(&"organization.switched".to_owned()));

    // Personal: the app's own choice, no WorkOS call.
    let personal = browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": "personal" }))).await;
    assert_eq!(personal.status, 200, "{}", personal.body);
    assert_eq!(personal.json(), json!({ "organization": null }));
    assert_eq!(app.workos.refresh_calls(), 1);
    assert_eq!(browser.get("/api/me").await.json()["organization"], serde_json::Value::Null);
    assert_eq!(browser.get("/api/todos").await.json()["organization_id"], serde_json::Value::Null);
    let page = browser.get("/").await;
    assert!(page.body.contains(r#"id="active-space"><bdi>Personal</bdi></span>"#), "{}", page.body);

    // Back to the session's own organization: no WorkOS call either.
    let back = browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": GLOBEX_ORGANIZATION_ID }))).await;
    assert_eq!(back.json()["organization"]["id"], GLOBEX_ORGANIZATION_ID);
    assert_eq!(app.workos.refresh_calls(), 1);
}

/// `null` (or `"personal"`) is how the personal space is asked for; a body without the field is a mistake, and
/// must not quietly leave the organization.
#[tokio::test]
async fn a_switch_without_organization_id_is_refused_and_changes_nothing() {
    let (app, browser) = two_organizations().await;
    let empty = browser.api(Method::POST, SWITCH_API, Some(json!({}))).await;
    assert_eq!((empty.status, empty.error_code()), (422, "unprocessable".to_owned()), "{}", empty.body);
    assert!(empty.json()["error"]["message"].as_str().is_some_and(|m| m.contains("organization_id")), "{}", empty.body);
    assert!(empty.set_cookies().is_empty(), "no new session");
    assert_eq!(browser.get("/api/me").await.json()["organization"]["id"], ACME_ORGANIZATION_ID);
    assert!(outbox_actions(&app).await.iter().all(|action| action != "organization.switched"), "no switch recorded");

    let null = browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": null }))).await;
    assert_eq!((null.status, null.json()), (200, json!({ "organization": null })), "{}", null.body);
    assert_eq!(browser.get("/api/me").await.json()["organization"], serde_json::Value::Null);
}

#[tokio::test]
async fn an_ordinary_refresh_keeps_the_organization_and_the_personal_choice() {
    let (app, browser) = two_organizations().await;
    browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": GLOBEX_ORGANIZATION_ID }))).await;
    expire_access_token(&app, &browser);
    let refreshes = app.workos.refresh_calls();
    assert_eq!(browser.get("/api/me").await.json()["organization"]["id"], GLOBEX_ORGANIZATION_ID);
    assert_eq!(app.workos.refresh_calls(), refreshes + 1, "the request refreshed the session");
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(GLOBEX_ORGANIZATION_ID));
    // It named the organization, as WorkOS's libraries do: a refresh naming none is scoped back to the sign-in's.
    assert_eq!(app.workos.refresh_organizations().last(), Some(&Some(GLOBEX_ORGANIZATION_ID.to_owned())));

    browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": null }))).await;
    expire_access_token(&app, &browser);
    assert_eq!(browser.get("/api/me").await.json()["organization"], serde_json::Value::Null);
    assert_eq!(app.workos.refresh_calls(), refreshes + 2);
    assert!(read_session(&browser).personal, "still personal after the refresh");
}

/// The refresh names the session's organization; once the user has left it, WorkOS refuses that organization and
/// the session ends (no 503 on every request, no session quietly moved elsewhere).
#[tokio::test]
async fn a_refresh_refused_for_the_sessions_organization_ends_the_session() {
    // WorkOS answers 400 organization_membership_not_found once the user has left the organization, and a
    // code-less 404 "Organization not found: …" once it is deleted.
    for deleted in [false, true] {
        let (app, browser) = two_organizations().await;
        if deleted {
            app.workos.delete_organization(ACME_ORGANIZATION_ID).expect("deleted");
        } else {
            let membership = app.workos.membership_of(&app.user_id(BOB), ACME_ORGANIZATION_ID).expect("in Acme");
            app.workos.delete_membership(&membership.id).expect("removed");
        }
        expire_access_token(&app, &browser);
        let me = browser.api(Method::GET, "/api/me", None).await;
        assert_eq!(me.status, 401, "organization deleted: {deleted}: {}", me.body);
        assert_eq!(app.workos.refresh_organizations().last(), Some(&Some(ACME_ORGANIZATION_ID.to_owned())));
        assert!(browser.cookie(authbridge::session::SESSION_COOKIE).is_none(), "the session cookie is cleared");
    }
}

/// In the browser, the page the session ended on says so (and offers to sign in again); a visit without a session
/// does not.
#[tokio::test]
async fn the_page_a_session_ends_on_says_it_ended() {
    let (app, browser) = two_organizations().await;
    let membership = app.workos.membership_of(&app.user_id(BOB), ACME_ORGANIZATION_ID).expect("in Acme");
    app.workos.delete_membership(&membership.id).expect("removed");
    expire_access_token(&app, &browser);
    let page = browser.get("/").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="session-ended""#) && page.body.contains(r#"href="/login""#), "{}", page.body);
    assert!(browser.cookie(authbridge::session::SESSION_COOKIE).is_none(), "the session cookie is cleared");
    let again = browser.get("/").await;
    assert!(!again.body.contains(r#"id="session-ended""#), "said once: {}", again.body);
    assert!(!app.browser().get("/").await.body.contains(r#"id="session-ended""#), "never signed in");
}

#[tokio::test]
async fn an_organization_that_wants_its_own_sign_in_sends_the_browser_through_login() {
    let (app, browser) = two_organizations().await;
    app.workos.require_sso_for_switch(GLOBEX_ORGANIZATION_ID);
    // The form is answered with a page linking there (a redirect after a form post would carry the CSP's
    // `form-action` check on to the organization's own identity provider, an origin the policy cannot name).
    let form = browser.submit("/organizations/switch", &[("organization_id", GLOBEX_ORGANIZATION_ID)]).await;
    assert_eq!(form.status, 403, "{}", form.body);
    let expected = format!("/login?organization_id={GLOBEX_ORGANIZATION_ID}&return_to=%2F");
    assert!(form.body.contains(&format!(r#"href="{}""#, expected.replace('&', "&#38;"))), "{}", form.body);
    let api = browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": GLOBEX_ORGANIZATION_ID }))).await;
    assert_eq!(api.status, 403, "{}", api.body);
    assert_eq!(api.error_code(), "organization_sign_in_required");
    assert_eq!(api.location().as_deref(), Some(expected.as_str()));
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(ACME_ORGANIZATION_ID), "nothing changed");
    // And that sign-in lands in Globex.
    let login = browser.get(&format!("{expected}&login_hint={}", crate::helpers::browser::enc(BOB))).await;
    let callback = browser.authorize(&login.location().expect("to WorkOS")).await;
    assert_eq!(browser.get(&callback).await.status, 302);
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(GLOBEX_ORGANIZATION_ID));
}

#[tokio::test]
async fn a_switch_and_an_ordinary_refresh_never_spend_one_refresh_token_twice() {
    let (app, browser) = two_organizations().await;
    expire_access_token(&app, &browser);
    // Slow WorkOS down so the two overlap.
    app.workos.set_latency(Endpoint::Authenticate, Duration::from_millis(300));
    let other_tab = app.browser();
    other_tab.copy_cookies_from(&browser);
    let (refreshed, switched) = tokio::join!(
        other_tab.get("/api/todos"),
        browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": GLOBEX_ORGANIZATION_ID }))),
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(switched.status, 200, "{}", switched.body);
    app.workos.set_latency(Endpoint::Authenticate, Duration::ZERO);
    // Neither request burnt the other's token: both sessions still work and refresh.
    for tab in [&browser, &other_tab] {
        expire_access_token(&app, tab);
        assert_eq!(tab.get("/api/me").await.status, 200);
    }
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(GLOBEX_ORGANIZATION_ID));
}

#[tokio::test]
async fn a_switch_with_a_fresh_token_waits_for_another_tabs_refresh_of_the_same_refresh_token() {
    let (app, browser) = two_organizations().await;
    // Two tabs, one refresh token: the other tab's access token has expired (it refreshes), this tab's has not (its
    // switch spends the refresh token directly). The switch must wait for that refresh and use what came out.
    let other_tab = app.browser();
    other_tab.copy_cookies_from(&browser);
    expire_access_token(&app, &other_tab);
    app.workos.set_latency(Endpoint::Authenticate, Duration::from_millis(400));
    let (refreshed, switched) = tokio::join!(other_tab.get("/api/me"), async {
        tokio::time::sleep(Duration::from_millis(100)).await; // the refresh is under way by now
        browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": GLOBEX_ORGANIZATION_ID }))).await
    });
    app.workos.set_latency(Endpoint::Authenticate, Duration::ZERO);
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(switched.status, 200, "the refresh token was not spent twice: {}", switched.body);
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(GLOBEX_ORGANIZATION_ID));
    expire_access_token(&app, &browser);
    assert_eq!(browser.get("/api/me").await.status, 200, "the switched session refreshes");
}

/// One browser, two requests with the same expiring cookie: a slow one (InsForge takes a second) refreshes the
/// session, and a switch sent meanwhile waits for that refresh, then spends the refresh token it made. The slow
/// response reaches the browser last; it must not hand the browser the session the switch has spent (undoing the
/// switch on the page, and signing the user out at the next refresh once the memo has forgotten it).
#[tokio::test]
async fn a_slow_response_that_refreshed_does_not_undo_a_switch_that_spent_its_token() {
    let (app, browser) = two_organizations().await;
    expire_access_token(&app, &browser);
    app.insforge.set_latency(Duration::from_secs(1));
    let (listed, switched) = tokio::join!(browser.get("/api/todos"), async {
        tokio::time::sleep(Duration::from_millis(300)).await; // refreshed by now, and waiting for InsForge
        browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": GLOBEX_ORGANIZATION_ID }))).await
    });
    app.insforge.set_latency(Duration::ZERO);
    assert_eq!(switched.status, 200, "{}", switched.body);
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        read_session(&browser).organization_id.as_deref(),
        Some(GLOBEX_ORGANIZATION_ID),
        "the last cookie the browser got is the switch's"
    );
    expire_access_token(&app, &browser);
    assert_eq!(browser.get("/api/me").await.status, 200, "its refresh token is not a spent one");
}

#[tokio::test]
async fn switching_needs_csrf_and_a_browser_session() {
    let (app, browser) = two_organizations().await;
    let forged = browser.post_form("/organizations/switch", &[("organization_id", GLOBEX_ORGANIZATION_ID)]).await;
    assert_eq!(forged.status, 403, "no CSRF token");
    let cross_site = reqwest::Client::new()
        .post(app.base_url.join(SWITCH_API).expect("url"))
        .header("Cookie", browser.cookie_header())
        .header("Origin", "https://evil.example")
        .json(&json!({ "organization_id": GLOBEX_ORGANIZATION_ID }))
        .send()
        .await
        .expect("the app answers");
    assert_eq!(cross_site.status().as_u16(), 403);
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(ACME_ORGANIZATION_ID));
    let bearer = app.bearer_client(app.workos.mint_access_token(&app.user_id(BOB), Duration::from_secs(60)));
    let response =
        bearer.send(Method::POST, SWITCH_API, Some(json!({ "organization_id": GLOBEX_ORGANIZATION_ID }))).await;
    assert_eq!(response.status, 400, "{}", response.body);
}

/// The `<option>`s of the header's switcher: (value, label, selected).
fn switcher_options(page: &str) -> Vec<(String, String, bool)> {
    let start = page.find(r#"<select id="switch-space""#).expect("the switcher");
    let end = start + page[start..].find("</select>").expect("the switcher's end");
    page[start..end]
        .split("<option ")
        .skip(1)
        .map(|option| {
            let value = option.split('"').nth(1).expect("a value").to_owned();
            let (attributes, rest) = option.split_once('>').expect("an option tag");
            let label = rest.split_once("</option>").expect("a label").0.to_owned();
            (value, label, attributes.contains("selected"))
        })
        .collect()
}

/// What a person reads on the page: the text between the tags (scripts and styles left out).
fn visible_text(page: &str) -> String {
    let mut text = String::new();
    let mut rest = page;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        rest = &rest[open..];
        let skip_to = ["<script", "<style"]
            .iter()
            .find(|tag| rest.starts_with(**tag))
            .map(|tag| format!("</{}>", &tag[1..]))
            .unwrap_or_else(|| ">".to_owned());
        rest = rest.find(skip_to.as_str()).map_or("", |close| &rest[close + skip_to.len()..]);
    }
    text.push_str(rest);
    text
}

#[tokio::test]
async fn the_header_switcher_lists_every_active_organization_by_name_and_personal_and_no_id_is_shown() {
    let (app, browser) = two_organizations().await;
    let bob = app.user_id(BOB);
    // A third organization whose membership is inactive, and a fourth Bob was never in: neither is listed.
    let initech = app.workos.create_organization("Initech");
    let umbrella = app.workos.create_organization("Umbrella");
    let membership = app.workos.add_membership(&bob, &initech.id, &[]).expect("member");
    crate::helpers::lifecycle::delivered(&app, "organization_membership.created").await;
    // Later than the stand-in's own timestamps, which run a few milliseconds ahead when changes come in a burst.
    let now = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let mut inactive =
        crate::helpers::lifecycle::membership(&membership.id, &bob, &initech.id, "inactive", "member", 0);
    inactive["updated_at"] = json!(crate::helpers::lifecycle::ts(now));
    app.deliver_ok(&crate::helpers::lifecycle::event("organization_membership.updated", inactive, now)).await;
    assert_eq!(app.membership_row(&membership.id).await.map(|row| row.0), Some("inactive".to_owned()));

    let page = browser.get("/").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let expected = [
        ("personal", "Personal", false),
        (ACME_ORGANIZATION_ID, "Acme", true),
        (GLOBEX_ORGANIZATION_ID, "Globex", false),
    ]
    .map(|(value, label, selected)| (value.to_owned(), label.to_owned(), selected));
    assert_eq!(switcher_options(&page.body), expected, "by name, the active one selected");

    let ids = [ACME_ORGANIZATION_ID, GLOBEX_ORGANIZATION_ID, initech.id.as_str(), umbrella.id.as_str()];
    let text = visible_text(&page.body);
    assert!(text.contains("Acme") && text.contains("Personal"), "{text}");
    for id in ids {
        assert!(!text.contains(id), "{id} is on screen: {text}");
    }
    assert!(!text.contains("org_"), "{text}");
    // In the markup, an id is only ever a form's value (the switcher, the add form) or the settings link's address.
    for id in ids {
        for (at, _) in page.body.match_indices(id) {
            let before = &page.body[..at];
            assert!(
                before.ends_with(r#"value=""#) || before.ends_with(r#"href="/organizations/"#),
                "{id} outside a form value: …{}",
                &before[before.len().saturating_sub(80)..]
            );
        }
    }
    assert!(!page.body.contains("Initech") && !page.body.contains("Umbrella"), "not listed");

    // Switched to Personal, the switcher still lists them all, Personal selected.
    let token = browser.csrf_token().await;
    let switched =
        browser.post_form("/organizations/switch", &[("csrf_token", &token), ("organization_id", "personal")]).await;
    assert_eq!(switched.status, 303, "{}", switched.body);
    let page = browser.get("/").await;
    let selected: Vec<String> =
        switcher_options(&page.body).into_iter().filter(|option| option.2).map(|option| option.1).collect();
    assert_eq!(selected, ["Personal"]);
    assert_eq!(switcher_options(&page.body).len(), 3);
}

/// A switch on the very request whose expired token was refreshed stores the switch on top of the refreshed
/// session, never on the cookie as it came (whose tokens are spent).
#[tokio::test]
async fn switching_to_personal_on_the_request_that_refreshes_keeps_the_fresh_tokens() {
    let (app, browser) = two_organizations().await;
    expire_access_token(&app, &browser);
    let before = read_session(&browser);

    let personal = browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": "personal" }))).await;
    assert_eq!(personal.status, 200, "{}", personal.body);
    assert_eq!(app.workos.refresh_calls(), 1, "the expired token was refreshed once");
    let after = read_session(&browser);
    assert!(after.personal, "the switch is stored");
    assert_ne!(after.access_token, before.access_token, "with the refreshed access token");
    assert_ne!(after.refresh_token, before.refresh_token, "and the rotated refresh token");
}

/// A switch WorkOS itself refuses (a 400: WorkOS does not count the user a member there, whatever our copy of the
/// memberships says) is the user's 403, not an outage; the session stays in its organization and keeps working.
#[tokio::test]
async fn a_switch_workos_refuses_is_a_403_and_the_session_is_unchanged() {
    let (app, browser) = two_organizations().await;
    app.workos.fail_next(Endpoint::Authenticate, 1, 400);
    let api = browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": GLOBEX_ORGANIZATION_ID }))).await;
    assert_eq!(api.status, 403, "{}", api.body);
    assert_eq!(api.error_code(), "not_a_member");
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(ACME_ORGANIZATION_ID), "nothing changed");
    assert_eq!(browser.get("/api/todos").await.status, 200);
}

/// An ordinary refresh that WorkOS answers with a sign-in step (`sso_required`: the organization began enforcing
/// SSO; `mfa_challenge`; `organization_authentication_methods_required`) ends the session, as WorkOS's SDKs end it:
/// signing in again is the way back, not waiting out an "outage".
#[tokio::test]
async fn an_ordinary_refresh_answered_with_a_sign_in_step_ends_the_session() {
    for requirement in [
        StandInSignInRequirement::Sso,
        StandInSignInRequirement::MfaChallenge,
        StandInSignInRequirement::AuthenticationMethods,
    ] {
        let (app, browser) = two_organizations().await;
        app.workos.require_on_refresh(ACME_ORGANIZATION_ID, requirement);
        expire_access_token(&app, &browser);
        let me = browser.get("/api/me").await;
        assert_eq!(me.status, 401, "{requirement:?}: {}", me.body);
        assert!(
            browser.cookie(authbridge::session::SESSION_COOKIE).is_none(),
            "{requirement:?}: the cookie is cleared"
        );
    }
}

/// A switch WorkOS answers with an MFA challenge or the organization's authentication-method policy is the
/// organization's own sign-in too (the hosted AuthKit takes the user through it): never "not a member", never 503.
#[tokio::test]
async fn a_switch_answered_with_any_sign_in_step_goes_through_the_organizations_sign_in() {
    for requirement in [StandInSignInRequirement::MfaChallenge, StandInSignInRequirement::AuthenticationMethods] {
        let (app, browser) = two_organizations().await;
        app.workos.require_for_switch(GLOBEX_ORGANIZATION_ID, requirement);
        let api =
            browser.api(Method::POST, SWITCH_API, Some(json!({ "organization_id": GLOBEX_ORGANIZATION_ID }))).await;
        assert_eq!(api.status, 403, "{requirement:?}: {}", api.body);
        assert_eq!(api.error_code(), "organization_sign_in_required", "{requirement:?}");
        let expected = format!("/login?organization_id={GLOBEX_ORGANIZATION_ID}&return_to=%2F");
        assert_eq!(api.location().as_deref(), Some(expected.as_str()), "{requirement:?}");
        assert_eq!(read_session(&browser).organization_id.as_deref(), Some(ACME_ORGANIZATION_ID), "nothing changed");
    }
}

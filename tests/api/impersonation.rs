//! Impersonation: support staff signed in as a user. Every page shows who is impersonated, by whom and why, with a
//! way to stop; `/api/me` says so; every request is written to the private audit table (and, in an organization,
//! sent to its Audit Logs); changes are refused (403) unless `IMPERSONATION_ALLOW_WRITES=true`.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use standins::workos_standin::ACME_ORGANIZATION_ID;

use crate::helpers::app::{AppOptions, BOB, TestApp, spawn_app_with};
use crate::helpers::browser::Browser;
use crate::helpers::lifecycle::eventually;

const SUPPORT: &str = "support@authbridge.test";
const REASON: &str = "Ticket #4821";

async fn impersonated(options: AppOptions) -> (TestApp, Browser) {
    let app = spawn_app_with(options.lifecycle()).await;
    app.workos.impersonate_next_login(SUPPORT, Some(REASON));
    let browser = app.signed_in(BOB).await;
    (app, browser)
}

async fn audit_rows(app: &TestApp) -> Vec<(String, String, String, String, i16)> {
    let mut conn = app.db.connect().await;
    sqlx::query_as("SELECT impersonator, user_id, method, path, status FROM authbridge.impersonation_audit ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("audit rows")
}

#[tokio::test]
async fn the_banner_is_on_every_page_and_api_me_reports_it() {
    let (_app, browser) = impersonated(AppOptions::default()).await;
    let banner = format!(
        "You are impersonating <strong><bdi>Bob Brown</bdi></strong> (by <strong><bdi>{SUPPORT}</bdi></strong>: <bdi>{REASON}</bdi>)"
    );
    for path in ["/", "/logout", "/organizations/org_standin_acme", "/no-such-page"] {
        let page = browser.get(path).await;
        assert!(page.body.contains(&banner), "{path} ({}): {}", page.status, page.body);
        assert!(page.body.contains("Stop impersonating"), "{path}");
        // A landmark of its own, not an alert: a screen reader would otherwise read it out again on every page.
        assert!(page.body.contains(r#"role="region" aria-label="Impersonation""#), "{path}");
    }
    let me = browser.get("/api/me").await.json();
    assert_eq!(me["impersonator"], json!({ "email": SUPPORT, "reason": REASON }));
}

/// Should a WorkOS refresh answer ever leave out the impersonator (its token still carrying `act`), the session stays
/// impersonated with the reason its sign-in gave: `/api/me`, the banner and the audit keep it.
#[tokio::test]
async fn a_refresh_whose_answer_leaves_out_the_impersonator_keeps_it_and_its_reason() {
    let (app, browser) = impersonated(AppOptions::default()).await;
    app.workos.leave_impersonator_out_of_refreshes();
    crate::refresh::age_token(&app, &browser, -60);
    let me = browser.get("/api/me").await.json();
    assert_eq!(app.workos.refresh_calls(), 1, "the session was refreshed");
    assert_eq!(me["impersonator"], json!({ "email": SUPPORT, "reason": REASON }));
}

#[tokio::test]
async fn every_request_is_audited_and_writes_are_refused() {
    let (app, browser) = impersonated(AppOptions::default()).await;
    let bob = app.user_id(BOB);
    let own_token = app.workos.mint_access_token(&bob, Duration::from_secs(300));
    let own = app.bearer_client(own_token).send(Method::POST, "/api/todos", Some(json!({ "title": "Bob's" }))).await;
    assert_eq!(own.status, 201, "Bob's own todo, for the page to list: {}", own.body);
    let home = browser.get("/").await;
    assert!(home.body.contains("Bob&#39;s"), "{}", home.body);
    assert_eq!(home.status, 200);
    assert!(home.body.contains("You can look, not change anything."), "{}", home.body);
    for action in [r#"action="/todos""#, "/toggle", "/rename", "/delete"] {
        assert!(!home.body.contains(action), "no form that would be refused: {action}");
    }
    let write = browser.api(Method::POST, "/api/todos", Some(json!({ "title": "Written by support" }))).await;
    assert_eq!(write.status, 403, "{}", write.body);
    assert_eq!(write.error_code(), "impersonation_read_only");
    assert!(write.json()["error"]["message"].as_str().unwrap_or_default().contains("impersonating"));
    let form = browser.submit("/todos", &[("title", "Also refused")]).await;
    assert_eq!(form.status, 403);
    assert_eq!(app.all_todos().await.len(), 1, "nothing was written but Bob's own");

    let rows = audit_rows(&app).await;
    let seen: Vec<(&str, &str, i16)> = rows.iter().map(|r| (r.2.as_str(), r.3.as_str(), r.4)).collect();
    assert!(seen.contains(&("GET", "/", 200)), "{seen:?}");
    assert!(seen.contains(&("POST", "/api/todos", 403)), "{seen:?}");
    assert!(seen.contains(&("POST", "/todos", 403)), "{seen:?}");
    assert!(rows.iter().all(|row| row.0 == SUPPORT && row.1 == bob), "{rows:?}");

    // In an organization, each is an Audit Log event too.
    let mut conn = app.db.connect().await;
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM authbridge.audit_log_outbox WHERE event->>'action' = 'user.impersonated_request' \
         AND event->'actor'->'metadata'->>'impersonator' = $1",
    )
    .bind(SUPPORT)
    .fetch_one(&mut conn)
    .await
    .expect("outbox");
    assert_eq!(events as usize, rows.len());
}

#[tokio::test]
async fn writes_are_allowed_when_the_operator_says_so_and_still_audited() {
    let (app, browser) = impersonated(AppOptions::default().var("IMPERSONATION_ALLOW_WRITES", "true")).await;
    let write = browser.api(Method::POST, "/api/todos", Some(json!({ "title": "Fixed by support" }))).await;
    assert_eq!(write.status, 201, "{}", write.body);
    let home = browser.get("/").await;
    assert!(!home.body.contains("You can look, not change anything."), "{}", home.body);
    for action in [r#"action="/todos""#, "/toggle", "/rename", "/delete"] {
        assert!(home.body.contains(action), "the forms are there: {action}");
    }
    let rows = audit_rows(&app).await;
    assert!(rows.iter().any(|row| row.2 == "POST" && row.3 == "/api/todos" && row.4 == 201), "{rows:?}");
}

#[tokio::test]
async fn a_bearer_token_with_an_actor_is_read_only_too_and_others_are_not_affected() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    let bob = app.user_id(BOB);
    let claims = json!({ "act": { "sub": SUPPORT } });
    app.workos.set_extra_claims(claims.as_object().cloned().expect("object"));
    let bearer = app.bearer_client(app.workos.mint_access_token(&bob, Duration::from_secs(300)));
    let refused = bearer.send(Method::POST, "/api/todos", Some(json!({ "title": "x" }))).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(bearer.get("/api/me").await.json()["impersonator"]["email"], SUPPORT);
    let recorded = eventually(Duration::from_secs(5), || async { !audit_rows(&app).await.is_empty() }).await;
    assert!(recorded);

    app.workos.set_extra_claims(serde_json::Map::new());
    let plain = app.signed_in("carol@example.test").await;
    assert_eq!(plain.api(Method::POST, "/api/todos", Some(json!({ "title": "mine" }))).await.status, 201);
    assert!(!plain.get("/").await.body.contains("You are impersonating"));
    let error_page = plain.get("/no-such-page").await;
    assert_eq!(error_page.status, 404);
    assert!(!error_page.body.contains("You are impersonating"), "error pages get the banner only when impersonated");
}

/// Choosing which space to look at is looking, not changing: allowed while impersonating (and audited).
#[tokio::test]
async fn choosing_a_space_is_allowed_while_impersonating() {
    let (app, browser) = impersonated(AppOptions::default()).await;
    let form = browser.submit("/organizations/switch", &[("organization_id", "personal")]).await;
    assert_eq!(form.status, 303, "{}", form.body);
    let api = browser.api(Method::POST, "/api/organizations/switch", Some(json!({ "organization_id": "personal" })));
    let api = api.await;
    assert_eq!(api.status, 200, "{}", api.body);
    let rows = audit_rows(&app).await;
    assert!(rows.iter().any(|row| row.3 == "/organizations/switch" && row.4 == 303), "{rows:?}");
}

/// The banner's "Stop impersonating" is a sign-out: a request of the impersonated session like any other, so it is
/// in the audit table (and, in an organization, its Audit Logs) although the sign-out never checks the session's
/// tokens with WorkOS.
#[tokio::test]
async fn stopping_the_impersonation_by_signing_out_is_audited_too() {
    let (app, browser) = impersonated(AppOptions::default()).await;
    let bob = app.user_id(BOB);
    // A request no handler asks "who is this?" of is the session's too.
    assert_eq!(browser.get("/assets/style.css").await.status, 200);
    let copy = app.browser();
    copy.copy_cookies_from(&browser);
    let token = browser.csrf_token().await;
    let signed_out = browser.post_form("/logout", &[("csrf_token", &token)]).await;
    assert_eq!(signed_out.status, 302, "{}", signed_out.body);
    assert!(browser.cookie(authbridge::session::SESSION_COOKIE).is_none(), "signed out");

    let rows = audit_rows(&app).await;
    let row = |method: &str, path: &str, status| {
        (SUPPORT.to_owned(), bob.clone(), method.to_owned(), path.to_owned(), status)
    };
    assert!(rows.contains(&row("GET", "/assets/style.css", 200)), "{rows:?}");
    assert!(rows.contains(&row("POST", "/logout", 302)), "{rows:?}");
    let mut conn = app.db.connect().await;
    let event: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM authbridge.audit_log_outbox WHERE event->>'action' = 'user.impersonated_request' \
         AND event->'targets'->0->>'id' = 'POST /logout'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("outbox");
    assert_eq!(event, 1, "the sign-out is in the organization's Audit Logs");

    // Signed out, the browser's requests are nobody's: nothing more is written. Nor are those of a copy of the
    // ended session's cookie, which still opens but which the app found ended.
    // Not even where no handler asks "who is this?" (the stylesheet): this replica knows the session has ended.
    let before = audit_rows(&app).await.len();
    assert_eq!(browser.get("/").await.status, 200);
    // First, while the copy still has the cookie (the page below finds it ended and clears it).
    assert_eq!(copy.get("/assets/style.css").await.status, 200);
    let ended = copy.get("/").await;
    assert!(!ended.body.contains("You are impersonating"), "the ended session is signed out");
    assert_eq!(audit_rows(&app).await.len(), before, "{:?}", audit_rows(&app).await);
}

/// Probes and webhook deliveries are nobody's requests, even with an impersonated session's cookie on them: the
/// cookie is not opened, nothing is audited, no cookie is set. (A flood of `GET /healthz`, which load shedding lets
/// through, would otherwise fill the customer's Audit Logs.)
#[tokio::test]
async fn probes_and_webhooks_with_an_impersonated_sessions_cookie_are_not_audited() {
    let (app, browser) = impersonated(AppOptions::default()).await;
    let webhook = browser
        .request(Method::POST, "/webhooks/workos", |request| {
            request.header("content-type", "application/json").body("{}")
        })
        .await;
    assert_eq!(webhook.status, 401, "{}", webhook.body);
    for path in ["/healthz", "/readyz"] {
        let probe = browser.get(path).await;
        assert!(probe.set_cookies().is_empty(), "{path}: {:?}", probe.headers);
    }
    // The same cookie on a request of the user's is audited: the cookie is a live impersonated session.
    assert_eq!(browser.get("/assets/style.css").await.status, 200);
    let rows = audit_rows(&app).await;
    assert!(rows.iter().any(|row| row.3 == "/assets/style.css"), "{rows:?}");
    assert!(rows.iter().all(|row| !matches!(row.3.as_str(), "/healthz" | "/readyz" | "/webhooks/workos")), "{rows:?}");
}

/// Only the webhook route itself is nobody's: another path under `/webhooks/` is an unknown page like
/// `/no-such-page`, and an impersonated session's request for it is audited like any other.
#[tokio::test]
async fn an_unknown_path_under_webhooks_is_an_audited_request_of_the_session() {
    let (app, browser) = impersonated(AppOptions::default()).await;
    assert_eq!(browser.get("/webhooks/no-such-route").await.status, 404);
    let rows = audit_rows(&app).await;
    assert!(rows.iter().any(|row| row.3 == "/webhooks/no-such-route" && row.4 == 404), "{rows:?}");
}

/// An admin impersonated is offered no Admin Portal button (its setup links change the organization), unless the
/// operator allows writes.
#[tokio::test]
async fn the_admin_portal_is_not_offered_to_a_read_only_impersonation() {
    for (options, offered) in
        [(AppOptions::default(), false), (AppOptions::default().var("IMPERSONATION_ALLOW_WRITES", "true"), true)]
    {
        let app = spawn_app_with(options.lifecycle()).await;
        let bob = app.user_id(BOB);
        let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("seeded");
        app.workos.set_membership_roles(&acme.id, &["admin"]).expect("promoted");
        app.workos.impersonate_next_login(SUPPORT, Some(REASON));
        let browser = app.signed_in(BOB).await;
        let page = browser.get(&format!("/organizations/{ACME_ORGANIZATION_ID}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains(r#"id="organization-role">admin<"#), "{}", page.body);
        assert_eq!(page.body.contains("/portal"), offered, "{}", page.body);
        assert_eq!(page.body.contains("portal-read-only"), !offered, "{}", page.body);
    }
}

/// An impersonated request's Audit Log event goes to the organization it concerns: a request at an organization the
/// user could not get into (here one Bob is not a member of) is in the local record only, and in no organization's
/// Audit Logs, where the session's organization's admins would read the other one's id.
#[tokio::test]
async fn a_refused_request_at_another_organization_is_in_no_organizations_audit_log() {
    let (app, browser) = impersonated(AppOptions::default()).await;
    assert_eq!(browser.get("/organizations/org_elsewhere").await.status, 403, "not a member");
    assert_eq!(browser.get(&format!("/organizations/{ACME_ORGANIZATION_ID}")).await.status, 200);
    let rows = audit_rows(&app).await;
    assert!(rows.iter().any(|row| row.3 == "/organizations/org_elsewhere" && row.4 == 403), "{rows:?}");
    let mut conn = app.db.connect().await;
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT organization_id, event->'targets'->0->>'id' FROM authbridge.audit_log_outbox \
         WHERE event->>'action' = 'user.impersonated_request'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("outbox");
    assert!(events.iter().all(|(_, target)| !target.contains("org_elsewhere")), "{events:?}");
    let settings = format!("GET /organizations/{ACME_ORGANIZATION_ID}");
    assert!(events.contains(&(ACME_ORGANIZATION_ID.to_owned(), settings)), "{events:?}");
}

/// Support impersonating Bob (in Acme), who then joins Globex, where Dana keeps a todo: the app, the support
/// browser and the todo's id, with the outbox emptied of what the set-up wrote.
async fn impersonating_a_member_of_two(options: AppOptions) -> (TestApp, Browser, String) {
    use crate::helpers::organizations::{AUTHOR, OTHER_ORG, cast, create, id_of, titles};
    use standins::workos_standin::GLOBEX_ORGANIZATION_ID;

    let app = spawn_app_with(AppOptions { workos: cast(), ..options }.lifecycle()).await;
    let dana = app.signed_in(OTHER_ORG).await;
    let todo = id_of(&create(&dana, "Globex's plan", Some(GLOBEX_ORGANIZATION_ID)).await);
    app.workos.impersonate_next_login(SUPPORT, Some(REASON));
    let support = app.signed_in(AUTHOR).await;
    app.workos.add_membership(&app.user_id(AUTHOR), GLOBEX_ORGANIZATION_ID, &[]).expect("Bob joins Globex");
    let listed = eventually(Duration::from_secs(10), || async {
        titles(&support, GLOBEX_ORGANIZATION_ID).await.is_ok_and(|titles| titles.contains(&"Globex's plan".to_owned()))
    })
    .await;
    assert!(listed, "the membership reached the app's database, and Globex's list is Bob's to read");
    // Only what follows is looked at (the polls above were refused until the membership arrived).
    let mut conn = app.db.connect().await;
    sqlx::query("DELETE FROM authbridge.audit_log_outbox").execute(&mut conn).await.expect("emptied");
    (app, support, todo)
}

/// The impersonated requests' Audit Log events: (organization, target), sorted, leaving out the home page's.
async fn impersonated_request_events(app: &TestApp) -> Vec<(String, String)> {
    let mut conn = app.db.connect().await;
    let mut events: Vec<(String, String)> = sqlx::query_as(
        "SELECT organization_id, event->'targets'->0->>'id' FROM authbridge.audit_log_outbox \
         WHERE event->>'action' = 'user.impersonated_request'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("outbox");
    events.retain(|(_, target)| !target.ends_with(" /"));
    events.sort();
    events
}

/// An impersonated request that reads another of the user's organizations' data (its list, one of its todos), or
/// tries to change it and is refused (a read-only impersonation), is in that organization's Audit Logs, whose
/// admins it concerns, not in the session's organization's. (It went to the session's: Acme's admins read that
/// Globex's todos had been looked at, with their ids, and Globex's never learnt of it.)
#[tokio::test]
async fn an_impersonated_read_of_another_organizations_todos_is_in_that_organizations_audit_log() {
    use crate::helpers::organizations::titles;
    use standins::workos_standin::GLOBEX_ORGANIZATION_ID;

    let (app, support, todo) = impersonating_a_member_of_two(AppOptions::default()).await;
    assert_eq!(titles(&support, GLOBEX_ORGANIZATION_ID).await.map(|titles| titles.len()), Ok(1));
    assert_eq!(support.get(&format!("/api/todos/{todo}")).await.status, 200);
    assert_eq!(support.get("/api/todos").await.status, 200, "Bob's session is in Acme");
    let (one, toggle) = (format!("/api/todos/{todo}"), format!("/todos/{todo}/toggle"));
    let rename = support.api(Method::PATCH, &one, Some(json!({ "title": "Ours now" }))).await;
    assert_eq!(rename.error_code(), "impersonation_read_only", "{}", rename.body);
    let token = support.csrf_token().await;
    let toggled = support.post_form(&toggle, &[("csrf_token", &token), ("is_complete", "true")]).await;
    assert_eq!(toggled.status, 403, "{}", toggled.body);

    let globex = |target: &str| (GLOBEX_ORGANIZATION_ID.to_owned(), target.to_owned());
    let acme_list = (ACME_ORGANIZATION_ID.to_owned(), "GET /api/todos".to_owned());
    let mut expected = vec![
        globex("GET /api/todos"),
        globex(&format!("GET /api/todos/{todo}")),
        acme_list,
        globex(&format!("PATCH /api/todos/{todo}")),
        globex(&format!("POST /todos/{todo}/toggle")),
    ];
    expected.sort();
    assert_eq!(
        impersonated_request_events(&app).await,
        expected,
        "each in the log of the organization whose data it was"
    );
}

/// With writes allowed, a change to another organization's todo that fails before its handler could mark it (a
/// malformed body, 400) is in that organization's Audit Logs too.
#[tokio::test]
async fn a_failed_impersonated_change_of_another_organizations_todo_is_in_that_organizations_audit_log() {
    use standins::workos_standin::GLOBEX_ORGANIZATION_ID;

    let options = AppOptions::default().var("IMPERSONATION_ALLOW_WRITES", "true");
    let (app, support, todo) = impersonating_a_member_of_two(options).await;
    let malformed = support
        .request(Method::PATCH, &format!("/api/todos/{todo}"), |request| {
            request.header("content-type", "application/json").body("{")
        })
        .await;
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    let expected = vec![(GLOBEX_ORGANIZATION_ID.to_owned(), format!("PATCH /api/todos/{todo}"))];
    assert_eq!(impersonated_request_events(&app).await, expected);
}

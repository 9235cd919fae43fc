//! Several replicas with an OpenID Connect provider and `DATABASE_URL`: a sign-out on one is refused by every other
//! (and by a replica started afterwards, as after a restart), and an expiring session that reaches several replicas
//! at once spends its rotating refresh token once, as with WorkOS (`replicas.rs`).

use std::time::Duration;

use authbridge::session::SESSION_COOKIE;
use authbridge::session::revocations::SHARED_CACHE_TTL;
use reqwest::Method;
use standins::oidc_standin::Endpoint;

use crate::helpers::app::{ALICE, me_everywhere};
use crate::helpers::lifecycle::eventually;
use crate::helpers::oidc::{OidcApp, OidcAppOptions, spawn_oidc_app_with};
use crate::helpers::session::read_session;

async fn shared_app() -> OidcApp {
    spawn_oidc_app_with(OidcAppOptions::default().database()).await
}

/// Sessions recorded as signed out in `authbridge.revoked_sessions`, with this id.
async fn signed_out_rows(app: &OidcApp, session_id: &str) -> i64 {
    let mut conn = app.db.connect().await;
    sqlx::query_scalar("SELECT count(*) FROM authbridge.revoked_sessions WHERE id = $1 AND source = 'sign_out'")
        .bind(session_id)
        .fetch_one(&mut conn)
        .await
        .expect("read revoked_sessions")
}

#[tokio::test]
async fn a_sign_out_on_one_replica_is_refused_by_another_within_seconds() {
    let app = shared_app().await;
    let replica = app.replica().await;
    let browser = app.signed_in(ALICE).await;
    let session_id = read_session(&browser).session_id.expect("the app's own session id");
    let copy = replica.browser_like(&browser);
    assert_eq!(copy.api(Method::GET, "/api/me", None).await.status, 200, "the other replica knows the session");

    assert_eq!(browser.submit("/logout", &[]).await.status, 302);
    assert_eq!(signed_out_rows(&app, &session_id).await, 1, "recorded for every replica");
    let started = std::time::Instant::now();
    // The copy's ID token is good for hours yet: only the database can tell the other replica.
    let refused =
        eventually(Duration::from_secs(5), || async { copy.api(Method::GET, "/api/me", None).await.status == 401 })
            .await;
    assert!(refused, "the other replica still lets the signed-out session in");
    assert!(started.elapsed() <= SHARED_CACHE_TTL + Duration::from_millis(1500), "within its cache time");
    assert!(copy.cookie(SESSION_COOKIE).is_none(), "and clears the cookie, as for any ended session");
}

/// A sign-out while the database is down still signs the browser out (cookie cleared, the provider asked to revoke),
/// and is refused at once by the replica that made it; the record every other replica reads is written in the
/// background as soon as the database is back, so a copy of the cookie is not let in then (its ID token is good for
/// hours yet). Meanwhile the other replica cannot let it in either: without the database it answers 503.
#[tokio::test]
async fn a_sign_out_while_the_database_is_down_signs_out_and_reaches_every_replica_once_it_is_back() {
    let app = spawn_oidc_app_with(OidcAppOptions::default().database_through_proxy()).await;
    let replica = app.replica().await;
    let browser = app.signed_in(ALICE).await;
    let session_id = read_session(&browser).session_id.expect("the app's own session id");
    let here = app.browser();
    here.copy_cookies_from(&browser);
    let elsewhere = replica.browser_like(&browser);
    let proxy = app.db_proxy.as_ref().expect("a proxy");
    let csrf_token = browser.csrf_token().await;

    proxy.cut();
    let signed_out = browser.post_form("/logout", &[("csrf_token", csrf_token.as_str())]).await;
    assert_eq!(signed_out.status, 302, "{}", signed_out.body);
    assert!(browser.cookie(SESSION_COOKIE).is_none(), "the browser is signed out all the same");
    assert_eq!(app.oidc.calls(Endpoint::Revoke), 1, "and the provider asked to revoke the session");
    assert_eq!(here.api(Method::GET, "/api/me", None).await.status, 401, "this replica refuses a copy at once");
    let unavailable = elsewhere.api(Method::GET, "/api/me", None).await;
    assert_eq!(unavailable.status, 503, "the other cannot check, so lets nobody in: {}", unavailable.body);
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();

    let recorded =
        eventually(Duration::from_secs(10), || async { signed_out_rows(&app, &session_id).await == 1 }).await;
    assert!(recorded, "the sign-out is written once the database is back");
    assert_eq!(elsewhere.api(Method::GET, "/api/me", None).await.status, 401, "and refused by every replica");
}

#[tokio::test]
async fn a_signed_out_cookie_stays_refused_after_a_restart() {
    let app = shared_app().await;
    let browser = app.signed_in(ALICE).await;
    let copy = app.browser();
    copy.copy_cookies_from(&browser);
    assert_eq!(browser.submit("/logout", &[]).await.status, 302);

    // A fresh instance of the app over the same database: nothing of the old one's memory, as after a restart.
    let restarted = app.replica().await;
    let copy = restarted.browser_like(&copy);
    let me = copy.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 401, "{}", me.body);
    let page = copy.get("/").await;
    assert!(page.body.contains("Sign in") && !page.body.contains("csrf_token"), "signed out: {}", page.body);
}

#[tokio::test]
async fn three_replicas_refresh_one_expiring_session_once_and_nobody_is_signed_out() {
    let app = shared_app().await;
    let browser = app.signed_in(ALICE).await;
    let before = read_session(&browser);
    app.age_session(&browser, -60);
    // A slow token endpoint widens the race: every replica is asking while the first call is still out.
    app.oidc.set_latency(Endpoint::Token, Duration::from_millis(300));
    let replicas = [app.replica().await, app.replica().await];

    let refreshed = me_everywhere(&app.base_url, &replicas, &browser, 30).await;
    assert_eq!(app.oidc.refresh_calls(), 1, "one refresh for the three replicas");
    assert_eq!(app.oidc.reuse_detections(), 0, "no rotated refresh token was presented twice");
    let rotated = refreshed[0].refresh_token.clone();
    assert_ne!(rotated, before.refresh_token);
    assert!(
        refreshed.iter().all(|session| session.refresh_token == rotated && session.session_id == before.session_id),
        "every request got the one rotated session"
    );
}

#[tokio::test]
async fn only_sign_outs_are_asked_about_not_what_workos_events_record() {
    let app = shared_app().await;
    let browser = app.signed_in(ALICE).await;
    // A WorkOS tombstone under the same id (a database once used with WorkOS): nothing of OIDC's, so not asked.
    let mut conn = app.db.connect().await;
    sqlx::query(
        "INSERT INTO authbridge.users (id, deleted_at, version_updated_at, version_event_at, version_event_id) \
         VALUES ($1, now(), now(), now(), 'event_1')",
    )
    .bind(app.subject(ALICE))
    .execute(&mut conn)
    .await
    .expect("a deleted WorkOS user");
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
}

#[tokio::test]
async fn bearer_tokens_never_wait_for_the_database() {
    // No session of the app's own to look up: a database that is down changes nothing for them.
    let down = format!(
        "postgres://authbridge@127.0.0.1:{}/nowhere",
        crate::helpers::closed_port_url().port().expect("a port")
    );
    let options = OidcAppOptions { wait_until_ready: false, ..OidcAppOptions::default() };
    let app = spawn_oidc_app_with(options.var("DATABASE_URL", down)).await;
    // Not ready (its database has never answered), but serving once the provider is discovered.
    let discovered = crate::helpers::lifecycle::eventually(Duration::from_secs(10), || async {
        let ready = app.browser().get("/readyz").await.json();
        ready["oidc"]["ok"] == true && ready["database"]["ok"] == false
    })
    .await;
    assert!(discovered, "discovered, and not ready for want of its database");
    let token = app.oidc.mint_access_token(&app.subject(ALICE), Duration::from_secs(300));
    let me = app.bearer_client(token).get("/api/me").await;
    assert_eq!(me.status, 200, "{}", me.body);
}

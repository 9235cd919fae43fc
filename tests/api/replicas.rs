//! Several replicas, one session: with `DATABASE_URL`, replicas that receive the same expiring cookie at once spend
//! its single-use refresh token once and share the result through PostgreSQL (`authbridge.refresh_results`).

use std::time::Duration;

use authbridge::config::Secret;
use authbridge::session::Session;
use authbridge::session::provider::ProviderError;
use authbridge::session::seal::Sealer;
use authbridge::session::shared_refresh::{self, SharedRefreshes};
use reqwest::Method;
use standins::workos_standin::Endpoint;

use crate::helpers::app::{
    ALICE, AppOptions, BOB, COOKIE_PASSWORD, LifecycleOptions, TestApp, me_everywhere, spawn_app_with,
};
use crate::helpers::browser::Browser;
use crate::helpers::lifecycle::eventually;
use crate::helpers::proxy::TcpProxy;
use crate::helpers::session::read_session;
use crate::refresh::age_token;

const CAROL: &str = "carol@example.test";

async fn lifecycle_app() -> TestApp {
    spawn_app_with(AppOptions::default().lifecycle()).await
}

/// [`lifecycle_app`], its database reached through a proxy the test can cut (`TestApp::db_proxy`).
async fn lifecycle_app_behind_a_proxy() -> TestApp {
    spawn_app_with(
        AppOptions::default().lifecycle_with(LifecycleOptions { through_proxy: true, ..LifecycleOptions::default() }),
    )
    .await
}

/// `replica` refreshes `key`, the provider answering with `rotated` just as the database goes out of reach
/// (`proxy` cut): the replica's own request has its new session, and its record waits for the database.
async fn refresh_as_the_database_goes(replica: &SharedRefreshes, key: &[u8; 32], proxy: &TcpProxy, rotated: &Session) {
    let refreshed = replica
        .refresh(key, || async {
            proxy.cut();
            Ok(rotated.clone())
        })
        .await;
    assert!(refreshed.is_ok(), "the first replica's own request has its new session");
}

/// The rows of `authbridge.refresh_results`: (token hash length, outcome, sealed session).
async fn refresh_rows(app: &TestApp) -> Vec<(i32, Option<String>, Option<String>)> {
    let pool = sqlx::PgPool::connect(&app.db.url).await.expect("connect as owner");
    let rows = sqlx::query_as(
        "SELECT octet_length(token_hash), outcome, sealed_session FROM authbridge.refresh_results ORDER BY claimed_at",
    )
    .fetch_all(&pool)
    .await
    .expect("read refresh_results");
    pool.close().await;
    rows
}

/// What one more replica shares refreshes through: the app's database and cookie password, with `claim_timeout`.
fn shared_refreshes(app: &TestApp, claim_timeout: Duration) -> SharedRefreshes {
    let config = app.config.database.as_ref().expect("the lifecycle's database");
    let database = authbridge::db::Database::connect_lazy(config).expect("a pool");
    let sealer = Sealer::new(&Secret::new(COOKIE_PASSWORD), None).expect("a sealer");
    SharedRefreshes::new(database, sealer).with_claim_timeout(claim_timeout)
}

#[tokio::test]
async fn three_replicas_refresh_one_expiring_session_once_and_nobody_is_signed_out() {
    let app = lifecycle_app().await;
    let browser = app.signed_in(ALICE).await;
    let before = read_session(&browser);
    age_token(&app, &browser, -60);
    // A slow provider widens the race: every replica is asking while the first call is still out.
    app.workos.set_latency(Endpoint::Authenticate, Duration::from_millis(300));
    let replicas = [app.replica().await, app.replica().await];

    let refreshed = me_everywhere(&app.base_url, &replicas, &browser, 30).await;
    assert_eq!(app.workos.refresh_calls(), 1, "one refresh for the three replicas");
    let rotated = refreshed[0].refresh_token.clone();
    assert_ne!(rotated, before.refresh_token);
    assert!(
        refreshed.iter().all(|session| session.refresh_token == rotated && session.user.id == before.user.id),
        "every request got the one rotated session"
    );

    // The row holds a hash of the old token and a sealed session: no token in the clear.
    let rows = refresh_rows(&app).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (hash_len, outcome, sealed) = &rows[0];
    assert_eq!((*hash_len, outcome.as_deref()), (32, Some("refreshed")));
    let sealed = sealed.as_deref().expect("a sealed session");
    for secret in [before.refresh_token.as_deref(), rotated.as_deref(), Some(refreshed[0].access_token.as_str())] {
        assert!(!sealed.contains(secret.expect("a token")), "a token in the clear");
    }
    // Sealed for this purpose only: it never opens as a session cookie.
    let sealer = crate::helpers::session::sealer(COOKIE_PASSWORD);
    assert!(sealer.open(authbridge::session::seal::Purpose::Session, sealed).is_err());
}

#[tokio::test]
async fn two_users_refreshing_on_two_replicas_at_once_each_keep_their_own_session() {
    let app = lifecycle_app().await;
    let alice = app.signed_in(ALICE).await;
    let bob = app.signed_in(BOB).await;
    age_token(&app, &alice, -60);
    age_token(&app, &bob, -60);
    app.workos.set_latency(Endpoint::Authenticate, Duration::from_millis(200));
    let replica = app.replica().await;
    let on_replica = [replica.browser_like(&alice), replica.browser_like(&bob)];

    let (a, b, ra, rb) = tokio::join!(
        alice.api(Method::GET, "/api/me", None),
        bob.api(Method::GET, "/api/me", None),
        on_replica[0].api(Method::GET, "/api/me", None),
        on_replica[1].api(Method::GET, "/api/me", None),
    );
    for response in [&a, &b, &ra, &rb] {
        assert_eq!(response.status, 200, "{}", response.body);
    }
    assert_eq!(app.workos.refresh_calls(), 2, "one refresh per user");
    for (browser, user) in [(&alice, ALICE), (&on_replica[0], ALICE), (&bob, BOB), (&on_replica[1], BOB)] {
        assert_eq!(read_session(browser).user.id, app.user_id(user), "each keeps their own session");
    }
    assert_eq!(ra.json()["id"], a.json()["id"]);
    assert_eq!(rb.json()["id"], b.json()["id"]);
    assert_ne!(a.json()["id"], b.json()["id"]);
}

/// An expiring session is refreshed on one replica; a copy of the old cookie then reaches another one a moment
/// later: it gets the same new session, not an `invalid_grant` that signs the user out, and the token is spent once.
async fn assert_a_late_copy_on_another_replica_gets_the_same_new_session(app: &TestApp) {
    let browser = app.signed_in(ALICE).await;
    age_token(app, &browser, -60);
    let stale = read_session(&browser);
    let copy = Browser::new(app.base_url.clone());
    copy.copy_cookies_from(&browser);
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
    let replica = app.replica().await;
    let late = replica.browser_like(&copy);
    assert_eq!(late.api(Method::GET, "/api/me", None).await.status, 200, "the late copy is not signed out");
    assert_eq!(read_session(&late).refresh_token, read_session(&browser).refresh_token);
    assert_eq!(app.workos.refresh_calls(), 1, "the token was spent once");
    assert_ne!(read_session(&late).refresh_token, stale.refresh_token);
}

#[tokio::test]
async fn a_late_copy_of_the_old_cookie_on_another_replica_gets_the_same_new_session() {
    assert_a_late_copy_on_another_replica_gets_the_same_new_session(&lifecycle_app().await).await;
}

/// The claimant tidies up old rows after claiming; should that fail, the claim is still its own and its result is
/// still shared: a copy of the old cookie on another replica gets the new session rather than re-sending the spent
/// refresh token (which WorkOS would refuse, signing the user out).
#[tokio::test]
async fn a_failed_tidy_up_after_claiming_still_shares_the_refresh() {
    let app = lifecycle_app().await;
    let pool = sqlx::PgPool::connect(&app.db.url).await.expect("connect as owner");
    sqlx::raw_sql(
        "CREATE FUNCTION authbridge.refuse_delete() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN RAISE EXCEPTION 'no deleting today'; END $$; \
         CREATE TRIGGER refuse_delete BEFORE DELETE ON authbridge.refresh_results \
           FOR EACH STATEMENT EXECUTE FUNCTION authbridge.refuse_delete();",
    )
    .execute(&pool)
    .await
    .expect("every DELETE on refresh_results fails");
    pool.close().await;

    assert_a_late_copy_on_another_replica_gets_the_same_new_session(&app).await;
}

#[tokio::test]
async fn a_provider_outage_releases_the_claim_so_the_next_request_refreshes() {
    let app = lifecycle_app().await;
    let browser = app.signed_in(ALICE).await;
    age_token(&app, &browser, -60);
    app.workos.fail_next(Endpoint::Authenticate, 1, 503);
    let outage = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(outage.status, 503, "{}", outage.body);
    assert!(refresh_rows(&app).await.is_empty(), "an outage says nothing about the token: the claim is released");

    let replica = app.replica().await;
    let on_replica = replica.browser_like(&browser);
    assert_eq!(on_replica.api(Method::GET, "/api/me", None).await.status, 200, "another replica refreshes at once");
    assert_eq!(app.workos.refresh_calls(), 2);
}

/// Another replica's claim on `browser`'s refresh token, made `ago` (seconds) and never finished; the token.
async fn claimed_elsewhere(app: &TestApp, browser: &Browser, ago: u32) -> String {
    let refresh_token = read_session(browser).refresh_token.expect("a refresh token");
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, refresh_token.as_bytes());
    let pool = sqlx::PgPool::connect(&app.db.url).await.expect("connect as owner");
    sqlx::query(
        "INSERT INTO authbridge.refresh_results (token_hash, claimed_at) VALUES ($1, now() - make_interval(secs => $2))",
    )
    .bind(hash.as_ref())
    .bind(f64::from(ago))
    .execute(&pool)
    .await
    .expect("insert another replica's claim");
    pool.close().await;
    refresh_token
}

#[tokio::test]
async fn a_claim_whose_replica_died_is_taken_over() {
    let app = lifecycle_app().await;
    let browser = app.signed_in(ALICE).await;
    age_token(&app, &browser, -60);
    // A replica claimed this token 20 s ago and never finished (it crashed mid-call).
    claimed_elsewhere(&app, &browser, 20).await;

    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(app.workos.refresh_calls(), 1);
    let rows = refresh_rows(&app).await;
    assert_eq!(rows.first().and_then(|row| row.1.as_deref()), Some("refreshed"), "{rows:?}");
}

/// A request waiting for another replica's refresh gives up before its own time limit (`REQUEST_TIMEOUT_SECONDS`,
/// 3 s here): it is answered 503 "try again shortly" with the cookie kept, not the time limit's 504, and the token is
/// not spent meanwhile.
#[tokio::test]
async fn a_request_waiting_for_another_replicas_refresh_gives_up_before_its_time_limit() {
    let app = spawn_app_with(AppOptions::default().lifecycle().var("REQUEST_TIMEOUT_SECONDS", 3)).await;
    let browser = app.signed_in(ALICE).await;
    age_token(&app, &browser, -60);
    // Another replica claimed this token just now, and its call to WorkOS is still out.
    let refresh_token = claimed_elsewhere(&app, &browser, 0).await;

    let started = std::time::Instant::now();
    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!((me.status, me.error_code()), (503, "auth_unavailable".to_owned()), "{}", me.body);
    assert!(started.elapsed() < Duration::from_secs(3), "before the time limit: {:?}", started.elapsed());
    assert_eq!(app.workos.refresh_calls(), 0, "the token was left to the replica that claimed it");
    assert_eq!(read_session(&browser).refresh_token.as_deref(), Some(refresh_token.as_str()), "the cookie is kept");
}

/// The database going down while one browser's expiring cookie reaches two replicas. Refreshing alone, each would
/// spend the single-use refresh token, and the one WorkOS then refuses would sign the user out (with Auth0's reuse
/// detection, the other one's new session too). Neither refreshes: both requests are answered 503 with the cookie
/// kept, and once the database is back the token is spent once.
#[tokio::test]
async fn with_the_database_down_no_replica_refreshes_alone_and_nobody_is_signed_out() {
    let app = lifecycle_app_behind_a_proxy().await;
    let replica = app.replica().await;
    // Carol belongs to no organization, so `/api/me` needs the database for nothing but the session checks.
    let browser = app.signed_in(CAROL).await;
    // Each replica caches its revocation check's "still allowed" for two seconds, so the next requests need the
    // database only to share their refresh.
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(replica.browser_like(&browser).api(Method::GET, "/api/me", None).await.status, 200);
    age_token(&app, &browser, -60);
    let on_replica = replica.browser_like(&browser);
    let proxy = app.db_proxy.as_ref().expect("a proxy");

    proxy.cut();
    let (here, there) =
        tokio::join!(browser.api(Method::GET, "/api/me", None), on_replica.api(Method::GET, "/api/me", None));
    proxy.restore();
    for me in [&here, &there] {
        assert_ne!(me.status, 401, "signed out: the other replica had spent the refresh token: {}", me.body);
    }
    for me in [&here, &there] {
        assert_eq!(me.status, 503, "{}", me.body);
        assert!(me.set_cookies().is_empty(), "the cookie is kept: {:?}", me.set_cookies());
    }
    assert_eq!(app.workos.refresh_calls(), 0, "no refresh token is spent without the database");

    let back =
        eventually(Duration::from_secs(10), || async { browser.api(Method::GET, "/api/me", None).await.status == 200 })
            .await;
    assert!(back, "refreshed once the database is back");
    assert_eq!(app.workos.refresh_calls(), 1);
}

#[tokio::test]
async fn a_refusal_another_replica_recorded_ends_the_session_without_asking_workos_again() {
    let app = lifecycle_app().await;
    let alice = app.signed_in(ALICE).await;
    age_token(&app, &alice, -60);
    let refresh_token = read_session(&alice).refresh_token.expect("a refresh token");
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, refresh_token.as_bytes());
    // Another replica asked WorkOS 20 s ago and was told the token is dead: within the 30 s a result is kept.
    let pool = sqlx::PgPool::connect(&app.db.url).await.expect("connect as owner");
    sqlx::query(
        "INSERT INTO authbridge.refresh_results (token_hash, claimed_at, finished_at, outcome, rejected_reason) \
         VALUES ($1, now() - interval '20 s', now() - interval '20 s', 'rejected', 'invalid_grant')",
    )
    .bind(hash.as_ref())
    .execute(&pool)
    .await
    .expect("insert a recorded refusal");
    pool.close().await;

    // Bob's refresh, meanwhile, tidies the table: it must keep results that are still within their 30 s.
    let bob = app.signed_in(BOB).await;
    age_token(&app, &bob, -60);
    assert_eq!(bob.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.workos.refresh_calls(), 1);

    let me = alice.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 401, "the recorded refusal ends the session: {}", me.body);
    assert!(alice.cookie(authbridge::session::SESSION_COOKIE).is_none(), "the cookie is cleared");
    assert_eq!(app.workos.refresh_calls(), 1, "WorkOS was not asked about a token known to be dead");
}

/// A replica whose provider call outlived the claim timeout, so that another replica took the row over, and then
/// failed: it releases only its own claim, never the other replica's live one (whose result would then go unshared,
/// and the old cookie's next request would re-send a spent token).
#[tokio::test]
async fn a_failed_refresh_releases_only_its_own_claim() {
    let app = lifecycle_app().await;
    let shared = shared_refreshes(&app, shared_refresh::CLAIM_TIMEOUT);
    let key = [7u8; 32];
    let pool = sqlx::PgPool::connect(&app.db.url).await.expect("connect as owner");
    let outcome = shared
        .refresh(&key, || async {
            // Meanwhile, another replica found the claim abandoned and took the row over.
            sqlx::query("UPDATE authbridge.refresh_results SET claimed_at = now() + interval '1 second'")
                .execute(&pool)
                .await
                .expect("the takeover");
            Err(ProviderError::Unavailable { retry_after: Duration::from_secs(1) })
        })
        .await;
    assert!(matches!(outcome, Err(ProviderError::Unavailable { .. })));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM authbridge.refresh_results WHERE outcome IS NULL")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 1, "the other replica's claim is still there");
    pool.close().await;
}

/// The database blinking between a replica's claim and the provider's answer: the claimant records its result as
/// soon as the database is back. Left unrecorded, the claim would look abandoned once its timeout passed, and the
/// replica taking it over would send the spent refresh token again, signing the user out.
#[tokio::test]
async fn a_refresh_the_database_could_not_take_at_once_is_recorded_once_it_is_back() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let app = lifecycle_app_behind_a_proxy().await;
    let proxy = app.db_proxy.as_ref().expect("a proxy");
    let (first, second) =
        (shared_refreshes(&app, Duration::from_secs(2)), shared_refreshes(&app, Duration::from_secs(2)));
    // What the provider answers the first replica: a session (its content does not matter here).
    let rotated = read_session(&app.signed_in(CAROL).await);
    let key = [9u8; 32];

    refresh_as_the_database_goes(&first, &key, proxy, &rotated).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();
    let recorded = eventually(Duration::from_secs(5), || async {
        refresh_rows(&app).await.first().and_then(|row| row.1.clone()).as_deref() == Some("refreshed")
    })
    .await;
    assert!(recorded, "recorded once the database is back: {:?}", refresh_rows(&app).await);

    let calls = AtomicUsize::new(0);
    let shared = second
        .refresh(&key, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ProviderError::Unavailable { retry_after: Duration::from_secs(1) })
        })
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the spent refresh token is not sent again");
    let Ok(shared) = shared else { panic!("the second replica is given the first one's session") };
    assert_eq!(shared.refresh_token, rotated.refresh_token);
}

/// What one more replica shares refreshes through when it reaches the database directly, not through the app's
/// proxy: cutting the proxy then cuts off only the app's own replicas.
fn shared_refreshes_bypassing_the_proxy(app: &TestApp, claim_timeout: Duration) -> SharedRefreshes {
    let mut config = app.config.database.clone().expect("the lifecycle's database");
    config.url = Secret::new(&app.db.url);
    let database = authbridge::db::Database::connect_lazy(&config).expect("a pool");
    let sealer = Sealer::new(&Secret::new(COOKIE_PASSWORD), None).expect("a sealer");
    SharedRefreshes::new(database, sealer).with_claim_timeout(claim_timeout)
}

/// A provider that would refuse the token as spent, counting how often it is asked.
async fn refuse_as_spent(
    calls: &std::sync::atomic::AtomicUsize,
) -> Result<authbridge::session::Session, ProviderError> {
    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Err(ProviderError::GrantRejected("the refresh token was already used".to_owned()))
}

/// A replica cut off from the database (not dead) for longer than the claim timeout, just after the provider
/// rotated the token: its claim goes unrenewed, but a replica that still reaches the database watches it for the
/// takeover grace before taking it over, and meanwhile the first replica, back in reach, records its session.
/// Taken over at once, the claim would have had the spent token sent again, and the user signed out.
#[tokio::test]
async fn a_claimant_cut_off_from_the_database_past_the_claim_timeout_still_shares_its_refresh() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);
    let app = lifecycle_app_behind_a_proxy().await;
    let proxy = app.db_proxy.as_ref().expect("a proxy");
    let first = shared_refreshes(&app, CLAIM_TIMEOUT);
    let second = shared_refreshes_bypassing_the_proxy(&app, CLAIM_TIMEOUT);
    let rotated = read_session(&app.signed_in(CAROL).await);
    let key = [11u8; 32];

    refresh_as_the_database_goes(&first, &key, proxy, &rotated).await;
    tokio::time::sleep(CLAIM_TIMEOUT + Duration::from_millis(500)).await;
    let calls = AtomicUsize::new(0);
    let (shared, ()) = tokio::join!(second.refresh(&key, || refuse_as_spent(&calls)), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.restore();
    });

    assert_eq!(calls.load(Ordering::SeqCst), 0, "the spent refresh token is not sent again");
    let Ok(shared) = shared else { panic!("the second replica is given the first one's session: {shared:?}") };
    assert_eq!(shared.refresh_token, rotated.refresh_token);
}

/// The same while the claimant's provider call is still under way: its renewals fail while it cannot reach the
/// database, and it tries again at once rather than at its next turn (a third of the claim timeout, longer than the
/// takeover grace), so the replica watching the claim sees it renewed and waits for the result.
#[tokio::test]
async fn a_claimant_cut_off_from_the_database_mid_call_renews_its_claim_as_soon_as_it_is_back() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    // Renewed every 3 s: more than the watching replica's grace (shorter than in production, to keep the test short).
    const CLAIM_TIMEOUT: Duration = Duration::from_secs(9);
    const GRACE: Duration = Duration::from_secs(2);
    assert!(CLAIM_TIMEOUT / 3 > GRACE);
    let app = lifecycle_app_behind_a_proxy().await;
    let proxy = app.db_proxy.as_ref().expect("a proxy");
    let first = shared_refreshes(&app, CLAIM_TIMEOUT);
    let second = shared_refreshes_bypassing_the_proxy(&app, CLAIM_TIMEOUT).with_takeover_grace(GRACE);
    let rotated = read_session(&app.signed_in(CAROL).await);
    let key = [12u8; 32];
    let calls = AtomicUsize::new(0);

    let slow = first.refresh(&key, || async {
        proxy.cut();
        tokio::time::sleep(CLAIM_TIMEOUT + Duration::from_millis(3500)).await;
        Ok(rotated.clone())
    });
    let late = async {
        // Just past the claim timeout, with the claimant still cut off; the database is back 100 ms later.
        tokio::time::sleep(CLAIM_TIMEOUT + Duration::from_millis(200)).await;
        let (outcome, ()) = tokio::join!(second.refresh(&key, || refuse_as_spent(&calls)), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            proxy.restore();
        });
        outcome
    };
    let (first_outcome, second_outcome) = tokio::join!(slow, late);

    assert_eq!(calls.load(Ordering::SeqCst), 0, "the second replica never sent the refresh token");
    let first_session = first_outcome.expect("the slow refresh");
    let Ok(second_session) = second_outcome else { panic!("the first one's result: {second_outcome:?}") };
    assert_eq!(second_session.refresh_token, first_session.refresh_token);
}

/// A provider call slower than the claim timeout (a refresh may take a WorkOS request, a key fetch and the membership
/// sync, each with its own timeout) keeps its claim renewed: a replica that arrives meanwhile waits for its result
/// instead of taking the claim over and sending the refresh token a second time.
#[tokio::test]
async fn a_slow_refresh_keeps_its_claim_and_the_other_replicas_wait_for_it() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);
    let app = lifecycle_app().await;
    let browser = app.signed_in(ALICE).await;
    let refreshed = read_session(&browser);
    // The second replica's grace as short as the test's claim timeout allows it to be.
    let (first, second) = (
        shared_refreshes(&app, CLAIM_TIMEOUT),
        shared_refreshes(&app, CLAIM_TIMEOUT).with_takeover_grace(Duration::from_secs(1)),
    );
    let key = [9u8; 32];
    let second_calls = AtomicUsize::new(0);

    // Longer than the claim timeout and the takeover grace after the second replica arrives: only renewals every
    // third of the claim timeout, all along, keep the claim.
    let slow = first.refresh(&key, || async {
        tokio::time::sleep(CLAIM_TIMEOUT * 3).await;
        Ok(refreshed.clone())
    });
    let late = async {
        // Well past the claim timeout, well before the first call ends.
        tokio::time::sleep(CLAIM_TIMEOUT * 4 / 3).await;
        second
            .refresh(&key, || async {
                second_calls.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::GrantRejected("the refresh token was already used".to_owned()))
            })
            .await
    };
    let (first_outcome, second_outcome) = tokio::join!(slow, late);

    assert_eq!(second_calls.load(Ordering::SeqCst), 0, "the second replica never sent the refresh token");
    let first_session = first_outcome.expect("the slow refresh");
    let second_session = second_outcome.expect("the second replica got the first one's result");
    assert_eq!(second_session.refresh_token, first_session.refresh_token);
    assert_eq!(second_session.access_token, refreshed.access_token);
}

/// Alice's request with an expired token, sent and left running while the provider (slowed to 1.5 s) answers its
/// refresh; with the provider's refresh count before it.
async fn a_refresh_under_way(app: &TestApp) -> (tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>, usize) {
    let browser = app.signed_in(ALICE).await;
    age_token(app, &browser, -60);
    app.workos.set_latency(Endpoint::Authenticate, Duration::from_millis(1_500));
    let refreshes_before = app.workos.refresh_calls();
    let url = app.base_url.join("/api/me").expect("url");
    let cookie = browser.cookie_header();
    let request = tokio::spawn(async move { reqwest::Client::new().get(url).header("cookie", cookie).send().await });
    let reached = eventually(Duration::from_secs(5), || async { app.workos.refresh_calls() > refreshes_before }).await;
    assert!(reached, "the refresh reached the provider");
    (request, refreshes_before)
}

/// A replica stopping (SIGTERM, a rolling deploy) while a refresh it started is under way waits for it: the
/// browser that caused it may have given up, but the provider may already have spent the old refresh token, and a
/// result never recorded would leave the claim to a replica that sends the spent token again.
#[tokio::test]
async fn a_stopping_replica_finishes_and_records_the_refresh_under_way() {
    let mut app = lifecycle_app().await;
    let (request, refreshes_before) = a_refresh_under_way(&app).await;
    // The browser gives up while the provider is still answering.
    request.abort();
    app.shutdown().await.expect("a clean stop");
    assert_eq!(app.workos.refresh_calls(), refreshes_before + 1);
    let rows = refresh_rows(&app).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1.as_deref(), Some("refreshed"), "recorded before the replica stopped: {rows:?}");
}

/// The same when the database is out of reach as the provider answers: the stopping replica waits for the result's
/// write, made once the database is back, before it stops (left unwritten, the claim would later be taken over and
/// the spent token sent again).
#[tokio::test]
async fn a_stopping_replica_waits_for_a_result_the_database_could_not_take_at_once() {
    let mut app = lifecycle_app_behind_a_proxy().await;
    let (request, refreshes_before) = a_refresh_under_way(&app).await;
    let proxy = app.db_proxy.take().expect("a proxy");
    proxy.cut();
    request.abort();
    let restore = async {
        // Well after the provider answered and the first write failed.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        proxy.restore();
    };
    let (stopped, ()) = tokio::join!(app.shutdown(), restore);
    stopped.expect("a clean stop");
    assert_eq!(app.workos.refresh_calls(), refreshes_before + 1, "the token was spent once");
    let rows = refresh_rows(&app).await;
    assert_eq!(rows.first().and_then(|row| row.1.as_deref()), Some("refreshed"), "written before it stopped: {rows:?}");
}

/// A stopping replica claims no refresh token, nor waits for another replica's claim: a waiter could take over an
/// abandoned claim and call the provider just as the process ends, spending the token with nobody left to record
/// the result.
#[tokio::test]
async fn a_stopping_replica_neither_claims_nor_waits_for_another_replicas_claim() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let app = lifecycle_app().await;
    let (first, second) =
        (shared_refreshes(&app, Duration::from_secs(10)), shared_refreshes(&app, Duration::from_secs(10)));
    let key = [7u8; 32];
    // The first replica's provider call never ends: its claim stays pending.
    let pending = tokio::spawn(async move { first.refresh(&key, std::future::pending).await });
    let claimed = eventually(Duration::from_secs(5), || async { !refresh_rows(&app).await.is_empty() }).await;
    assert!(claimed, "the first replica claimed the token");

    let calls = AtomicUsize::new(0);
    let waiting = second.refresh(&key, || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(ProviderError::Unavailable { retry_after: Duration::from_secs(1) })
    });
    let stop_soon = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        second.stop_claiming();
    };
    let started = std::time::Instant::now();
    let (outcome, ()) = tokio::join!(waiting, stop_soon);
    assert!(matches!(outcome, Err(ProviderError::Unavailable { .. })), "gave up: {outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "at once, not after the claim timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "never called the provider");
    let after = second.refresh(&[8u8; 32], || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(ProviderError::Unavailable { retry_after: Duration::from_secs(1) })
    });
    assert!(after.await.is_err() && calls.load(Ordering::SeqCst) == 0, "nor claims a token of its own");
    pending.abort();
}

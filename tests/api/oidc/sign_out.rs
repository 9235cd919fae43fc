//! Signing out with an OpenID Connect provider: RP-initiated logout when discovery publishes an
//! `end_session_endpoint` (the main flow, in `sign_in.rs`), Auth0's `/v2/logout` when an Auth0 tenant does not, and
//! only the app's own session when the provider offers neither.

use authbridge::session::SESSION_COOKIE;
use standins::oidc_standin::{Endpoint, OidcStandInOptions};

use super::{param, query};
use crate::helpers::app::ALICE;
use crate::helpers::oidc::{OidcAppOptions, spawn_oidc_app_with};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

#[tokio::test]
async fn an_auth0_tenant_without_end_session_discovery_gets_v2_logout() {
    let options = OidcAppOptions {
        oidc: OidcStandInOptions { end_session_endpoint: false, auth0_logout: true, ..OidcStandInOptions::default() },
        ..OidcAppOptions::default()
    };
    let app = spawn_oidc_app_with(options).await;
    let browser = app.signed_in(ALICE).await;
    let out = browser.submit("/logout", &[]).await;
    assert_eq!(out.status, 302);
    let location = out.location().expect("to the provider");
    assert!(location.starts_with(&format!("{}v2/logout?", app.oidc.issuer())), "{location}");
    let pairs = query(&location);
    assert_eq!(param(&pairs, "client_id").as_deref(), Some(app.oidc.client_id()));
    assert_eq!(param(&pairs, "returnTo").as_deref(), Some(app.base_url.as_str()));
    assert!(browser.cookie(SESSION_COOKIE).is_none());

    let followed = no_redirects().get(&location).send().await.expect("the provider answers");
    assert_eq!(followed.status(), 302);
    assert_eq!(followed.headers().get("location").and_then(|l| l.to_str().ok()), Some(app.base_url.as_str()));
    assert_eq!(app.oidc.calls(Endpoint::Auth0Logout), 1);
    assert_eq!(app.oidc.revocations(), 1, "revoked with client_id in the body beside Basic, as Auth0 requires");
}

/// Okta refuses a revocation that names the client twice (Basic and `client_id` in the body): with Basic, a
/// provider other than Auth0 gets Basic alone.
#[tokio::test]
async fn okta_gets_a_revocation_that_names_the_client_once() {
    let options =
        OidcAppOptions { oidc: OidcStandInOptions { okta_paths: true, ..Default::default() }, ..Default::default() };
    let app = spawn_oidc_app_with(options).await;
    let browser = app.signed_in(ALICE).await;
    assert_eq!(browser.submit("/logout", &[]).await.status, 302);
    assert_eq!(app.oidc.calls(Endpoint::Revoke), 1);
    assert_eq!(app.oidc.revocations(), 1, "the refresh token was revoked");
}

#[tokio::test]
async fn a_provider_with_no_logout_endpoint_ends_only_the_apps_session() {
    let options = OidcAppOptions {
        oidc: OidcStandInOptions { end_session_endpoint: false, ..OidcStandInOptions::default() },
        ..OidcAppOptions::default()
    };
    let app = spawn_oidc_app_with(options).await;
    let browser = app.signed_in(ALICE).await;
    let out = browser.submit("/logout", &[]).await;
    assert_eq!(out.status, 302);
    assert_eq!(out.location().as_deref(), Some("/"), "no /v2/logout guessed for a provider that is not Auth0");
    assert!(browser.cookie(SESSION_COOKIE).is_none());
    assert_eq!(browser.get("/api/me").await.status, 401);
    assert_eq!(app.oidc.calls(Endpoint::Auth0Logout), 0);
}

#[tokio::test]
async fn the_post_logout_address_can_be_configured_and_a_revocation_failure_does_not_stop_sign_out() {
    let options = OidcAppOptions::default().var("OIDC_POST_LOGOUT_REDIRECT_URI", "http://localhost:9/signed-out");
    let app = spawn_oidc_app_with(options).await;
    let browser = app.signed_in(ALICE).await;
    app.oidc.fail_next(Endpoint::Revoke, 1, 503);
    let out = browser.submit("/logout", &[]).await;
    assert_eq!(out.status, 302);
    let pairs = query(&out.location().expect("to the provider"));
    assert_eq!(param(&pairs, "post_logout_redirect_uri").as_deref(), Some("http://localhost:9/signed-out"));
    assert!(browser.cookie(SESSION_COOKIE).is_none(), "signed out all the same");
    assert_eq!(app.oidc.calls(Endpoint::Revoke), 1);
}

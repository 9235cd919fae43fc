//! The organization settings page and the Admin Portal: an admin (per the database) gets the four setups and is
//! sent (303) to a portal link WorkOS made for the organization and intent; a member sees the page without them and
//! is refused (403); the link never reaches a log. The header names the organization and links here.

use standins::workos_standin::{ACME_ORGANIZATION_ID, Endpoint};

use crate::helpers::browser::{Browser, extract_csrf_token};
use crate::helpers::logs;
use crate::helpers::organizations::{ADMIN, AUTHOR, NON_MEMBER, cast_app};

const SETTINGS: &str = "/organizations/org_standin_acme";
const PORTAL: &str = "/organizations/org_standin_acme/portal";

async fn settings_token(browser: &Browser) -> String {
    let page = browser.get(SETTINGS).await;
    assert_eq!(page.status, 200, "{}", page.body);
    extract_csrf_token(&page.body).expect("a CSRF token")
}

#[tokio::test]
async fn an_admin_is_sent_to_the_portal_for_the_organization_and_intent() {
    let app = cast_app().await;
    let alice = app.signed_in(ADMIN).await;
    let home = alice.get("/").await;
    assert!(home.body.contains(r#"id="active-space">Acme</span>"#), "the header names the organization");
    assert!(home.body.contains(r#"href="/organizations/org_standin_acme""#), "and links to its settings");

    let page = alice.get(SETTINGS).await;
    for intent in ["sso", "dsync", "audit_logs", "domain_verification"] {
        assert!(page.body.contains(&format!(r#"id="portal-{intent}""#)), "{intent}: {}", page.body);
    }
    assert!(page.body.contains("Set up SSO") && page.body.contains("Domain verification"));
    let token = settings_token(&alice).await;
    let response = alice.post_form(PORTAL, &[("csrf_token", &token), ("intent", "dsync")]).await;
    assert_eq!(response.status, 303, "{}", response.body);
    let link = response.location().expect("the portal link");
    assert!(link.starts_with(app.workos.base_url().as_str()), "{link}");

    let issued = app.workos.portal_links();
    assert_eq!(issued.len(), 1);
    assert_eq!((issued[0].organization_id.as_str(), issued[0].intent.as_str()), (ACME_ORGANIZATION_ID, "dsync"));
    let back = format!("{}organizations/org_standin_acme", app.base_url);
    assert_eq!(issued[0].return_url.as_deref(), Some(back.as_str()));
    assert_eq!(issued[0].success_url.as_deref(), Some(format!("{back}?setup=done").as_str()));
    let portal = reqwest::get(&link).await.expect("the stand-in's portal page").text().await.expect("html");
    assert!(portal.contains(r#"id="portal-intent">dsync<"#) && portal.contains(r#"id="portal-organization">Acme<"#));
    assert!(!logs::captured().contains(&issued[0].token), "the link is never logged");
}

#[tokio::test]
async fn a_member_sees_the_page_without_the_portal_and_is_refused() {
    let app = cast_app().await;
    let bob = app.signed_in(AUTHOR).await;
    let page = bob.get(SETTINGS).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"id="admins-only""#) && !page.body.contains("portal-sso"), "{}", page.body);
    // The member's page has no portal form; a token from the start page is just as valid for the session.
    let token = bob.csrf_token().await;
    let response = bob.post_form(PORTAL, &[("csrf_token", &token), ("intent", "sso")]).await;
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(app.workos.calls(Endpoint::Portal), 0, "WorkOS was not asked");

    let carol = app.signed_in(NON_MEMBER).await;
    assert_eq!(carol.get(SETTINGS).await.status, 403, "not a member");
}

#[tokio::test]
async fn the_portal_form_needs_csrf_and_a_known_intent() {
    let app = cast_app().await;
    let alice = app.signed_in(ADMIN).await;
    let forged = alice.post_form(PORTAL, &[("intent", "sso")]).await;
    assert_eq!(forged.status, 403);
    let token = settings_token(&alice).await;
    let unknown = alice.post_form(PORTAL, &[("csrf_token", &token), ("intent", "log_streams")]).await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    app.workos.fail_next(Endpoint::Portal, 1, 500);
    let failed = alice.post_form(PORTAL, &[("csrf_token", &token), ("intent", "sso")]).await;
    assert_eq!(failed.status, 503, "WorkOS down: try again, {}", failed.body);
    assert_eq!(app.workos.calls(Endpoint::Portal), 1);
}

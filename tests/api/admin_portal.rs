//! The organization settings page and the Admin Portal: an admin (per the database) gets the four setups and is
//! sent (303) to a portal link WorkOS made for the organization and intent; a member sees the page without them and
//! is refused (403); the link never reaches a log. The header names the organization and links here. The role in
//! the access token decides nothing: a role changed at WorkOS after sign-in counts at once.

use std::time::Duration;

use reqwest::Method;
use standins::workos_standin::{ACME_ORGANIZATION_ID, Endpoint};

use crate::helpers::app::TestApp;
use crate::helpers::browser::{Browser, extract_csrf_token};
use crate::helpers::lifecycle::eventually;
use crate::helpers::logs;
use crate::helpers::organizations::{ADMIN, AUTHOR, MEMBER, NON_MEMBER, cast_app, create, id_of};
use crate::helpers::session::read_session;

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
    assert!(home.body.contains(r#"id="active-space"><bdi>Acme</bdi></span>"#), "the header names the organization");
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

    // Back from the portal by its success URL: the page says the setup is done (and only then).
    const DONE: &str = "Setup finished in the Admin Portal.";
    assert!(!page.body.contains(DONE), "{}", page.body);
    let returned = alice.get(&format!("{SETTINGS}?setup=done")).await;
    assert!(returned.body.contains(DONE), "{}", returned.body);
}

/// A portal on the customer's own domain (WorkOS's *Custom domains*): the Content-Security-Policy cannot name it, and
/// browsers apply its `form-action` to the redirect after the form post, so the admin gets a page with the link.
#[tokio::test]
async fn a_portal_on_a_custom_domain_is_offered_as_a_link_not_a_blocked_redirect() {
    let app = cast_app().await;
    app.workos.set_portal_domain(Some(url::Url::parse("https://portal.acme.example/").expect("a URL")));
    let alice = app.signed_in(ADMIN).await;
    let token = settings_token(&alice).await;
    let response = alice.post_form(PORTAL, &[("csrf_token", &token), ("intent", "sso")]).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let issued = app.workos.portal_links();
    let link = format!("https://portal.acme.example/portal/{}", issued[0].token);
    assert!(response.body.contains(&format!(r#"href="{link}""#)), "{}", response.body);
    let policy = response.header("content-security-policy").expect("a policy");
    assert!(!policy.contains("portal.acme.example"), "the domain is not one the policy names: {policy}");
    assert!(
        response.header("cache-control").is_some_and(|value| value.contains("no-store")),
        "the link is a credential"
    );
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

/// The `role` claim of the browser's access token.
fn token_role(browser: &Browser) -> String {
    let token = read_session(browser).access_token;
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(&token).expect("claims");
    claims["role"].as_str().expect("a role claim").to_owned()
}

/// Changes `email`'s Acme roles at WorkOS after they signed in (their access token keeps the old role until it is
/// refreshed) and waits until the database has the new roles from the webhook. Returns the membership's id.
async fn change_roles_at_workos(app: &TestApp, email: &str, roles: &[&str]) -> String {
    let membership = app.workos.membership_of(&app.user_id(email), ACME_ORGANIZATION_ID).expect("an Acme member");
    app.workos.set_membership_roles(&membership.id, roles).expect("roles set");
    let recorded = eventually(Duration::from_secs(10), || async {
        let stored: Vec<String> =
            sqlx::query_scalar("SELECT role_slugs FROM authbridge.organization_memberships WHERE id = $1")
                .bind(&membership.id)
                .fetch_optional(&mut app.db.connect().await)
                .await
                .expect("the membership")
                .unwrap_or_default();
        stored == roles
    })
    .await;
    assert!(recorded, "the organization_membership.updated webhook reached the database");
    membership.id
}

/// Who may open the portal and delete others' organization todos is what the database says, not the role the
/// access token was issued with: a member promoted after signing in is an admin at once, and an admin demoted
/// after signing in is one no longer, though each token still says otherwise.
#[tokio::test]
async fn admin_rights_follow_the_database_not_the_role_in_the_token() {
    let app = cast_app().await;
    let bob = app.signed_in(AUTHOR).await;
    let erin = app.signed_in(MEMBER).await;
    let alice = app.signed_in(ADMIN).await;
    assert_eq!((token_role(&erin).as_str(), token_role(&alice).as_str()), ("member", "admin"));
    let for_erin = id_of(&create(&bob, "Erin may delete this", Some(ACME_ORGANIZATION_ID)).await);
    let for_alice = id_of(&create(&bob, "Alice may not delete this", Some(ACME_ORGANIZATION_ID)).await);

    change_roles_at_workos(&app, MEMBER, &["admin"]).await;
    change_roles_at_workos(&app, ADMIN, &["member"]).await;

    // The database says admin, the token member.
    let page = erin.get(SETTINGS).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="portal-sso""#) && !page.body.contains(r#"id="admins-only""#), "{}", page.body);
    assert!(page.body.contains(r#"id="organization-role">admin<"#), "{}", page.body);
    let token = settings_token(&erin).await;
    let opened = erin.post_form(PORTAL, &[("csrf_token", &token), ("intent", "sso")]).await;
    assert_eq!(opened.status, 303, "{}", opened.body);
    assert_eq!(erin.api(Method::DELETE, &format!("/api/todos/{for_erin}"), None).await.status, 204);

    // The database says member, the token admin.
    let page = alice.get(SETTINGS).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="admins-only""#) && !page.body.contains("portal-sso"), "{}", page.body);
    let token = alice.csrf_token().await;
    let refused = alice.post_form(PORTAL, &[("csrf_token", &token), ("intent", "sso")]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let delete = alice.api(Method::DELETE, &format!("/api/todos/{for_alice}"), None).await;
    assert_eq!(delete.status, 403, "{}", delete.body);

    assert_eq!(app.workos.portal_links().len(), 1, "only Erin's link was made");
    let left: Vec<String> = app.all_todos().await.into_iter().map(|(_, title)| title).collect();
    assert_eq!(left, ["Alice may not delete this"]);
    // The tokens were not refreshed meanwhile: each still names the role it was issued with.
    assert_eq!((token_role(&erin).as_str(), token_role(&alice).as_str()), ("member", "admin"));
}

/// With several roles, `admin` among them makes an admin whichever role is the primary one: the app's rule (the
/// portal) and the database's (deleting another member's todo) are the same.
#[tokio::test]
async fn admin_beside_another_primary_role_is_an_admin_for_the_app_and_the_database() {
    let app = cast_app().await;
    let bob = app.signed_in(AUTHOR).await;
    let erin = app.signed_in(MEMBER).await;
    let bobs = id_of(&create(&bob, "Erin may delete this", Some(ACME_ORGANIZATION_ID)).await);
    let membership = change_roles_at_workos(&app, MEMBER, &["member", "admin"]).await;
    assert_eq!(app.membership_row(&membership).await.and_then(|row| row.1).as_deref(), Some("member"), "primary");

    let page = erin.get(SETTINGS).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="portal-sso""#) && !page.body.contains(r#"id="admins-only""#), "{}", page.body);
    assert_eq!(erin.api(Method::DELETE, &format!("/api/todos/{bobs}"), None).await.status, 204);
}

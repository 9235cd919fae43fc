//! A cast for the organization tests: one organization (Acme) with an author, a member, an admin and a member who
//! will be removed; a user in no organization; a member of another organization (Globex). Each signs in through the
//! WorkOS stand-in, which is how the app's database learns their memberships (and webhooks tell it about changes).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use standins::workos_standin::{
    ACME_ORGANIZATION_ID, GLOBEX_ORGANIZATION_ID, SeedMembership, SeedOrganization, SeedUser, WorkosStandInOptions,
};

use super::app::{AppOptions, TestApp, spawn_app_with};
use super::browser::{Browser, TestResponse};
use super::lifecycle::eventually;

pub const AUTHOR: &str = "bob@acme.test";
pub const MEMBER: &str = "erin@acme.test";
pub const ADMIN: &str = "alice@acme.test";
pub const REMOVED: &str = "frank@acme.test";
pub const NON_MEMBER: &str = "carol@example.test";
pub const OTHER_ORG: &str = "dana@globex.test";

fn user(id: &str, email: &str, first: &str, organization: Option<&str>) -> SeedUser {
    SeedUser {
        id: id.to_owned(),
        email: email.to_owned(),
        first_name: Some(first.to_owned()),
        last_name: None,
        organization_id: organization.map(str::to_owned),
    }
}

/// The stand-in seeded with the cast (Alice an admin of Acme).
pub fn cast() -> WorkosStandInOptions {
    WorkosStandInOptions {
        users: vec![
            user("user_standin_alice", ADMIN, "Alice", Some(ACME_ORGANIZATION_ID)),
            user("user_standin_bob", AUTHOR, "Bob", Some(ACME_ORGANIZATION_ID)),
            user("user_standin_erin", MEMBER, "Erin", Some(ACME_ORGANIZATION_ID)),
            user("user_standin_frank", REMOVED, "Frank", Some(ACME_ORGANIZATION_ID)),
            user("user_standin_carol", NON_MEMBER, "Carol", None),
            user("user_standin_dana", OTHER_ORG, "Dana", Some(GLOBEX_ORGANIZATION_ID)),
        ],
        organizations: vec![
            SeedOrganization { id: ACME_ORGANIZATION_ID.to_owned(), name: "Acme".to_owned() },
            SeedOrganization { id: GLOBEX_ORGANIZATION_ID.to_owned(), name: "Globex".to_owned() },
        ],
        memberships: vec![SeedMembership {
            user_id: "user_standin_alice".to_owned(),
            organization_id: ACME_ORGANIZATION_ID.to_owned(),
            roles: vec!["admin".to_owned()],
        }],
        ..WorkosStandInOptions::default()
    }
}

/// An app with the lifecycle on (webhooks from the stand-in) and the cast seeded.
pub async fn cast_app() -> TestApp {
    spawn_app_with(AppOptions { workos: cast(), ..AppOptions::default() }.lifecycle()).await
}

/// Removes `email`'s Acme membership at WorkOS and waits until the app's database has heard of it.
pub async fn remove_from_acme(app: &TestApp, email: &str) {
    let user_id = app.user_id(email);
    let membership = app.workos.membership_of(&user_id, ACME_ORGANIZATION_ID).expect("an Acme member");
    app.workos.delete_membership(&membership.id).expect("removed");
    let gone = eventually(Duration::from_secs(10), || async {
        app.membership_row(&membership.id).await.is_some_and(|(_, _, deleted)| deleted)
    })
    .await;
    assert!(gone, "the membership.deleted webhook reached the app");
}

/// `POST /api/todos` from a browser session.
pub async fn create(browser: &Browser, title: &str, organization_id: Option<&str>) -> TestResponse {
    let body = match organization_id {
        Some(id) => json!({ "title": title, "organization_id": id }),
        None => json!({ "title": title, "organization_id": null }),
    };
    browser.api(Method::POST, "/api/todos", Some(body)).await
}

/// `POST /api/organizations/switch` to `organization_id`, which must succeed.
pub async fn switch_to(browser: &Browser, organization_id: &str) {
    let body = json!({ "organization_id": organization_id });
    let switched = browser.api(Method::POST, "/api/organizations/switch", Some(body)).await;
    assert_eq!(switched.status, 200, "{}", switched.body);
}

/// The titles `GET /api/todos?organization_id=…` lists, or the status when it is refused.
pub async fn titles(browser: &Browser, organization_id: &str) -> Result<Vec<String>, u16> {
    let response = browser.get(&format!("/api/todos?organization_id={organization_id}")).await;
    if response.status != 200 {
        return Err(response.status);
    }
    Ok(response.json()["todos"]
        .as_array()
        .expect("todos")
        .iter()
        .map(|todo| todo["title"].as_str().unwrap_or_default().to_owned())
        .collect())
}

pub fn id_of(response: &TestResponse) -> String {
    assert_eq!(response.status, 201, "created: {}", response.body);
    response.json()["id"].as_str().expect("an id").to_owned()
}

pub fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    &value[name]
}

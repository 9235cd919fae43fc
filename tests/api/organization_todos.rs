//! Organization todos under row-level security: every command (list, read, create, rename/complete, delete) for
//! the author, another member, an admin, a removed member, a non-member and a member of another organization;
//! through the app (which answers 403 for a space the user is not a member of, 404 for a todo RLS hides, 403 for
//! a visible todo they may not delete) and straight in SQL as `authenticated` with each user's claims (so the
//! database decides even if the app had a bug). Personal todos stay their author's only.

use reqwest::Method;
use serde_json::json;
use sqlx::Connection;
use standins::workos_standin::{ACME_ORGANIZATION_ID, GLOBEX_ORGANIZATION_ID};

use crate::helpers::app::TestApp;
use crate::helpers::lifecycle::{SqlAccess, delivered, event, membership, ts};
use crate::helpers::organizations::{
    ADMIN, AUTHOR, MEMBER, NON_MEMBER, OTHER_ORG, REMOVED, cast_app, create, id_of, remove_from_acme, switch_to, titles,
};

const ACME: &str = ACME_ORGANIZATION_ID;

#[tokio::test]
async fn every_command_for_every_kind_of_user_through_the_app() {
    let app = cast_app().await;
    let author = app.signed_in(AUTHOR).await;
    let member = app.signed_in(MEMBER).await;
    let admin = app.signed_in(ADMIN).await;
    let removed = app.signed_in(REMOVED).await;
    let non_member = app.signed_in(NON_MEMBER).await;
    let other_org = app.signed_in(OTHER_ORG).await;

    let shared = id_of(&create(&author, "Shared plan", Some(ACME)).await);
    let to_delete_by_admin = id_of(&create(&author, "Admin removes this", Some(ACME)).await);
    let private = id_of(&create(&author, "Bob's own", None).await);
    remove_from_acme(&app, REMOVED).await;

    // select: the organization's list and the todo itself.
    for browser in [&author, &member, &admin] {
        let listed = titles(browser, ACME).await.expect("a member lists Acme");
        assert!(listed.contains(&"Shared plan".to_owned()), "{listed:?}");
        assert!(!listed.contains(&"Bob's own".to_owned()), "personal todos are not in the organization's list");
        let shown = browser.get(&format!("/api/todos/{shared}")).await;
        assert_eq!(shown.status, 200, "{}", shown.body);
        assert_eq!(shown.json()["user_id"], app.user_id(AUTHOR), "the author is kept");
        assert_eq!(shown.json()["organization_id"], ACME);
    }
    for browser in [&removed, &non_member, &other_org] {
        assert_eq!(titles(browser, ACME).await, Err(403), "listing a space one is not a member of");
        let response = browser.get(&format!("/api/todos?organization_id={ACME}")).await;
        assert_eq!(response.error_code(), "not_a_member");
        assert_eq!(browser.get(&format!("/api/todos/{shared}")).await.status, 404, "hidden by RLS");
    }
    // Personal todos: as before, the author's only.
    assert_eq!(author.get(&format!("/api/todos/{private}")).await.status, 200);
    for browser in [&member, &admin, &non_member, &other_org] {
        assert_eq!(browser.get(&format!("/api/todos/{private}")).await.status, 404);
    }

    // insert: members only; refused before anything is written.
    let before = app.all_todos().await.len();
    for browser in [&author, &member, &admin] {
        assert_eq!(create(browser, "Another", Some(ACME)).await.status, 201);
    }
    for browser in [&removed, &non_member, &other_org] {
        let refused = create(browser, "Sneaked in", Some(ACME)).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    assert_eq!(app.all_todos().await.len(), before + 3, "only the members' todos were written");
    assert!(!app.all_todos().await.iter().any(|(_, title)| title == "Sneaked in"));

    // update: title and completion, by any active member.
    let rename = |title: &'static str| json!({ "title": title });
    for (browser, title) in [(&author, "By Bob"), (&member, "By Erin"), (&admin, "By Alice")] {
        let response = browser.api(Method::PATCH, &format!("/api/todos/{shared}"), Some(rename(title))).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.json()["title"], title);
        assert_eq!(response.json()["user_id"], app.user_id(AUTHOR), "editing keeps the author");
    }
    for browser in [&removed, &non_member, &other_org] {
        let response = browser.api(Method::PATCH, &format!("/api/todos/{shared}"), Some(rename("Taken"))).await;
        assert_eq!(response.status, 404, "{}", response.body);
    }
    // Completion, for every kind of user: each active member toggles it (the admin leaves it done); the others
    // do not see the todo, so their attempt is a 404 and changes nothing.
    let complete = |done: bool| json!({ "is_complete": done });
    for (browser, done) in [(&author, true), (&member, false), (&admin, true)] {
        let response = browser.api(Method::PATCH, &format!("/api/todos/{shared}"), Some(complete(done))).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.json()["is_complete"], done);
        assert_eq!(response.json()["user_id"], app.user_id(AUTHOR), "completing keeps the author");
    }
    for browser in [&removed, &non_member, &other_org] {
        let response = browser.api(Method::PATCH, &format!("/api/todos/{shared}"), Some(complete(false))).await;
        assert_eq!(response.status, 404, "{}", response.body);
    }
    assert_eq!(todo_row(&app, &shared).await, Some(("By Alice".to_owned(), true)), "as the admin left it");

    // delete: the author or an admin; a member sees it but may not (403); others do not see it (404).
    let refused = member.api(Method::DELETE, &format!("/api/todos/{shared}"), None).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.error_code(), "forbidden");
    for browser in [&removed, &non_member, &other_org] {
        assert_eq!(browser.api(Method::DELETE, &format!("/api/todos/{shared}"), None).await.status, 404);
    }
    assert_eq!(admin.api(Method::DELETE, &format!("/api/todos/{to_delete_by_admin}"), None).await.status, 204);
    assert_eq!(author.api(Method::DELETE, &format!("/api/todos/{shared}"), None).await.status, 204);
    let left: Vec<String> = app.all_todos().await.into_iter().map(|(_, title)| title).collect();
    assert!(!left.contains(&"By Alice".to_owned()) && !left.contains(&"Admin removes this".to_owned()), "{left:?}");
}

/// The organization's page names each todo's author: "you", or another member by the email the database has for
/// them (from their sign-in or WorkOS's events).
#[tokio::test]
async fn the_organization_page_names_each_todos_author() {
    let (_app, member) = a_member_looking_at_bobs_acme_todo().await;
    assert_eq!(create(&member, "Part from Erin", Some(ACME)).await.status, 201);
    let page = member.get("/").await;
    assert_eq!(page.status, 200);
    // Each title and name in a <bdi>: direction controls in one (U+202E) cannot reorder the text around it.
    for (title, author) in [("Part from Bob", "by <bdi>bob@acme.test</bdi>"), ("Part from Erin", "by <bdi>you</bdi>")] {
        assert!(page.body.contains(&format!(r#"<bdi class="title">{title}</bdi>"#)), "{}", page.body);
        assert!(list_item(&page.body, title).contains(author), "{title} {author}: {}", page.body);
    }
}

/// The cast's app, where Bob (the author) has written "Part from Bob" in Acme, and Erin (a member) signed in with
/// Acme as her space.
async fn a_member_looking_at_bobs_acme_todo() -> (TestApp, crate::helpers::browser::Browser) {
    let app = cast_app().await;
    let author = app.signed_in(AUTHOR).await;
    let member = app.signed_in(MEMBER).await;
    assert_eq!(create(&author, "Part from Bob", Some(ACME)).await.status, 201);
    switch_to(&member, ACME).await;
    (app, member)
}

/// The page's list item of the todo titled `title`: from the title to the end of its `<li>` (empty when absent).
fn list_item<'a>(page: &'a str, title: &str) -> &'a str {
    let shown = page.find(title).map(|at| &page[at..]).unwrap_or_default();
    &shown[..shown.find("</li>").unwrap_or(shown.len())]
}

/// A user WorkOS deleted is forgotten down to their id: the other members no longer see their address beside the
/// todos they wrote (they are "another member"), the database keeps no address of theirs, current or past, and a
/// token of theirs still in flight does not write one back.
#[tokio::test]
async fn a_deleted_author_is_no_longer_named_and_their_addresses_are_forgotten() {
    let (app, member) = a_member_looking_at_bobs_acme_todo().await;
    assert!(member.get("/").await.body.contains("by <bdi>bob@acme.test</bdi>"), "named while he exists");
    let bob = app.user_id(AUTHOR);
    assert!(!addresses_of(&app, &bob).await.is_empty(), "known before");

    app.workos.delete_user(&bob).expect("deleted");
    let forgotten = crate::helpers::lifecycle::eventually(std::time::Duration::from_secs(10), || async {
        !member.get("/").await.body.contains("bob@acme.test")
    })
    .await;
    assert!(forgotten, "no longer named");
    let page = member.get("/").await.body;
    assert!(list_item(&page, "Part from Bob").contains("by <bdi>another member</bdi>"), "{page}");
    assert_eq!(addresses_of(&app, &bob).await, Vec::<String>::new(), "no address kept");

    // A token of his still in flight, carrying an address: refused, and nothing written back.
    app.workos.set_extra_claims(json!({ "email": "bob@new.test" }).as_object().cloned().expect("object"));
    let token = app.workos.mint_access_token(&bob, std::time::Duration::from_secs(300));
    let refused = app.bearer_client(token).get("/api/me").await;
    assert!(matches!(refused.status, 401 | 403), "{} {}", refused.status, refused.body);
    assert_eq!(addresses_of(&app, &bob).await, Vec::<String>::new(), "still none");
}

/// Every address the database keeps for user `id`: the current one and its history.
async fn addresses_of(app: &TestApp, id: &str) -> Vec<String> {
    let mut conn = app.db.connect().await;
    sqlx::query_scalar(
        "SELECT email FROM authbridge.users WHERE id = $1 AND email IS NOT NULL \
         UNION ALL SELECT email FROM authbridge.user_email_history WHERE user_id = $1",
    )
    .bind(id)
    .fetch_all(&mut conn)
    .await
    .expect("the user's addresses")
}

/// The organization's page offers a Delete button only where the delete policy allows it: on a member's own todos,
/// and on every todo for an admin. (The database still decides: a member's hand-made delete is refused, 403.)
#[tokio::test]
async fn the_organization_page_offers_delete_only_where_the_policy_allows() {
    let app = cast_app().await;
    let author = app.signed_in(AUTHOR).await;
    let member = app.signed_in(MEMBER).await;
    let admin = app.signed_in(ADMIN).await;
    let bobs = id_of(&create(&author, "Part from Bob", Some(ACME)).await);
    let erins = id_of(&create(&member, "Part from Erin", Some(ACME)).await);
    let offered = |page: &str, id: &str| page.contains(&format!(r#"action="/todos/{id}/delete""#));
    for browser in [&member, &admin] {
        switch_to(browser, ACME).await;
    }
    let page = member.get("/").await.body;
    assert!(page.contains("Part from Bob") && page.contains("Part from Erin"), "{page}");
    assert!(offered(&page, &erins) && !offered(&page, &bobs), "a member deletes only their own: {page}");
    let page = admin.get("/").await.body;
    assert!(offered(&page, &erins) && offered(&page, &bobs), "an admin deletes any: {page}");
}

#[tokio::test]
async fn a_member_removed_while_signed_in_sees_no_organization_todos_on_the_next_request() {
    let app = cast_app().await;
    let author = app.signed_in(AUTHOR).await;
    let removed = app.signed_in(REMOVED).await;
    create(&author, "Quarterly report", Some(ACME)).await;
    // Frank's session is in Acme (his token names it): the default list is Acme's.
    let before = removed.get("/api/todos").await;
    assert_eq!(before.json()["organization_id"], ACME);
    assert_eq!(before.json()["todos"][0]["title"], "Quarterly report");
    let page = removed.get("/").await;
    assert!(
        page.body.contains("Quarterly report") && page.body.contains("by <bdi>bob@acme.test</bdi>"),
        "{}",
        page.body
    );

    remove_from_acme(&app, REMOVED).await;

    // The very next requests: the token still names Acme, the database says no.
    let listed = removed.get("/api/todos").await;
    assert_eq!(listed.status, 403, "{}", listed.body);
    assert_eq!(titles(&removed, ACME).await, Err(403));
    let page = removed.get("/").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("Quarterly report"), "{}", page.body);
    assert!(page.body.contains("no longer a member"), "the page says why: {}", page.body);
    assert_eq!(removed.get("/api/me").await.json()["organization"], serde_json::Value::Null);
}

#[tokio::test]
async fn the_active_space_is_the_default_and_personal_or_null_means_personal() {
    let app = cast_app().await;
    let author = app.signed_in(AUTHOR).await;
    let in_acme = author.api(Method::POST, "/api/todos", Some(json!({ "title": "Default space" }))).await;
    assert_eq!(in_acme.json()["organization_id"], ACME, "omitted: the active organization");
    let personal =
        author.api(Method::POST, "/api/todos", Some(json!({ "title": "Mine", "organization_id": "personal" }))).await;
    assert_eq!(personal.json()["organization_id"], serde_json::Value::Null);
    let listed = author.get("/api/todos?organization_id=personal").await.json();
    assert_eq!(listed["organization_id"], serde_json::Value::Null);
    assert_eq!(listed["todos"].as_array().map(Vec::len), Some(1));
    let bad = author.api(Method::POST, "/api/todos", Some(json!({ "title": "x", "organization_id": 7 }))).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let empty = author.api(Method::POST, "/api/todos", Some(json!({ "title": "x", "organization_id": " " }))).await;
    assert_eq!(empty.status, 422, "{}", empty.body);
}

#[tokio::test]
async fn without_a_database_everything_is_personal_and_organizations_are_refused_clearly() {
    let app = crate::helpers::app::spawn_app().await;
    let bob = app.signed_in(AUTHOR).await;
    let created = bob.api(Method::POST, "/api/todos", Some(json!({ "title": "Personal" }))).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["organization_id"], serde_json::Value::Null, "the token's organization is ignored");
    let refused = create(&bob, "Org", Some(ACME)).await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(refused.error_code(), "organizations_unavailable");
    let switch = bob.api(Method::POST, "/api/organizations/switch", Some(json!({ "organization_id": ACME }))).await;
    assert_eq!(switch.error_code(), "organizations_unavailable");
    assert_eq!(bob.get("/api/me").await.json()["organization"], serde_json::Value::Null);
    // A switch to where everything already is (the README says so) is no error.
    let personal = bob.api(Method::POST, "/api/organizations/switch", Some(json!({ "organization_id": "personal" })));
    assert_eq!(personal.await.status, 200);
}

/// What `user_id` may do to `todo` (an Acme todo) in SQL, as InsForge would run it.
#[derive(Debug, PartialEq, Eq)]
struct Commands {
    sees: bool,
    inserts_in_acme: bool,
    renames: bool,
    /// Flips `is_complete` (the other column `authenticated` may update).
    completes: bool,
    deletes: bool,
    /// Re-pointing the author or the organization: refused (column privileges) for everyone.
    moves: bool,
}

async fn in_sql(app: &TestApp, user_id: &str, todo: &str) -> Commands {
    let mut conn = app.db.connect().await;
    let claims = json!({ "sub": user_id, "role": "authenticated" }).to_string();
    // Each command in its own transaction, rolled back: one refusal must not hide the next command's answer.
    async fn run(conn: &mut sqlx::PgConnection, claims: &str, sql: &str, todo: &str) -> Result<u64, String> {
        let mut tx = conn.begin().await.expect("transaction");
        sqlx::query("SET LOCAL ROLE authenticated").execute(&mut *tx).await.expect("role");
        sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
            .bind(claims)
            .execute(&mut *tx)
            .await
            .expect("claims");
        let outcome = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(todo)
            .execute(&mut *tx)
            .await
            .map(|done| done.rows_affected())
            .map_err(|error| error.as_database_error().and_then(|e| e.code()).unwrap_or_default().into_owned());
        tx.rollback().await.expect("rollback");
        outcome
    }
    let sees = run(&mut conn, &claims, "SELECT 1 FROM public.todos WHERE id = $1::uuid", todo).await == Ok(1);
    let inserts = run(
        &mut conn,
        &claims,
        &format!(
            "INSERT INTO public.todos (title, organization_id) SELECT 'in SQL', '{ACME}' WHERE $1::text IS NOT NULL"
        ),
        todo,
    )
    .await;
    let renames = run(&mut conn, &claims, "UPDATE public.todos SET title = 'renamed in SQL' WHERE id = $1::uuid", todo)
        .await
        == Ok(1);
    let completes =
        run(&mut conn, &claims, "UPDATE public.todos SET is_complete = NOT is_complete WHERE id = $1::uuid", todo)
            .await
            == Ok(1);
    let deletes = run(&mut conn, &claims, "DELETE FROM public.todos WHERE id = $1::uuid", todo).await == Ok(1);
    let moves_author =
        run(&mut conn, &claims, &format!("UPDATE public.todos SET user_id = '{user_id}' WHERE id = $1::uuid"), todo)
            .await;
    let moves_space =
        run(&mut conn, &claims, "UPDATE public.todos SET organization_id = NULL WHERE id = $1::uuid", todo).await;
    for moved in [&moves_author, &moves_space] {
        assert!(matches!(moved, Err(code) if code == "42501"), "{user_id}: {moved:?}");
    }
    Commands {
        sees,
        inserts_in_acme: inserts == Ok(1),
        renames,
        completes,
        deletes,
        moves: moves_author.is_ok() || moves_space.is_ok(),
    }
}

#[tokio::test]
async fn every_command_for_every_kind_of_user_straight_in_sql() {
    let app = cast_app().await;
    // Signing in records each membership in the database, as in production.
    let author = app.signed_in(AUTHOR).await;
    for email in [MEMBER, ADMIN, REMOVED, NON_MEMBER, OTHER_ORG] {
        app.signed_in(email).await;
    }
    let todo = id_of(&create(&author, "Shared in SQL", Some(ACME)).await);
    remove_from_acme(&app, REMOVED).await;

    let expect = |sees, inserts_in_acme, renames, completes, deletes| Commands {
        sees,
        inserts_in_acme,
        renames,
        completes,
        deletes,
        moves: false,
    };
    for (email, expected) in [
        (AUTHOR, expect(true, true, true, true, true)),
        (MEMBER, expect(true, true, true, true, false)),
        (ADMIN, expect(true, true, true, true, true)),
        (REMOVED, expect(false, false, false, false, false)),
        (NON_MEMBER, expect(false, false, false, false, false)),
        (OTHER_ORG, expect(false, false, false, false, false)),
    ] {
        assert_eq!(in_sql(&app, &app.user_id(email), &todo).await, expected, "{email}");
    }
    // A Globex member can use Globex, not Acme: the rule is per organization.
    let dana = app.user_id(OTHER_ORG);
    let mut conn = app.db.connect().await;
    let mut tx = conn.begin().await.expect("tx");
    sqlx::query("SET LOCAL ROLE authenticated").execute(&mut *tx).await.expect("role");
    sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
        .bind(json!({ "sub": dana, "role": "authenticated" }).to_string())
        .execute(&mut *tx)
        .await
        .expect("claims");
    sqlx::query("INSERT INTO public.todos (title, organization_id) VALUES ('Globex plan', $1)")
        .bind(GLOBEX_ORGANIZATION_ID)
        .execute(&mut *tx)
        .await
        .expect("a Globex member writes in Globex");
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn a_deleted_user_loses_organization_todos_in_sql_too() {
    let app = cast_app().await;
    let author = app.signed_in(AUTHOR).await;
    app.signed_in(MEMBER).await;
    let todo = id_of(&create(&author, "Before the deletion", Some(ACME)).await);
    let erin = app.user_id(MEMBER);
    assert!(in_sql(&app, &erin, &todo).await.sees);
    app.workos.delete_user(&erin).expect("deleted");
    let gone = crate::helpers::lifecycle::eventually(std::time::Duration::from_secs(10), || async {
        !in_sql(&app, &erin, &todo).await.sees
    })
    .await;
    assert!(gone, "a deleted member sees nothing");
    assert_eq!(in_sql(&app, &erin, &todo).await, NOTHING);
}

/// What a user who is not (or no longer) an active member may do to an organization todo in SQL.
const NOTHING: Commands =
    Commands { sees: false, inserts_in_acme: false, renames: false, completes: false, deletes: false, moves: false };

/// A todo as stored (title, completion), read as the database owner, bypassing RLS: the ground truth.
async fn todo_row(app: &TestApp, id: &str) -> Option<(String, bool)> {
    let mut conn = app.db.connect().await;
    sqlx::query_as("SELECT title, is_complete FROM public.todos WHERE id = $1::uuid")
        .bind(id)
        .fetch_optional(&mut conn)
        .await
        .expect("the todo's row")
}

/// Frank (whose session is in Acme, holding a personal todo) while the database still counts him a member of
/// Acme: he sees `todo` in the app and in SQL. Checked before taking access away, so that "refused" afterwards is
/// the deactivation's doing and not a set-up that never let him in.
async fn frank_sees_the_acme_todo(app: &TestApp, frank: &crate::helpers::browser::Browser, todo: &str) {
    assert_eq!(titles(frank, ACME).await, Ok(vec!["Team plan".to_owned()]));
    assert_eq!(frank.get(&format!("/api/todos/{todo}")).await.status, 200);
    assert!(in_sql(app, &app.user_id(REMOVED), todo).await.sees, "the database counts Frank a member");
}

/// Frank, no longer an active member of Acme per the database (his token still names Acme), on his very next
/// requests: no Acme todos listed or shown, none created, the todo neither renamed, completed nor deleted, through
/// the app and straight in SQL as `authenticated`. His personal todo is still his: only the organization is gone.
async fn frank_has_lost_acme(app: &TestApp, frank: &crate::helpers::browser::Browser, todo: &str) {
    let frank_id = app.user_id(REMOVED);
    let before = app.all_todos().await;

    let listed = frank.get("/api/todos").await;
    assert_eq!(listed.status, 403, "the session's organization: {}", listed.body);
    assert_eq!(listed.error_code(), "not_a_member");
    assert_eq!(titles(frank, ACME).await, Err(403));
    let page = frank.get("/").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("Team plan") && page.body.contains("no longer a member"), "{}", page.body);
    assert_eq!(frank.get(&format!("/api/todos/{todo}")).await.status, 404, "hidden by RLS");
    let created = create(frank, "After losing access", Some(ACME)).await;
    assert_eq!(created.status, 403, "{}", created.body);
    for change in [json!({ "title": "Taken over" }), json!({ "is_complete": true })] {
        let response = frank.api(Method::PATCH, &format!("/api/todos/{todo}"), Some(change)).await;
        assert_eq!(response.status, 404, "{}", response.body);
    }
    assert_eq!(frank.api(Method::DELETE, &format!("/api/todos/{todo}"), None).await.status, 404);
    assert_eq!(app.all_todos().await, before, "nothing written or deleted");
    assert_eq!(todo_row(app, todo).await, Some(("Team plan".to_owned(), false)), "nothing changed");
    assert_eq!(titles(frank, "personal").await, Ok(vec!["Frank's own".to_owned()]), "personal todos stay");

    // PostgreSQL decides the same without the app: not the Acme todo, only his personal one.
    assert_eq!(in_sql(app, &frank_id, todo).await, NOTHING);
    let access = app.as_authenticated(&frank_id).await;
    assert_eq!(access, SqlAccess { visible: 1, updated: 1, deleted: 1, inserted: Ok(()) }, "his personal todo only");
}

#[tokio::test]
async fn a_member_deactivated_while_signed_in_loses_organization_todos_on_the_next_request() {
    let app = cast_app().await;
    let author = app.signed_in(AUTHOR).await;
    let frank = app.signed_in(REMOVED).await;
    let todo = id_of(&create(&author, "Team plan", Some(ACME)).await);
    id_of(&create(&frank, "Frank's own", None).await);
    frank_sees_the_acme_todo(&app, &frank, &todo).await;

    // `organization_membership.updated` with status `inactive` (as a directory or an admin deactivating him
    // sends it), newer than what the database has; the membership is not deleted.
    let frank_id = app.user_id(REMOVED);
    let acme = app.workos.membership_of(&frank_id, ACME).expect("Frank's membership");
    let now = time::OffsetDateTime::now_utc();
    let mut inactive = membership(&acme.id, &frank_id, ACME, "inactive", "member", 0);
    inactive["updated_at"] = json!(ts(now));
    app.deliver_ok(&event("organization_membership.updated", inactive, now)).await;
    assert_eq!(app.membership_row(&acme.id).await, Some(("inactive".to_owned(), Some("member".to_owned()), false)));

    frank_has_lost_acme(&app, &frank, &todo).await;
}

#[tokio::test]
async fn a_member_deprovisioned_by_the_directory_loses_organization_todos_on_the_next_request() {
    let app = cast_app().await;
    // Directory Sync without WorkOS's directory provisioning: the membership stays active at WorkOS too, and Frank
    // keeps his session, so only the directory-user condition can take Acme away.
    app.workos.set_directory_provisioning(false);
    let directory_user = app.workos.provision_directory_user(ACME, REMOVED).expect("provisioned");
    delivered(&app, "dsync.user.created").await;
    let author = app.signed_in(AUTHOR).await;
    let frank = app.signed_in(REMOVED).await;
    let todo = id_of(&create(&author, "Team plan", Some(ACME)).await);
    id_of(&create(&frank, "Frank's own", None).await);
    frank_sees_the_acme_todo(&app, &frank, &todo).await;

    // Soft deprovisioning: the directory user becomes `inactive`, and nothing else. The membership itself stays
    // active in the database: the directory-user condition alone must take Acme away.
    app.workos.set_directory_user_state(&directory_user.id, "inactive").expect("deprovisioned");
    delivered(&app, "dsync.user.updated").await;
    let acme = app.workos.membership_of(&app.user_id(REMOVED), ACME).expect("Frank's membership");
    assert_eq!(
        app.membership_row(&acme.id).await.map(|(status, _, deleted)| (status, deleted)),
        Some(("active".to_owned(), false))
    );

    frank_has_lost_acme(&app, &frank, &todo).await;
}

/// A membership that ends between the app's check and the insert: PostgreSQL's insert policy refuses the row, and
/// the user hears `not_a_member` (not an upstream failure), with nothing written.
#[tokio::test]
async fn a_membership_ended_during_the_insert_is_refused_by_the_database_as_not_a_member() {
    let app = cast_app().await;
    let member = app.signed_in(MEMBER).await;
    assert_eq!(create(&member, "Before", Some(ACME)).await.status, 201, "a member creates in Acme");
    let before = app.all_todos().await.len();

    // The insert reaches the database only after the membership is gone.
    app.insforge.set_latency(std::time::Duration::from_millis(1500));
    let (created, ()) = tokio::join!(create(&member, "During", Some(ACME)), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        remove_from_acme(&app, MEMBER).await;
    });
    app.insforge.set_latency(std::time::Duration::ZERO);
    assert_eq!(created.status, 403, "{}", created.body);
    assert_eq!(created.error_code(), "not_a_member");
    assert_eq!(app.all_todos().await.len(), before, "nothing was written");
}

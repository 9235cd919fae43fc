//! Choosing an organization at sign-in: a member of several organizations gets `organization_selection_required`
//! from the code exchange; the pending token is sealed server-side (never in a URL, a page or a log), a page lists
//! the organizations by name, and picking one (with a CSRF token) finishes the sign-in with the
//! organization-selection grant.

use authbridge::session::seal::Purpose;
use standins::workos_standin::{ACME_ORGANIZATION_ID, Endpoint, GLOBEX_ORGANIZATION_ID, SeedOrganization};

use crate::helpers::app::{AppOptions, BOB, COOKIE_PASSWORD, TestApp, spawn_app, spawn_app_with};
use crate::helpers::browser::{Browser, enc, extract_csrf_token, form_action};
use crate::helpers::logs;
use crate::helpers::session::{read_session, sealer};

async fn bob_in_two_organizations() -> TestApp {
    let mut options = AppOptions::default();
    options.workos.organizations.push(SeedOrganization { id: GLOBEX_ORGANIZATION_ID.into(), name: "Globex".into() });
    let app = spawn_app_with(options.lifecycle()).await;
    app.workos.add_membership(&app.user_id(BOB), GLOBEX_ORGANIZATION_ID, &[]).expect("member");
    app
}

/// `/login` → WorkOS → `/callback`, which answers with the selection page's address.
async fn start_callback(app: &TestApp, browser: &Browser) -> crate::helpers::browser::TestResponse {
    let login = browser.get(&format!("/login?login_hint={}&return_to={}", enc(BOB), enc("/?offset=0"))).await;
    let callback = browser.authorize(&login.location().expect("to WorkOS")).await;
    let response = browser.get(&callback).await;
    assert!(app.workos.pending_authentication_tokens().len() == 1, "WorkOS asked for a selection");
    response
}

/// [`start_callback`], and the address of the selection page it sends the browser to.
async fn start(app: &TestApp, browser: &Browser) -> String {
    let callback = start_callback(app, browser).await;
    assert_eq!(callback.status, 302, "{}", callback.body);
    let page = callback.location().expect("to the selection page");
    assert!(page.starts_with("/login/organization?selection="), "{page}");
    page
}

/// The sign-ins queued for the Audit Logs, as (organization, event).
async fn signed_in_events(app: &TestApp) -> Vec<(String, serde_json::Value)> {
    let mut conn = app.db.connect().await;
    sqlx::query_as(
        "SELECT organization_id, event FROM authbridge.audit_log_outbox WHERE event->>'action' = 'user.signed_in'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("outbox")
}

/// The one pending choice this browser holds, as (cookie name, sealed value).
fn pending_choice(browser: &Browser) -> (String, String) {
    let choices = browser.pending_choices();
    assert_eq!(choices.len(), 1, "one pending choice: {choices:?}");
    choices.into_iter().next().expect("one")
}

#[tokio::test]
async fn a_member_of_several_organizations_picks_one_and_the_pending_token_never_leaves_the_server() {
    let app = bob_in_two_organizations().await;
    let browser = app.browser();
    let callback = start_callback(&app, &browser).await;
    assert_eq!(callback.status, 302, "{}", callback.body);
    let address = callback.location().expect("to the selection page");
    let selection = address.strip_prefix("/login/organization?selection=").expect("the selection page");
    let (cookie_name, _) = pending_choice(&browser);
    assert_eq!(cookie_name, authbridge::session::organization_selection_cookie(selection), "named for its page");
    assert!(!cookie_name.contains(selection), "the cookie's name is a hash of the selection id");
    assert!(browser.cookie(authbridge::session::SESSION_COOKIE).is_none(), "not signed in yet");
    let pending = app.workos.pending_authentication_tokens().remove(0);

    let page = browser.get(&address).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(">Acme<") && page.body.contains(">Globex<"), "{}", page.body);
    for seen in
        [page.body.as_str(), &browser.cookie_header(), &logs::captured(), &callback.location().unwrap_or_default()]
    {
        assert!(!seen.contains(&pending), "the pending token leaked");
    }

    // The form posts to the page's own address; without its CSRF token nothing happens; an organization not
    // offered is refused.
    assert_eq!(form_action(&page.body).as_deref(), Some(address.as_str()));
    let forged = browser.post_form(&address, &[("organization_id", GLOBEX_ORGANIZATION_ID)]).await;
    assert_eq!(forged.status, 403);
    let token = extract_csrf_token(&page.body).expect("a CSRF token");
    let other = browser.post_form(&address, &[("csrf_token", &token), ("organization_id", "org_someone_elses")]).await;
    assert_eq!(other.status, 400, "{}", other.body);
    assert_eq!(app.workos.pending_authentication_tokens(), std::slice::from_ref(&pending), "the grant was not tried");

    let chosen =
        browser.post_form(&address, &[("csrf_token", &token), ("organization_id", GLOBEX_ORGANIZATION_ID)]).await;
    assert_eq!(chosen.status, 303, "{}", chosen.body);
    assert_eq!(chosen.location().as_deref(), Some("/?offset=0"), "back where the sign-in started");
    assert!(browser.pending_choices().is_empty(), "the pending sign-in is cleared");
    assert!(app.workos.pending_authentication_tokens().is_empty(), "spent by the organization-selection grant");
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(GLOBEX_ORGANIZATION_ID));
    let me = browser.get("/api/me").await.json();
    assert_eq!(me["organization"]["name"], "Globex");
    assert!(!logs::captured().contains(&pending), "the pending token is not logged");
    // The sign-in is in the chosen organization's Audit Logs (written in the request, to the outbox), and only
    // there: the code exchange that asked for a choice signed nobody in.
    let signed_in = signed_in_events(&app).await;
    assert_eq!(signed_in.len(), 1, "{signed_in:?}");
    let (organization_id, event) = &signed_in[0];
    assert_eq!(organization_id, GLOBEX_ORGANIZATION_ID);
    assert_eq!(event["actor"]["id"], app.user_id(BOB));
    assert_eq!(event["targets"][0], serde_json::json!({ "type": "organization", "id": GLOBEX_ORGANIZATION_ID }));

    // Replaying the form: the pending sign-in is gone. Signed in, the browser is sent home; signed out, the sign-in
    // has expired.
    let replay = [("csrf_token", token.as_str()), ("organization_id", ACME_ORGANIZATION_ID)];
    let again = browser.post_form(&address, &replay).await;
    assert_eq!((again.status, again.location().as_deref()), (303, Some("/")), "{}", again.body);
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(GLOBEX_ORGANIZATION_ID), "unchanged");
    browser.remove_cookie(authbridge::session::SESSION_COOKIE);
    assert_eq!(browser.post_form(&address, &replay).await.status, 400);
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
    let address = start(&app, &browser).await;
    let page = browser.get(&address).await;
    let chosen = choose(&browser, &page.body, GLOBEX_ORGANIZATION_ID).await;
    assert_eq!(chosen.status, 403, "{}", chosen.body);
    let link = format!("/login?organization_id={GLOBEX_ORGANIZATION_ID}&#38;return_to=%2F%3Foffset%3D0");
    assert!(chosen.body.contains(&format!(r#"href="{link}""#)), "{}", chosen.body);
    assert!(browser.pending_choices().is_empty(), "the pending sign-in is cleared");
    assert!(browser.cookie(authbridge::session::SESSION_COOKIE).is_none(), "not signed in");
}

/// An organization choice left unfinished is someone's sign-in: on a shared browser, the next sign-in as it starts,
/// another user's as it finishes, and any sign-out drop it, so the next person cannot finish it and become them.
#[tokio::test]
async fn an_unfinished_choice_is_dropped_by_the_next_sign_in_and_by_sign_out() {
    let app = bob_in_two_organizations().await;
    let browser = app.browser();
    let address = start(&app, &browser).await;
    let (name, pending) = pending_choice(&browser);

    let login = browser.get(&format!("/login?login_hint={}", enc("carol@example.test"))).await;
    assert_eq!(login.status, 302);
    assert!(browser.pending_choices().is_empty(), "dropped when a sign-in starts");

    browser.set_cookie(&name, &pending);
    let callback = browser.authorize(&login.location().expect("to WorkOS")).await;
    let signed_in = browser.get(&callback).await;
    assert_eq!(signed_in.location().as_deref(), Some("/"), "Carol is signed in: {}", signed_in.body);
    assert!(browser.pending_choices().is_empty(), "Bob's dropped when Carol's sign-in finishes");
    let page = browser.get(&address).await;
    assert_eq!(page.location().as_deref(), Some("/"), "nothing left to finish; Carol goes home: {}", page.body);

    browser.set_cookie(&name, &pending);
    let token = browser.csrf_token().await;
    let out = browser.post_form("/logout", &[("csrf_token", &token)]).await;
    assert_eq!(out.status, 302, "{}", out.body);
    assert!(browser.pending_choices().is_empty(), "dropped at sign-out");
    // Signed out without a session (another tab did it first): dropped all the same.
    browser.set_cookie(&name, &pending);
    assert_eq!(browser.post_form("/logout", &[("csrf_token", &token)]).await.status, 302);
    assert!(browser.pending_choices().is_empty(), "dropped at a sign-out without a session");
}

/// Several tabs of one browser reach "Choose an organization" (every tab reloading after the session ended): each
/// has its own pending choice, page and CSRF token, and each finishes, in any order. Finishing one leaves the
/// others (the same user's) for their own tabs. (Only the last tab's used to finish.)
#[tokio::test]
async fn choices_reached_in_several_tabs_each_finish() {
    let app = bob_in_two_organizations().await;
    let browser = app.browser();
    let mut to_workos = Vec::new();
    for return_to in ["/?offset=0", "/?offset=50"] {
        let login = browser.get(&format!("/login?login_hint={}&return_to={}", enc(BOB), enc(return_to))).await;
        to_workos.push(login.location().expect("to WorkOS"));
    }
    let mut pages = Vec::new();
    for authorize in to_workos {
        let callback = browser.get(&browser.authorize(&authorize).await).await;
        assert_eq!(callback.status, 302, "{}", callback.body);
        pages.push(browser.get(&callback.location().expect("to the selection page")).await.body);
    }
    assert_eq!(browser.pending_choices().len(), 2, "one pending choice a tab");
    assert_ne!(form_action(&pages[0]), form_action(&pages[1]), "each tab's page is its own");
    assert_eq!(app.workos.pending_authentication_tokens().len(), 2);

    // One tab's CSRF token does not finish the other's choice.
    let action = form_action(&pages[1]).expect("a form");
    let token = extract_csrf_token(&pages[0]).expect("a CSRF token");
    let crossed =
        browser.post_form(&action, &[("csrf_token", &token), ("organization_id", ACME_ORGANIZATION_ID)]).await;
    assert_eq!(crossed.status, 403, "{}", crossed.body);

    let second = choose(&browser, &pages[1], GLOBEX_ORGANIZATION_ID).await;
    assert_eq!(second.status, 303, "{}", second.body);
    assert_eq!(second.location().as_deref(), Some("/?offset=50"));
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(GLOBEX_ORGANIZATION_ID));
    assert_eq!(browser.pending_choices().len(), 1, "the first tab's choice stays");

    let first = choose(&browser, &pages[0], ACME_ORGANIZATION_ID).await;
    assert_eq!(first.status, 303, "{}", first.body);
    assert_eq!(first.location().as_deref(), Some("/?offset=0"));
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(ACME_ORGANIZATION_ID));
    assert!(browser.pending_choices().is_empty(), "both spent");
    assert!(app.workos.pending_authentication_tokens().is_empty(), "each spent by its own grant");
}

/// A browser keeps at most three pending choices: a fourth drops the oldest, whose page then says the sign-in
/// expired, and the others still finish. (Four rounds, each in a fresh browser: the cookies' names are hashes, so the
/// oldest is first in the `Cookie` header in only some of them, and a rule that took the first would fail.)
#[tokio::test]
async fn a_fourth_pending_choice_drops_the_oldest() {
    let app = bob_in_two_organizations().await;
    for _ in 0..4 {
        let browser = app.browser();
        let mut to_workos = Vec::new();
        for _ in 0..4 {
            let login = browser.get(&format!("/login?login_hint={}", enc(BOB))).await;
            to_workos.push(login.location().expect("to WorkOS"));
        }
        let mut addresses = Vec::new();
        for authorize in to_workos {
            let callback = browser.get(&browser.authorize(&authorize).await).await;
            addresses.push(callback.location().expect("to the selection page"));
            assert!(browser.pending_choices().len() <= 3, "{:?}", browser.pending_choices());
        }
        assert_eq!(browser.pending_choices().len(), 3);
        assert_eq!(browser.get(&addresses[0]).await.status, 400, "the oldest was dropped");
        for address in &addresses[1..] {
            let page = browser.get(address).await;
            assert_eq!(page.status, 200, "{}", page.body);
            assert_eq!(choose(&browser, &page.body, ACME_ORGANIZATION_ID).await.status, 303);
        }
    }
}

/// Bob's own sign-in finishing without a choice (scoped to one organization, in another tab whose sign-in started
/// with this one's) leaves his pending choice to its tab: it is his, not the next person's.
#[tokio::test]
async fn the_users_own_sign_in_leaves_their_pending_choice() {
    let app = bob_in_two_organizations().await;
    let browser = app.browser();
    let plain = browser.get(&format!("/login?login_hint={}", enc(BOB))).await.location().expect("to WorkOS");
    let scoped = format!("/login?organization_id={ACME_ORGANIZATION_ID}&login_hint={}", enc(BOB));
    let own_page = |request: reqwest::RequestBuilder| request.header("sec-fetch-site", "same-origin");
    let scoped = browser.request(reqwest::Method::GET, &scoped, own_page).await.location().expect("to WorkOS");
    let choice = browser.get(&browser.authorize(&plain).await).await.location().expect("to the selection page");
    assert_eq!(browser.pending_choices().len(), 1);

    let signed_in = browser.get(&browser.authorize(&scoped).await).await;
    assert_eq!(signed_in.location().as_deref(), Some("/"), "signed in, no choice: {}", signed_in.body);
    assert_eq!(browser.pending_choices().len(), 1, "Bob's choice stays for its tab");
    let page = browser.get(&choice).await;
    assert_eq!(choose(&browser, &page.body, GLOBEX_ORGANIZATION_ID).await.status, 303);
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(GLOBEX_ORGANIZATION_ID));
}

/// A pending choice opens only on its own page: its cookie under another page's name (planted, or copied from
/// another member) is not that page's choice.
#[tokio::test]
async fn a_pending_choice_opens_only_on_its_own_page() {
    let app = bob_in_two_organizations().await;
    let browser = app.browser();
    start(&app, &browser).await;
    let (_, sealed) = pending_choice(&browser);
    let elsewhere = authbridge::session::organization_selection_cookie("another-selection");
    browser.set_cookie(&elsewhere, &sealed);
    let page = browser.get("/login/organization?selection=another-selection").await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("This sign-in link has expired"), "{}", page.body);
    // Nor under the previous version's one name: a choice of this version has a page of its own.
    browser.set_cookie(authbridge::session::ORGANIZATION_SELECTION_COOKIE, &sealed);
    assert_eq!(browser.get("/login/organization").await.status, 400);
}

/// Support staff signing in as Bob in a browser where Bob's own choice is pending: the impersonation is not Bob,
/// so it drops his choice (which would otherwise let them finish it as Bob himself, with no impersonator).
#[tokio::test]
async fn an_impersonation_drops_the_users_own_pending_choice() {
    let app = bob_in_two_organizations().await;
    let browser = app.browser();
    let sign_in = format!("/login?login_hint={}", enc(BOB));
    let bobs = browser.get(&sign_in).await.location().expect("to WorkOS");
    let supports = browser.get(&sign_in).await.location().expect("to WorkOS");
    let callback = browser.get(&browser.authorize(&bobs).await).await;
    let bobs_page = browser.get(&callback.location().expect("to the selection page")).await;
    assert_eq!(browser.pending_choices().len(), 1, "Bob's choice is pending");

    app.workos.impersonate_next_login("support@authbridge.test", Some("Ticket #4821"));
    let mut response = browser.get(&browser.authorize(&supports).await).await;
    if let Some(page) = response.location().filter(|to| to.starts_with("/login/organization")) {
        let page = browser.get(&page).await;
        response = choose(&browser, &page.body, ACME_ORGANIZATION_ID).await;
    }
    assert!(matches!(response.status, 302 | 303), "{}", response.body);
    assert_eq!(browser.get("/api/me").await.json()["impersonator"]["email"], "support@authbridge.test");
    assert!(browser.pending_choices().is_empty(), "Bob's own choice is dropped: {:?}", browser.pending_choices());
    let finished = choose(&browser, &bobs_page.body, GLOBEX_ORGANIZATION_ID).await;
    assert_eq!(finished.location().as_deref(), Some("/"), "nothing to finish: {}", finished.body);
    assert_eq!(browser.get("/api/me").await.json()["impersonator"]["email"], "support@authbridge.test", "unchanged");
    assert_eq!(app.workos.pending_authentication_tokens().len(), 1, "Bob's pending token was never sent");
}

/// Once a choice has signed the browser in, its page (reloaded, or reached again with Back) leads home rather than
/// to "sign in again", which would be wrong for someone signed in.
#[tokio::test]
async fn a_choice_page_reached_again_once_signed_in_leads_home() {
    let app = bob_in_two_organizations().await;
    let browser = app.browser();
    let address = start(&app, &browser).await;
    let page = browser.get(&address).await;
    assert_eq!(choose(&browser, &page.body, GLOBEX_ORGANIZATION_ID).await.status, 303);
    let again = browser.get(&address).await;
    assert_eq!(again.status, 302, "{}", again.body);
    assert_eq!(again.location().as_deref(), Some("/"));
    // Signed out, the same page says the sign-in expired, as before.
    assert_eq!(app.browser().get(&address).await.status, 400);
}

/// A choice pending before an upgrade, in the previous version's one `wos-org-selection` cookie, is finished from
/// that version's page (which names no selection), and spent.
#[tokio::test]
async fn a_choice_pending_in_the_previous_versions_cookie_still_finishes() {
    let app = bob_in_two_organizations().await;
    let browser = app.browser();
    start(&app, &browser).await;
    // The same pending sign-in as that version sealed it: without the fields this one added.
    let mut pending = pending_sign_in(&browser);
    for added in ["selection", "started_at_micros"] {
        pending.as_object_mut().expect("an object").remove(added).expect("a field this version adds");
    }
    let json = serde_json::to_vec(&pending).expect("JSON");
    let sealed = sealer(COOKIE_PASSWORD).seal(Purpose::OrganizationSelection, &json).expect("sealed");
    let (name, _) = pending_choice(&browser);
    browser.remove_cookie(&name);
    browser.set_cookie(authbridge::session::ORGANIZATION_SELECTION_COOKIE, &sealed);

    let page = browser.get("/login/organization").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(form_action(&page.body).as_deref(), Some("/login/organization"));
    let chosen = choose(&browser, &page.body, GLOBEX_ORGANIZATION_ID).await;
    assert_eq!(chosen.status, 303, "{}", chosen.body);
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(GLOBEX_ORGANIZATION_ID));
    assert!(browser.pending_choices().is_empty(), "spent");
}

#[tokio::test]
async fn the_selection_page_needs_a_pending_sign_in_of_this_browser() {
    let app = bob_in_two_organizations().await;
    let browser = app.browser();
    let address = start(&app, &browser).await;
    let (name, sealed) = pending_choice(&browser);
    let stranger = app.browser();
    assert_eq!(stranger.get(&address).await.status, 400, "no pending sign-in");
    assert_eq!(browser.get("/login/organization").await.status, 400, "the page names which one");
    // A tampered cookie opens nothing.
    stranger.set_cookie(&name, &format!("{sealed}x"));
    assert_eq!(stranger.get(&address).await.status, 400);
    // A session cookie is not a pending sign-in either (its own seal purpose).
    let signed_in = app.signed_in("carol@example.test").await;
    let session = signed_in.cookie(authbridge::session::SESSION_COOKIE).expect("session");
    stranger.set_cookie(&name, &session);
    assert_eq!(stranger.get(&address).await.status, 400);
}

/// Bob's organizations: Acme renamed to `name(0)`, and `count - 1` more named `name(1)`, `name(2)`…; their ids in
/// the order WorkOS lists them in its `organization_selection_required` answer (the order they were joined).
async fn bob_in_organizations(count: usize, name: impl Fn(usize) -> String) -> (TestApp, Vec<String>) {
    let app = spawn_app().await;
    app.workos.rename_organization(ACME_ORGANIZATION_ID, &name(0)).expect("Acme renamed");
    let mut ids = vec![ACME_ORGANIZATION_ID.to_owned()];
    for index in 1..count {
        let organization = app.workos.create_organization(&name(index));
        app.workos.add_membership(&app.user_id(BOB), &organization.id, &[]).expect("member");
        ids.push(organization.id);
    }
    (app, ids)
}

/// Bob in 25 organizations named with 100 accented letters each (200 bytes of UTF-8 a name): more than the pending
/// sign-in's one cookie can keep, so it keeps his id and the page reads his organizations from WorkOS.
async fn bob_in_too_many_for_the_cookie() -> (TestApp, Vec<String>) {
    bob_in_organizations(25, |_| long_name()).await
}

fn long_name() -> String {
    "é".repeat(100)
}

/// The pending sign-in the browser holds, as JSON (opened with the test password, as only the server can).
fn pending_sign_in(browser: &Browser) -> serde_json::Value {
    let (_, sealed) = pending_choice(browser);
    let opened = sealer(COOKIE_PASSWORD).open(Purpose::OrganizationSelection, &sealed).expect("it opens");
    serde_json::from_slice(&opened.plaintext).expect("JSON")
}

/// The organizations a selection page offers: each button's value (the id), in page order.
fn offered_ids(page: &str) -> Vec<String> {
    page.split(r#"name="organization_id" value=""#)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// Picks `organization_id` on the selection page, as the page's form does.
async fn choose(browser: &Browser, page: &str, organization_id: &str) -> crate::helpers::browser::TestResponse {
    let token = extract_csrf_token(page).expect("a CSRF token");
    let action = form_action(page).expect("a form");
    browser.post_form(&action, &[("csrf_token", &token), ("organization_id", organization_id)]).await
}

/// 25 organizations named with 100 accented letters each (200 bytes of UTF-8 a name) do not fit in one cookie
/// with the pending token: the pending sign-in keeps Bob's id instead, the page lists his organizations from
/// WorkOS, and the one he picks finishes the sign-in. (It was a 500 at `/callback`, and since WorkOS asks again
/// at every sign-in, Bob could never sign in.)
#[tokio::test]
async fn organizations_too_many_for_the_cookie_are_listed_from_workos_and_one_can_be_chosen() {
    let (app, ids) = bob_in_too_many_for_the_cookie().await;
    let browser = app.browser();
    let callback = start_callback(&app, &browser).await;
    assert_eq!(callback.status, 302, "{}", callback.body);
    let address = callback.location().expect("to the selection page");
    for line in callback.set_cookies() {
        assert!(line.len() <= 4096, "a Set-Cookie of {} bytes", line.len());
    }
    let pending = pending_sign_in(&browser);
    assert!(pending["organizations"].is_null(), "the list was not kept: {pending}");
    assert_eq!(pending["user_id"], app.user_id(BOB));

    let listed_before = app.workos.calls(Endpoint::Memberships);
    let page = browser.get(&address).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(app.workos.calls(Endpoint::Memberships) > listed_before, "read from WorkOS");
    let mut offered = offered_ids(&page.body);
    offered.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(offered, expected, "every organization is offered");
    assert_eq!(page.body.matches(&format!(">{}<", long_name())).count(), 25, "each by its name");

    let chosen = choose(&browser, &page.body, &ids[7]).await;
    assert_eq!(chosen.status, 303, "{}", chosen.body);
    assert_eq!(chosen.location().as_deref(), Some("/?offset=0"));
    assert!(browser.pending_choices().is_empty(), "the pending sign-in is cleared");
    assert_eq!(read_session(&browser).organization_id.as_deref(), Some(ids[7].as_str()));
}

/// No organization is dropped: 30 of them are all offered, whether the cookie keeps the list or the page reads
/// it from WorkOS, and the last can be chosen. (Only the first 25 used to be offered, and picking another was
/// refused.) The cookie keeps about half a dozen short names: with several tabs' choices pending at once, each
/// cookie must stay small.
#[tokio::test]
async fn every_organization_is_offered_and_the_last_can_be_chosen() {
    for (count, kept) in [(6, true), (30, false)] {
        // Named in the reverse of their creation, so that the page's order (by name) is not WorkOS's.
        let (app, ids) = bob_in_organizations(count, |index| format!("{:0>10}", count - 1 - index)).await;
        let browser = app.browser();
        let address = start(&app, &browser).await;
        assert_eq!(!pending_sign_in(&browser)["organizations"].is_null(), kept, "{count} organizations");
        let (_, sealed) = pending_choice(&browser);
        assert!(sealed.len() <= authbridge::session::sign_in::MAX_KEPT_LIST_BYTES, "{}", sealed.len());

        let page = browser.get(&address).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let by_name: Vec<String> = ids.iter().rev().cloned().collect();
        assert_eq!(offered_ids(&page.body), by_name, "all {count} offered, by name");
        for index in 0..count {
            let name = format!("{index:0>10}");
            assert!(page.body.contains(&format!(">{name}<")), "{name} is on the page");
        }

        let last = &ids[count - 1];
        let chosen = choose(&browser, &page.body, last).await;
        assert_eq!(chosen.status, 303, "{}", chosen.body);
        assert_eq!(read_session(&browser).organization_id.as_deref(), Some(last.as_str()));
    }
}

/// A pending sign-in finished in another tab: WorkOS refuses its spent token (`invalid_pending_authentication_token`),
/// which is said as what it is, not as an organization that cannot be chosen.
#[tokio::test]
async fn a_pending_sign_in_finished_in_another_tab_is_refused_as_spent() {
    let (app, ids) = bob_in_too_many_for_the_cookie().await;
    let browser = app.browser();
    let address = start(&app, &browser).await;
    let other_tab = app.browser();
    other_tab.copy_cookies_from(&browser);
    let page = browser.get(&address).await;
    assert_eq!(choose(&browser, &page.body, &ids[1]).await.status, 303, "the first tab signs in");
    // Another organization: the same one would be the first tab's choice repeated, which shares its sign-in.
    let late = choose(&other_tab, &page.body, &ids[2]).await;
    assert!((400..500).contains(&late.status), "{} {}", late.status, late.body);
    assert!(late.body.contains("did not accept this sign-in"), "{}", late.body);
    assert!(!late.body.contains("cannot be chosen"), "{}", late.body);
}

/// A double click on an organization: the second request carries the same cookies and form as the first, and
/// WorkOS's pending token is single-use. Both requests sign the browser in, with one exchange at WorkOS and one
/// sign-in in the Audit Logs; before, the second exchange was refused and its error page is what the browser
/// showed. Sent again within seconds of the first finishing, the same, logged as a repeat; another organization is
/// an exchange of its own.
#[tokio::test]
async fn an_organization_chosen_twice_signs_in_once_at_workos() {
    let app = bob_in_two_organizations().await;
    let browser = app.browser();
    let address = start(&app, &browser).await;
    let page = browser.get(&address).await;
    let clicks: Vec<Browser> = (0..3).map(|_| app.browser()).collect();
    for click in &clicks {
        click.copy_cookies_from(&browser);
    }
    let before = app.workos.calls(Endpoint::Authenticate);
    // The two clicks' requests overlap at WorkOS.
    app.workos.set_latency(Endpoint::Authenticate, std::time::Duration::from_millis(300));
    let (first, second) = tokio::join!(
        choose(&clicks[0], &page.body, GLOBEX_ORGANIZATION_ID),
        choose(&clicks[1], &page.body, GLOBEX_ORGANIZATION_ID)
    );
    app.workos.set_latency(Endpoint::Authenticate, std::time::Duration::ZERO);
    let late = choose(&clicks[2], &page.body, GLOBEX_ORGANIZATION_ID).await;
    for (response, click) in [(&first, &clicks[0]), (&second, &clicks[1]), (&late, &clicks[2])] {
        assert_eq!(response.status, 303, "{}", response.body);
        assert_eq!(response.location().as_deref(), Some("/?offset=0"));
        assert_eq!(click.get("/api/me").await.json()["organization"]["name"], "Globex");
        assert!(click.pending_choices().is_empty(), "the pending choice is dropped by each answer");
    }
    assert_eq!(app.workos.calls(Endpoint::Authenticate) - before, 1, "one exchange at WorkOS");
    // A repeat is said under its own request, whose line carries its address and client: a double click or a copy
    // of the pending cookie can be told apart.
    let request_id = late.header("x-request-id").expect("every answer carries a request id");
    let repeat = "signed in with the session of the same organization choice sent just before";
    assert!(logs::logged(&request_id, "INFO", repeat).await.is_some(), "the repeat is logged");
    assert_eq!(signed_in_events(&app).await.len(), 1, "one sign-in in the Audit Logs");

    let other = choose(&browser, &page.body, ACME_ORGANIZATION_ID).await;
    assert!((400..500).contains(&other.status), "{} {}", other.status, other.body);
    assert!(other.body.contains("did not accept this sign-in"), "{}", other.body);
    assert_eq!(app.workos.calls(Endpoint::Authenticate) - before, 2, "asked WorkOS, which refused the spent token");
}

/// The page follows WorkOS's pages of memberships (100 each) to the end.
#[tokio::test]
async fn more_than_a_page_of_organizations_are_all_listed() {
    let (app, ids) = bob_in_organizations(130, |index| format!("Organization {index:0>3}")).await;
    let browser = app.browser();
    let address = start(&app, &browser).await;
    assert!(pending_sign_in(&browser)["organizations"].is_null(), "130 do not fit in the cookie");
    let listed_before = app.workos.calls(Endpoint::Memberships);
    let page = browser.get(&address).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(app.workos.calls(Endpoint::Memberships) - listed_before, 2, "two pages");
    // Every one, in name order (the ids were made in the order of their names; WorkOS lists newest first).
    assert_eq!(offered_ids(&page.body), ids);
}

/// When the list was not kept, WorkOS judges the pick: an organization Bob is not a member of, or one that does
/// not exist, is refused with a page that says so (never a 500), and the sign-in starts over.
#[tokio::test]
async fn when_the_list_was_not_kept_an_organization_the_user_is_not_in_is_refused_plainly() {
    let (app, _) = bob_in_too_many_for_the_cookie().await;
    let stranger = app.workos.create_organization("Initech");
    for not_his in [stranger.id.as_str(), "org_01NOSUCHORGANIZATION"] {
        let browser = app.browser();
        let address = start(&app, &browser).await;
        assert!(pending_sign_in(&browser)["organizations"].is_null(), "the list was not kept");
        let page = browser.get(&address).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let refused = choose(&browser, &page.body, not_his).await;
        assert!((400..500).contains(&refused.status), "{not_his}: {} {}", refused.status, refused.body);
        assert!(
            refused.body.contains("That organization cannot be chosen: you are not an active member of it."),
            "{}",
            refused.body
        );
        assert!(refused.body.contains(r#"href="/login""#), "a way to sign in again: {}", refused.body);
        assert!(browser.cookie(authbridge::session::SESSION_COOKIE).is_none(), "not signed in");
    }
    // An empty pick is not sent to WorkOS at all.
    let browser = app.browser();
    let address = start(&app, &browser).await;
    let page = browser.get(&address).await;
    let tried = app.workos.calls(Endpoint::Authenticate);
    let empty = choose(&browser, &page.body, "").await;
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert_eq!(app.workos.calls(Endpoint::Authenticate), tried);
}

/// Reading the organizations from WorkOS fails: a page saying sign-in is unavailable (503, not 500), and the
/// pending sign-in stays, so reloading the page works once WorkOS answers again.
#[tokio::test]
async fn workos_failing_to_list_the_organizations_gives_503_and_a_reload_works() {
    let (app, ids) = bob_in_too_many_for_the_cookie().await;
    let browser = app.browser();
    let address = start(&app, &browser).await;
    app.workos.fail_next(Endpoint::Memberships, 1, 500);
    let failed = browser.get(&address).await;
    assert_eq!(failed.status, 503, "{}", failed.body);
    assert!(failed.body.contains("temporarily unavailable"), "{}", failed.body);
    assert!(failed.header("retry-after").is_some());
    assert_eq!(browser.pending_choices().len(), 1, "the pending sign-in stays");

    let page = browser.get(&address).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(offered_ids(&page.body).len(), ids.len());
}

/// A user whose access has ended here (deleted, per the lifecycle) is refused when the chosen organization finishes
/// the sign-in, as at a plain callback: a page that says why, and no session cookie.
#[tokio::test]
async fn a_deleted_user_choosing_an_organization_is_refused_with_a_reason() {
    use crate::helpers::lifecycle::{at, event, user};
    let app = bob_in_two_organizations().await;
    let bob = app.user_id(BOB);
    app.deliver_ok(&event("user.deleted", user(&bob, BOB, 1), at(1))).await;
    let browser = app.browser();
    let address = start(&app, &browser).await;
    let page = browser.get(&address).await;
    let chosen = choose(&browser, &page.body, ACME_ORGANIZATION_ID).await;
    assert_eq!(chosen.status, 403, "{}", chosen.body);
    assert!(chosen.body.contains("Your access to this app has ended"), "{}", chosen.body);
    assert!(browser.cookie(authbridge::session::SESSION_COOKIE).is_none(), "no session cookie");
}

/// The choice page names organizations as every other page does: one whose name shows nothing is "Your
/// organization", a name's own direction controls (which would break out of the page's isolation) are left out,
/// and a NUL in WorkOS's answer is a replacement character, never a raw byte in the page.
#[tokio::test]
async fn the_choice_page_names_organizations_as_the_other_pages_do() {
    let app = bob_in_two_organizations().await;
    app.workos.rename_organization(ACME_ORGANIZATION_ID, "\u{200B}\u{200B}").expect("renamed");
    app.workos.rename_organization(GLOBEX_ORGANIZATION_ID, "\u{2069}\u{202E}Glo\u{0}bex").expect("renamed");
    let browser = app.browser();
    let address = start(&app, &browser).await;
    let page = browser.get(&address).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<bdi>Your organization</bdi>"), "{}", page.body);
    assert!(page.body.contains("<bdi>Glo\u{FFFD}bex</bdi>"), "{}", page.body);
    assert!(!page.body.contains(['\u{0}', '\u{202E}', '\u{2069}']), "{}", page.body);
}

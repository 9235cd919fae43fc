//! The InsForge stand-in speaks the records API as InsForge does: authentication rules, PostgREST's answers
//! and headers, both error shapes, the claims PostgreSQL sees, and the test controls other tests rely on.
//!
//! It serves the `todos` fixture of `fixtures/todos.sql`; the requests are the ones an InsForge client makes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use standins::insforge_standin::RecurringFaults;

use crate::helpers::{TestInsforge, sign, user_a};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

#[tokio::test]
async fn health_answers_without_a_token() {
    let app = TestInsforge::start().await;
    let response = app.http.get(app.standin.url().join("api/health").expect("url")).send().await.expect("health");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["status"], "ok", "{body}");
}

#[tokio::test]
async fn reads_follow_postgrest_filters_order_paging_and_content_range() {
    let app = TestInsforge::start().await;
    let token = app.token_for(&user_a());
    for name in ["one", "two", "three", "four"] {
        let created = app.raw(Method::POST, "todos", &[], Some(&token), Some(json!({ "title": name }))).await;
        assert_eq!(created.status, 201, "{created:?}");
    }
    let page = app
        .raw(
            Method::GET,
            "todos",
            &[("select", "title"), ("order", "title.asc"), ("limit", "2"), ("offset", "1")],
            Some(&token),
            None,
        )
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.body, json!([{ "title": "one" }, { "title": "three" }]));
    assert_eq!(page.header("content-range"), Some("1-2/*"));

    let neq = app
        .raw(
            Method::GET,
            "todos",
            &[("select", "title"), ("title", "not.like.t*"), ("order", "title.desc")],
            Some(&token),
            None,
        )
        .await;
    assert_eq!(neq.body, json!([{ "title": "one" }, { "title": "four" }]));

    let none = app.raw(Method::GET, "todos", &[("title", "eq.five")], Some(&token), None).await;
    assert_eq!((none.status, none.body.clone()), (200, json!([])), "no match is not an error");
    assert_eq!(none.header("content-range"), Some("*/*"));

    // As PostgREST answers writes: an update's rows from 0, an insert's and a delete's never a range.
    let updated = app.raw(Method::PATCH, "todos", &[("title", "eq.one")], Some(&token), Some(json!({ "title": "1" })));
    assert_eq!(updated.await.header("content-range"), Some("0-0/*"));
    let inserted = app.raw(Method::POST, "todos", &[], Some(&token), Some(json!({ "title": "five" }))).await;
    assert_eq!((inserted.status, inserted.header("content-range")), (201, Some("*/*")));
    let deleted = app.raw(Method::DELETE, "todos", &[("title", "eq.five")], Some(&token), None).await;
    assert_eq!((deleted.status, deleted.header("content-range")), (204, Some("*/*")));
}

#[tokio::test]
async fn writes_answer_with_rows_only_when_asked() {
    let app = TestInsforge::start().await;
    let token = app.token_for(&user_a());
    let url = app.records_url("todos");

    let minimal =
        app.http.post(url.clone()).bearer_auth(&token).json(&json!({ "title": "quiet" })).send().await.expect("post");
    assert_eq!(minimal.status(), 201);
    assert_eq!(minimal.text().await.expect("body"), "[]");

    let loud = app
        .http
        .post(url.clone())
        .bearer_auth(&token)
        .header("Prefer", "return=representation")
        .json(&json!([{ "title": "loud" }, { "title": "louder" }]))
        .send()
        .await
        .expect("post");
    assert_eq!(loud.status(), 201);
    assert_eq!(loud.headers().get("preference-applied").and_then(|v| v.to_str().ok()), Some("return=representation"));
    let rows: Vec<Value> = loud.json().await.expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["user_id"], user_a().id, "user_id came from the token, by default");
    assert_eq!(rows[0]["is_complete"], false, "absent columns take their defaults");

    let patch = app
        .http
        .patch(url.clone())
        .query(&[("title", "eq.quiet")])
        .bearer_auth(&token)
        .json(&json!({ "is_complete": true }))
        .send()
        .await
        .expect("patch");
    assert_eq!(patch.status(), 204);

    let delete = app.http.delete(url).query(&[("title", "eq.loud")]).bearer_auth(&token).send().await.expect("delete");
    assert_eq!(delete.status(), 204);

    let mut left: Vec<(String, bool)> = app
        .all_rows()
        .await
        .iter()
        .map(|r| (r["title"].as_str().expect("title").to_owned(), r["is_complete"].as_bool().expect("bool")))
        .collect();
    left.sort();
    assert_eq!(left, [("louder".to_owned(), false), ("quiet".to_owned(), true)]);
}

#[tokio::test]
async fn malformed_requests_get_postgrest_errors() {
    let app = TestInsforge::start().await;
    let token = app.token_for(&user_a());

    let unknown_filter = app.raw(Method::GET, "todos", &[("colour", "eq.red")], Some(&token), None).await;
    assert_eq!((unknown_filter.status, unknown_filter.body["code"].clone()), (400, json!("42703")));

    let unknown_column = app.raw(Method::POST, "todos", &[], Some(&token), Some(json!({ "colour": "red" }))).await;
    assert_eq!((unknown_column.status, unknown_column.body["code"].clone()), (400, json!("PGRST204")));

    let not_objects = app.raw(Method::POST, "todos", &[], Some(&token), Some(json!([1, 2]))).await;
    assert_eq!(not_objects.status, 400);
    for key in ["code", "details", "hint", "message"] {
        assert!(not_objects.body.get(key).is_some(), "PostgREST error shape lacks {key}: {not_objects:?}");
    }
    assert_eq!(not_objects.body["code"], "PGRST102");

    let wrong_type =
        app.raw(Method::POST, "todos", &[], Some(&token), Some(json!({ "title": "x", "is_complete": "maybe" }))).await;
    assert_eq!((wrong_type.status, wrong_type.body["code"].clone()), (400, json!("22P02")));

    let null_title = app.raw(Method::POST, "todos", &[], Some(&token), Some(json!({ "title": null }))).await;
    assert_eq!((null_title.status, null_title.body["code"].clone()), (400, json!("23502")));
    assert!(app.all_rows().await.is_empty());
}

/// InsForge hands a repeated key to PostgREST as `key[]` (docs/insforge.md §1.2), and PostgREST reads `order[]` as a
/// filter on a column named `order`: a 400 in PostgREST's shape, never the last (or first) value taken.
#[tokio::test]
async fn a_repeated_reserved_key_is_refused_as_through_insforge() {
    let app = TestInsforge::start().await;
    let token = app.token_for(&user_a());
    for (key, first, second) in
        [("order", "title.asc", "id.desc"), ("limit", "1", "2"), ("offset", "0", "1"), ("select", "title", "id")]
    {
        let repeated = app.raw(Method::GET, "todos", &[(key, first), (key, second)], Some(&token), None).await;
        assert_eq!((repeated.status, repeated.body["code"].clone()), (400, json!("PGRST100")), "{key}: {repeated:?}");
        for field in ["code", "details", "hint", "message"] {
            assert!(repeated.body.get(field).is_some(), "PostgREST error shape lacks {field}: {repeated:?}");
        }
    }
    let once = app.raw(Method::GET, "todos", &[("order", "title.asc"), ("limit", "1")], Some(&token), None).await;
    assert_eq!(once.status, 200, "{once:?}");
}

#[tokio::test]
async fn unknown_tables_get_postgrests_answer_and_bad_names_insforges() {
    let app = TestInsforge::start().await;
    let token = app.token_for(&user_a());
    // InsForge passes any other name to PostgREST 12, which answers an unknown table with 404 and `{}`.
    for table in ["nope", "pg_authid", "todos;drop", "_sqlx_migrations"] {
        let response = app.raw(Method::GET, table, &[], Some(&token), None).await;
        assert_eq!((response.status, response.body.clone()), (404, json!({})), "{table}");
    }
    // (Percent-encoded here: the path is decoded before the name is checked.)
    for table in ["to%22dos", "todos%07", "todos%0A"] {
        let response = app.raw(Method::GET, table, &[], Some(&token), None).await;
        assert_eq!(response.status, 400, "{table:?}: {response:?}");
        assert_eq!(response.body["error"], "DATABASE_VALIDATION_ERROR");
    }
    let route = app.http.get(app.standin.url().join("api/nowhere").expect("url")).send().await.expect("get");
    assert_eq!(route.status(), 404);
}

#[tokio::test]
async fn authentication_follows_insforge_rules() {
    let app = TestInsforge::start().await;
    let get = |token: String| {
        let app = &app;
        async move { app.raw(Method::GET, "todos", &[], Some(&token), None).await }
    };

    // Thrown by InsForge's `TokenManager.verifyToken`, without `nextActions`.
    let no_sub = get(sign(json!({ "role": "authenticated", "exp": now() + 60 }))).await;
    assert_eq!(
        (no_sub.status, no_sub.body),
        (401, json!({ "error": "AUTH_UNAUTHORIZED", "message": "Invalid token subject", "statusCode": 401 }))
    );

    let bad_role = get(sign(json!({ "sub": "u", "role": "postgres", "exp": now() + 60 }))).await;
    assert_eq!(
        (bad_role.status, bad_role.body),
        (403, json!({ "error": "AUTH_UNAUTHORIZED", "message": "Invalid user role claim", "statusCode": 403 }))
    );

    let expired = get(sign(json!({ "sub": "u", "role": "authenticated", "exp": now() - 120 }))).await;
    assert_eq!(
        (expired.status, expired.body),
        (401, json!({ "error": "AUTH_UNAUTHORIZED", "message": "Invalid token", "statusCode": 401 }))
    );

    let garbage = get("not.a.jwt".to_owned()).await;
    assert_eq!(garbage.status, 401);

    let wrong_admin_key = get("ik_0000000000000000".to_owned()).await;
    assert_eq!((wrong_admin_key.status, wrong_admin_key.body["error"].clone()), (401, json!("AUTH_INVALID_API_KEY")));

    // `aud` is not checked, and `role` defaults to authenticated.
    let other_audience = get(sign(json!({ "sub": "u", "aud": "somebody-else", "exp": now() + 60 }))).await;
    assert_eq!((other_audience.status, other_audience.body.clone()), (200, json!([])));
}

#[tokio::test]
async fn exp_and_nbf_are_checked_with_no_leeway() {
    let app = TestInsforge::start().await;
    let get = |claims: Value| {
        let app = &app;
        async move { app.raw(Method::GET, "todos", &[], Some(&sign(claims)), None).await }
    };
    let invalid = json!({ "error": "AUTH_UNAUTHORIZED", "message": "Invalid token", "statusCode": 401 });

    // Node's `jsonwebtoken` refuses a token from the second its `exp` names (`now >= exp`); the clock only moves
    // on between signing and checking.
    let expiring_now = get(json!({ "sub": "u", "exp": now() })).await;
    assert_eq!((expiring_now.status, &expiring_now.body), (401, &invalid), "exp == now");

    let not_yet = get(json!({ "sub": "u", "nbf": now() + 60, "exp": now() + 120 })).await;
    assert_eq!((not_yet.status, &not_yet.body), (401, &invalid), "nbf in the future");

    for claims in [
        json!({ "sub": "u", "exp": null }),
        json!({ "sub": "u", "exp": (now() + 60).to_string() }),
        json!({ "sub": "u", "nbf": null, "exp": now() + 60 }),
        json!({ "sub": "u", "nbf": "now", "exp": now() + 60 }),
    ] {
        let response = get(claims.clone()).await;
        assert_eq!((response.status, &response.body), (401, &invalid), "{claims}");
    }

    for claims in [
        json!({ "sub": "u", "nbf": now(), "exp": now() + 60 }),
        json!({ "sub": "u", "nbf": now() - 60, "exp": now() + 60 }),
        json!({ "sub": "u" }),
    ] {
        let response = get(claims.clone()).await;
        assert_eq!((response.status, &response.body), (200, &json!([])), "{claims}");
    }
}

#[tokio::test]
async fn reads_run_read_only_and_every_request_on_public() {
    let app = TestInsforge::start().await;
    let mut conn = app.db.connect().await;
    sqlx::raw_sql(
        "CREATE TABLE public.reads (search_path text NOT NULL DEFAULT current_setting('search_path'), note text); \
         CREATE FUNCTION public.note_read() RETURNS text LANGUAGE sql VOLATILE \
           AS $$ INSERT INTO public.reads (note) VALUES ('read') RETURNING search_path $$; \
         CREATE VIEW public.noted AS SELECT public.note_read() AS search_path; \
         CREATE VIEW public.where_am_i AS SELECT current_setting('search_path') AS search_path; \
         GRANT SELECT, INSERT ON public.reads TO authenticated; \
         GRANT SELECT ON public.noted, public.where_am_i TO authenticated;",
    )
    .execute(&mut conn)
    .await
    .expect("a view that writes, and a table that records the search_path");
    let token = app.token_for(&user_a());

    // A write during a GET: PostgREST's READ ONLY transaction refuses it, 25006 → 405.
    let noted = app.raw(Method::GET, "noted", &[], Some(&token), None).await;
    assert_eq!((noted.status, noted.body["code"].clone()), (405, json!("25006")), "{noted:?}");
    let written: i64 =
        sqlx::query_scalar("SELECT count(*) FROM public.reads").fetch_one(&mut conn).await.expect("count");
    assert_eq!(written, 0, "the read wrote nothing");

    // PostgREST's `search_path` for the `public` schema, on reads and on writes.
    let public = json!("\"public\", \"public\"");
    let read = app.raw(Method::GET, "where_am_i", &[], Some(&token), None).await;
    assert_eq!((read.status, read.body[0]["search_path"].clone()), (200, public.clone()), "{read:?}");
    let wrote = app.raw(Method::POST, "reads", &[], Some(&token), Some(json!({ "note": "posted" }))).await;
    assert_eq!((wrote.status, wrote.body[0]["search_path"].clone()), (201, public), "{wrote:?}");
}

#[tokio::test]
async fn bodies_are_parsed_only_when_sent_as_application_json() {
    let app = TestInsforge::start().await;
    let token = app.token_for(&user_a());
    let post = |content_type: Option<&'static str>, body: &'static str| {
        let mut request = app
            .http
            .post(app.records_url("todos"))
            .bearer_auth(&token)
            .header("Prefer", "return=representation")
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move {
            let response = request.send().await.expect("post");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("a JSON body"))
        }
    };

    for json_type in ["application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8"] {
        let (status, rows) = post(Some(json_type), r#"{"title":"typed"}"#).await;
        assert_eq!((status, rows[0]["title"].clone()), (201, json!("typed")), "{json_type}");
    }

    // Any other type, or none: Express leaves the body `{}`, and `{}` is a row of defaults, here without a title.
    for other in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/vnd.api+json"), None]
    {
        let (status, body) = post(other, r#"{"title":"untyped"}"#).await;
        assert_eq!((status, body["code"].clone()), (400, json!("23502")), "{other:?}: {body}");
    }
    let patch = app
        .http
        .patch(app.records_url("todos"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .header("Prefer", "return=representation")
        .body(r#"{"title":"renamed"}"#)
        .send()
        .await
        .expect("patch");
    assert_eq!(patch.status(), 200);
    let titles: Vec<Value> = app.all_rows().await.iter().map(|r| r["title"].clone()).collect();
    assert_eq!(titles, vec![json!("typed"); 3], "nothing but the typed bodies was stored, and nothing renamed");

    // JSON that does not parse is refused by Express, in InsForge's shape, before the token is even looked at.
    for bearer in [Some(token.as_str()), None] {
        let mut request =
            app.http.post(app.records_url("todos")).header("content-type", "application/json").body("{not json");
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("post");
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.expect("json error");
        assert_eq!(body["error"], "INVALID_INPUT", "{body}");
        assert_eq!(body["nextActions"], "Please ensure your request body contains valid JSON");
    }
    let (status, body) = post(Some("application/json"), r#""a string""#).await;
    assert_eq!((status, body["error"].clone()), (400, json!("INVALID_INPUT")), "strict: objects and arrays only");
    let (status, body) = post(Some("application/json; charset=latin1"), r#"{"title":"x"}"#).await;
    assert_eq!((status, body["error"].clone()), (500, json!("INTERNAL_ERROR")), "{body}");
    assert_eq!(app.all_rows().await.len(), 3);
}

#[tokio::test]
async fn database_errors_take_postgrests_statuses() {
    let app = TestInsforge::start().await;
    let mut conn = app.db.connect().await;
    sqlx::raw_sql(
        r#"CREATE VIEW public.two_rows AS SELECT (SELECT n FROM generate_series(1, 2) AS n) AS n;
           CREATE FUNCTION public.teapot() RETURNS int LANGUAGE plpgsql AS $$
             BEGIN RAISE SQLSTATE 'PT418' USING message = 'I am a teapot'; END $$;
           CREATE VIEW public.teapot AS SELECT public.teapot() AS n;
           CREATE FUNCTION public.pay() RETURNS int LANGUAGE plpgsql AS $$
             BEGIN RAISE SQLSTATE 'PGRST' USING
               message = '{"code":"PAY01","message":"Payment required","details":"Quota exhausted"}',
               detail = '{"status":402,"headers":{"X-Quota":"0"}}';
             END $$;
           CREATE VIEW public.pay AS SELECT public.pay() AS n;
           GRANT SELECT ON public.two_rows, public.teapot, public.pay TO authenticated;"#,
    )
    .execute(&mut conn)
    .await
    .expect("views that fail");
    let token = app.token_for(&user_a());

    let cardinality = app.raw(Method::GET, "two_rows", &[], Some(&token), None).await;
    assert_eq!((cardinality.status, cardinality.body["code"].clone()), (500, json!("21000")), "{cardinality:?}");
    let teapot = app.raw(Method::GET, "teapot", &[], Some(&token), None).await;
    assert_eq!((teapot.status, teapot.body["message"].clone()), (418, json!("I am a teapot")), "{teapot:?}");
    let pay = app.raw(Method::GET, "pay", &[], Some(&token), None).await;
    assert_eq!(
        (pay.status, &pay.body),
        (402, &json!({ "code": "PAY01", "message": "Payment required", "details": "Quota exhausted", "hint": null }))
    );
    assert_eq!(pay.header("x-quota"), None, "InsForge copies no PostgREST header onto an error");
}

#[tokio::test]
async fn postgres_sees_the_role_and_only_sub_email_role_and_insforges_own_iat_and_exp() {
    let app = TestInsforge::start().await;
    let mut conn = app.db.connect().await;
    sqlx::raw_sql(
        "CREATE VIEW public.whoami AS \
           SELECT current_user::text AS role, current_setting('request.jwt.claims', true)::json AS claims; \
         GRANT SELECT ON public.whoami TO authenticated;",
    )
    .execute(&mut conn)
    .await
    .expect("a view that reports the request's identity");

    let token = sign(json!({
        "sub": "user_claims", "email": "c@example.com", "role": "authenticated",
        "aud": "insforge-api", "exp": now() + 60, "org_id": "org_1", "permissions": ["all"],
    }));
    let response = app.raw(Method::GET, "whoami", &[], Some(&token), None).await;
    assert_eq!(response.status, 200, "{response:?}");
    let mut seen = response.body.clone();
    let claims = seen[0]["claims"].as_object_mut().expect("claims");
    let (iat, exp) = (claims.remove("iat"), claims.remove("exp"));
    assert_eq!(
        seen,
        json!([{ "role": "authenticated", "claims": { "sub": "user_claims", "email": "c@example.com", "role": "authenticated" } }])
    );
    // InsForge's own five-minute token, not the caller's: its `iat` and `exp`, nothing else of the caller's.
    let (iat, exp) = (iat.and_then(|v| v.as_u64()).expect("iat"), exp.and_then(|v| v.as_u64()).expect("exp"));
    assert_eq!(exp - iat, 300);
}

#[tokio::test]
async fn test_controls_fail_requests_count_them_and_add_latency() {
    let app = TestInsforge::start().await;
    let token = app.token_for(&user_a());
    let before = app.standin.records_requests();

    app.standin.fail_next(2, 503);
    for _ in 0..2 {
        let failed = app.raw(Method::POST, "todos", &[], Some(&token), Some(json!({ "title": "during outage" }))).await;
        assert_eq!(failed.status, 503, "{failed:?}");
        assert_eq!(failed.body["statusCode"], 503, "InsForge-shaped: {failed:?}");
    }
    let after = app.raw(Method::POST, "todos", &[], Some(&token), Some(json!({ "title": "after" }))).await;
    assert_eq!(after.status, 201);
    assert_eq!(app.standin.records_requests() - before, 3);
    let titles: Vec<Value> = app.all_rows().await.iter().map(|r| r["title"].clone()).collect();
    assert_eq!(titles, [json!("after")], "failed requests touched nothing");

    app.standin.set_latency(Duration::from_millis(300));
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().expect("client");
    let list = || impatient.get(app.records_url("todos")).bearer_auth(&token).send();
    let timed_out = list().await.expect_err("the latency outlasts the client's patience");
    assert!(timed_out.is_timeout(), "{timed_out:?}");
    app.standin.set_latency(Duration::ZERO);
    assert_eq!(app.raw(Method::GET, "todos", &[], Some(&token), None).await.status, 200, "fast again");
}

/// Slow to answer but not to write: the row is there although the client gave up waiting for the answer.
#[tokio::test]
async fn a_response_latency_answers_late_but_writes_at_once() {
    let app = TestInsforge::start().await;
    let token = app.token_for(&user_a());
    app.standin.set_response_latency(Duration::from_millis(1_000));
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().expect("client");
    let sent = impatient
        .post(app.records_url("todos"))
        .bearer_auth(&token)
        .header("Prefer", "return=representation")
        .json(&json!({ "title": "saved anyway" }))
        .send()
        .await
        .expect_err("the answer outlasts the client's patience");
    assert!(sent.is_timeout(), "{sent:?}");
    let titles: Vec<Value> = app.all_rows().await.iter().map(|r| r["title"].clone()).collect();
    assert_eq!(titles, [json!("saved anyway")], "written before the wait, and not undone when the client left");
    app.standin.set_response_latency(Duration::ZERO);
    assert_eq!(app.raw(Method::GET, "todos", &[], Some(&token), None).await.status, 200, "fast again");
}

/// A write still in progress when its client gives up is finished, not rolled back (InsForge and PostgREST go on
/// with it): here it waits for a lock the test holds until after the client has left.
#[tokio::test]
async fn a_write_in_progress_when_its_client_leaves_is_finished() {
    use sqlx::Connection;
    let app = TestInsforge::start().await;
    let token = app.token_for(&user_a());
    let mut holder = app.db.connect().await;
    let mut lock = holder.begin().await.expect("begin");
    sqlx::query("LOCK TABLE todos IN EXCLUSIVE MODE").execute(&mut *lock).await.expect("lock");
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().expect("client");
    let sent = impatient
        .post(app.records_url("todos"))
        .bearer_auth(&token)
        .json(&json!({ "title": "finished anyway" }))
        .send()
        .await
        .expect_err("the write waits for the lock past the client's patience");
    assert!(sent.is_timeout(), "{sent:?}");
    lock.rollback().await.expect("unlock");
    let mut titles = Vec::new();
    for _ in 0..100 {
        titles = app.all_rows().await.iter().map(|r| r["title"].clone()).collect();
        if !titles.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(titles, [json!("finished anyway")], "the write went on without its client");
}

/// A write whose answer is lost between PostgREST and InsForge: committed, then answered with InsForge's own 500.
/// Reads are not touched by the control, and it applies once.
#[tokio::test]
async fn a_lost_write_answer_commits_and_then_answers_insforges_500() {
    let app = TestInsforge::start().await;
    let token = app.token_for(&user_a());
    app.standin.lose_next_write_answer();
    let read = app.raw(Method::GET, "todos", &[], Some(&token), None).await;
    assert_eq!(read.status, 200, "{read:?}");
    let lost = app.raw(Method::POST, "todos", &[], Some(&token), Some(json!({ "title": "saved anyway" }))).await;
    assert_eq!(lost.status, 500, "{lost:?}");
    assert_eq!(lost.body, json!({ "error": "INTERNAL_ERROR", "message": "socket hang up", "statusCode": 500 }));
    let titles: Vec<Value> = app.all_rows().await.iter().map(|r| r["title"].clone()).collect();
    assert_eq!(titles, [json!("saved anyway")], "the write committed before its answer was lost");
    let next = app.raw(Method::POST, "todos", &[], Some(&token), Some(json!({ "title": "next" }))).await;
    assert_eq!(next.status, 201, "once only: {next:?}");
}

#[tokio::test]
async fn recurring_faults_fail_and_hold_a_fixed_share_of_requests_by_number() {
    let app = TestInsforge::start().await;
    let token = app.token_for(&user_a());
    let first = app.standin.records_requests() + 1;
    app.standin.set_recurring_faults(RecurringFaults {
        fail_every: Some((4, 500)),
        hang_every: Some((6, Duration::from_secs(60))),
    });
    // Patient enough for any answer on a slow machine, not for a request held a minute.
    let impatient = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
    let mut outcomes = Vec::new();
    for title in 0..12 {
        let created = impatient
            .post(app.records_url("todos"))
            .bearer_auth(&token)
            .header("Prefer", "return=representation")
            .json(&json!({ "title": format!("todo {title}") }))
            .send()
            .await;
        let number = first + title;
        outcomes.push((number, created.map(|response| response.status().as_u16()).map_err(|e| e.is_timeout())));
    }
    for (number, outcome) in &outcomes {
        let expected = if number % 6 == 1 {
            Err(true) // held past the client's patience
        } else if number % 4 == 0 {
            Ok(500)
        } else {
            Ok(201)
        };
        assert_eq!(outcome, &expected, "request {number}");
    }

    app.standin.set_recurring_faults(RecurringFaults::default());
    let after = app.raw(Method::POST, "todos", &[], Some(&token), Some(json!({ "title": "after" }))).await;
    assert_eq!(after.status, 201, "turned off");
    let stored = app.all_rows().await.len();
    let created = outcomes.iter().filter(|(_, outcome)| *outcome == Ok(201)).count();
    assert_eq!(stored, created + 1, "failed and held requests stored nothing");
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let app = TestInsforge::start().await;
    let TestInsforge { standin, http, .. } = app;
    let health = standin.url().join("api/health").expect("url");
    assert_eq!(http.get(health.clone()).send().await.expect("up").status(), 200);
    standin.shutdown().await;
    let fresh = reqwest::Client::new();
    let error = fresh.get(health).send().await.expect_err("nothing listens any more");
    assert!(error.is_connect(), "{error}");
}

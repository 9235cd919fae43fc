//! The migrations: they lock every table down, run again harmlessly, work on a bare PostgreSQL and on one where
//! InsForge already created the roles and its generous default grants, encode the same title rule as the app, and
//! carry data written under older migrations forward.

use authbridge::todo::Title;
use sqlx::{Connection, PgConnection, Row};
use standins::temp_postgres::{PostgresOptions, TempPostgres};

use crate::helpers::TestDb;

#[tokio::test]
async fn every_table_in_public_has_row_level_security() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let tables: Vec<(String, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("catalog query");
    assert!(!tables.is_empty(), "the migrations create tables");
    assert!(tables.iter().any(|(name, _)| name == "todos"));
    let without: Vec<&str> = tables.iter().filter(|(_, rls)| !rls).map(|(name, _)| name.as_str()).collect();
    assert!(without.is_empty(), "tables without RLS: {without:?}");
}

#[tokio::test]
async fn one_policy_per_command_for_authenticated_users_only() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let policies: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT cmd::text, roles::text[] FROM pg_policies WHERE schemaname = 'public' AND tablename = 'todos' \
         ORDER BY cmd",
    )
    .fetch_all(&mut conn)
    .await
    .expect("pg_policies");
    let commands: Vec<&str> = policies.iter().map(|(cmd, _)| cmd.as_str()).collect();
    assert_eq!(commands, ["DELETE", "INSERT", "SELECT", "UPDATE"]);
    assert!(policies.iter().all(|(_, roles)| roles == &["authenticated"]), "{policies:?}");
}

#[tokio::test]
async fn only_authenticated_and_the_admin_role_hold_privileges_on_todos() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    for (role, expected) in [("anon", false), ("authenticated", true), ("project_admin", true)] {
        for privilege in ["SELECT", "DELETE"] {
            let has: bool = sqlx::query_scalar("SELECT has_table_privilege($1, 'public.todos', $2)")
                .bind(role)
                .bind(privilege)
                .fetch_one(&mut conn)
                .await
                .expect("privilege check");
            assert_eq!(has, expected, "{role} {privilege}");
        }
    }
    // Column by column. Updates: the admin role anything; end users the title and the completion only (never the
    // author or the space, 0005_organizations.sql). Inserts: end users the id, title, completion and space only
    // (never the author or the times, 0013). Anon nothing.
    for (privilege, role, column, expected) in [
        ("UPDATE", "project_admin", "user_id", true),
        ("UPDATE", "authenticated", "title", true),
        ("UPDATE", "authenticated", "is_complete", true),
        ("UPDATE", "authenticated", "user_id", false),
        ("UPDATE", "authenticated", "organization_id", false),
        ("UPDATE", "authenticated", "created_at", false),
        ("UPDATE", "anon", "title", false),
        ("INSERT", "project_admin", "created_at", true),
        ("INSERT", "authenticated", "id", true),
        ("INSERT", "authenticated", "title", true),
        ("INSERT", "authenticated", "is_complete", true),
        ("INSERT", "authenticated", "organization_id", true),
        ("INSERT", "authenticated", "user_id", false),
        ("INSERT", "authenticated", "created_at", false),
        ("INSERT", "authenticated", "updated_at", false),
        ("INSERT", "anon", "title", false),
    ] {
        let has: bool = sqlx::query_scalar("SELECT has_column_privilege($1, 'public.todos', $2, $3)")
            .bind(role)
            .bind(column)
            .bind(privilege)
            .fetch_one(&mut conn)
            .await
            .expect("privilege check");
        assert_eq!(has, expected, "{role} {privilege} ({column})");
    }
    // Nothing granted to PUBLIC either (which every role would inherit).
    let acl: Vec<String> =
        sqlx::query_scalar("SELECT unnest(relacl)::text FROM pg_class WHERE oid = 'public.todos'::regclass")
            .fetch_all(&mut conn)
            .await
            .expect("acl");
    assert!(acl.iter().all(|entry| !entry.starts_with('=')), "PUBLIC holds privileges: {acl:?}");
}

#[tokio::test]
async fn the_bookkeeping_table_is_out_of_reach_of_api_roles() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let in_public: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE '%migrations%'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("pg_tables");
    assert_eq!(in_public, 0, "no migrations table in public, where the records API could reach it");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM authbridge._sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .expect("the bookkeeping table");
    assert_eq!(applied, authbridge::migrate::MIGRATOR.iter().count() as i64);
    for role in ["anon", "authenticated", "project_admin"] {
        let usage: bool = sqlx::query_scalar("SELECT has_schema_privilege($1, 'authbridge', 'USAGE')")
            .bind(role)
            .fetch_one(&mut conn)
            .await
            .expect("schema privilege");
        assert!(!usage, "{role} can use the authbridge schema");
    }
}

#[tokio::test]
async fn migrations_run_twice_without_error() {
    let db = TestDb::new().await;
    authbridge::migrate::run(&db.url).await.expect("a second run is a no-op");
    let mut conn = db.connect().await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM authbridge._sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(applied, authbridge::migrate::MIGRATOR.iter().count() as i64, "nothing applied twice");
}

#[tokio::test]
async fn migrations_run_where_insforge_already_made_the_roles_and_default_grants() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    // What InsForge has before our migrations: the roles (cluster-wide, present here from other databases or
    // created now) and default privileges handing every new public table to all three API roles.
    sqlx::raw_sql(
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN; END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN; END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'project_admin') THEN CREATE ROLE project_admin NOLOGIN BYPASSRLS; END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$;
         ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO anon, authenticated, project_admin;
         GRANT USAGE ON SCHEMA public TO anon, authenticated, project_admin;",
    )
    .execute(&mut conn)
    .await
    .expect("an InsForge-like database");

    authbridge::migrate::run(&db.url).await.expect("the migrations accept existing roles");

    for privilege in ["SELECT", "INSERT", "UPDATE", "DELETE"] {
        let anon: bool = sqlx::query_scalar("SELECT has_table_privilege('anon', 'public.todos', $1)")
            .bind(privilege)
            .fetch_one(&mut conn)
            .await
            .expect("privilege check");
        assert!(!anon, "anon kept {privilege} from the default privileges");
    }
}

#[tokio::test]
async fn migrations_create_the_roles_on_a_bare_cluster() {
    // Roles are cluster-wide and the shared cluster has them already: this needs a cluster of its own.
    let postgres = TempPostgres::start(PostgresOptions::default()).await.expect("a private cluster");
    let mut conn = PgConnection::connect(&postgres.url_for("postgres")).await.expect("connect");
    let before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'project_admin')")
            .fetch_one(&mut conn)
            .await
            .expect("roles");
    assert_eq!(before, 0, "a bare cluster has none of the roles");

    let first = postgres.create_database("first").await.expect("database");
    let second = postgres.create_database("second").await.expect("database");
    // Concurrently, as parallel tests or deployments would: role creation must not race itself into an error.
    let (a, b) = tokio::join!(authbridge::migrate::run(&first), authbridge::migrate::run(&second));
    a.expect("first database migrates");
    b.expect("second database migrates");

    let roles: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT rolname::text, rolcanlogin, rolbypassrls FROM pg_roles \
         WHERE rolname IN ('anon', 'authenticated', 'project_admin') ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("roles");
    assert_eq!(
        roles,
        [
            ("anon".to_owned(), false, false),
            ("authenticated".to_owned(), false, false),
            ("project_admin".to_owned(), false, true),
        ]
    );
    let _ = conn.close().await;
    postgres.stop().await;
}

#[tokio::test]
async fn the_database_title_check_is_the_title_type_rule() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let candidates = [
        "a".to_owned(),
        "   ".to_owned(),
        String::new(),
        "\t\n".to_owned(),
        "\u{a0}\u{3000}\u{2003}".to_owned(),
        " \u{3000}x\u{a0} ".to_owned(),
        "x".repeat(500),
        "x".repeat(501),
        format!("   {}   ", "x".repeat(500)),
        "🦀".repeat(500),
        "🦀".repeat(501),
        format!("\u{2029}{}\u{85}", "é".repeat(500)),
        // The vertical tab is White_Space; the letter v is not (0003 wrote `\v`, which PostgreSQL reads as "v").
        "v".to_owned(),
        "vvv".to_owned(),
        "\u{b}".to_owned(),
        "\u{b}x\u{b}".to_owned(),
        "\u{c}\r\u{b}".to_owned(),
        // Stored as the app stores titles (0021): trimmed, no control characters, something that shows.
        format!("{}x", " ".repeat(100_000)),
        "x\ty\r\nz".to_owned(),
        "\u{200b}\u{200b}".to_owned(),
        "a\u{200b}b".to_owned(),
        "\u{2800}".to_owned(),
        "\u{202e}evil\u{1b}[31m".to_owned(),
        "\u{202e}evil".to_owned(),
        "x\u{7f}".to_owned(),
        "x\u{85}y".to_owned(),
        "x\u{9f}".to_owned(),
        "\u{e0001}\u{e0020}".to_owned(),
        "\u{1d173}".to_owned(),
        "\u{1d173}x".to_owned(),
        "\u{2764}\u{fe0f}".to_owned(),
        "\u{feff}".to_owned(),
    ];
    for candidate in candidates {
        // What the app would store: the title `Title::parse` returns, which must be the text as given.
        let accepted_by_type = Title::parse(&candidate).is_ok_and(|title| title.as_str() == candidate);
        let mut tx = conn.begin().await.expect("transaction");
        let accepted_by_db = sqlx::query("INSERT INTO public.todos (user_id, title) VALUES ('someone', $1)")
            .bind(&candidate)
            .execute(&mut *tx)
            .await
            .is_ok();
        tx.rollback().await.expect("rollback");
        assert_eq!(
            accepted_by_type,
            accepted_by_db,
            "{:?}… ({} chars): type says {accepted_by_type}, database says {accepted_by_db}",
            candidate.chars().take(12).collect::<String>(),
            candidate.chars().count()
        );
    }
}

/// The same comparison over every character where the rule has edges (control characters, White_Space, the
/// characters that show nothing, and their neighbours), alone and beside a letter: the database's own rule
/// (`authbridge_rls.title_as_stored`, which its trigger applies) evaluated over all of them in one query.
#[tokio::test]
async fn the_database_title_check_agrees_with_the_title_type_character_by_character() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let edges = (1..=0x3200).chain(0xFDF0..=0xFFFF).chain(0x1BC9F..=0x1BCA4).chain(0x1D172..=0x1D17B);
    let characters: Vec<char> = edges.chain(0xDFFFF..=0xE1000).filter_map(char::from_u32).collect();
    let titles: Vec<String> =
        characters.iter().flat_map(|c| [c.to_string(), format!("x{c}"), format!("{c}x"), format!("x{c}x")]).collect();
    let refused: Vec<String> = sqlx::query_scalar(
        "SELECT title FROM unnest($1::text[]) AS t(title) WHERE NOT authbridge_rls.title_as_stored(title)",
    )
    .bind(&titles)
    .fetch_all(&mut conn)
    .await
    .expect("the rule evaluated");
    let refused: std::collections::HashSet<String> = refused.into_iter().collect();
    let disagreements: Vec<String> = titles
        .iter()
        .filter(|title| Title::parse(title).is_ok_and(|parsed| parsed.as_str() == *title) == refused.contains(*title))
        .map(|title| title.chars().map(|c| format!("U+{:04X}", c as u32)).collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        disagreements.is_empty(),
        "{} titles disagree, e.g. {:?}",
        disagreements.len(),
        &disagreements[..disagreements.len().min(10)]
    );
    let _ = conn.close().await;
}

/// Titles stored before 0021 that it would refuse (the app took control characters and invisible-only titles
/// until then) do not lock their todos: they can still be completed, reopened and deleted; a new title is checked.
#[tokio::test]
async fn a_title_stored_before_0021_does_not_stop_its_todo_being_completed() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    migrate_up_to(&mut conn, 20).await;
    sqlx::raw_sql(
        "INSERT INTO public.todos (user_id, title) VALUES ('user_old', E'esc\\x1B[31mred'), ('user_old', E'\\u200B');",
    )
    .execute(&mut conn)
    .await
    .expect("titles the app accepted before");
    authbridge::migrate::run(&db.url).await.expect("0021 applies over them");

    let complete = "UPDATE public.todos SET is_complete = true";
    assert_eq!(as_user(&mut conn, "user_old", complete).await, Ok(2), "both can be marked done");
    let rename_bad = "UPDATE public.todos SET title = E'still\\x1B' WHERE title LIKE 'esc%'";
    assert_eq!(as_user(&mut conn, "user_old", rename_bad).await, Err("23514".to_owned()), "a new title is checked");
    let rename = "UPDATE public.todos SET title = 'red' WHERE title LIKE 'esc%'";
    assert_eq!(as_user(&mut conn, "user_old", rename).await, Ok(1), "and a good one taken");
    let insert_bad = "INSERT INTO public.todos (title) VALUES (E'\\u200B')";
    assert_eq!(as_user(&mut conn, "user_old", insert_bad).await, Err("23514".to_owned()), "nor written anew");
    assert_eq!(as_user(&mut conn, "user_old", "DELETE FROM public.todos").await, Ok(2), "both can be deleted");
    let _ = conn.close().await;
}

/// Users WorkOS deleted before 0022 are forgotten down to their id by it: the tombstone's email and every address
/// in their history go; the users still there keep theirs, and the tombstone still ends the deleted user's access.
#[tokio::test]
async fn users_deleted_before_0022_lose_their_addresses_and_stay_deleted() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    migrate_up_to(&mut conn, 21).await;
    sqlx::raw_sql(
        "INSERT INTO authbridge.users (id, email, deleted_at, version_updated_at, version_event_at, version_event_id) \
         VALUES ('user_gone', 'gone@acme.test', now(), now(), now(), 'event_1'), \
                ('user_here', 'here@acme.test', NULL, now(), now(), 'event_2'); \
         INSERT INTO authbridge.user_email_history (user_id, email) \
         VALUES ('user_gone', 'gone@acme.test'), ('user_gone', 'gone@old.test'), ('user_here', 'here@acme.test');",
    )
    .execute(&mut conn)
    .await
    .expect("a deleted user and one still there");
    authbridge::migrate::run(&db.url).await.expect("0022 applies");

    let users: Vec<(String, Option<String>, bool)> =
        sqlx::query_as("SELECT id, email, deleted_at IS NOT NULL FROM authbridge.users ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .expect("the users");
    assert_eq!(
        users,
        [("user_gone".to_owned(), None, true), ("user_here".to_owned(), Some("here@acme.test".to_owned()), false)]
    );
    let history: Vec<(String, String)> =
        sqlx::query_as("SELECT user_id, email FROM authbridge.user_email_history ORDER BY 1, 2")
            .fetch_all(&mut conn)
            .await
            .expect("the history");
    assert_eq!(history, [("user_here".to_owned(), "here@acme.test".to_owned())]);
    let denied: bool = sqlx::query_scalar("SELECT authbridge.active_organization_ids('user_gone') = '{}'::text[]")
        .fetch_one(&mut conn)
        .await
        .expect("the rule");
    assert!(denied, "a deleted user is in no organization");
    let _ = conn.close().await;
}

#[tokio::test]
async fn the_database_keeps_updated_at_and_defaults_the_owner_from_the_token() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let mut tx = conn.begin().await.expect("transaction");
    sqlx::query("SELECT set_config('request.jwt.claims', '{\"sub\":\"user_x\",\"role\":\"authenticated\"}', true)")
        .execute(&mut *tx)
        .await
        .expect("claims");
    let row = sqlx::query(
        "INSERT INTO public.todos (title, created_at, updated_at) VALUES ('t', '2000-01-01Z', '2000-01-01Z') \
         RETURNING id, user_id",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("insert");
    tx.commit().await.expect("commit");
    let id: uuid::Uuid = row.get("id");
    let owner: String = row.get("user_id");
    assert_eq!(owner, "user_x", "user_id defaults to the token's sub");

    let updated: bool = sqlx::query_scalar(
        "UPDATE public.todos SET is_complete = true WHERE id = $1 RETURNING updated_at > '2000-01-01Z'",
    )
    .bind(id)
    .fetch_one(&mut conn)
    .await
    .expect("update");
    assert!(updated, "the trigger moved updated_at");

    // A pooled connection that saw the setting before reads it back as '' (not NULL): still no user, no error.
    let nobody: Option<String> =
        sqlx::query_scalar("SELECT public.requesting_user_id()").fetch_one(&mut conn).await.expect("helper");
    assert_eq!(nobody, None);
}

#[tokio::test]
async fn the_lifecycle_tables_are_private_and_the_deny_check_is_a_pinned_security_definer_function() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'authbridge' ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .expect("tables");
    for table in [
        "applied_events",
        "audit_log_outbox",
        "deleted_directories",
        "directory_users",
        "events_cursor",
        "impersonation_audit",
        "organization_memberships",
        "organizations",
        "revoked_sessions",
        "users",
    ] {
        assert!(tables.iter().any(|name| name == table), "{table} missing from {tables:?}");
    }
    for table in &tables {
        for role in ["anon", "authenticated", "project_admin"] {
            for privilege in ["SELECT", "INSERT", "UPDATE", "DELETE"] {
                let has: bool = sqlx::query_scalar("SELECT has_table_privilege($1, 'authbridge.' || $2, $3)")
                    .bind(role)
                    .bind(table)
                    .bind(privilege)
                    .fetch_one(&mut conn)
                    .await
                    .expect("privilege check");
                assert!(!has, "{role} has {privilege} on authbridge.{table}");
            }
        }
    }

    for function in [
        "authbridge_rls.requesting_user_deprovisioned()",
        "authbridge_rls.requesting_user_organization_ids()",
        "authbridge_rls.requesting_user_admin_organization_ids()",
    ] {
        let (definer, config): (bool, Vec<String>) = sqlx::query_as(
            "SELECT prosecdef, coalesce(proconfig, '{}')::text[] FROM pg_proc WHERE oid = $1::regprocedure",
        )
        .bind(function)
        .fetch_one(&mut conn)
        .await
        .expect("the function");
        assert!(definer, "{function}: SECURITY DEFINER");
        assert_eq!(config, ["search_path=pg_catalog, pg_temp"], "{function}: a pinned search_path");
        // Cheap on every request (migrations/0008): PL/pgSQL keeps its query plans for the connection (a SQL
        // function with SECURITY DEFINER is planned on every call), and the requester's id is read once per call
        // rather than once per row scanned.
        let (language, body): (String, String) = sqlx::query_as(
            "SELECT l.lanname::text, p.prosrc FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang \
             WHERE p.oid = $1::regprocedure",
        )
        .bind(function)
        .fetch_one(&mut conn)
        .await
        .expect("the function's language and body");
        assert_eq!(language, "plpgsql", "{function}");
        assert!(
            body.contains("(SELECT authbridge_rls.requesting_user_id())") && !body.contains("public."),
            "{function}: the requester's id read once, and nothing called from public"
        );
        for (role, expected) in [("authenticated", true), ("anon", false), ("public", false)] {
            let may: bool = sqlx::query_scalar("SELECT has_function_privilege($1, $2, 'EXECUTE')")
                .bind(role)
                .bind(function)
                .fetch_one(&mut conn)
                .await
                .expect("function privilege");
            assert_eq!(may, expected, "{function}: {role}");
        }
    }
    // The membership rule the membership helper and the app share (0017) runs as its caller, is pinned too, and is
    // callable by no API role: it answers for any user id it is given.
    let (definer, config, language): (bool, Vec<String>, String) = sqlx::query_as(
        "SELECT p.prosecdef, coalesce(p.proconfig, '{}')::text[], l.lanname::text \
         FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang \
         WHERE p.oid = 'authbridge.active_organization_ids(text)'::regprocedure",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the shared rule");
    assert_eq!(
        (definer, config, language.as_str()),
        (false, vec!["search_path=pg_catalog, pg_temp".to_owned()], "plpgsql")
    );
    for role in ["authenticated", "anon", "project_admin", "public"] {
        let may: bool = sqlx::query_scalar(
            "SELECT has_function_privilege($1, 'authbridge.active_organization_ids(text)', 'EXECUTE')",
        )
        .bind(role)
        .fetch_one(&mut conn)
        .await
        .expect("function privilege");
        assert!(!may, "{role} may call authbridge.active_organization_ids");
    }
    // Nothing that runs as its owner is left in `public`, where InsForge would hand it to `project_admin`; the
    // helpers' own schema holds them and nothing else, and only `authenticated` may look into it.
    let definers_in_public: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef",
    )
    .fetch_all(&mut conn)
    .await
    .expect("definer functions in public");
    assert!(definers_in_public.is_empty(), "{definers_in_public:?}");
    let (functions, relations): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_proc WHERE pronamespace = 'authbridge_rls'::regnamespace), \
                (SELECT count(*) FROM pg_class WHERE relnamespace = 'authbridge_rls'::regnamespace)",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the helpers' schema");
    assert_eq!(
        (functions, relations),
        (7, 0),
        "the three helpers, their own copy of requesting_user_id(), the todos' column guard (0013) and title rule (0021)"
    );
    // No role but their owner looks into it: the policies hold the functions themselves, and a definer function
    // looks names up as its owner. Nor does any of them call into `public`, which InsForge hands to project_admin.
    for (role, expected) in [("authenticated", false), ("anon", false), ("project_admin", false)] {
        let may: bool = sqlx::query_scalar("SELECT has_schema_privilege($1, 'authbridge_rls', 'USAGE')")
            .bind(role)
            .fetch_one(&mut conn)
            .await
            .expect("schema privilege");
        assert_eq!(may, expected, "USAGE on authbridge_rls: {role}");
    }
    // Every todos policy carries the check.
    let policies: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(qual, '') || ' ' || coalesce(with_check, '') FROM pg_policies \
         WHERE schemaname = 'public' AND tablename = 'todos'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("policies");
    assert_eq!(policies.len(), 4);
    assert!(policies.iter().all(|text| text.contains("requesting_user_deprovisioned")), "{policies:?}");
}

/// `sql` run as `user_id` would run it through InsForge (role `authenticated`, their claims), in a transaction
/// rolled back afterwards: the rows it touched, or the SQLSTATE it failed with.
async fn as_user(conn: &mut PgConnection, user_id: &str, sql: &'static str) -> Result<u64, String> {
    let mut tx = conn.begin().await.expect("transaction");
    sqlx::query("SET LOCAL ROLE authenticated").execute(&mut *tx).await.expect("role");
    sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
        .bind(serde_json::json!({ "sub": user_id, "role": "authenticated" }).to_string())
        .execute(&mut *tx)
        .await
        .expect("claims");
    let outcome = sqlx::query(sql).execute(&mut *tx).await.map(|done| done.rows_affected()).map_err(|error| {
        error.as_database_error().and_then(|e| e.code()).map(|code| code.into_owned()).unwrap_or_default()
    });
    tx.rollback().await.expect("rollback");
    outcome
}

/// The policies leave PostgreSQL a way to find a user's rows through an index: a personal list, the app's most
/// frequent query, is planned with an index condition on `user_id`, not as a read of the whole table. (0005's
/// policies hid that condition inside a CASE, so every list was a sequential scan evaluating the claims per row:
/// ~370 ms for 50 todos in a table of 600,000.) Sequential scans are discouraged here so that the plan shows what
/// the planner *can* do whatever the table's size; a policy it cannot see into still gets one.
#[tokio::test]
async fn a_personal_list_is_found_through_the_user_id_index_not_by_reading_the_whole_table() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let mut tx = conn.begin().await.expect("transaction");
    sqlx::query("SET LOCAL ROLE authenticated").execute(&mut *tx).await.expect("role");
    sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await.expect("planner setting");
    sqlx::query("SELECT set_config('request.jwt.claims', '{\"sub\":\"user_x\",\"role\":\"authenticated\"}', true)")
        .execute(&mut *tx)
        .await
        .expect("claims");
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT * FROM public.todos WHERE organization_id IS NULL ORDER BY created_at DESC, id DESC LIMIT 50",
    )
    .fetch_all(&mut *tx)
    .await
    .expect("explain");
    let plan = plan.join("\n");
    assert!(plan.contains("Index Cond: (user_id = "), "an index condition on the requester's id:\n{plan}");
    assert!(!plan.contains("Seq Scan on todos"), "no read of the whole table:\n{plan}");
}

/// A migration queued behind a long transaction would hold every request to the table up behind it, reads included:
/// it gives up after `LOCK_TIMEOUT`, applies nothing, says why, and runs once the transaction is gone. Two
/// `migrate` runs at once still wait for each other, however long.
#[tokio::test]
async fn a_migration_behind_a_long_transaction_gives_up_applying_nothing_and_says_why() {
    crate::helpers::logs::capture();
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    migrate_up_to(&mut conn, 20).await;
    let mut holder = db.connect().await;
    sqlx::raw_sql("BEGIN; UPDATE public.todos SET is_complete = true;").execute(&mut holder).await.expect("a write");
    let started = std::time::Instant::now();
    let error = authbridge::migrate::run(&db.url).await.expect_err("gives up").to_string();
    assert!(started.elapsed() < authbridge::migrate::LOCK_TIMEOUT * 3, "gave up after {:?}", started.elapsed());
    assert!(error.contains("migration 21") && error.contains("lock") && error.contains("again"), "{error}");
    // Said once, in that error: not first in a driver's "slow statement" warning quoting the whole migration.
    let logs = crate::helpers::logs::captured();
    let quoted = logs.lines().find(|line| line.contains("slow statement") && line.contains("title_as_stored"));
    assert_eq!(quoted, None, "the waiting migration is not logged as a slow statement");
    let applied: i64 = sqlx::query_scalar("SELECT max(version) FROM authbridge._sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("the versions applied");
    assert_eq!(applied, 20, "nothing of 0021");

    // The transaction ends while a second run waits: it goes through.
    let end_the_transaction = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.expect("the transaction ends");
    };
    let (migrated, ()) = tokio::join!(authbridge::migrate::run(&db.url), end_the_transaction);
    migrated.expect("0021 applies once nothing holds the table");

    // Another `migrate` under way (its lock, sqlx's, held past LOCK_TIMEOUT, as a release before this one takes
    // it too): this one waits for it, and does not fail.
    use sqlx::migrate::Migrate;
    holder.lock().await.expect("the lock a running migrate holds");
    let held_for = authbridge::migrate::LOCK_TIMEOUT + std::time::Duration::from_secs(1);
    let finish_the_other = async {
        tokio::time::sleep(held_for).await;
        holder.unlock().await.expect("the other run ends");
    };
    let started = std::time::Instant::now();
    let (migrated, ()) = tokio::join!(authbridge::migrate::run(&db.url), finish_the_other);
    migrated.expect("waited for the other run, then found nothing to do");
    assert!(started.elapsed() >= held_for, "it waited: {:?}", started.elapsed());
}

/// Applies migrations 0001 to `last` only, recorded where `authbridge migrate` records them, as a database that ran
/// an older release would have them.
async fn migrate_up_to(conn: &mut PgConnection, last: i64) {
    let older: Vec<_> = authbridge::migrate::MIGRATOR.iter().filter(|m| m.version <= last).cloned().collect();
    assert_eq!(older.len(), usize::try_from(last).expect("a small number"), "0001 to {last:04}");
    let mut migrator = sqlx::migrate::Migrator::with_migrations(older);
    migrator.create_schema(authbridge::migrate::MIGRATIONS_SCHEMA);
    migrator.dangerous_set_table_name(authbridge::migrate::MIGRATIONS_TABLE);
    migrator.run(conn).await.unwrap_or_else(|error| panic!("0001 to {last:04} apply: {error}"));
}

/// A database that ran the app before organizations existed (migrations up to 0004) and holds personal todos,
/// migrated forward: the todos are all still there, personal (`organization_id` NULL), and their authors see and
/// edit them exactly as before, under the new policies; nobody else does.
#[tokio::test]
async fn personal_todos_written_before_organizations_stay_their_authors_after_migrating_forward() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    migrate_up_to(&mut conn, 4).await;
    let has_column: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name = 'todos' AND column_name = 'organization_id')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("catalog");
    assert!(!has_column, "the old schema, before organizations");

    // Written as the app wrote them then: through InsForge, as each author.
    for (author, sql) in [
        ("user_old_a", "INSERT INTO public.todos (title) VALUES ('Water the plants')"),
        ("user_old_a", "INSERT INTO public.todos (title, is_complete) VALUES ('File the taxes', true)"),
        ("user_old_b", "INSERT INTO public.todos (title) VALUES ('Walk the dog')"),
    ] {
        let mut tx = conn.begin().await.expect("transaction");
        sqlx::query("SET LOCAL ROLE authenticated").execute(&mut *tx).await.expect("role");
        sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
            .bind(serde_json::json!({ "sub": author, "role": "authenticated" }).to_string())
            .execute(&mut *tx)
            .await
            .expect("claims");
        sqlx::query(sql).execute(&mut *tx).await.expect("an author writes their todo");
        tx.commit().await.expect("commit");
    }

    authbridge::migrate::run(&db.url).await.expect("0005 onwards apply over existing data");

    let rows: Vec<(String, String, bool, Option<String>)> =
        sqlx::query_as("SELECT user_id, title, is_complete, organization_id FROM public.todos ORDER BY user_id, title")
            .fetch_all(&mut conn)
            .await
            .expect("the todos, as the owner sees them");
    let expected = [
        ("user_old_a", "File the taxes", true),
        ("user_old_a", "Water the plants", false),
        ("user_old_b", "Walk the dog", false),
    ]
    .map(|(user, title, done)| (user.to_owned(), title.to_owned(), done, None));
    assert_eq!(rows, expected, "every todo kept as it was, and personal");

    // Through RLS, as before: each author sees, renames, completes and deletes their own, and only those.
    assert_eq!(as_user(&mut conn, "user_old_a", "SELECT 1 FROM public.todos").await, Ok(2));
    assert_eq!(as_user(&mut conn, "user_old_b", "SELECT 1 FROM public.todos").await, Ok(1));
    assert_eq!(as_user(&mut conn, "user_someone_else", "SELECT 1 FROM public.todos").await, Ok(0));
    for sql in [
        "UPDATE public.todos SET title = 'Renamed after the migration'",
        "UPDATE public.todos SET is_complete = NOT is_complete",
        "DELETE FROM public.todos",
    ] {
        assert_eq!(as_user(&mut conn, "user_old_a", sql).await, Ok(2), "{sql}");
        assert_eq!(as_user(&mut conn, "user_someone_else", sql).await, Ok(0), "{sql}: nobody else's");
    }
    let write = "INSERT INTO public.todos (title) VALUES ('Written after the migration')";
    assert_eq!(as_user(&mut conn, "user_old_a", write).await, Ok(1), "and they keep writing personal todos");
    let _ = conn.close().await;
}

/// What InsForge does after every DDL statement run through its unrestricted SQL endpoint (the dashboard's SQL
/// editor, the MCP server's raw SQL tool) and once in its migration 063: every table and function in `public` not
/// owned by `project_admin` is handed to `project_admin`. Written here in our own words, to the same effect.
const INSFORGE_OWNERSHIP_SWEEP: &str = "
    DO $$
    DECLARE
        object record;
    BEGIN
        FOR object IN
            SELECT p.oid::regprocedure AS name FROM pg_proc p
            WHERE p.pronamespace = 'public'::regnamespace AND pg_get_userbyid(p.proowner) <> 'project_admin'
        LOOP
            EXECUTE format('ALTER FUNCTION %s OWNER TO project_admin', object.name);
        END LOOP;
        FOR object IN
            SELECT c.oid::regclass AS name FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
              AND pg_get_userbyid(c.relowner) <> 'project_admin'
        LOOP
            EXECUTE format('ALTER TABLE %s OWNER TO project_admin', object.name);
        END LOOP;
    END
    $$";

/// The policies' helpers read the private `authbridge` schema as their owner (SECURITY DEFINER), and
/// `project_admin` may not read it. Were they in `public`, InsForge's ownership sweep would make them run as
/// `project_admin`, and every todo request would fail with "permission denied for schema authbridge" after an
/// operator's first `CREATE TABLE` in the SQL editor. Swept before and after the migration that moves them, a
/// database keeps serving each user their own todos and keeps refusing a deleted user.
#[tokio::test]
async fn the_policies_keep_working_after_insforge_hands_public_objects_to_project_admin() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    migrate_up_to(&mut conn, 8).await;
    sqlx::raw_sql(INSFORGE_OWNERSHIP_SWEEP).execute(&mut conn).await.expect("the sweep, on a database as it was");
    authbridge::migrate::run(&db.url).await.expect("the rest applies over a swept database");
    sqlx::raw_sql(INSFORGE_OWNERSHIP_SWEEP).execute(&mut conn).await.expect("the sweep, after the next DDL");

    let write = "INSERT INTO public.todos (title) VALUES ('Still mine')";
    assert_eq!(as_user(&mut conn, "user_swept", write).await, Ok(1), "a user still writes their todo");
    assert_eq!(as_user(&mut conn, "user_swept", "SELECT 1 FROM public.todos").await, Ok(0), "rolled back");
    sqlx::raw_sql(
        "INSERT INTO authbridge.users (id, email, deleted_at, version_updated_at, version_event_at, version_event_id) \
         VALUES ('user_gone', 'gone@example.com', now(), now(), now(), 'event_gone')",
    )
    .execute(&mut conn)
    .await
    .expect("a deleted user");
    let refused = as_user(&mut conn, "user_gone", write).await;
    assert_eq!(refused, Err("42501".to_owned()), "a deleted user is still refused by the database");

    // Now owner of everything in `public`, `project_admin` (through the admin key or the SQL editor) may replace
    // `public.requesting_user_id()`. Its body must never run with the rights of the role that owns the helpers
    // (here the superuser): were the helpers to call it, this one would refuse every todo request.
    sqlx::raw_sql(
        "GRANT CREATE ON SCHEMA public TO project_admin;
         SET ROLE project_admin;
         CREATE OR REPLACE FUNCTION public.requesting_user_id() RETURNS text LANGUAGE plpgsql STABLE AS $$
         BEGIN
             IF current_user NOT IN ('authenticated', 'anon', 'project_admin') THEN
                 RAISE EXCEPTION 'project_admin''s code ran as %', current_user;
             END IF;
             RETURN NULLIF(NULLIF(current_setting('request.jwt.claims', true), '')::json ->> 'sub', '');
         END
         $$;
         RESET ROLE;",
    )
    .execute(&mut conn)
    .await
    .expect("project_admin replaces the public helper it now owns");
    assert_eq!(as_user(&mut conn, "user_swept", write).await, Ok(1), "the helpers never call it as their owner");
    assert_eq!(as_user(&mut conn, "user_gone", write).await, Err("42501".to_owned()));

    // Nor do the policies or the `user_id` default call it (0014): rewritten to answer another user's id, it would
    // let anyone act as that user.
    sqlx::raw_sql(
        "INSERT INTO public.todos (user_id, title) VALUES ('user_victim', 'Private');
         SET ROLE project_admin;
         CREATE OR REPLACE FUNCTION public.requesting_user_id() RETURNS text LANGUAGE sql STABLE AS
             $$ SELECT 'user_victim'::text $$;
         RESET ROLE;",
    )
    .execute(&mut conn)
    .await
    .expect("project_admin makes the public helper answer the victim's id");
    let read = "SELECT 1 FROM public.todos WHERE user_id = 'user_victim'";
    assert_eq!(as_user(&mut conn, "user_attacker", read).await, Ok(0), "the victim's todo stays hidden");
    let renamed = "UPDATE public.todos SET title = 'Taken' WHERE user_id = 'user_victim'";
    assert_eq!(as_user(&mut conn, "user_attacker", renamed).await, Ok(0), "and untouched");
    let mine = "INSERT INTO public.todos (title) VALUES ('Mine') RETURNING 1";
    assert_eq!(as_user(&mut conn, "user_attacker", mine).await, Ok(1), "a todo of one's own is still written");

    // Nor do the names inside the requester's id (0020): with `public` searched before `pg_catalog` (a PostgREST
    // `db-extra-search-path`), a `current_setting` planted there by `project_admin` must not answer for the claims.
    sqlx::raw_sql(
        "SET ROLE project_admin;
         CREATE FUNCTION public.current_setting(text, boolean) RETURNS text LANGUAGE sql STABLE AS
             $$ SELECT '{\"sub\":\"user_victim\"}'::text $$;
         GRANT EXECUTE ON FUNCTION public.current_setting(text, boolean) TO authenticated;
         RESET ROLE;",
    )
    .execute(&mut conn)
    .await
    .expect("project_admin plants a current_setting in public");
    let mut tx = conn.begin().await.expect("transaction");
    sqlx::raw_sql(
        "SET LOCAL ROLE authenticated;
         SET LOCAL search_path = public, pg_catalog;
         SELECT pg_catalog.set_config('request.jwt.claims', '{\"sub\":\"user_attacker\"}', true);",
    )
    .execute(&mut *tx)
    .await
    .expect("the attacker's request, with public searched first");
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM public.todos WHERE user_id = 'user_victim'")
        .fetch_one(&mut *tx)
        .await
        .expect("a read");
    assert_eq!(seen, 0, "the planted function never answers for the claims");
    tx.rollback().await.expect("rollback");
    let _ = conn.close().await;
}

/// InsForge's PostgREST serves from a schema cache: after the migrations it must be told to reload (`NOTIFY pgrst,
/// 'reload schema'`), or a table or column they add is refused until PostgREST restarts.
#[tokio::test]
async fn a_migration_run_tells_postgrest_to_reload_its_schema() {
    let db = TestDb::empty().await;
    let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.expect("a listening connection");
    listener.listen("pgrst").await.expect("LISTEN pgrst");
    authbridge::migrate::run(&db.url).await.expect("the migrations apply");
    let notification = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification on the pgrst channel")
        .expect("the listening connection stays up");
    assert_eq!(notification.payload(), "reload schema");
}

/// Even if the grants are widened (InsForge has granted whole tables to its roles before), an end user cannot set
/// a todo's times on insert, nor change its id, author, space or creation time on update: the trigger of 0013.
#[tokio::test]
async fn users_cannot_forge_a_todos_author_space_or_times_whatever_the_grants() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    sqlx::query("GRANT INSERT, UPDATE ON TABLE public.todos TO authenticated").execute(&mut conn).await.expect("widen");
    let mut tx = conn.begin().await.expect("transaction");
    sqlx::query("SET LOCAL ROLE authenticated").execute(&mut *tx).await.expect("role");
    sqlx::query(
        "SELECT set_config('request.jwt.claims', '{\"sub\":\"user_forger\",\"role\":\"authenticated\"}', true)",
    )
    .execute(&mut *tx)
    .await
    .expect("claims");
    let (id, far_future): (uuid::Uuid, bool) = sqlx::query_as(
        "INSERT INTO public.todos (title, created_at, updated_at) \
         VALUES ('pinned', '9999-12-31T00:00:00Z', '2000-01-01T00:00:00Z') \
         RETURNING id, created_at > now() + interval '1 day' OR updated_at < now() - interval '1 day'",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("the insert itself is allowed");
    assert!(!far_future, "the times are the database's");
    for change in [
        "SET user_id = 'user_someone_else'",
        "SET organization_id = 'org_other'",
        "SET created_at = now() + interval '10 years'",
        "SET id = gen_random_uuid()",
    ] {
        sqlx::query("SAVEPOINT attempt").execute(&mut *tx).await.expect("savepoint");
        // The statements are this test's own constants.
        let refused = sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE public.todos {change} WHERE id = $1")))
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect_err(change);
        let code = refused.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{change}: {refused}");
        sqlx::query("ROLLBACK TO SAVEPOINT attempt").execute(&mut *tx).await.expect("rollback to savepoint");
    }
    let renamed = sqlx::query("UPDATE public.todos SET title = 'renamed', is_complete = true WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .expect("the title and completion still change");
    assert_eq!(renamed.rows_affected(), 1);
    tx.rollback().await.expect("rollback");
}

/// A function planted in `public` to shadow a built-in (as whoever may create there, InsForge's `project_admin`,
/// could) is never run by the migrating role: `public` is not on the migrations' search path.
#[tokio::test]
async fn a_function_planted_in_public_is_never_called_by_the_migrations() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    sqlx::query(
        "CREATE FUNCTION public.format(text, text) RETURNS text LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'the planted public.format ran'; END $$",
    )
    .execute(&mut conn)
    .await
    .expect("plant a function");
    authbridge::migrate::run(&db.url).await.expect("the migrations never call the planted function");
}

/// Outbox rows already tried when 0016 adds `maybe_sent_at` have attempts whose outcomes nobody recorded: each counts
/// as maybe sent when it was written (the 23-hour rule they were queued under), so none is sent past WorkOS's
/// idempotency window. Rows never tried, or settled, are left alone.
#[tokio::test]
async fn outbox_rows_tried_before_0016_count_as_maybe_sent_when_written() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    migrate_up_to(&mut conn, 15).await;
    sqlx::raw_sql(
        "INSERT INTO authbridge.audit_log_outbox (idempotency_key, organization_id, event, created_at, attempts, delivered_at) VALUES
           (gen_random_uuid(), 'org_1', '{\"n\":\"tried\"}', now() - interval '2 hours', 3, NULL),
           (gen_random_uuid(), 'org_1', '{\"n\":\"untried\"}', now() - interval '1 hour', 0, NULL),
           (gen_random_uuid(), 'org_1', '{\"n\":\"delivered\"}', now() - interval '3 hours', 1, now());",
    )
    .execute(&mut conn)
    .await
    .expect("rows of the older release");

    authbridge::migrate::run(&db.url).await.expect("0016 applies over existing rows");

    let rows: Vec<(String, bool)> = sqlx::query_as(
        "SELECT event->>'n', maybe_sent_at IS NOT DISTINCT FROM created_at AND maybe_sent_at IS NOT NULL \
         FROM authbridge.audit_log_outbox ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("rows");
    assert_eq!(rows, [("tried".to_owned(), true), ("untried".to_owned(), false), ("delivered".to_owned(), false)]);
}

/// Directory users stored before 0017 get the date their denial counts from: one deleted while active dates from its
/// deletion event (what the app records now; its payload's `updated_at` may be older than a membership added since),
/// one already inactive from its last change (what 0015 compared, so it denies exactly as before). Active ones deny
/// nothing and get none.
#[tokio::test]
async fn directory_users_stored_before_0017_are_dated_from_their_deletion_or_last_change() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    migrate_up_to(&mut conn, 16).await;
    sqlx::raw_sql(
        "INSERT INTO authbridge.directory_users (id, organization_id, email, state, deleted_at, \
             version_updated_at, version_event_at, version_event_id) VALUES
           ('deleted_active', 'org_1', 'a@x.test', 'active', now(), '2026-01-01Z', '2026-03-01Z', 'e1'),
           ('deleted_inactive', 'org_1', 'b@x.test', 'inactive', now(), '2026-01-02Z', '2026-03-02Z', 'e2'),
           ('inactive', 'org_1', 'c@x.test', 'suspended', NULL, '2026-01-03Z', '2026-03-03Z', 'e3'),
           ('active', 'org_1', 'd@x.test', 'active', NULL, '2026-01-04Z', '2026-03-04Z', 'e4');",
    )
    .execute(&mut conn)
    .await
    .expect("rows of the older release");

    authbridge::migrate::run(&db.url).await.expect("0017 applies over existing rows");

    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT id, to_char(denied_since AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM authbridge.directory_users ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("rows");
    let dated = |id: &str, day: Option<&str>| (id.to_owned(), day.map(str::to_owned));
    assert_eq!(
        rows,
        [
            dated("active", None),
            dated("deleted_active", Some("2026-03-01")),
            dated("deleted_inactive", Some("2026-01-02")),
            dated("inactive", Some("2026-01-03")),
        ]
    );
}

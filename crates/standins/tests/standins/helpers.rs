//! Fixtures shared by the stand-ins' tests: one throwaway PostgreSQL cluster per test binary, a fresh database per
//! test (with the `todos` fixture when the InsForge stand-in serves it), and the InsForge stand-in in front of it.
//!
//! The cluster lives in a `static`. Each `#[tokio::test]` has its own runtime that dies with the test, so the
//! cluster is started on a dedicated thread with a runtime of its own and holds nothing tied to any runtime
//! afterwards. Statics are never dropped: the cluster is stopped and its directory removed by its supervisor when
//! this process exits (see `standins::temp_postgres`).

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use standins::StandInSecret;
use standins::insforge_standin::{InsforgeStandIn, InsforgeStandInOptions};
use standins::temp_postgres::{PostgresOptions, TempPostgres, ThrowawayDatabase};
use url::Url;

/// The project JWT secret the stand-in verifies user tokens with.
pub const JWT_SECRET: &str = "standins-test-secret-0123456789abcdef";

/// The roles InsForge switches to. A real InsForge project has them; a bare cluster needs them created, once, as
/// they belong to the cluster and not to a database.
const ROLES: &str = "CREATE ROLE anon NOLOGIN; CREATE ROLE authenticated NOLOGIN; \
                     CREATE ROLE project_admin NOLOGIN BYPASSRLS;";

/// What the InsForge stand-in's tests serve: a `todos` table under row-level security.
const TODOS_FIXTURE: &str = include_str!("fixtures/todos.sql");

static CLUSTER: OnceLock<TempPostgres> = OnceLock::new();

/// The shared cluster, started (with InsForge's roles) on first use.
pub async fn cluster() -> &'static TempPostgres {
    tokio::task::spawn_blocking(|| {
        CLUSTER.get_or_init(|| {
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime to start PostgreSQL on");
                runtime.block_on(async {
                    let postgres = TempPostgres::start(PostgresOptions::default())
                        .await
                        .unwrap_or_else(|error| panic!("cannot start the test PostgreSQL: {error}"));
                    let mut connection =
                        PgConnection::connect(&postgres.url_for("postgres")).await.expect("a superuser connection");
                    sqlx::raw_sql(ROLES).execute(&mut connection).await.expect("InsForge's roles are created");
                    connection.close().await.expect("close");
                    postgres
                })
            })
            .join()
            .expect("the PostgreSQL starter thread does not panic")
        })
    })
    .await
    .expect("starting the shared cluster does not panic")
}

/// A fresh database of the shared cluster, named uniquely, dropped when its test is done with it.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub url: String,
    _database: ThrowawayDatabase,
}

impl TestDb {
    /// A fresh database holding the `todos` fixture.
    pub async fn with_todos() -> TestDb {
        let database = cluster().await.create_throwaway_database().await.expect("a fresh test database");
        let db = TestDb { url: database.url.clone(), _database: database };
        let mut connection = db.connect().await;
        sqlx::raw_sql(TODOS_FIXTURE).execute(&mut connection).await.expect("the todos fixture applies");
        connection.close().await.expect("close");
        db
    }

    /// A superuser connection (bypasses RLS: for arranging and inspecting, never for what is under test).
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("a superuser connection to the test database")
    }
}

/// A user of the InsForge project, as a token names them.
pub struct TestUser {
    pub id: &'static str,
    pub email: &'static str,
}

/// User A: a WorkOS-style id.
pub fn user_a() -> TestUser {
    TestUser { id: "user_01HAAAAAAAAAAAAAAAAAAAAAAA", email: "alice@example.com" }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_secs()
}

/// Signs `claims` (HS256) with the project secret, as an InsForge client does.
pub fn sign(claims: Value) -> String {
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(JWT_SECRET.as_bytes())).expect("sign")
}

/// A fixture database and the InsForge stand-in serving it.
pub struct TestInsforge {
    pub db: TestDb,
    pub standin: InsforgeStandIn,
    pub http: reqwest::Client,
}

/// A raw answer: status, headers, and the body parsed as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl RawResponse {
    pub fn rows(&self) -> &Vec<Value> {
        self.body.as_array().unwrap_or_else(|| panic!("expected a JSON array, got {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestInsforge {
    pub async fn start() -> TestInsforge {
        let db = TestDb::with_todos().await;
        let standin = InsforgeStandIn::start(InsforgeStandInOptions::new(&db.url, StandInSecret::new(JWT_SECRET)))
            .await
            .expect("the InsForge stand-in starts");
        TestInsforge { db, standin, http: reqwest::Client::new() }
    }

    /// A user token shaped like the ones authbridge mints: `sub`, `email`, `role`, `aud`, five minutes long.
    pub fn token_for(&self, user: &TestUser) -> String {
        let now = now();
        sign(json!({
            "sub": user.id, "email": user.email, "role": "authenticated", "aud": "insforge-api",
            "iat": now, "exp": now + 300,
        }))
    }

    pub fn admin_key(&self) -> String {
        self.standin.admin_key().to_owned()
    }

    pub fn records_url(&self, table: &str) -> Url {
        self.standin.url().join(&format!("api/database/records/{table}")).expect("records URL")
    }

    /// A request to the records API exactly as given: query pairs are percent-encoded, nothing else is checked.
    pub async fn raw(
        &self,
        method: Method,
        table: &str,
        query: &[(&str, &str)],
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> RawResponse {
        let mut request = self.http.request(method, self.records_url(table)).query(query);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("Prefer", "return=representation").json(&body);
        }
        let response = request.send().await.expect("the stand-in answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        RawResponse { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    /// Every todo row, whoever owns it, read through the admin key.
    pub async fn all_rows(&self) -> Vec<Value> {
        let admin = self.admin_key();
        let response = self.raw(Method::GET, "todos", &[("order", "created_at.asc")], Some(&admin), None).await;
        assert_eq!(response.status, 200, "the admin key reads the table: {response:?}");
        response.rows().clone()
    }
}

//! Micro-benchmarks of what every signed-in request costs inside authbridge: opening the session cookie, checking
//! the access token (the first time, and once it is known), the same for an OpenID Connect bearer token, minting the
//! InsForge token, the todo rows' parse and re-serialisation, and a whole `GET /api/todos` through the real router
//! against a local static upstream.
//!
//! `cargo bench --bench request_path` (on demand, not in CI). The WorkOS and OIDC stand-ins serve the JWKS and sign
//! the access tokens; nothing leaves the machine. Wall-clock figures share the two cores with whatever else runs:
//! compare numbers from one run, or count instructions (`scripts/bench --callgrind`).

use std::collections::HashMap;
use std::time::Duration;

use authbridge::config::Config;
use authbridge::http::{AppState, router};
use authbridge::identity::UserProfile;
use authbridge::insforge::minter::TokenMinter;
use authbridge::oidc::OidcHttp;
use authbridge::oidc::keys::SigningKeys;
use authbridge::session::seal::{Purpose, Sealer};
use authbridge::session::{SESSION_COOKIE, Session};
use authbridge::todo::Todo;
use authbridge::token_cache::VERIFIED_TOKENS;
use authbridge::workos::WorkosClient;
use authbridge::workos::access_token::{AccessTokenVerifier, TokenSource};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, header};
use criterion::{Criterion, criterion_group, criterion_main};
use openidconnect::JsonWebKeySetUrl;
use openidconnect::core::CoreJsonWebKeySet;
use standins::oidc_standin::{OidcStandIn, OidcStandInOptions};
use standins::workos_standin::{WorkosStandIn, WorkosStandInOptions};
use tower::ServiceExt;

const COOKIE_PASSWORD: &str = "bench-cookie-password-0123456789-abcdefghij";
const JWT_SECRET: &str = "bench-insforge-secret-0123456789-abcdefghij";

/// The InsForge answer `GET /api/todos` relays: twenty rows, as PostgREST writes them.
pub fn twenty_rows() -> String {
    let rows: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"id":"6f1c2a9e-8d7b-4c55-9a53-3f0e8e7a1b{i:02}","user_id":"user_01HAAAAAAAAAAAAAAAAAAAAAAA","title":"Todo number {i} with a title of ordinary length","is_complete":{},"created_at":"2025-01-02T03:04:{i:02}.123456+00:00","updated_at":"2025-01-02T03:05:{i:02}.654321+00:00"}}"#,
                i % 3 == 0
            )
        })
        .collect();
    format!("[{}]", rows.join(","))
}

#[derive(serde::Deserialize)]
struct Sid {
    sid: Option<String>,
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    _workos: WorkosStandIn,
    config: Config,
    state: AppState,
    cookie: HeaderMap,
    access_token: String,
    user: UserProfile,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (workos, upstream) = runtime.block_on(async {
        let workos = WorkosStandIn::start(WorkosStandInOptions::default()).await.expect("WorkOS stand-in");
        let body = twenty_rows();
        let app = axum::Router::new().fallback(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let upstream = format!("http://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (workos, upstream)
    });
    let env: HashMap<&str, String> = HashMap::from([
        ("WORKOS_API_KEY", workos.api_key().expose().to_owned()),
        ("WORKOS_CLIENT_ID", workos.client_id().to_owned()),
        ("WORKOS_REDIRECT_URI", "http://localhost:3000/callback".to_owned()),
        ("WORKOS_API_BASE_URL", workos.base_url().to_string()),
        ("WORKOS_COOKIE_PASSWORD", COOKIE_PASSWORD.to_owned()),
        ("INSFORGE_URL", upstream),
        ("INSFORGE_JWT_SECRET", JWT_SECRET.to_owned()),
    ]);
    let config = Config::from_lookup(|name| env.get(name).cloned()).expect("configuration");
    let state = runtime.block_on(async { AppState::new(config.clone()).expect("state") });
    runtime.block_on(state.sessions.provider().warm_up()).expect("the JWKS loads");

    let alice = workos.users().into_iter().next().expect("a seeded user");
    let user = UserProfile {
        id: alice.id.clone(),
        email: Some(alice.email.clone()),
        first_name: alice.first_name.clone(),
        last_name: alice.last_name.clone(),
    };
    let access_token = workos.mint_access_token(&alice.id, Duration::from_secs(3600));
    let session = Session {
        access_token: access_token.clone(),
        refresh_token: Some("refresh-token-not-used-by-the-benchmark".to_owned()),
        user: user.clone(),
        organization_id: alice.organization_id.clone(),
        impersonator: None,
        // As the app stores it after sign-in: with the token's session id, so no request needs to reseal it.
        session_id: jsonwebtoken::dangerous::insecure_decode_claims::<Sid>(&access_token).expect("claims").sid,
        oidc: None,
        personal: false,
    };
    let sealer = Sealer::new(&config.session.cookie_password, None).expect("keys");
    let sealed = sealer.seal(Purpose::Session, &serde_json::to_vec(&session).expect("json")).expect("seal");
    let mut cookie = HeaderMap::new();
    cookie.insert(header::COOKIE, HeaderValue::from_str(&format!("{SESSION_COOKIE}={sealed}")).expect("ascii"));
    Fixture { runtime, _workos: workos, config, state, cookie, access_token, user }
}

fn benches(c: &mut Criterion) {
    let f = fixture();

    c.bench_function("cookie_open", |b| {
        b.iter(|| f.state.sessions.open(std::hint::black_box(&f.cookie)).expect("opens"));
    });

    let cold =
        AccessTokenVerifier::with_capacity(WorkosClient::new(f.config.workos().expect("WorkOS")).expect("client"), 0);
    f.runtime.block_on(cold.fetch_keys()).expect("keys");
    c.bench_function("verify_cold", |b| {
        b.to_async(&f.runtime).iter(|| async {
            cold.verify_signature(std::hint::black_box(&f.access_token), TokenSource::Trusted).await.expect("valid")
        });
    });
    let cached = AccessTokenVerifier::new(WorkosClient::new(f.config.workos().expect("WorkOS")).expect("client"));
    f.runtime.block_on(cached.fetch_keys()).expect("keys");
    c.bench_function("verify_cached", |b| {
        b.to_async(&f.runtime).iter(|| async {
            cached.verify_signature(std::hint::black_box(&f.access_token), TokenSource::Trusted).await.expect("valid")
        });
    });

    oidc_bearer(c, &f.runtime);

    let minter = TokenMinter::new(&f.config.insforge).expect("minter");
    let identity = f.user.identity();
    c.bench_function("mint", |b| b.iter(|| minter.mint(std::hint::black_box(&identity)).expect("mints")));

    // What the bridge adds per request before the upstream call: cookie, token check (warm), mint.
    c.bench_function("auth_per_request", |b| {
        b.to_async(&f.runtime).iter(|| async {
            let resolution = f.state.sessions.resolve(std::hint::black_box(&f.cookie)).await;
            assert!(matches!(resolution.outcome, authbridge::session::Outcome::SignedIn(_)));
            minter.mint(&identity).expect("mints")
        });
    });

    let rows = twenty_rows().into_bytes();
    c.bench_function("todo_rows_parse_and_serialise", |b| {
        b.iter(|| {
            let todos: Vec<Todo> = serde_json::from_slice(std::hint::black_box(&rows)).expect("rows");
            serde_json::to_vec(&serde_json::json!({ "todos": todos, "limit": 50, "offset": 0 })).expect("json")
        });
    });

    let app = router(f.state.clone());
    let cookie = f.cookie.get(header::COOKIE).expect("cookie").clone();
    c.bench_function("api_todos_round_trip", |b| {
        b.to_async(&f.runtime).iter(|| async {
            let request = Request::get("/api/todos").header(header::COOKIE, cookie.clone()).body(Body::empty());
            let response = app.clone().oneshot(request.expect("request")).await.expect("infallible");
            assert_eq!(response.status(), 200);
            axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body")
        });
    });
}

/// An OpenID Connect bearer token (Auth0-shaped, RS256) checked against the provider's keys: every time ("cold", a
/// memory of 0 tokens), and once it is known ("cached").
fn oidc_bearer(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let oidc = runtime.block_on(OidcStandIn::start(OidcStandInOptions::default())).expect("OIDC stand-in");
    let token = oidc.mint_access_token("auth0|standin-alice", Duration::from_secs(3600));
    let verifier = authbridge::oidc::access_token::AccessTokenVerifier::new(
        oidc.issuer().as_str(),
        oidc.audience(),
        oidc.client_id(),
        false,
    );
    let keys = |capacity: usize| {
        let http = OidcHttp::new(Duration::from_secs(2), Duration::from_secs(5)).expect("client");
        let jwks_uri = JsonWebKeySetUrl::new(format!("{}.well-known/jwks.json", oidc.issuer())).expect("url");
        let keys = SigningKeys::with_token_capacity(http, jwks_uri, CoreJsonWebKeySet::new(Vec::new()), capacity);
        runtime.block_on(keys.fetch()).expect("keys");
        keys
    };
    for (name, keys) in [("oidc_bearer_cold", keys(0)), ("oidc_bearer_cached", keys(VERIFIED_TOKENS))] {
        c.bench_function(name, |b| {
            b.to_async(runtime)
                .iter(|| async { verifier.verify(&keys, std::hint::black_box(&token)).await.expect("valid") });
        });
    }
}

criterion_group! {
    name = request_path;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(request_path);

//! Writes what `scripts/bench` serves from nginx, and prints the session cookie its load generator sends.
//!
//! `bench_fixture <web root> <cookie password>` writes, under the web root:
//! - `sso/jwks/client_standin`: the JWKS of a freshly started WorkOS stand-in (the bridge's `WORKOS_API_BASE_URL`
//!   is nginx, so the bridge fetches its keys there, once);
//! - `api/database/records/todos`: twenty todo rows as InsForge answers them;
//!
//! and prints `wos-session=<sealed session>` for a user whose access token lives an hour, sealed with the cookie
//! password, so every benchmarked request is a signed-in request that needs no refresh. A benchmark tool, never
//! deployed.

use std::path::PathBuf;
use std::time::Duration;

use authbridge::config::Secret;
use authbridge::identity::UserProfile;
use authbridge::session::seal::{Purpose, Sealer};
use authbridge::session::{SESSION_COOKIE, Session};
use standins::workos_standin::{DEFAULT_CLIENT_ID, WorkosStandIn, WorkosStandInOptions};

/// Twenty rows, as PostgREST writes them (`user_id` included, microsecond `+00:00` timestamps).
fn twenty_rows() -> String {
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

/// The `sid` claim of an access token this program just had signed.
fn session_id(access_token: &str) -> Result<Option<String>, String> {
    #[derive(serde::Deserialize)]
    struct Sid {
        sid: Option<String>,
    }
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Sid>(access_token).map_err(|e| e.to_string())?;
    Ok(claims.sid)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_fixture <web root> <cookie password>";
    let root = PathBuf::from(args.next().ok_or(usage)?);
    let password = Secret::new(args.next().ok_or(usage)?);

    let workos = WorkosStandIn::start(WorkosStandInOptions::default()).await.map_err(|e| e.to_string())?;
    let write = |path: PathBuf, body: String| -> Result<(), String> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(root.join("sso/jwks").join(DEFAULT_CLIENT_ID), workos.jwks().to_string())?;
    write(root.join("api/database/records/todos"), twenty_rows())?;

    let alice = workos.users().into_iter().next().ok_or("the stand-in has no users")?;
    let access_token = workos.mint_access_token(&alice.id, Duration::from_secs(3600));
    let session = Session {
        // As the app stores it after sign-in: with the token's session id, so no request needs to reseal it.
        session_id: session_id(&access_token)?,
        access_token,
        refresh_token: Some("not-used: the token outlives the benchmark".to_owned()),
        user: UserProfile {
            id: alice.id.clone(),
            email: Some(alice.email.clone()),
            first_name: alice.first_name.clone(),
            last_name: alice.last_name.clone(),
        },
        organization_id: alice.organization_id.clone(),
        impersonator: None,
        personal: false,
        oidc: None,
    };
    let sealer = Sealer::new(&password, None).map_err(|e| e.to_string())?;
    let json = serde_json::to_vec(&session).map_err(|e| e.to_string())?;
    let sealed = sealer.seal(Purpose::Session, &json).map_err(|e| e.to_string())?;
    println!("{SESSION_COOKIE}={sealed}");
    workos.shutdown().await;
    Ok(())
}

//! Signs the short-lived InsForge token that carries a user's identity into PostgreSQL.
//!
//! InsForge trusts any HS256 token signed with the project's JWT secret, and its RLS policies compare `sub` with
//! `todos.user_id`. So this module is where "the bridge vouches for this user" happens: a token for the user the
//! request is for, living only minutes. The key is built once; signing is the hot path, so a token is reused for
//! the same user's requests during the first tenth of its life (at most 30 s): every request still carries a
//! token with at least 90% of its lifetime left, and a busy user costs one signature per window, not one per
//! request.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::config::{InsforgeConfig, MIN_JWT_SECRET_BYTES};
use crate::identity::UserIdentity;

/// The database role every minted token asks for; RLS policies are written `to authenticated`.
pub const ROLE: &str = "authenticated";
/// The audience the InsForge integration guides put in tokens. InsForge does not check it; we send it anyway so
/// the tokens look like every other InsForge user token.
pub const AUDIENCE: &str = "insforge-api";

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("INSFORGE_JWT_SECRET is empty: set it to the InsForge project's JWT secret")]
    EmptySecret,
    #[error("INSFORGE_JWT_SECRET is too short ({len} bytes): it must be at least {min} bytes", min = MIN_JWT_SECRET_BYTES)]
    ShortSecret { len: usize },
    #[error("cannot mint an InsForge token for a user without an id")]
    EmptySubject,
    #[error("the system clock is before 1970, so token times cannot be set")]
    Clock,
    #[error("signing the InsForge token failed: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    role: &'static str,
    aud: &'static str,
    iat: u64,
    exp: u64,
}

/// The longest a minted token is handed out again.
const MAX_REUSE: Duration = Duration::from_secs(30);
/// The most users whose latest token is remembered.
const RECENT_TOKENS: usize = 10_000;

/// Mints InsForge user tokens. Cheap to clone (the recent tokens are shared); holds the signing key, never prints
/// it.
#[derive(Clone)]
pub struct TokenMinter {
    key: EncodingKey,
    header: Header,
    ttl: Duration,
    /// How long a token is reused: a tenth of `ttl`, at most [`MAX_REUSE`] (0: never).
    reuse_secs: u64,
    recent: Arc<quick_cache::sync::Cache<UserIdentity, Minted>>,
}

/// A token and when it was signed (Unix seconds, its `iat`).
#[derive(Clone)]
struct Minted {
    token: Arc<str>,
    issued_at: u64,
}

impl fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMinter").field("key", &"***").field("ttl", &self.ttl).finish()
    }
}

impl TokenMinter {
    /// Refuses a missing or short secret even though `Config` checks it too: the minter is the last line before
    /// a guessable key would sign tokens that PostgreSQL trusts.
    pub fn new(config: &InsforgeConfig) -> Result<TokenMinter, MintError> {
        let secret = config.jwt_secret.expose().as_bytes();
        if secret.is_empty() {
            return Err(MintError::EmptySecret);
        }
        if secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(MintError::ShortSecret { len: secret.len() });
        }
        Ok(TokenMinter {
            key: EncodingKey::from_secret(secret),
            header: Header::new(Algorithm::HS256),
            ttl: config.token_ttl,
            reuse_secs: (config.token_ttl / 10).min(MAX_REUSE).as_secs(),
            recent: Arc::new(quick_cache::sync::Cache::new(RECENT_TOKENS)),
        })
    }

    /// A token for `user`: `sub`, `email` (only when known), `role: authenticated`, `aud`, `iat`, `exp`. Signed
    /// now, or the one signed for the same user (same id and email) less than a tenth of its lifetime ago.
    pub fn mint(&self, user: &UserIdentity) -> Result<String, MintError> {
        if user.id.is_empty() {
            return Err(MintError::EmptySubject);
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| MintError::Clock)?.as_secs();
        if let Some(recent) = self.recent.get(user)
            && recent.issued_at <= now
            && now - recent.issued_at < self.reuse_secs
        {
            return Ok(recent.token.to_string());
        }
        let token = self.sign(user, now)?;
        if self.reuse_secs > 0 {
            self.recent.insert(user.clone(), Minted { token: token.as_str().into(), issued_at: now });
        }
        Ok(token)
    }

    fn sign(&self, user: &UserIdentity, now: u64) -> Result<String, MintError> {
        let claims = Claims {
            sub: &user.id,
            email: user.email.as_deref(),
            role: ROLE,
            aud: AUDIENCE,
            iat: now,
            exp: now.saturating_add(self.ttl.as_secs()),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).map_err(MintError::Sign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use jsonwebtoken::{DecodingKey, Validation};
    use url::Url;

    fn config(secret: &str) -> InsforgeConfig {
        InsforgeConfig {
            url: Url::parse("http://127.0.0.1:1").expect("static url"),
            jwt_secret: Secret::new(secret),
            token_ttl: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        }
    }

    fn decode(token: &str, secret: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 0;
        jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        )
        .expect("a token the secret verifies")
        .claims
    }

    #[test]
    fn minted_tokens_carry_exactly_the_documented_claims() {
        let secret = "s".repeat(32);
        let minter = TokenMinter::new(&config(&secret)).expect("valid secret");
        let user = UserIdentity::new("user_01HXYZ", Some("ada@example.com".to_owned()));
        let before = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
        let token = minter.mint(&user).expect("mint");
        let after = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();

        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.alg, Algorithm::HS256);
        let claims = decode(&token, &secret);
        let mut keys: Vec<&str> = claims.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["aud", "email", "exp", "iat", "role", "sub"]);
        assert_eq!(claims["sub"], "user_01HXYZ");
        assert_eq!(claims["email"], "ada@example.com");
        assert_eq!(claims["role"], "authenticated");
        assert_eq!(claims["aud"], "insforge-api");
        let iat = claims["iat"].as_u64().expect("numeric iat");
        let exp = claims["exp"].as_u64().expect("numeric exp");
        assert!((before..=after).contains(&iat), "iat {iat} not in [{before}, {after}]");
        assert_eq!(exp - iat, 300);
    }

    #[test]
    fn email_is_omitted_when_unknown() {
        let secret = "k".repeat(40);
        let minter = TokenMinter::new(&config(&secret)).expect("valid secret");
        let token = minter.mint(&UserIdentity::new("auth0|abc", None)).expect("mint");
        let claims = decode(&token, &secret);
        assert!(!claims.contains_key("email"));
        assert_eq!(claims["sub"], "auth0|abc");
    }

    #[test]
    fn a_token_does_not_verify_with_another_secret() {
        let minter = TokenMinter::new(&config(&"a".repeat(32))).expect("valid secret");
        let token = minter.mint(&UserIdentity::new("user_1", None)).expect("mint");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        let result = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret("b".repeat(32).as_bytes()),
            &validation,
        );
        assert!(result.is_err());
    }

    #[test]
    fn empty_and_short_secrets_are_refused_by_variable_name() {
        let empty = TokenMinter::new(&config("")).expect_err("empty secret");
        assert!(matches!(empty, MintError::EmptySecret));
        assert!(empty.to_string().contains("INSFORGE_JWT_SECRET"));

        let short = TokenMinter::new(&config(&"x".repeat(31))).expect_err("short secret");
        assert!(matches!(short, MintError::ShortSecret { len: 31 }));
        assert!(short.to_string().contains("INSFORGE_JWT_SECRET"), "{short}");
        assert!(!short.to_string().contains(&"x".repeat(31)), "the secret leaked: {short}");
    }

    #[test]
    fn a_token_is_reused_for_the_same_user_only_within_a_tenth_of_its_life() {
        let minter = TokenMinter::new(&config(&"r".repeat(32))).expect("valid secret");
        assert_eq!(minter.reuse_secs, 30);
        let alice = UserIdentity::new("user_alice", Some("alice@example.com".to_owned()));
        let first = minter.mint(&alice).expect("mint");
        assert!(minter.recent.get(&alice).is_some_and(|recent| *recent.token == first));
        assert_eq!(minter.mint(&alice).expect("mint"), first);

        // Another user, or the same id with another email, gets a token of their own.
        let bob = UserIdentity::new("user_bob", Some("alice@example.com".to_owned()));
        assert_eq!(decode(&minter.mint(&bob).expect("mint"), &"r".repeat(32))["sub"], "user_bob");
        let renamed = UserIdentity::new("user_alice", Some("new@example.com".to_owned()));
        assert_eq!(decode(&minter.mint(&renamed).expect("mint"), &"r".repeat(32))["email"], "new@example.com");

        // A token signed 30 s ago (or, clocks being clocks, in the future) is not handed out again.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
        for issued_at in [now - 30, now + 5] {
            minter.recent.insert(alice.clone(), Minted { token: "stale".into(), issued_at });
            let fresh = minter.mint(&alice).expect("mint");
            assert_ne!(fresh, "stale");
            assert_eq!(decode(&fresh, &"r".repeat(32))["sub"], "user_alice");
        }
        // Just inside the window it is.
        minter.recent.insert(alice.clone(), Minted { token: "recent".into(), issued_at: now - 29 });
        assert_eq!(minter.mint(&alice).expect("mint"), "recent");

        // Tokens of under ten seconds are never reused.
        let mut short = config(&"r".repeat(32));
        short.token_ttl = Duration::from_secs(9);
        let short = TokenMinter::new(&short).expect("valid secret");
        short.mint(&alice).expect("mint");
        assert!(short.recent.get(&alice).is_none());
    }

    #[test]
    fn the_key_never_shows_in_debug_output_and_users_need_an_id() {
        let secret = "z".repeat(32);
        let minter = TokenMinter::new(&config(&secret)).expect("valid secret");
        assert!(!format!("{minter:?}").contains(&secret));
        assert!(matches!(minter.mint(&UserIdentity::new("", None)), Err(MintError::EmptySubject)));
    }
}

//! Verifying WorkOS access tokens against the client's JWKS.
//!
//! Every request that claims a user is checked here: the cookie's token on every request, and bearer tokens from
//! API clients. The JWKS is fetched once and cached; an unknown `kid` (WorkOS rotated its key) triggers a refetch,
//! but at most once a minute, so a flood of forged tokens with random `kid`s cannot turn into a flood of requests
//! to WorkOS. The algorithm is pinned to RS256: `none` and the HS* family (the "sign with the public key" attack)
//! are refused before any key is looked at.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use super::client::{WorkosClient, WorkosError};

/// Clock skew tolerated on `exp`. Small, because a stolen token should not outlive its stated lifetime by much.
pub const EXPIRY_LEEWAY: Duration = Duration::from_secs(5);
/// The fastest the JWKS is refetched because a bearer token names an unknown `kid`.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed fetch, how long requests get "unavailable" at once instead of each waiting on another attempt.
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(5);

/// Where a token came from, which decides whether its unknown `kid` may cost a call to WorkOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// Straight from WorkOS, or from our own sealed cookie (which only ever holds tokens WorkOS gave us): an unknown
    /// `kid` means WorkOS rotated its key, so the keys are fetched at once.
    Trusted,
    /// An `Authorization` header, which anyone can send: unknown `kid`s refetch at most once a minute, so forged
    /// tokens cannot turn into a flood of requests to WorkOS.
    Untrusted,
}

/// The claims authbridge reads from a WorkOS access token.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    /// The WorkOS session id, stable across refreshes: sign-out and CSRF tokens are tied to it.
    #[serde(default)]
    pub sid: Option<String>,
    #[serde(default)]
    pub org_id: Option<String>,
    /// Present while a WorkOS admin impersonates the user.
    #[serde(default)]
    pub act: Option<Actor>,
    /// Only with a JWT template that adds it (`email`, or `user_email` as InsForge's WorkOS guide names it): plain
    /// WorkOS access tokens carry no email.
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub user_email: Option<String>,
    pub exp: u64,
    #[serde(default)]
    pub iat: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Actor {
    pub sub: String,
}

impl AccessClaims {
    /// Seconds since the Unix epoch until `exp`, negative once expired.
    pub fn seconds_left(&self, now: u64) -> i64 {
        self.exp as i64 - now as i64
    }

    /// Expired, allowing for [`EXPIRY_LEEWAY`] of clock skew.
    pub fn is_expired(&self, now: u64) -> bool {
        self.seconds_left(now) + (EXPIRY_LEEWAY.as_secs() as i64) <= 0
    }

    /// The lifetime WorkOS gave the token, when it says (`iat` is optional).
    pub fn lifetime(&self) -> Option<Duration> {
        self.iat.and_then(|iat| self.exp.checked_sub(iat)).map(Duration::from_secs)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not RS256")]
    WrongAlgorithm,
    #[error("the token was signed by a key WorkOS does not publish")]
    UnknownKey,
    #[error("the token's signature or claims are invalid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    /// The keys could not be fetched, so nothing can be verified: this is an outage, not a bad token.
    #[error("the WorkOS signing keys are unavailable: {0}")]
    KeysUnavailable(WorkosError),
}

pub struct AccessTokenVerifier {
    workos: WorkosClient,
    keys: RwLock<KeyCache>,
    /// Serialises refetches so concurrent requests with a new `kid` cause one fetch, not one each.
    refetch: Mutex<()>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    /// When an untrusted token's unknown `kid` last caused a fetch. Only those fetches are rate-limited: the first
    /// genuine token signed with a freshly rotated key must be accepted at once.
    untrusted_fetch_at: Option<Instant>,
    /// The last failed fetch, answered for a few seconds without asking WorkOS again.
    failure: Option<(Instant, WorkosError)>,
}

impl KeyCache {
    fn recent_failure(&self) -> Option<WorkosError> {
        self.failure.as_ref().filter(|(at, _)| at.elapsed() < FAILED_FETCH_BACKOFF).map(|(_, error)| error.clone())
    }

    fn untrusted_fetch_allowed(&self) -> bool {
        self.keys.is_empty() || self.untrusted_fetch_at.is_none_or(|at| at.elapsed() >= JWKS_REFETCH_INTERVAL)
    }
}

impl AccessTokenVerifier {
    pub fn new(workos: WorkosClient) -> Self {
        Self { workos, keys: RwLock::new(KeyCache::default()), refetch: Mutex::new(()) }
    }

    /// Verifies signature and algorithm, and that the token has not expired.
    pub async fn verify(&self, token: &str, source: TokenSource) -> Result<AccessClaims, VerifyError> {
        let claims = self.verify_signature(token, source).await?;
        if claims.is_expired(now()) {
            return Err(VerifyError::Expired);
        }
        Ok(claims)
    }

    /// Verifies signature and algorithm only. The session layer uses this so it can see that a genuine token
    /// has expired and refresh it, instead of treating it like a forgery.
    pub async fn verify_signature(&self, token: &str, source: TokenSource) -> Result<AccessClaims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(VerifyError::WrongAlgorithm);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let key = self.key(&kid, source).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        // No official SDK checks `iss` or `aud` (docs/workos.md §1.4): the per-client JWKS is what binds the token to us.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|_| VerifyError::Invalid)
    }

    /// Fetches the keys now: at start-up, so the first sign-in does not wait for them, and from the readiness
    /// probe, which keeps them fresh. Failure is not fatal: keys are fetched again on demand.
    pub async fn fetch_keys(&self) -> Result<(), VerifyError> {
        let _guard = self.refetch.lock().await;
        self.refresh_keys().await
    }

    async fn key(&self, kid: &str, source: TokenSource) -> Result<DecodingKey, VerifyError> {
        if let Some(key) = self.keys.read().await.keys.get(kid) {
            return Ok(key.clone());
        }
        let _guard = self.refetch.lock().await;
        // Another request may have fetched the keys while this one waited for the lock.
        {
            let cache = self.keys.read().await;
            if let Some(key) = cache.keys.get(kid) {
                return Ok(key.clone());
            }
            if let Some(error) = cache.recent_failure() {
                return Err(VerifyError::KeysUnavailable(error));
            }
            if source == TokenSource::Untrusted && !cache.untrusted_fetch_allowed() {
                return Err(VerifyError::UnknownKey);
            }
        }
        self.refresh_keys().await?;
        let mut cache = self.keys.write().await;
        if source == TokenSource::Untrusted {
            cache.untrusted_fetch_at = Some(Instant::now());
        }
        cache.keys.get(kid).cloned().ok_or(VerifyError::UnknownKey)
    }

    async fn refresh_keys(&self) -> Result<(), VerifyError> {
        let fetched = self.workos.fetch_jwks().await;
        let mut cache = self.keys.write().await;
        match fetched {
            Ok(set) => {
                cache.keys = decoding_keys(&set);
                cache.failure = None;
                tracing::debug!(keys = cache.keys.len(), "fetched the WorkOS JWKS");
                Ok(())
            }
            Err(error) => {
                // Keep serving with the keys we have; only a token with a key we lack fails, and quickly.
                tracing::warn!(%error, "could not fetch the WorkOS JWKS");
                cache.failure = Some((Instant::now(), error.clone()));
                Err(VerifyError::KeysUnavailable(error))
            }
        }
    }
}

/// RS256 keys with a `kid`; anything else in the set (other algorithms, encryption keys) is ignored.
fn decoding_keys(set: &JwkSet) -> HashMap<String, DecodingKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            if !matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::RSA(_)) {
                return None;
            }
            DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
        })
        .collect()
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

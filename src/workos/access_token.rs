//! Verifying WorkOS access tokens against the client's JWKS.
//!
//! Every request that claims a user is checked here: the cookie's token on every request, and bearer tokens from
//! API clients. The JWKS is fetched once and cached; an unknown `kid` (WorkOS rotated its key) triggers a refetch,
//! but at most once a minute, so a flood of forged tokens with random `kid`s cannot turn into a flood of requests
//! to WorkOS. The algorithm is pinned to RS256: `none` and the HS* family (the "sign with the public key" attack)
//! are refused before any key is looked at.
//!
//! **Verify once.** A browser presents the same access token on every request for minutes, and checking its RSA
//! signature each time was the largest single cost of a request. So a token whose signature verified is
//! remembered ([`crate::token_cache`]: keyed by the token's SHA-256, bounded, only successful verifications) until
//! the token's `exp`. When a JWKS refetch drops a key, or publishes another under the same `kid`, every token that
//! key signed is forgotten at once, so it is refused from then on; a check that finishes after such a refetch is not
//! remembered. Whether the token's *session* has ended (signed out, revoked) is not the verifier's
//! business: the session layer checks that on every request, cached claims or not.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use super::client::{WorkosClient, WorkosError};
pub use crate::token_cache::VERIFIED_TOKENS;
use crate::token_cache::{Verified, VerifiedTokens};

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
    /// Present in every token WorkOS Connect issues to another application (an OAuth or MCP client acting for the
    /// user, or a machine), never in a session's token (<https://workos.com/docs/authkit/connect/token-claims>).
    /// Read only to refuse those as bearer tokens: see [`AccessClaims::is_connect_token`]. (Connect tokens carry a
    /// `scope` too, but so may a session token whose JWT template adds one of its own.)
    #[serde(default)]
    client_id: Option<serde::de::IgnoredAny>,
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

    /// Whether WorkOS Connect issued the token to another application (it names a `client_id`): a third-party app's
    /// or MCP client's token, limited to the scopes the user granted it, whose `sid` is a consent and not a session
    /// (so no sign-out or `session.revoked` would ever reach it), or a machine's, whose `sub` is the application.
    /// Either would act here with all the user's rights, so neither is taken as a bearer token.
    pub fn is_connect_token(&self) -> bool {
        self.client_id.is_some()
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
    /// Tokens whose signature verified.
    verified: VerifiedTokens<AccessClaims>,
}

/// A signing key WorkOS publishes: the key to verify with, and the JWK as published, so that a later fetch
/// publishing something else under the same `kid` is seen to be another key.
#[derive(Clone)]
struct PublishedKey {
    key: DecodingKey,
    published: Arc<Jwk>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, PublishedKey>,
    /// When an untrusted token's unknown `kid` last caused a fetch. Only those fetches are rate-limited: the first
    /// genuine token signed with a freshly rotated key must be accepted at once.
    untrusted_fetch_at: Option<Instant>,
    /// The last failed fetch, answered for a few seconds without asking WorkOS again.
    failure: Option<(Instant, WorkosError)>,
}

impl KeyCache {
    /// The last key fetch's failure, when it is younger than the backoff at `now`.
    fn recent_failure(&self, now: Instant) -> Option<WorkosError> {
        let recent = |(at, _): &&(Instant, WorkosError)| now.saturating_duration_since(*at) < FAILED_FETCH_BACKOFF;
        self.failure.as_ref().filter(recent).map(|(_, error)| error.clone())
    }

    fn untrusted_fetch_allowed(&self) -> bool {
        self.keys.is_empty() || self.untrusted_fetch_at.is_none_or(|at| at.elapsed() >= JWKS_REFETCH_INTERVAL)
    }
}

impl AccessTokenVerifier {
    /// A verifier that remembers up to [`VERIFIED_TOKENS`] verified tokens.
    pub fn new(workos: WorkosClient) -> Self {
        Self::with_capacity(workos, VERIFIED_TOKENS)
    }

    /// A verifier that remembers up to `capacity` verified tokens; `0` verifies every signature every time (what
    /// the benchmarks measure as "cold").
    pub fn with_capacity(workos: WorkosClient, capacity: usize) -> Self {
        Self {
            workos,
            keys: RwLock::new(KeyCache::default()),
            refetch: Mutex::new(()),
            verified: VerifiedTokens::new(capacity),
        }
    }

    /// Verifies signature and algorithm, and that the token has not expired.
    pub async fn verify(&self, token: &str, source: TokenSource) -> Result<Arc<AccessClaims>, VerifyError> {
        let claims = self.verify_signature(token, source).await?;
        if claims.is_expired(now()) {
            return Err(VerifyError::Expired);
        }
        Ok(claims)
    }

    /// Verifies signature and algorithm only. The session layer uses this so it can see that a genuine token
    /// has expired and refresh it, instead of treating it like a forgery.
    pub async fn verify_signature(&self, token: &str, source: TokenSource) -> Result<Arc<AccessClaims>, VerifyError> {
        if let Some(claims) = self.verified.cached(token, now()) {
            return Ok(claims);
        }
        // Boxed: a full check may fetch the keys, a future far larger than the cached path; unboxed, every request's
        // future would carry (and move) it.
        let (verified, key) = Box::pin(self.verify_with_keys(token, source)).await?;
        let claims = Arc::clone(&verified.claims);
        // Kept until `exp` only: past it, the claims are read again from a fresh check (for a refresh, once). And
        // only if the key that verified it is still the one published: a fetch that withdrew or replaced it while
        // the token was being checked has already forgotten that key's tokens, and must not miss this one. Checked
        // and stored under the read lock, so a fetch comes either before (nothing stored) or after (it forgets it).
        self.remember_if_still_published(token, verified, &key).await;
        Ok(claims)
    }

    async fn remember_if_still_published(&self, token: &str, verified: Verified<AccessClaims>, key: &PublishedKey) {
        let keys = self.keys.read().await;
        if keys.keys.get(&*verified.kid).is_some_and(|current| current.published == key.published) {
            self.verified.remember(token, verified, now());
        }
    }

    /// The full check: header, algorithm, key, RSA signature, required claims. Also returns the key that verified.
    async fn verify_with_keys(
        &self,
        token: &str,
        source: TokenSource,
    ) -> Result<(Verified<AccessClaims>, PublishedKey), VerifyError> {
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
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|_| VerifyError::Invalid)?;
        // WorkOS access tokens carry no `nbf`: valid from their issue, until `exp`.
        let valid = 0..claims.exp;
        Ok((Verified { claims: Arc::new(claims), kid: kid.into(), valid }, key))
    }

    /// Fetches the keys now: at start-up, so the first sign-in does not wait for them, and every minute, which keeps
    /// them fresh. Failure is not fatal: keys are fetched again on demand.
    pub async fn fetch_keys(&self) -> Result<(), VerifyError> {
        let _guard = self.refetch.lock().await;
        self.refresh_keys().await
    }

    /// Whether any signing key is held (fetched now or before): tokens can be verified.
    pub async fn has_keys(&self) -> bool {
        !self.keys.read().await.keys.is_empty()
    }

    async fn key(&self, kid: &str, source: TokenSource) -> Result<PublishedKey, VerifyError> {
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
            if let Some(error) = cache.recent_failure(Instant::now()) {
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
                let keys = decoding_keys(&set);
                // A key withdrawn, or different under the same `kid`, vouches for nothing any more, including the
                // tokens it signed before.
                let replaced = self.verified.forget_keys_not_republished(&cache.keys, &keys, |key| &key.published);
                if replaced > 0 {
                    tracing::info!(
                        keys = replaced,
                        "WorkOS withdrew or replaced signing keys; forgot the tokens they signed"
                    );
                }
                cache.keys = keys;
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

/// The claims of `token` **without checking its signature**: only for tokens that came straight from WorkOS as the
/// answer to our own authenticated call over TLS, when the keys to check them cannot be fetched. OpenID Connect Core
/// §3.1.3.7 (6) allows exactly this for tokens received "via direct communication between the Client and the Token
/// Endpoint"; WorkOS's own SDKs store refreshed tokens without verifying them at all. The token is still verified
/// in full the next time a request presents it.
pub fn claims_from_workos_unverified(token: &str) -> Result<AccessClaims, VerifyError> {
    jsonwebtoken::dangerous::insecure_decode::<AccessClaims>(token)
        .map(|data| data.claims)
        .map_err(|_| VerifyError::Malformed)
}

/// RS256 keys with a `kid`; anything else in the set (other algorithms, encryption keys) is ignored.
fn decoding_keys(set: &JwkSet) -> HashMap<String, PublishedKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            if !matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::RSA(_)) {
                return None;
            }
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some((kid, PublishedKey { key, published: Arc::new(jwk.clone()) }))
        })
        .collect()
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use standins::workos_standin::{WorkosStandIn, WorkosStandInOptions};
    use url::Url;

    use super::*;
    use crate::config::{Secret, WorkosConfig};
    use crate::token_cache::forged;

    fn claims(iat: Option<u64>, exp: u64) -> AccessClaims {
        AccessClaims {
            sub: "user_1".to_owned(),
            sid: None,
            org_id: None,
            act: None,
            exp,
            iat,
            email: None,
            user_email: None,
            client_id: None,
        }
    }

    #[test]
    fn a_token_is_expired_only_past_the_leeway_for_clock_skew() {
        let now = 1_000_000;
        let leeway = EXPIRY_LEEWAY.as_secs();
        assert!(!claims(None, now + 60).is_expired(now));
        assert!(!claims(None, now - leeway + 1).is_expired(now), "a second inside the leeway");
        assert!(claims(None, now - leeway).is_expired(now), "at the leeway's end");
        assert!(claims(None, now - 3600).is_expired(now));
    }

    #[test]
    fn the_lifetime_is_known_only_from_iat() {
        assert_eq!(claims(Some(100), 400).lifetime(), Some(Duration::from_secs(300)));
        assert_eq!(claims(None, 400).lifetime(), None);
        assert_eq!(claims(Some(500), 400).lifetime(), None, "issued after it expires: no lifetime");
    }

    #[test]
    fn a_failed_key_fetch_is_answered_from_memory_for_the_backoff_only() {
        let failed = Instant::now();
        let cache =
            KeyCache { failure: Some((failed, WorkosError::Unavailable { status: 503 })), ..KeyCache::default() };
        assert!(cache.recent_failure(failed).is_some(), "just failed: do not ask WorkOS again at once");
        let almost = failed + FAILED_FETCH_BACKOFF - Duration::from_nanos(1);
        assert!(cache.recent_failure(almost).is_some(), "for the whole backoff");
        assert!(cache.recent_failure(failed + FAILED_FETCH_BACKOFF).is_none(), "from the backoff's end, ask again");
        assert!(KeyCache::default().recent_failure(failed).is_none(), "no failure, nothing to answer with");
    }

    async fn standin() -> (WorkosStandIn, String) {
        let workos = WorkosStandIn::start(WorkosStandInOptions::default()).await.expect("the WorkOS stand-in starts");
        let user = workos.users().into_iter().next().expect("a seeded user").id;
        (workos, user)
    }

    async fn verifier(workos: &WorkosStandIn, capacity: usize) -> AccessTokenVerifier {
        let config = WorkosConfig {
            api_key: Secret::new(workos.api_key().expose()),
            client_id: workos.client_id().to_owned(),
            redirect_uri: Url::parse("http://localhost:3000/callback").expect("url"),
            api_base_url: workos.base_url(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        };
        let verifier = AccessTokenVerifier::with_capacity(WorkosClient::new(&config).expect("client"), capacity);
        verifier.fetch_keys().await.expect("the JWKS loads");
        verifier
    }

    fn is_cached(verifier: &AccessTokenVerifier, token: &str) -> bool {
        verifier.verified.contains(token)
    }

    #[tokio::test]
    async fn a_genuine_token_is_verified_once_then_answered_from_the_cache() {
        let (workos, user) = standin().await;
        let verifier = verifier(&workos, VERIFIED_TOKENS).await;
        let token = workos.mint_access_token(&user, Duration::from_secs(300));
        assert!(!is_cached(&verifier, &token));

        let first = verifier.verify(&token, TokenSource::Untrusted).await.expect("a genuine token verifies");
        assert_eq!(first.sub, user);
        assert!(is_cached(&verifier, &token));
        let second = verifier.verify_signature(&token, TokenSource::Trusted).await.expect("still genuine");
        assert!(Arc::ptr_eq(&first, &second), "the second check is answered with the first one's claims");
    }

    #[tokio::test]
    async fn forged_misalgorithmed_and_expired_tokens_are_never_cached_as_valid() {
        let (workos, user) = standin().await;
        let verifier = verifier(&workos, VERIFIED_TOKENS).await;
        let genuine = workos.mint_access_token(&user, Duration::from_secs(300));
        verifier.verify(&genuine, TokenSource::Trusted).await.expect("genuine");

        let forged = forged(&genuine);
        for _ in 0..2 {
            assert!(matches!(verifier.verify(&forged, TokenSource::Untrusted).await, Err(VerifyError::Invalid)));
            assert!(!is_cached(&verifier, &forged), "a forgery next to a cached genuine token stays refused");
        }

        // The genuine token's claims under an `alg: HS256` header: refused before any key is looked at.
        let (_, rest) = genuine.split_once('.').expect("a JWT");
        let hs256 = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#));
        assert!(matches!(verifier.verify(&hs256, TokenSource::Untrusted).await, Err(VerifyError::WrongAlgorithm)));
        assert!(!is_cached(&verifier, &hs256));
        assert!(matches!(verifier.verify("not.a.jwt", TokenSource::Untrusted).await, Err(VerifyError::Malformed)));

        // Genuine but expired: its claims are read (a session refreshes it), but nothing is kept past `exp`.
        let now = SystemTime::now();
        let expired =
            workos.mint_access_token_with(&user, now - Duration::from_secs(600), now - Duration::from_secs(300));
        assert!(verifier.verify_signature(&expired, TokenSource::Trusted).await.is_ok());
        assert!(matches!(verifier.verify(&expired, TokenSource::Trusted).await, Err(VerifyError::Expired)));
        assert!(!is_cached(&verifier, &expired));
    }

    #[tokio::test]
    async fn a_cached_entry_past_its_exp_is_not_trusted() {
        let (workos, user) = standin().await;
        let verifier = verifier(&workos, VERIFIED_TOKENS).await;
        let forged = forged(&workos.mint_access_token(&user, Duration::from_secs(300)));
        // An entry for this (forged) token that expired a second ago: it must be thrown away, not answered.
        let stale = AccessClaims {
            sub: user,
            sid: None,
            org_id: None,
            act: None,
            exp: now() - 1,
            iat: None,
            email: None,
            user_email: None,
            client_id: None,
        };
        let valid = 0..stale.exp;
        let stale = Verified { claims: Arc::new(stale), kid: workos.kid().into(), valid };
        verifier.verified.insert_unchecked(&forged, stale);

        assert!(matches!(verifier.verify_signature(&forged, TokenSource::Trusted).await, Err(VerifyError::Invalid)));
        assert!(!is_cached(&verifier, &forged), "the stale entry is gone");
    }

    #[tokio::test]
    async fn a_withdrawn_signing_key_takes_the_tokens_it_signed_out_of_the_cache() {
        let (workos, user) = standin().await;
        let verifier = verifier(&workos, VERIFIED_TOKENS).await;
        let token = workos.mint_access_token(&user, Duration::from_secs(300));
        verifier.verify(&token, TokenSource::Untrusted).await.expect("genuine");

        // One rotation: WorkOS publishes the new key and still the old one, so the token stays good.
        workos.rotate_signing_key().await.expect("rotates");
        verifier.fetch_keys().await.expect("refetch");
        assert!(is_cached(&verifier, &token), "a key still published keeps its tokens");

        // A second rotation withdraws the key that signed the token.
        workos.rotate_signing_key().await.expect("rotates");
        verifier.fetch_keys().await.expect("refetch");
        let refused = verifier_forgot(&verifier, &workos, &user, &token).await;
        assert!(matches!(refused, Err(VerifyError::UnknownKey)));
    }

    /// After a fetch that withdrew or replaced the key `token` was signed with: the token is forgotten, the new key's
    /// tokens verify, and what checking `token` again answers.
    async fn verifier_forgot(
        verifier: &AccessTokenVerifier,
        workos: &WorkosStandIn,
        user: &str,
        token: &str,
    ) -> Result<Arc<AccessClaims>, VerifyError> {
        assert!(!is_cached(verifier, token), "the old key's tokens are forgotten");
        let fresh = workos.mint_access_token(user, Duration::from_secs(300));
        assert!(verifier.verify(&fresh, TokenSource::Trusted).await.is_ok(), "the new key's tokens verify");
        verifier.verify(token, TokenSource::Trusted).await
    }

    #[tokio::test]
    async fn a_key_replaced_under_the_same_kid_takes_the_tokens_it_signed_out_of_the_cache() {
        let (workos, user) = standin().await;
        let verifier = verifier(&workos, VERIFIED_TOKENS).await;
        let token = workos.mint_access_token(&user, Duration::from_secs(300));
        verifier.verify(&token, TokenSource::Untrusted).await.expect("genuine");
        let kid = workos.kid();

        workos.replace_signing_key_keeping_kid().await.expect("replaces");
        verifier.fetch_keys().await.expect("refetch");
        assert_eq!(workos.kid(), kid, "the same kid, another key");
        let refused = verifier_forgot(&verifier, &workos, &user, &token).await;
        assert!(matches!(refused, Err(VerifyError::Invalid)), "its signature does not match the new key");
    }

    #[tokio::test]
    async fn a_check_that_finishes_after_its_key_was_replaced_is_not_remembered() {
        let (workos, user) = standin().await;
        let verifier = verifier(&workos, VERIFIED_TOKENS).await;
        let token = workos.mint_access_token(&user, Duration::from_secs(300));
        // The full check has found its key and verified the signature...
        let (verified, key) = verifier.verify_with_keys(&token, TokenSource::Trusted).await.expect("genuine");
        // ...when a fetch replaces that key (and forgets what it signed, which is nothing yet).
        workos.replace_signing_key_keeping_kid().await.expect("replaces");
        verifier.fetch_keys().await.expect("refetch");
        verifier.remember_if_still_published(&token, verified, &key).await;
        assert!(!is_cached(&verifier, &token), "a check against a key no longer published is not kept");
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_can_be_turned_off() {
        let (workos, user) = standin().await;
        let verifier_of_8 = verifier(&workos, 8).await;
        let tokens: Vec<String> = (0..24).map(|_| workos.mint_access_token(&user, Duration::from_secs(300))).collect();
        for token in &tokens {
            verifier_of_8.verify(token, TokenSource::Trusted).await.expect("genuine");
        }
        let kept = tokens.iter().filter(|token| is_cached(&verifier_of_8, token)).count();
        assert!((1..=8).contains(&kept), "{kept} of 24 tokens kept by a cache of 8");

        let uncached = verifier(&workos, 0).await;
        let first = uncached.verify(&tokens[0], TokenSource::Trusted).await.expect("genuine");
        let second = uncached.verify(&tokens[0], TokenSource::Trusted).await.expect("genuine");
        assert!(!Arc::ptr_eq(&first, &second), "without a cache every check verifies afresh");
        assert!(!is_cached(&uncached, &tokens[0]));
    }
}

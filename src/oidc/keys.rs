//! The provider's signing keys (its JWKS), cached, and fetched again when a token names a key we do not have.
//!
//! Providers rotate their keys: the first token signed with a new key names a `kid` missing from the cached set,
//! and the only right answer is to fetch the set again (the `openidconnect` crate does not; its verifier just says
//! "no matching key"). How eagerly depends on who sent the token, as for WorkOS (`workos::access_token`): a token
//! straight from the token endpoint may cause a fetch at once, a bearer token (anyone can send one) at most once per
//! [`UNTRUSTED_REFETCH_INTERVAL`], so forged `kid`s cannot become a flood of requests to the provider. After a
//! failed fetch, callers are told "unavailable" for [`FAILED_FETCH_BACKOFF`] without another attempt.
//!
//! One fetch serves both verifiers: the ID-token verifier (`openidconnect`'s key type) and the bearer-token verifier
//! (`jsonwebtoken`'s), each built from the same set. Symmetric (`oct`) keys are never kept for either.
//!
//! The keys also hold what they vouched for: the bearer tokens that passed a complete verification
//! ([`crate::token_cache`], verify once). A remembered token stands only while the key that signed it is published
//! unchanged, so the memory lives with the keys: a fetch that withdraws a key, or publishes different key material
//! (or parameters) under the same `kid`, forgets every token that key signed, under the same lock that swaps the
//! keys; and a verification that finishes after such a swap is not remembered (its key is no longer the one
//! published). One client has one set of keys and one bearer verifier (one issuer, one audience), so one memory.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use openidconnect::core::CoreJsonWebKeySet;
use openidconnect::{DiscoveryError, JsonWebKeySet, JsonWebKeySetUrl};
use tokio::sync::Mutex;

use super::access_token::AccessClaims;
use super::http::{HttpError, OidcHttp};
use crate::sync::{read, write};
use crate::token_cache::{VERIFIED_TOKENS, Verified, VerifiedTokens};

/// The fastest an unknown `kid` in a bearer token makes the set be fetched again.
pub const UNTRUSTED_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed fetch, how long callers are answered "unavailable" without another attempt.
pub const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(5);

/// Where a token came from, which decides whether its unknown `kid` may cost a call to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// Straight from the provider's token endpoint: an unknown `kid` means the provider rotated its key.
    Trusted,
    /// An `Authorization` header, which anyone can send.
    Untrusted,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum KeysError {
    #[error("the provider's signing keys cannot be fetched: {0}")]
    Unavailable(String),
}

/// A bearer-verification key and what it may verify.
#[derive(Clone)]
pub struct BearerKey {
    pub key: DecodingKey,
    pub family: KeyFamily,
    /// The `alg` the JWK is published for, when it says.
    pub algorithm: Option<Algorithm>,
    /// The JWK as published: a later fetch with a different one under the same `kid` is another key.
    published: Arc<Jwk>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    EllipticCurve,
    OctetKeyPair,
}

pub struct SigningKeys {
    http: OidcHttp,
    jwks_uri: JsonWebKeySetUrl,
    cache: RwLock<Cache>,
    /// Serialises fetches, so concurrent requests with the same new `kid` cause one fetch.
    fetching: Mutex<()>,
    /// Bearer tokens these keys verified, forgotten with the key that signed them.
    bearer_tokens: VerifiedTokens<AccessClaims>,
}

struct Cache {
    id_token_keys: CoreJsonWebKeySet,
    bearer_keys: HashMap<String, BearerKey>,
    /// Counts completed fetches: a caller that saw generation `n` fail and finds `n + 1` just retries.
    generation: u64,
    untrusted_fetch_at: Option<Instant>,
    failure: Option<(Instant, KeysError)>,
}

/// The keys as they were when a verification started, and which fetch they came from.
pub struct Snapshot {
    pub id_token_keys: CoreJsonWebKeySet,
    pub generation: u64,
}

impl SigningKeys {
    /// Starts with the set discovery fetched, remembering up to [`VERIFIED_TOKENS`] verified bearer tokens.
    pub fn new(http: OidcHttp, jwks_uri: JsonWebKeySetUrl, initial: CoreJsonWebKeySet) -> Self {
        Self::with_token_capacity(http, jwks_uri, initial, VERIFIED_TOKENS)
    }

    /// Remembers up to `capacity` verified bearer tokens; `0` verifies every one in full every time (what the
    /// benchmarks measure as "cold").
    pub fn with_token_capacity(
        http: OidcHttp,
        jwks_uri: JsonWebKeySetUrl,
        initial: CoreJsonWebKeySet,
        capacity: usize,
    ) -> Self {
        let bearer_keys = bearer_keys(&initial);
        Self {
            http,
            jwks_uri,
            cache: RwLock::new(Cache {
                id_token_keys: initial,
                bearer_keys,
                generation: 0,
                untrusted_fetch_at: None,
                failure: None,
            }),
            fetching: Mutex::new(()),
            bearer_tokens: VerifiedTokens::new(capacity),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let cache = read(&self.cache);
        Snapshot { id_token_keys: cache.id_token_keys.clone(), generation: cache.generation }
    }

    /// The bearer key with this `kid`, and the generation it was looked up in.
    pub fn bearer_key(&self, kid: &str) -> (Option<BearerKey>, u64) {
        let cache = read(&self.cache);
        (cache.bearer_keys.get(kid).cloned(), cache.generation)
    }

    /// The claims of a bearer token these keys verified before, while they are current at `now`.
    pub fn verified_bearer(&self, token: &str, now: u64) -> Option<Arc<AccessClaims>> {
        self.bearer_tokens.cached(token, now)
    }

    /// Remembers a bearer token that has just passed its complete verification with `key`, unless `key` is no
    /// longer the one published under its `kid` (a fetch replaced it while the token was being checked). The check
    /// and the insert hold the read lock, so a fetch cannot slip between them: it either comes first (nothing is
    /// remembered) or after (and forgets the entry).
    pub fn remember_bearer(&self, token: &str, verified: Verified<AccessClaims>, key: &BearerKey, now: u64) {
        let cache = read(&self.cache);
        if cache.bearer_keys.get(&*verified.kid).is_some_and(|published| published.published == key.published) {
            self.bearer_tokens.remember(token, verified, now);
        }
    }

    /// The remembered bearer tokens, for tests that look inside.
    #[cfg(test)]
    pub fn verified_bearer_tokens(&self) -> &VerifiedTokens<AccessClaims> {
        &self.bearer_tokens
    }

    /// Fetches the set again after a token signed with an unknown key, unless the rules above say not to.
    /// `Ok(true)`: there are newer keys to try (fetched now, or by someone else since generation `seen`).
    pub async fn refetch_for_unknown_key(&self, seen: u64, source: TokenSource) -> Result<bool, KeysError> {
        let _fetching = self.fetching.lock().await;
        {
            let cache = read(&self.cache);
            if cache.generation != seen {
                return Ok(true);
            }
            if let Some(error) = cache.recent_failure() {
                return Err(error);
            }
            let untrusted_allowed =
                cache.untrusted_fetch_at.is_none_or(|at| at.elapsed() >= UNTRUSTED_REFETCH_INTERVAL);
            if source == TokenSource::Untrusted && !untrusted_allowed {
                return Ok(false);
            }
        }
        if source == TokenSource::Untrusted {
            write(&self.cache).untrusted_fetch_at = Some(Instant::now());
        }
        self.fetch_locked().await.map(|()| true)
    }

    /// Whether any key is held (from discovery or a fetch since): tokens can be verified.
    pub fn has_keys(&self) -> bool {
        !read(&self.cache).id_token_keys.keys().is_empty()
    }

    /// Fetches the set now (every minute, and from a readiness probe while none is held).
    pub async fn fetch(&self) -> Result<(), KeysError> {
        let _fetching = self.fetching.lock().await;
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> Result<(), KeysError> {
        match JsonWebKeySet::fetch_async(&self.jwks_uri, &self.http).await {
            Ok(set) => {
                let bearer_keys = bearer_keys(&set);
                let mut cache = write(&self.cache);
                tracing::debug!(keys = set.keys().len(), "fetched the identity provider's JWKS");
                // A key withdrawn, or different under the same `kid`, vouches for nothing any more, including the
                // tokens it signed before.
                let replaced =
                    self.bearer_tokens
                        .forget_keys_not_republished(&cache.bearer_keys, &bearer_keys, |key| &key.published);
                if replaced > 0 {
                    tracing::info!(
                        keys = replaced,
                        "the identity provider withdrew or replaced signing keys; forgot the tokens they signed"
                    );
                }
                cache.id_token_keys = set;
                cache.bearer_keys = bearer_keys;
                cache.generation += 1;
                cache.failure = None;
                Ok(())
            }
            Err(error) => {
                // Keep the keys we have: only tokens signed with a key we lack fail, and quickly.
                let error = KeysError::Unavailable(describe(&error));
                tracing::warn!(%error, "could not fetch the identity provider's JWKS");
                write(&self.cache).failure = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }
}

impl Cache {
    fn recent_failure(&self) -> Option<KeysError> {
        self.failure.as_ref().filter(|(at, _)| at.elapsed() < FAILED_FETCH_BACKOFF).map(|(_, error)| error.clone())
    }
}

/// A discovery or key-set failure in words fit for a log: no response bodies.
pub fn describe(error: &DiscoveryError<HttpError>) -> String {
    match error {
        DiscoveryError::Request(error) => error.to_string(),
        DiscoveryError::Response(status, _, message) => format!("{message} (HTTP {status})"),
        DiscoveryError::Parse(error) => format!("the document does not parse: {error}"),
        DiscoveryError::Validation(message) | DiscoveryError::Other(message) => message.clone(),
        DiscoveryError::UrlParse(error) => format!("bad URL: {error}"),
        other => other.to_string(),
    }
}

/// The asymmetric keys of `set`, by `kid`, as `jsonwebtoken` keys. Keys without a `kid`, symmetric keys and keys
/// `jsonwebtoken` cannot read are left out.
fn bearer_keys(set: &CoreJsonWebKeySet) -> HashMap<String, BearerKey> {
    let Ok(serde_json::Value::Object(mut document)) = serde_json::to_value(set) else { return HashMap::new() };
    let Some(serde_json::Value::Array(keys)) = document.remove("keys") else { return HashMap::new() };
    keys.into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let family = match jwk.algorithm {
                AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
                AlgorithmParameters::EllipticCurve(_) => KeyFamily::EllipticCurve,
                AlgorithmParameters::OctetKeyPair(_) => KeyFamily::OctetKeyPair,
                _ => return None,
            };
            let algorithm = jwk.common.key_algorithm.and_then(signing_algorithm);
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some((kid, BearerKey { key, family, algorithm, published: Arc::new(jwk) }))
        })
        .collect()
}

fn signing_algorithm(algorithm: KeyAlgorithm) -> Option<Algorithm> {
    Some(match algorithm {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_unreadable_keys_are_never_bearer_keys() {
        let set: CoreJsonWebKeySet = serde_json::from_value(serde_json::json!({ "keys": [
            { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
            { "kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig",
              "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
              "e": "AQAB" },
            { "kty": "RSA", "use": "sig", "n": "AQAB", "e": "AQAB" },
        ]}))
        .expect("a key set");
        let keys = bearer_keys(&set);
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["rsa"]);
        let rsa = &keys["rsa"];
        assert_eq!(rsa.family, KeyFamily::Rsa);
        assert_eq!(rsa.algorithm, Some(Algorithm::RS256));
    }
}

//! Verify once: the bounded memory of access tokens that passed a full verification, shared by both verifiers of
//! bearer and session tokens (`workos::access_token` for WorkOS, `oidc::access_token` for any OpenID Connect
//! provider).
//!
//! It sits at the crate's top level, beside `sync`, because both providers use it and neither owns it; what differs
//! between them (which checks make a verification complete, which keys are trusted, how long an answer may stand)
//! stays with each verifier, and everything they share is here, once:
//!
//! - **No credential is held.** Entries are keyed by the token's SHA-256 ([`fingerprint`]), never the token.
//! - **Bounded.** At most the capacity given ([`VERIFIED_TOKENS`] in production, a few hundred bytes each); beyond
//!   it `quick_cache` evicts the least used first. Capacity `0` turns the memory off (the benchmarks' "cold").
//! - **Only what verified.** The caller [`VerifiedTokens::remember`]s a token only after its *complete* successful
//!   verification, so a forged, damaged or refused token is checked (and refused) in full every time.
//! - **Only while current.** An entry carries the window its claims allow ([`Verified::valid`]: from `nbf`, when
//!   there is one, to `exp`, with no leeway) and answers only inside it; outside, it is dropped and the token goes
//!   through the full check again, which is at least as strict as the memory ever is.
//! - **Forgotten with its key.** An entry names the `kid` that signed it; when the provider withdraws or replaces
//!   that key, [`VerifiedTokens::forget_keys_not_republished`] drops every token it signed, so they are refused from
//!   then on.
//! - **Counted.** Every lookup is `authbridge_token_cache_total{result="hit"|"miss"}` (see `metrics`).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use jsonwebtoken::jwk::Jwk;

/// How many verified tokens each verifier remembers (a few hundred bytes each): beyond it, the least used go first.
pub const VERIFIED_TOKENS: usize = 10_000;

/// The SHA-256 of a token: what the memory is keyed by, so it never holds a credential.
pub type Fingerprint = [u8; 32];

/// A token that verified in full: its claims, the key that signed it, and when the answer may be reused.
pub struct Verified<C> {
    pub claims: Arc<C>,
    /// The `kid` of the signing key: the entry is forgotten when that key is withdrawn or replaced.
    pub kid: Arc<str>,
    /// The Unix seconds at which the claims may be answered from memory: `nbf` (or 0) up to, not including, `exp`.
    pub valid: Range<u64>,
}

// By hand: a derive would ask `C: Clone`, and only the `Arc` is cloned.
impl<C> Clone for Verified<C> {
    fn clone(&self) -> Self {
        Self { claims: Arc::clone(&self.claims), kid: Arc::clone(&self.kid), valid: self.valid.clone() }
    }
}

impl<C> Verified<C> {
    fn is_current(&self, now: u64) -> bool {
        self.valid.contains(&now)
    }
}

/// The tokens one verifier has verified, by fingerprint.
pub struct VerifiedTokens<C> {
    /// `None` when built with capacity 0: nothing is remembered and nothing is counted.
    cache: Option<quick_cache::sync::Cache<Fingerprint, Verified<C>>>,
}

impl<C> VerifiedTokens<C> {
    /// Remembers up to `capacity` tokens; `0` remembers none, so every check is a full one.
    pub fn new(capacity: usize) -> Self {
        Self { cache: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)) }
    }

    /// The claims `token` verified with, when it did before and the answer is current at `now` (Unix seconds).
    /// A stale entry is dropped on the way. `None` means "verify it in full".
    pub fn cached(&self, token: &str, now: u64) -> Option<Arc<C>> {
        let cache = self.cache.as_ref()?;
        let fingerprint = fingerprint(token);
        if let Some(known) = cache.get(&fingerprint) {
            if known.is_current(now) {
                metrics::counter!("authbridge_token_cache_total", "result" => "hit").increment(1);
                return Some(known.claims);
            }
            cache.remove(&fingerprint);
        }
        metrics::counter!("authbridge_token_cache_total", "result" => "miss").increment(1);
        None
    }

    /// Remembers a token that has just passed its complete verification, if its answer is current at `now`: a
    /// token not valid yet (`nbf` ahead) or at its `exp` is never stored, so it is checked in full next time too.
    pub fn remember(&self, token: &str, verified: Verified<C>, now: u64) {
        if let Some(cache) = &self.cache
            && verified.is_current(now)
        {
            cache.insert(fingerprint(token), verified);
        }
    }

    /// Forgets every token signed by one of `kids`: those keys vouch for nothing any more, not even for tokens they
    /// signed while they were published.
    pub fn forget_signed_by<K: AsRef<str>>(&self, kids: &[K]) {
        if let Some(cache) = &self.cache {
            cache.retain(|_, token| !kids.iter().any(|kid| kid.as_ref() == &*token.kid));
        }
    }

    /// On a fetch of the keys: forgets the tokens of every key of `old` that `new` withdraws, or publishes
    /// differently under the same `kid` (`published` gives a key's JWK as published). Returns how many keys that was.
    pub fn forget_keys_not_republished<K>(
        &self,
        old: &HashMap<String, K>,
        new: &HashMap<String, K>,
        published: impl Fn(&K) -> &Jwk,
    ) -> usize {
        let replaced: Vec<&String> = old
            .iter()
            .filter(|(kid, key)| new.get(*kid).is_none_or(|now| published(now) != published(key)))
            .map(|(kid, _)| kid)
            .collect();
        self.forget_signed_by(&replaced);
        replaced.len()
    }

    /// Whether `token` is remembered, current or not.
    #[cfg(test)]
    pub fn contains(&self, token: &str) -> bool {
        self.cache.as_ref().is_some_and(|cache| cache.get(&fingerprint(token)).is_some())
    }

    /// Stores an entry without [`VerifiedTokens::remember`]'s check: for tests of what a stale entry does.
    #[cfg(test)]
    pub fn insert_unchecked(&self, token: &str, verified: Verified<C>) {
        if let Some(cache) = &self.cache {
            cache.insert(fingerprint(token), verified);
        }
    }
}

/// `token` with the last character of its signature changed: same header and claims, a signature that fails. For
/// the verifiers' tests: what must never be remembered, and what a stale entry must not stand for.
#[cfg(test)]
pub fn forged(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("a JWT is ASCII")
}

/// A token's SHA-256: how anything keyed by a token (this memory, the refresh flights of `session::refresh`) avoids
/// holding the credential itself.
pub fn fingerprint(token: &str) -> Fingerprint {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(kid: &str, valid: Range<u64>) -> Verified<&'static str> {
        Verified { claims: Arc::new("claims"), kid: kid.into(), valid }
    }

    #[test]
    fn verified_claims_are_kept_until_exp_and_not_a_second_longer() {
        assert!(verified("k", 0..400).is_current(399));
        assert!(!verified("k", 0..400).is_current(400), "from the second of exp, the token is checked again");
        assert!(!verified("k", 0..400).is_current(401));
        assert!(!verified("k", 300..400).is_current(299), "before nbf, not answered from memory");
        assert!(verified("k", 300..400).is_current(300));
    }

    #[test]
    fn only_current_answers_are_stored_and_given() {
        let tokens = VerifiedTokens::new(16);
        tokens.remember("not-yet", verified("k", 200..400), 100);
        tokens.remember("expired", verified("k", 0..100), 100);
        assert!(!tokens.contains("not-yet"), "an nbf in the future is never stored");
        assert!(!tokens.contains("expired"));

        tokens.remember("good", verified("k", 0..400), 100);
        assert_eq!(tokens.cached("good", 399).as_deref(), Some(&"claims"));
        assert_eq!(tokens.cached("good", 400), None, "at exp: a full check");
        assert!(!tokens.contains("good"), "and the stale entry is gone");
    }

    #[test]
    fn a_key_takes_the_tokens_it_signed_with_it_and_no_others() {
        let tokens = VerifiedTokens::new(16);
        tokens.remember("a1", verified("a", 0..400), 100);
        tokens.remember("a2", verified("a", 0..400), 100);
        tokens.remember("b1", verified("b", 0..400), 100);
        tokens.forget_signed_by(&["a", "c"]);
        assert!(!tokens.contains("a1") && !tokens.contains("a2"));
        assert!(tokens.contains("b1"));
    }

    #[test]
    fn a_fetch_forgets_the_keys_it_withdraws_or_replaces_and_keeps_the_others() {
        let jwk =
            |n: &str| -> Jwk { serde_json::from_value(serde_json::json!({ "kty": "oct", "k": n })).expect("a JWK") };
        let keys = |entries: &[(&str, &str)]| -> HashMap<String, Jwk> {
            entries.iter().map(|(kid, material)| ((*kid).to_owned(), jwk(material))).collect()
        };
        let tokens = VerifiedTokens::new(16);
        for kid in ["kept", "replaced", "withdrawn"] {
            tokens.remember(kid, verified(kid, 0..400), 100);
        }
        let old = keys(&[("kept", "AAAA"), ("replaced", "BBBB"), ("withdrawn", "CCCC")]);
        let new = keys(&[("kept", "AAAA"), ("replaced", "DDDD"), ("added", "EEEE")]);
        assert_eq!(tokens.forget_keys_not_republished(&old, &new, |key| key), 2);
        assert!(tokens.contains("kept"));
        assert!(!tokens.contains("replaced") && !tokens.contains("withdrawn"));
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let tokens = VerifiedTokens::new(0);
        tokens.remember("good", verified("k", 0..400), 100);
        assert_eq!(tokens.cached("good", 100), None);
        assert!(!tokens.contains("good"));
    }

    #[test]
    fn the_key_is_a_digest_of_the_token_never_the_token() {
        let token = "header.payload.signature";
        assert_eq!(fingerprint(token).as_slice(), digest(&SHA256, token.as_bytes()).as_ref());
        assert_ne!(fingerprint(token), fingerprint("header.payload.signaturE"));
    }
}

//! Verifying bearer access tokens: JWTs the provider issued for our API (`OIDC_AUDIENCE`).
//!
//! The `openidconnect` crate verifies ID tokens only, so access tokens go through `jsonwebtoken`, with the same
//! keys ([`super::keys`]). A token is accepted when it is signed by one of the provider's asymmetric keys, its
//! `iss` is the issuer and its `aud` (a string or an array, as Auth0's is) contains the audience; `exp`, `iss`,
//! `aud` and `sub` must all be there (`jsonwebtoken` checks `iss` and `aud` only when present otherwise). The header
//! must not say it is anything but a JWT access token (`typ` `JWT`, `at+jwt`, `application/at+jwt`, or none). An ID token is refused twice
//! over: its audience is the client id, not the API, and a token for the client id that carries a `nonce` is one
//! (Keycloak before 25 put the `nonce` in access tokens too, so a `nonce` alone proves nothing). A token a client
//! obtained for itself (client credentials) is refused too: it names no person.
//!
//! **Verify once**, as for WorkOS tokens ([`crate::token_cache`]): an API client sends the same token on every call
//! until it expires, so a token that passed every check above is remembered by the keys that verified it
//! ([`SigningKeys`]) and answered from memory from `nbf` (when it has one) until `exp`, with no leeway: a remembered
//! answer is never more lenient than the full check would be at that moment. A token refused for any reason is not
//! remembered; one whose key is withdrawn or replaced is forgotten at the next fetch of the keys.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::keys::{BearerKey, KeyFamily, KeysError, SigningKeys, TokenSource};
use crate::token_cache::Verified;

/// Clock skew tolerated on `exp`: small, so a stolen token does not outlive its stated lifetime by much.
pub const EXPIRY_LEEWAY: Duration = Duration::from_secs(5);

/// The claims read from a verified access token.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub exp: u64,
    /// Not valid before (RFC 7519 §4.1.5), when the token says: the start of its remembered answer. (The full check
    /// refuses one that is not a whole number of seconds, so this never fails to read where that check passed.)
    #[serde(default)]
    nbf: Option<u64>,
    /// An ID token's, beside the client id in `aud`: someone sent an ID token as an access token.
    #[serde(default)]
    nonce: Option<serde_json::Value>,
    /// A string or an array (already checked to contain the API): read to tell an ID token (for the client id).
    #[serde(default)]
    aud: serde_json::Value,
    /// Who a token names as its client, and how it was granted: read only to tell a machine's token from a person's
    /// (see [`is_a_machines_token`]).
    #[serde(default)]
    gty: Option<serde_json::Value>,
    #[serde(default)]
    azp: Option<serde_json::Value>,
    #[serde(default)]
    client_id: Option<serde_json::Value>,
    #[serde(default)]
    cid: Option<serde_json::Value>,
    #[serde(default)]
    idtyp: Option<serde_json::Value>,
    /// The delegated scopes of a Microsoft Entra token, which only a user's token has.
    #[serde(default)]
    scp: Option<serde_json::Value>,
    /// Okta's user id. An Okta authorization server puts the user's login (often an email) in an access token's
    /// `sub` by default, and their id, which is the ID token's `sub`, here. Read only from Okta's tokens: to any
    /// other provider `uid` is a custom claim like any other (a tenant's own, perhaps from data its users edit),
    /// and taking it as the user would let it name someone else.
    #[serde(default)]
    uid: Option<serde_json::Value>,
}

impl AccessClaims {
    /// The user the token is for, as the ID token names them at sign-in (so a person's todos are the same whether
    /// they come with a cookie or a bearer token): in an Okta authorization server's token (the verifier keeps
    /// `uid` only there), Okta's `uid` beside Okta's `cid`; else `sub`.
    pub fn user_id(&self) -> &str {
        match (&self.cid, self.uid.as_ref().and_then(|uid| uid.as_str())) {
            (Some(_), Some(uid)) => uid,
            _ => &self.sub,
        }
    }
}

/// A token a client got for itself (the client-credentials grant), which names no person: its `sub` is the
/// client (RFC 9068 §2.2), so it must not become a database user. Auth0's `sub` is `<client id>@clients` (its
/// access-token profile also marks it `gty: "client-credentials"`, with the client id in `azp`; its RFC 9068 profile
/// has no `gty` and puts the client id in `client_id`: docs `/secure/tokens/access-tokens/access-token-profiles`);
/// Okta gives `sub` = `cid` = the client id; Microsoft Entra's app-only tokens have no `scp` (its delegated scopes,
/// "only included for user tokens": access token claims reference) and, when the API asks for that claim,
/// `idtyp: "app"`. Auth0 authorizes a "Test Application" for every new API by default, so such tokens exist
/// wherever an API does. `entra`: the issuer is Microsoft Entra ID's.
fn is_a_machines_token(claims: &AccessClaims, entra: bool) -> bool {
    let is = |claim: &Option<serde_json::Value>, value: &str| claim.as_ref().and_then(|c| c.as_str()) == Some(value);
    let auth0_client = claims.sub.strip_suffix("@clients");
    is(&claims.gty, "client-credentials")
        || is(&claims.idtyp, "app")
        || (entra && claims.scp.is_none())
        || [&claims.azp, &claims.client_id, &claims.cid]
            .into_iter()
            .any(|client| is(client, &claims.sub) || auth0_client.is_some_and(|auth0| is(client, auth0)))
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AccessTokenError {
    #[error("the access token is not valid: {0}")]
    Invalid(&'static str),
    /// Genuine (the signature was checked first), but past `exp` and its leeway.
    #[error("the access token has expired")]
    Expired,
    #[error(transparent)]
    Keys(#[from] KeysError),
}

pub struct AccessTokenVerifier {
    issuer: String,
    audience: String,
    /// Our own client id: the `aud` of our ID tokens.
    client_id: String,
    /// The issuer is Microsoft Entra ID's, whose app-only tokens are told apart by the claims they lack.
    entra: bool,
    /// The issuer is an Okta authorization server, whose access tokens name the user in `uid`.
    okta: bool,
}

impl AccessTokenVerifier {
    /// `okta`: the provider is an Okta authorization server (discovery says so: see `client::is_okta`).
    pub fn new(issuer: &str, audience: &str, client_id: &str, okta: bool) -> Self {
        let entra = super::client::is_entra_issuer(issuer);
        Self { issuer: issuer.to_owned(), audience: audience.to_owned(), client_id: client_id.to_owned(), entra, okta }
    }

    /// The token's claims, from memory when these keys verified it before and it is still current, else from the
    /// full check (remembered when it passes).
    pub async fn verify(&self, keys: &SigningKeys, token: &str) -> Result<Arc<AccessClaims>, AccessTokenError> {
        if let Some(claims) = keys.verified_bearer(token, jsonwebtoken::get_current_timestamp()) {
            return Ok(claims);
        }
        // Boxed: the full check may fetch the keys, a future far larger than the remembered path.
        let (verified, key) = Box::pin(self.verify_in_full(keys, token)).await?;
        let claims = Arc::clone(&verified.claims);
        keys.remember_bearer(token, verified, &key, jsonwebtoken::get_current_timestamp());
        Ok(claims)
    }

    /// Every check, every time: header, algorithm and key, signature, claims. Returns what verified and the key
    /// that verified it.
    async fn verify_in_full(
        &self,
        keys: &SigningKeys,
        token: &str,
    ) -> Result<(Verified<AccessClaims>, BearerKey), AccessTokenError> {
        use AccessTokenError::Invalid;
        let header = jsonwebtoken::decode_header(token).map_err(|_| Invalid("it is not a well-formed JWT"))?;
        // `typ` is optional in a JWS (RFC 7515 §4.1.9), and Okta's authorization servers leave it out of their
        // access tokens; any other value than these is some other kind of token. (An ID token, whatever its
        // `typ`, fails the audience check below: its `aud` is the client id.)
        let typ_ok = header.typ.as_deref().is_none_or(|typ| {
            ["JWT", "at+jwt", "application/at+jwt"].iter().any(|accepted| typ.eq_ignore_ascii_case(accepted))
        });
        if !typ_ok {
            return Err(Invalid("its typ is not JWT or at+jwt"));
        }
        let family = family_of(header.alg).ok_or(Invalid("its algorithm is not an asymmetric one"))?;
        let kid = header.kid.ok_or(Invalid("it names no key"))?;
        let key =
            self.key(keys, &kid).await?.ok_or(Invalid("it is signed with a key the provider does not publish"))?;
        if key.family != family || key.algorithm.is_some_and(|algorithm| algorithm != header.alg) {
            return Err(Invalid("its algorithm does not match its key"));
        }

        let mut validation = Validation::new(header.alg);
        validation.leeway = EXPIRY_LEEWAY.as_secs();
        // RFC 7519 §4.1.5: not before `nbf`, when the token has one (Microsoft Entra's do).
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // `exp` last, below: jsonwebtoken checks it before `iss` and `aud`, and "expired" tells the client to get a
        // new token, which is wrong for one that would be refused anyway (another API's, another issuer's).
        validation.validate_exp = false;
        let mut claims = jsonwebtoken::decode::<AccessClaims>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                Invalid(match error.kind() {
                    ErrorKind::ImmatureSignature => "it is not valid yet (nbf)",
                    ErrorKind::InvalidAudience => "it is not for this API (aud)",
                    ErrorKind::InvalidIssuer => "it is from another issuer",
                    ErrorKind::MissingRequiredClaim(_) => "it lacks exp, iss, aud or sub",
                    _ => "its signature or claims are invalid",
                })
            })?;
        let for_our_client = match &claims.aud {
            serde_json::Value::String(aud) => *aud == self.client_id,
            serde_json::Value::Array(auds) => auds.iter().any(|aud| aud.as_str() == Some(self.client_id.as_str())),
            _ => false,
        };
        if claims.nonce.is_some() && for_our_client {
            return Err(Invalid("it is an ID token"));
        }
        if is_a_machines_token(&claims, self.entra) {
            return Err(Invalid("it was issued to a client for itself (client credentials), not to a user"));
        }
        if !self.okta {
            claims.uid = None;
        }
        if claims.sub.trim().is_empty() || claims.user_id().trim().is_empty() {
            return Err(Invalid("it names no user (an empty sub)"));
        }
        // Genuine (its signature was checked first) and otherwise acceptable: only now is it told "expired".
        if claims.exp.saturating_add(EXPIRY_LEEWAY.as_secs()) < jsonwebtoken::get_current_timestamp() {
            return Err(AccessTokenError::Expired);
        }
        let valid = claims.nbf.unwrap_or(0)..claims.exp;
        Ok((Verified { claims: Arc::new(claims), kid: kid.into(), valid }, key))
    }

    /// The key named `kid`, fetching the keys again (at most once a minute for bearer tokens) when it is unknown.
    async fn key(&self, keys: &SigningKeys, kid: &str) -> Result<Option<BearerKey>, KeysError> {
        let (key, generation) = keys.bearer_key(kid);
        if key.is_some() {
            return Ok(key);
        }
        if keys.refetch_for_unknown_key(generation, TokenSource::Untrusted).await? {
            return Ok(keys.bearer_key(kid).0);
        }
        Ok(None)
    }
}

fn family_of(algorithm: Algorithm) -> Option<KeyFamily> {
    match algorithm {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Some(KeyFamily::Rsa),
        Algorithm::ES256 | Algorithm::ES384 => Some(KeyFamily::EllipticCurve),
        Algorithm::EdDSA => Some(KeyFamily::OctetKeyPair),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use openidconnect::JsonWebKeySetUrl;
    use openidconnect::core::CoreJsonWebKeySet;
    use serde_json::{Value, json};
    use standins::oidc_standin::{Endpoint, OidcStandIn, OidcStandInOptions};

    use super::*;
    use crate::oidc::OidcHttp;
    use crate::token_cache::{VERIFIED_TOKENS, forged};

    const SUBJECT: &str = "auth0|standin-alice";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    /// The stand-in, its keys as the app holds them (remembering up to [`VERIFIED_TOKENS`]), and the bearer
    /// verifier for its API.
    async fn standin() -> (OidcStandIn, SigningKeys, AccessTokenVerifier) {
        let oidc = OidcStandIn::start(OidcStandInOptions::default()).await.expect("the OIDC stand-in starts");
        let keys = keys_of(&oidc, VERIFIED_TOKENS).await;
        let verifier = AccessTokenVerifier::new(oidc.issuer().as_str(), oidc.audience(), oidc.client_id(), false);
        (oidc, keys, verifier)
    }

    /// The stand-in's keys, fetched, remembering up to `capacity` verified tokens.
    async fn keys_of(oidc: &OidcStandIn, capacity: usize) -> SigningKeys {
        let http = OidcHttp::new(Duration::from_secs(2), Duration::from_secs(5)).expect("a client");
        let jwks_uri = JsonWebKeySetUrl::new(format!("{}.well-known/jwks.json", oidc.issuer())).expect("a URL");
        let keys = SigningKeys::with_token_capacity(http, jwks_uri, CoreJsonWebKeySet::new(Vec::new()), capacity);
        keys.fetch().await.expect("the JWKS loads");
        keys
    }

    /// Access-token claims as Auth0 issues them, valid for five minutes from now.
    fn claims(oidc: &OidcStandIn) -> Value {
        let now = now();
        json!({
            "iss": oidc.issuer().as_str(),
            "sub": SUBJECT,
            "aud": [oidc.audience(), format!("{}userinfo", oidc.issuer())],
            "azp": oidc.client_id(),
            "iat": now,
            "exp": now + 300,
        })
    }

    fn is_remembered(keys: &SigningKeys, token: &str) -> bool {
        keys.verified_bearer_tokens().contains(token)
    }

    #[tokio::test]
    async fn a_token_that_passed_every_check_is_answered_from_memory_after() {
        let (oidc, keys, verifier) = standin().await;
        let token = oidc.mint_access_token(SUBJECT, Duration::from_secs(300));
        assert!(!is_remembered(&keys, &token));

        let first = verifier.verify(&keys, &token).await.expect("a genuine token verifies");
        assert_eq!(first.sub, SUBJECT);
        assert!(is_remembered(&keys, &token));
        let second = verifier.verify(&keys, &token).await.expect("still genuine");
        assert!(Arc::ptr_eq(&first, &second), "the second check is answered with the first one's claims");

        let cold = keys_of(&oidc, 0).await;
        let first = verifier.verify(&cold, &token).await.expect("genuine");
        let second = verifier.verify(&cold, &token).await.expect("genuine");
        assert!(!Arc::ptr_eq(&first, &second), "without a memory every check verifies afresh");
        assert!(!is_remembered(&cold, &token));
    }

    #[tokio::test]
    async fn a_token_refused_for_any_reason_is_never_remembered() {
        let (oidc, keys, verifier) = standin().await;
        let genuine = oidc.mint_access_token(SUBJECT, Duration::from_secs(300));
        verifier.verify(&keys, &genuine).await.expect("genuine");

        // Refused by the signature, and refused after it by the claims (signed by the provider's own key).
        let mut machine = claims(&oidc);
        machine["gty"] = Value::from("client-credentials");
        let mut id_token = claims(&oidc);
        id_token["nonce"] = Value::from("n-0S6_WzA2Mj");
        id_token["aud"] = json!([oidc.audience(), oidc.client_id()]);
        let mut other_api = claims(&oidc);
        other_api["aud"] = Value::from("https://another-api.example/");
        let mut not_yet = claims(&oidc);
        not_yet["nbf"] = Value::from(now() + 3600);
        let refused = [
            ("a forged signature", forged(&genuine)),
            ("a client-credentials token", oidc.sign("JWT", machine)),
            ("an ID token", oidc.sign("JWT", id_token)),
            ("another API's token", oidc.sign("JWT", other_api)),
            ("a token valid an hour from now", oidc.sign("JWT", not_yet)),
        ];
        for (what, token) in refused {
            for attempt in 0..2 {
                let result = verifier.verify(&keys, &token).await;
                assert!(matches!(result, Err(AccessTokenError::Invalid(_))), "{what}, attempt {attempt}");
                assert!(!is_remembered(&keys, &token), "{what}");
            }
        }
    }

    /// Inside the leeway the full check still accepts a token, but a remembered answer must never be more lenient
    /// than it: such tokens are accepted and not remembered, so each presentation is checked in full again.
    #[tokio::test]
    async fn tokens_accepted_only_by_the_leeway_are_not_remembered() {
        let (oidc, keys, verifier) = standin().await;
        let mut almost_valid = claims(&oidc);
        almost_valid["nbf"] = Value::from(now() + 2);
        let mut just_expired = claims(&oidc);
        just_expired["exp"] = Value::from(now() - 1);
        for (what, claims) in [("an nbf two seconds ahead", almost_valid), ("an exp a second ago", just_expired)] {
            let token = oidc.sign("JWT", claims);
            assert!(verifier.verify(&keys, &token).await.is_ok(), "{what}: within the leeway");
            assert!(!is_remembered(&keys, &token), "{what}");
        }
        let mut valid_since = claims(&oidc);
        valid_since["nbf"] = Value::from(now() - 10);
        let token = oidc.sign("JWT", valid_since);
        verifier.verify(&keys, &token).await.expect("an nbf in the past");
        assert!(is_remembered(&keys, &token), "an nbf already past does not stop a token being remembered");
    }

    /// Microsoft Entra's client-credentials tokens (as it issues them: `sub` the service principal, `azp` the client,
    /// `roles`, no `scp`) name no person, whether or not the API asked for `idtyp`; its users' tokens carry `scp`.
    /// Only Entra is read so: other providers put scopes elsewhere (`scope`).
    #[test]
    fn an_entra_token_without_delegated_scopes_is_a_machines() {
        let claims = |extra: Value| {
            let mut claims = json!({ "sub": "service-principal-oid", "exp": now() + 60, "azp": "client-app-id" });
            if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
                claims.extend(extra);
            }
            serde_json::from_value::<AccessClaims>(claims).expect("claims")
        };
        let app_only = claims(json!({ "roles": ["Todos.ReadWrite.All"] }));
        let user = claims(json!({ "scp": "access_as_user" }));
        assert!(is_a_machines_token(&app_only, true));
        assert!(!is_a_machines_token(&user, true));
        assert!(!is_a_machines_token(&app_only, false), "another provider's token without scp is a person's");
        assert!(
            AccessTokenVerifier::new("https://login.microsoftonline.com/tenant/v2.0", "api", "client", false).entra
        );
        assert!(!AccessTokenVerifier::new("https://tenant.auth0.com/", "api", "client", false).entra);
    }

    /// With Microsoft Entra ID the API's audience may be the client id (config.rs): its user's access tokens pass,
    /// and its ID tokens, whose `aud` is that same client id, are still refused, with or without a nonce.
    #[tokio::test]
    async fn with_entra_the_client_id_as_audience_still_refuses_id_tokens() {
        let (oidc, keys, _) = standin().await;
        let issuer = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0";
        let verifier = AccessTokenVerifier::new(issuer, oidc.client_id(), oidc.client_id(), false);
        let token = |extra: Value| {
            let mut claims = json!({
                "iss": issuer, "sub": SUBJECT, "aud": oidc.client_id(), "azp": "spaClientId",
                "iat": now(), "exp": now() + 300,
            });
            for (name, value) in extra.as_object().into_iter().flatten() {
                claims[name] = value.clone();
            }
            oidc.sign("JWT", claims)
        };
        let user = verifier.verify(&keys, &token(json!({ "scp": "access_as_user" }))).await.expect("a user's token");
        assert_eq!(user.sub, SUBJECT);
        for (what, extra) in [
            ("an ID token", json!({ "email": "alice@example.com" })),
            ("an ID token with a nonce", json!({ "nonce": "n-0S6_WzA2Mj" })),
        ] {
            let result = verifier.verify(&keys, &token(extra)).await;
            assert!(matches!(result, Err(AccessTokenError::Invalid(_))), "{what}: {result:?}");
        }
    }

    #[tokio::test]
    async fn a_remembered_token_past_its_exp_is_checked_in_full_again() {
        let (oidc, keys, verifier) = standin().await;
        let forged = forged(&oidc.mint_access_token(SUBJECT, Duration::from_secs(300)));
        // An entry for this (forged) token whose answer ended a second ago: it must be dropped, not given.
        let stale: AccessClaims = serde_json::from_value(json!({ "sub": SUBJECT, "exp": now() - 1 })).expect("claims");
        let valid = 0..stale.exp;
        let stale = Verified { claims: Arc::new(stale), kid: oidc.kid().into(), valid };
        keys.verified_bearer_tokens().insert_unchecked(&forged, stale);

        assert!(matches!(verifier.verify(&keys, &forged).await, Err(AccessTokenError::Invalid(_))));
        assert!(!is_remembered(&keys, &forged), "the stale entry is gone");
    }

    #[tokio::test]
    async fn a_withdrawn_signing_key_takes_the_tokens_it_signed_out_of_memory() {
        let (oidc, keys, verifier) = standin().await;
        let token = oidc.mint_access_token(SUBJECT, Duration::from_secs(300));
        let first = verifier.verify(&keys, &token).await.expect("genuine");

        // One rotation: the provider publishes the new key and still the old one, so the token stays good.
        oidc.rotate_signing_key().await.expect("rotates");
        keys.fetch().await.expect("refetch");
        assert!(is_remembered(&keys, &token), "a key still published unchanged keeps its tokens");
        let again = verifier.verify(&keys, &token).await.expect("still genuine");
        assert!(Arc::ptr_eq(&first, &again));

        // A second rotation withdraws the key that signed the token.
        oidc.rotate_signing_key().await.expect("rotates");
        keys.fetch().await.expect("refetch");
        assert_forgotten_and_refused(&oidc, &keys, &verifier, &token).await;
    }

    /// A rotation seen by many API calls at once: one fetch of the keys serves them all (the others find the set
    /// newer than when they looked), and none is refused, although bearer tokens may cause a fetch only once a
    /// minute.
    #[tokio::test]
    async fn concurrent_tokens_with_a_new_key_cause_one_fetch_and_all_verify() {
        let (oidc, keys, verifier) = standin().await;
        oidc.rotate_signing_key().await.expect("rotates");
        let fetches = oidc.calls(Endpoint::Jwks);
        let tokens: Vec<String> = (0..8).map(|_| oidc.mint_access_token(SUBJECT, Duration::from_secs(300))).collect();
        let checks = tokens.iter().map(|token| verifier.verify(&keys, token));
        for result in futures::future::join_all(checks).await {
            assert!(result.is_ok(), "{result:?}");
        }
        assert_eq!(oidc.calls(Endpoint::Jwks), fetches + 1, "one fetch for all");
    }

    /// After a fetch that took `token`'s key away: it is not remembered, it fails the full check, and a token signed
    /// with the provider's current key verifies.
    async fn assert_forgotten_and_refused(
        oidc: &OidcStandIn,
        keys: &SigningKeys,
        verifier: &AccessTokenVerifier,
        token: &str,
    ) {
        assert!(!is_remembered(keys, token), "its key is gone: the token is forgotten");
        assert!(matches!(verifier.verify(keys, token).await, Err(AccessTokenError::Invalid(_))));
        let fresh = oidc.mint_access_token(SUBJECT, Duration::from_secs(300));
        assert!(verifier.verify(keys, &fresh).await.is_ok(), "the new key's tokens verify");
    }

    #[tokio::test]
    async fn a_key_replaced_under_the_same_kid_takes_the_tokens_it_signed_out_of_memory() {
        let (oidc, keys, verifier) = standin().await;
        let token = oidc.mint_access_token(SUBJECT, Duration::from_secs(300));
        verifier.verify(&keys, &token).await.expect("genuine");
        let kid = oidc.kid();

        oidc.replace_signing_key_keeping_kid().await.expect("replaced");
        assert_eq!(oidc.kid(), kid);
        keys.fetch().await.expect("refetch");
        assert_forgotten_and_refused(&oidc, &keys, &verifier, &token).await;
    }

    /// A check that started with a key a fetch has since replaced must not leave its answer behind: the fetch could
    /// not forget what was not yet stored.
    #[tokio::test]
    async fn a_check_that_finishes_after_its_key_was_replaced_is_not_remembered() {
        let (oidc, keys, verifier) = standin().await;
        let token = oidc.mint_access_token(SUBJECT, Duration::from_secs(300));
        let (verified, key) = verifier.verify_in_full(&keys, &token).await.expect("genuine");

        oidc.replace_signing_key_keeping_kid().await.expect("replaced");
        keys.fetch().await.expect("refetch");
        keys.remember_bearer(&token, verified.clone(), &key, now());
        assert!(!is_remembered(&keys, &token));

        // The same answer, with the key still published, is remembered.
        let fresh = oidc.mint_access_token(SUBJECT, Duration::from_secs(300));
        let (verified, key) = verifier.verify_in_full(&keys, &fresh).await.expect("genuine");
        keys.remember_bearer(&fresh, verified, &key, now());
        assert!(is_remembered(&keys, &fresh));
    }
}

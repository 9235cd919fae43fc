//! Verifying ID tokens: every rule of OpenID Connect Core §3.1.3.7, through the `openidconnect` crate, plus the
//! ones it leaves to its caller.
//!
//! The crate checks the signature against the provider's keys, `iss` (exact string), `aud` (our client id, and no
//! audience we do not trust), `exp` and the nonce. Configured here, because its defaults are not enough:
//!
//! - **algorithms**: asymmetric only ([`ALLOWED_ALGS`]). Never `none`, and never HS*: discovery documents (Auth0's)
//!   list HS256, and a verifier that follows them would accept a token signed with the public key, or with our
//!   client secret. The verifier is built as a "public client", so it holds no secret to check an HMAC with anyway.
//! - **clock skew**: [`LEEWAY`] on `exp`, and `iat` must not be in the future beyond it (the crate checks neither).
//! - **`azp`**: when present it must be our client id, and a token for several audiences must carry it (the crate
//!   does not check `azp` at all).
//! - **nonce**: required and equal at sign-in; a refreshed ID token may repeat it or leave it out (§12.2).
//! - **key rotation**: an unknown `kid` fetches the keys again ([`super::keys`]) and tries once more.

use std::time::Duration;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use chrono::Utc;
use openidconnect::core::{CoreIdToken, CoreIdTokenClaims, CoreIdTokenVerifier, CoreJwsSigningAlgorithm};
use openidconnect::{ClaimsVerificationError, ClientId, IssuerUrl, Nonce, SignatureVerificationError};

use super::keys::{KeysError, SigningKeys, TokenSource};

/// Asymmetric signatures only.
pub const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// Clock skew tolerated between us and the provider on `exp` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// What the token's `nonce` must be.
#[derive(Debug, Clone, Copy)]
pub enum NonceRule<'a> {
    /// A sign-in's token: the nonce this browser's sign-in state holds.
    Required(&'a str),
    /// A refreshed token: the sign-in's nonce again, or none.
    AbsentOrEqual(&'a str),
}

/// What authbridge reads from a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTokenClaims {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    /// Microsoft Entra's optional `xms_edov` claim: the email's domain is verified as the tenant's. Entra never sends
    /// `email_verified`, and its `email` is an attribute an administrator (or, for guests, another tenant) sets.
    pub email_domain_verified: Option<bool>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub name: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    pub issued_at: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is not valid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Keys(#[from] KeysError),
}

/// Verifies ID tokens issued by one provider for one client.
pub struct IdTokenVerifier {
    client_id: ClientId,
    issuer: IssuerUrl,
}

impl IdTokenVerifier {
    pub fn new(client_id: ClientId, issuer: IssuerUrl) -> Self {
        Self { client_id, issuer }
    }

    pub async fn verify(
        &self,
        keys: &SigningKeys,
        token: &CoreIdToken,
        nonce: NonceRule<'_>,
        source: TokenSource,
    ) -> Result<IdTokenClaims, IdTokenError> {
        let mut refetched = false;
        loop {
            let snapshot = keys.snapshot();
            match self.check(token, snapshot.id_token_keys, nonce) {
                Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey))
                    if !refetched =>
                {
                    refetched = true;
                    if !keys.refetch_for_unknown_key(snapshot.generation, source).await? {
                        return Err(IdTokenError::Invalid(
                            "it is signed with a key the provider does not publish".into(),
                        ));
                    }
                }
                // Auth0 issues HS256 ID tokens for an application set to it, while its discovery document lists
                // RS256 as well: only a sign-in can tell, so the operator is told here what to change.
                Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::DisallowedAlg(
                    detail,
                ))) => {
                    return Err(IdTokenError::Invalid(format!(
                        "its signature algorithm is not accepted ({detail}): only asymmetric ones are (an Auth0 \
                         application set to HS256 must be switched to RS256 under Advanced Settings → OAuth)"
                    )));
                }
                Err(error) => return Err(IdTokenError::Invalid(error.to_string())),
                Ok(claims) => {
                    check_subject(&claims)?;
                    self.check_authorized_party(&claims)?;
                    let mut summary = summary(&claims);
                    summary.email_domain_verified = email_domain_verified(token);
                    return Ok(summary);
                }
            }
        }
    }

    fn check(
        &self,
        token: &CoreIdToken,
        keys: openidconnect::core::CoreJsonWebKeySet,
        nonce: NonceRule<'_>,
    ) -> Result<CoreIdTokenClaims, ClaimsVerificationError> {
        let leeway = chrono::Duration::from_std(LEEWAY).unwrap_or_else(|_| chrono::Duration::seconds(60));
        let verifier = CoreIdTokenVerifier::new_public_client(self.client_id.clone(), self.issuer.clone(), keys)
            .set_allowed_algs(ALLOWED_ALGS)
            // The crate refuses `now >= exp`: moving "now" back by the leeway allows for clock skew.
            .set_time_fn(move || Utc::now() - leeway)
            .set_issue_time_verifier_fn(move |issued_at| {
                if issued_at > Utc::now() + leeway {
                    Err(format!("it was issued in the future ({issued_at})"))
                } else {
                    Ok(())
                }
            });
        let (expected, absent_allowed) = match nonce {
            NonceRule::Required(expected) => (expected, false),
            NonceRule::AbsentOrEqual(expected) => (expected, true),
        };
        let check_nonce = move |got: Option<&Nonce>| match got {
            None if absent_allowed => Ok(()),
            None => Err("it has no nonce".to_owned()),
            Some(got) => {
                let equal = !expected.is_empty()
                    && verify_slices_are_equal(got.secret().as_bytes(), expected.as_bytes()).is_ok();
                if equal { Ok(()) } else { Err("its nonce is not this sign-in's".to_owned()) }
            }
        };
        token.claims(&verifier, check_nonce).cloned()
    }

    /// OIDC Core §3.1.3.7, points 4 and 5, which the crate leaves out.
    fn check_authorized_party(&self, claims: &CoreIdTokenClaims) -> Result<(), IdTokenError> {
        match claims.authorized_party() {
            Some(azp) if azp != &self.client_id => {
                Err(IdTokenError::Invalid(format!("its azp `{}` is not this client", azp.as_str())))
            }
            None if claims.audiences().len() > 1 => {
                Err(IdTokenError::Invalid("it has several audiences and no azp".to_owned()))
            }
            _ => Ok(()),
        }
    }
}

/// A `sub` that names someone: the crate takes an empty (or blank) one, which would become a database user id. The
/// same rule as for bearer tokens (`access_token`).
fn check_subject(claims: &CoreIdTokenClaims) -> Result<(), IdTokenError> {
    if claims.subject().as_str().trim().is_empty() {
        return Err(IdTokenError::Invalid("it names no user (an empty sub)".to_owned()));
    }
    Ok(())
}

/// `xms_edov` from the payload of a token whose signature and claims were just verified (the crate's claims type
/// keeps no claims beyond the standard ones).
fn email_domain_verified(token: &CoreIdToken) -> Option<bool> {
    use base64::Engine;
    let compact = token.to_string();
    let payload = compact.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<serde_json::Value>(&json).ok()?.get("xms_edov")?.as_bool()
}

fn summary(claims: &CoreIdTokenClaims) -> IdTokenClaims {
    let seconds = |time: chrono::DateTime<Utc>| u64::try_from(time.timestamp()).unwrap_or(0);
    IdTokenClaims {
        subject: claims.subject().as_str().to_owned(),
        email: claims.email().map(|email| email.as_str().to_owned()),
        email_verified: claims.email_verified(),
        email_domain_verified: None,
        given_name: claims.given_name().and_then(|name| name.get(None)).map(|name| name.as_str().to_owned()),
        family_name: claims.family_name().and_then(|name| name.get(None)).map(|name| name.as_str().to_owned()),
        name: claims.name().and_then(|name| name.get(None)).map(|name| name.as_str().to_owned()),
        expires_at: seconds(claims.expiration()),
        issued_at: seconds(claims.issue_time()),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn token_with(payload: serde_json::Value) -> CoreIdToken {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k"}"#);
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        CoreIdToken::from_str(&format!("{header}.{payload}.c2lnbmF0dXJl")).expect("a JWS")
    }

    #[test]
    fn entras_xms_edov_is_read_from_the_payload() {
        let claims = |extra: serde_json::Value| {
            let mut payload = serde_json::json!({
                "iss": "https://login.microsoftonline.com/t/v2.0", "sub": "s", "aud": "c", "exp": 2, "iat": 1,
            });
            for (name, value) in extra.as_object().into_iter().flatten() {
                payload[name] = value.clone();
            }
            token_with(payload)
        };
        assert_eq!(email_domain_verified(&claims(serde_json::json!({ "xms_edov": true }))), Some(true));
        assert_eq!(email_domain_verified(&claims(serde_json::json!({ "xms_edov": false }))), Some(false));
        assert_eq!(email_domain_verified(&claims(serde_json::json!({}))), None);
        assert_eq!(email_domain_verified(&claims(serde_json::json!({ "xms_edov": "true" }))), None, "only a boolean");
    }
}

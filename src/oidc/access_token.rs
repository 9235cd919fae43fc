//! Verifying bearer access tokens: JWTs the provider issued for our API (`OIDC_AUDIENCE`).
//!
//! The `openidconnect` crate verifies ID tokens only, so access tokens go through `jsonwebtoken`, with the same
//! keys ([`super::keys`]). A token is accepted when it is signed by one of the provider's asymmetric keys, its
//! `iss` is the issuer and its `aud` (a string or an array, as Auth0's is) contains the audience; `exp`, `iss`,
//! `aud` and `sub` must all be there (`jsonwebtoken` checks `iss` and `aud` only when present otherwise). The header
//! must not say it is anything but a JWT access token (`typ` `JWT`, `at+jwt`, `application/at+jwt`, or none). An ID token is refused twice
//! over: its audience is the client id, not the API, and it carries a `nonce`, which no access token does. A token a
//! client obtained for itself (client credentials) is refused too: it names no person.

use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::keys::{BearerKey, KeyFamily, KeysError, SigningKeys, TokenSource};

/// Clock skew tolerated on `exp`: small, so a stolen token does not outlive its stated lifetime by much.
pub const EXPIRY_LEEWAY: Duration = Duration::from_secs(5);

/// The claims read from a verified access token.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub exp: u64,
    /// Only ID tokens have one: present means someone sent an ID token as an access token.
    #[serde(default)]
    nonce: Option<serde_json::Value>,
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
}

/// A token a client got for itself (the client-credentials grant), which names no person: its `sub` is the
/// client (RFC 9068 §2.2), so it must not become a database user. Auth0 marks it `gty: "client-credentials"` (its
/// `sub` is `<client id>@clients`, `azp` the client id); Okta gives `sub` = `cid` = the client id; Microsoft Entra
/// marks app-only tokens `idtyp: "app"` (when the API asks for that claim). Auth0 authorizes a "Test Application"
/// for every new API by default, so such tokens exist wherever an API does.
fn is_a_machines_token(claims: &AccessClaims) -> bool {
    let is = |claim: &Option<serde_json::Value>, value: &str| claim.as_ref().and_then(|c| c.as_str()) == Some(value);
    is(&claims.gty, "client-credentials")
        || is(&claims.idtyp, "app")
        || [&claims.azp, &claims.client_id, &claims.cid].into_iter().any(|client| is(client, &claims.sub))
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AccessTokenError {
    #[error("the access token is not valid: {0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Keys(#[from] KeysError),
}

pub struct AccessTokenVerifier {
    issuer: String,
    audience: String,
}

impl AccessTokenVerifier {
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self { issuer: issuer.to_owned(), audience: audience.to_owned() }
    }

    pub async fn verify(&self, keys: &SigningKeys, token: &str) -> Result<AccessClaims, AccessTokenError> {
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
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                Invalid(match error.kind() {
                    ErrorKind::ExpiredSignature => "it has expired",
                    ErrorKind::ImmatureSignature => "it is not valid yet (nbf)",
                    ErrorKind::InvalidAudience => "it is not for this API (aud)",
                    ErrorKind::InvalidIssuer => "it is from another issuer",
                    ErrorKind::MissingRequiredClaim(_) => "it lacks exp, iss, aud or sub",
                    _ => "its signature or claims are invalid",
                })
            })?;
        if claims.nonce.is_some() {
            return Err(Invalid("it is an ID token"));
        }
        if is_a_machines_token(&claims) {
            return Err(Invalid("it was issued to a client for itself (client credentials), not to a user"));
        }
        Ok(claims)
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

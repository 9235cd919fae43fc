//! The stand-ins' signing keys and the JWTs they sign, honest or deliberately broken.
//!
//! authbridge verifies WorkOS access tokens and OIDC ID tokens against a JWKS, so the stand-ins sign real RS256
//! JWTs with a real RSA key and publish the matching JWK: a fake signature would leave the verification path
//! untested. The attacks a relying party must refuse are real too: `alg: none`, HS256 signed with the public key
//! (or the client secret), a key nobody publishes. JWTs are assembled by hand (three base64url parts) so any header
//! can be written, signed with aws-lc-rs, the same crypto library authbridge uses.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the RSA signing key could not be generated")]
    Generation,
    #[error("the RSA public key could not be encoded")]
    Encoding,
    #[error("the token could not be signed")]
    Signing,
    #[error("the token could not be serialised: {0}")]
    Json(#[from] serde_json::Error),
}

/// One RSA key pair and its public forms.
pub struct SigningKey {
    kid: String,
    key_pair: KeyPair,
    jwk: Value,
    spki_der: Vec<u8>,
}

impl SigningKey {
    /// A fresh 2048-bit key whose id starts with `kid_prefix` (shaped like the vendor's own, so the stand-in's
    /// logs read like production's). Tens of milliseconds of CPU: async code uses [`generate_key`].
    pub fn generate(kid_prefix: &str) -> Result<Self, KeyError> {
        Self::generate_named(format!("{kid_prefix}{}", Uuid::new_v4().simple()))
    }

    /// A fresh 2048-bit key under exactly this `kid`.
    pub fn generate_named(kid: String) -> Result<Self, KeyError> {
        let key_pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generation)?;
        let public = aws_lc_rs::signature::KeyPair::public_key(&key_pair);
        let components = PublicKeyComponents::<Vec<u8>>::from(public);
        let jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(&components.n),
            "e": URL_SAFE_NO_PAD.encode(&components.e),
        });
        let spki_der = public.as_der().map_err(|_| KeyError::Encoding)?.as_ref().to_vec();
        Ok(Self { kid, key_pair, jwk, spki_der })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK object, as it appears in the JWKS `keys` array.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// SubjectPublicKeyInfo (X.509) DER, the form PEM `PUBLIC KEY` blocks carry.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The public key as a PEM `PUBLIC KEY` block: what the "HS256 with the public key" attack uses as its secret.
    pub fn public_key_pem(&self) -> String {
        let body = STANDARD.encode(&self.spki_der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// An RS256 JWT with header `{alg, typ, kid}`.
    pub fn sign(&self, typ: &str, claims: &Map<String, Value>) -> Result<String, KeyError> {
        let header = json!({ "alg": "RS256", "typ": typ, "kid": self.kid });
        self.sign_with_header(&header, claims)
    }

    pub fn sign_with_header(&self, header: &Value, claims: &Map<String, Value>) -> Result<String, KeyError> {
        let input = signing_input(header, claims)?;
        let mut signature = vec![0; self.key_pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key_pair.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut signature).map_err(|_| KeyError::Signing)?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// Checks a JWT this key signed (RS256 only): its claims, or `None`.
    pub fn verify(&self, token: &str) -> Option<Map<String, Value>> {
        let mut parts = token.split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header["alg"] != "RS256" || header["kid"] != self.kid.as_str() {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let public = aws_lc_rs::signature::KeyPair::public_key(&self.key_pair);
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            public.as_ref(),
        )
        .verify(format!("{}.{payload}", token.split('.').next()?).as_bytes(), &signature)
        .ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

/// [`SigningKey::generate`] on the blocking pool (RSA key generation is CPU-bound for a noticeable time: keep it
/// off the async workers). A failure is logged here; callers turn it into their own start-up error.
pub async fn generate_key(kid_prefix: &'static str) -> Option<SigningKey> {
    generate_on_blocking_pool(move || SigningKey::generate(kid_prefix)).await
}

/// [`SigningKey::generate_named`] on the blocking pool, as [`generate_key`].
pub async fn generate_key_named(kid: String) -> Option<SigningKey> {
    generate_on_blocking_pool(move || SigningKey::generate_named(kid)).await
}

async fn generate_on_blocking_pool(
    generate: impl FnOnce() -> Result<SigningKey, KeyError> + Send + 'static,
) -> Option<SigningKey> {
    match tokio::task::spawn_blocking(generate).await {
        Ok(Ok(key)) => Some(key),
        Ok(Err(error)) => {
            tracing::error!(%error, "RSA key generation failed");
            None
        }
        Err(error) => {
            tracing::error!(%error, "the RSA key generation task failed");
            None
        }
    }
}

/// `alg: none`, no signature: what a verifier that trusts the header would accept.
pub fn unsigned(claims: &Map<String, Value>) -> Result<String, KeyError> {
    Ok(format!("{}.", signing_input(&json!({ "alg": "none", "typ": "JWT" }), claims)?))
}

/// HS256 with `secret` as the HMAC key, naming `kid`: signed with the public key PEM, this is the classic
/// algorithm-confusion forgery; signed with the client secret, what Auth0 issues for an app set to HS256.
pub fn hs256(secret: &[u8], kid: &str, claims: &Map<String, Value>) -> Result<String, KeyError> {
    let input = signing_input(&json!({ "alg": "HS256", "typ": "JWT", "kid": kid }), claims)?;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())))
}

fn signing_input(header: &Value, claims: &Map<String, Value>) -> Result<String, KeyError> {
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_and_a_forged_one_does_not() {
        let key = SigningKey::generate("test-").expect("key");
        let other = SigningKey::generate("test-").expect("key");
        let claims: Map<String, Value> =
            serde_json::from_value(json!({ "sub": "auth0|alice", "aud": "client" })).expect("claims");
        let token = key.sign("JWT", &claims).expect("signed");
        assert_eq!(key.verify(&token), Some(claims.clone()));
        assert_eq!(other.verify(&token), None, "another key's signature");
        assert_eq!(key.verify(&unsigned(&claims).expect("none")), None);
        let forged = hs256(key.public_key_pem().as_bytes(), key.kid(), &claims).expect("hs256");
        assert_eq!(key.verify(&forged), None);
        assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----\nMIIBIjAN"));
    }
}

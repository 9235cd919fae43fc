//! The stand-in's signing key and the access tokens it issues.
//!
//! authbridge verifies WorkOS access tokens against the JWKS, so the stand-in must sign real RS256 JWTs with a real
//! RSA key and publish the matching JWK; a fake signature would leave the verification path untested. The JWT is
//! assembled by hand (it is three base64url parts) so the stand-in signs with aws-lc-rs directly, the same crypto
//! library authbridge uses.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Why a key could not be made or a token could not be signed. Neither happens with a healthy crypto library.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the RSA signing key could not be generated")]
    KeyGeneration,
    #[error("the RSA public key could not be encoded")]
    PublicKeyEncoding,
    #[error("the access token could not be signed")]
    Signing,
    #[error("the access token claims could not be serialised: {0}")]
    Claims(#[from] serde_json::Error),
}

/// One RSA key pair, with everything derived from its public half computed once.
pub struct SigningKey {
    kid: String,
    key_pair: KeyPair,
    jwk: Value,
    /// SubjectPublicKeyInfo (X.509) DER, the form PEM "PUBLIC KEY" blocks carry.
    spki_der: Vec<u8>,
}

impl SigningKey {
    /// Generates a fresh 2048-bit key. This takes tens to hundreds of milliseconds of CPU, so async callers run it
    /// on the blocking pool.
    pub fn generate() -> Result<Self, TokenError> {
        let key_pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| TokenError::KeyGeneration)?;
        // Shaped like WorkOS's own key ids, so logs from the stand-in read like logs from production.
        let kid = format!("sso_oidc_key_pair_{}", Uuid::new_v4().simple());
        let components = PublicKeyComponents::<Vec<u8>>::from(aws_lc_rs::signature::KeyPair::public_key(&key_pair));
        let jwk = json!({
            "kty": "RSA",
            "kid": kid,
            "use": "sig",
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&components.n),
            "e": URL_SAFE_NO_PAD.encode(&components.e),
        });
        let spki_der = aws_lc_rs::signature::KeyPair::public_key(&key_pair)
            .as_der()
            .map_err(|_| TokenError::PublicKeyEncoding)?
            .as_ref()
            .to_vec();
        Ok(Self { kid, key_pair, jwk, spki_der })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK object, as it appears in the JWKS `keys` array.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The public key as a PEM `PUBLIC KEY` block: what an attacker would feed to a verifier that confuses RS256
    /// with HS256, so tests can forge exactly that token.
    pub fn public_key_pem(&self) -> String {
        let body = STANDARD.encode(&self.spki_der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        // Base64 output is ASCII, so splitting on byte boundaries cannot cut a character.
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Signs `claims` as an RS256 JWT with header `{alg, typ, kid}`.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, TokenError> {
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": self.kid });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
        );
        let mut signature = vec![0; self.key_pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key_pair
            .sign(&RSA_PKCS1_SHA256, &rng, signing_input.as_bytes(), &mut signature)
            .map_err(|_| TokenError::Signing)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// What goes into an access token besides the extra claims a test asks for.
pub struct StandInAccessClaims<'a> {
    pub issuer: &'a str,
    pub user_id: &'a str,
    pub session_id: &'a str,
    pub organization_id: Option<&'a str>,
    pub impersonator_email: Option<&'a str>,
    /// The membership's role slugs in the organization (the first is `role`); `member` when none are known.
    pub roles: &'a [String],
    pub issued_at: i64,
    pub expires_at: i64,
}

/// Claims that say which session a token belongs to and when it is valid. Extra claims may not replace them:
/// a token whose `sub` or `exp` came from a test's claim map would make the stand-in contradict its own records.
const IDENTIFYING_CLAIMS: [&str; 6] = ["iss", "sub", "sid", "jti", "iat", "exp"];

impl StandInAccessClaims<'_> {
    /// The claim set WorkOS puts in an access token, with `extra` merged over the optional claims (`role`,
    /// `permissions`, `act`, …) so tests can exercise roles, permissions and very large tokens.
    pub fn into_map(self, extra: &Map<String, Value>) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("iss".into(), Value::from(self.issuer));
        claims.insert("sub".into(), Value::from(self.user_id));
        claims.insert("sid".into(), Value::from(self.session_id));
        claims.insert("jti".into(), Value::from(Uuid::new_v4().simple().to_string()));
        claims.insert("iat".into(), Value::from(self.issued_at));
        claims.insert("exp".into(), Value::from(self.expires_at));
        if let Some(org_id) = self.organization_id {
            let roles: Vec<String> =
                if self.roles.is_empty() { vec!["member".to_owned()] } else { self.roles.to_vec() };
            claims.insert("org_id".into(), Value::from(org_id));
            claims.insert("role".into(), Value::from(roles[0].clone()));
            claims.insert("roles".into(), Value::from(roles));
            claims.insert("permissions".into(), Value::Array(Vec::new()));
        }
        if let Some(email) = self.impersonator_email {
            claims.insert("act".into(), json!({ "sub": email }));
        }
        for (name, value) in extra {
            if !IDENTIFYING_CLAIMS.contains(&name.as_str()) {
                claims.insert(name.clone(), value.clone());
            }
        }
        claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    #[test]
    fn a_signed_token_verifies_with_the_published_key_and_carries_the_kid() {
        let key = SigningKey::generate().expect("key generation");
        let claims = StandInAccessClaims {
            issuer: "http://127.0.0.1:1/",
            user_id: "user_1",
            session_id: "session_1",
            organization_id: Some("org_1"),
            impersonator_email: None,
            roles: &[],
            issued_at: 100,
            expires_at: 400,
        }
        .into_map(&Map::new());
        let token = key.sign(&claims).expect("signing");

        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header, json!({ "alg": "RS256", "typ": "JWT", "kid": key.kid() }));
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, aws_lc_rs::signature::KeyPair::public_key(&key.key_pair))
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("signature verifies");
        assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----\nMIIBIjAN"));
    }

    #[test]
    fn extra_claims_extend_but_never_replace_identifying_claims() {
        let extra: Map<String, Value> = serde_json::from_value(json!({
            "sub": "someone_else", "exp": 1, "role": "admin", "permissions": ["todos:delete"], "big": "x"
        }))
        .expect("map");
        let claims = StandInAccessClaims {
            issuer: "i",
            user_id: "user_1",
            session_id: "s",
            organization_id: Some("org_1"),
            impersonator_email: Some("admin@example.test"),
            roles: &[],
            issued_at: 1,
            expires_at: 2,
        }
        .into_map(&extra);
        assert_eq!(claims["sub"], "user_1");
        assert_eq!(claims["exp"], 2);
        assert_eq!(claims["role"], "admin");
        assert_eq!(claims["permissions"], json!(["todos:delete"]));
        assert_eq!(claims["big"], "x");
        assert_eq!(claims["act"], json!({ "sub": "admin@example.test" }));
    }
}

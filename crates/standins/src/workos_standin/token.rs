//! The claims of the access tokens the WorkOS stand-in issues (signed with `crate::jwt::SigningKey`).

use serde_json::{Map, Value, json};
use uuid::Uuid;

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
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use crate::jwt::SigningKey;

    #[test]
    fn a_signed_token_verifies_with_the_published_key_and_carries_the_kid() {
        let key = SigningKey::generate("sso_oidc_key_pair_").expect("key generation");
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
        let token = key.sign("JWT", &claims).expect("signing");

        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header, json!({ "alg": "RS256", "typ": "JWT", "kid": key.kid() }));
        assert_eq!(key.verify(&token), Some(claims), "signature verifies");
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

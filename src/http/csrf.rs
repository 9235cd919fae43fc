//! Cross-site request forgery protection.
//!
//! Two mechanisms, one per kind of client:
//! - **Forms** carry a token tied to the session: HMAC-SHA256 of its id (WorkOS's session id, or the app's own
//!   random one with OpenID Connect) under a key derived from the cookie password. Nothing is stored server-side,
//!   any replica can check it, and it changes when the user signs in again. Compared in constant time; tokens made with the previous cookie password still pass during a
//!   key rotation so open pages keep working.
//! - **JSON requests authenticated by cookie** must come from the app's own origin (`Sec-Fetch-Site` / `Origin`)
//!   and be `application/json`, which a cross-site form cannot send without a CORS preflight we never grant.
//!   Bearer-token requests need neither: a browser never attaches a bearer token on its own.

use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::hmac;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::{Secret, SessionConfig};

use super::error::AppError;

/// The form field every state-changing form carries.
pub const FIELD: &str = "csrf_token";

pub struct CsrfKeys {
    current: hmac::Key,
    previous: Option<hmac::Key>,
}

impl CsrfKeys {
    pub fn new(config: &SessionConfig) -> Self {
        Self {
            current: derive(&config.cookie_password),
            previous: config.previous_cookie_password.as_ref().map(derive),
        }
    }

    /// The token for forms of the session identified by `binding` (WorkOS's session id, or the OpenID Connect session's own).
    pub fn token(&self, binding: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.current, binding.as_bytes()))
    }

    pub fn verify(&self, binding: &str, token: &str) -> Result<(), AppError> {
        let tag = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| AppError::Csrf)?;
        let valid = |key: &hmac::Key| hmac::verify(key, binding.as_bytes(), &tag).is_ok();
        if valid(&self.current) || self.previous.as_ref().is_some_and(valid) { Ok(()) } else { Err(AppError::Csrf) }
    }
}

fn derive(password: &Secret) -> hmac::Key {
    let prk = Salt::new(HKDF_SHA256, b"authbridge csrf v1").extract(password.expose().as_bytes());
    match prk.expand(&[b"csrf"], hmac::HMAC_SHA256) {
        Ok(okm) => hmac::Key::from(okm),
        // Unreachable for a 32-byte output; keying HMAC with the password itself is still sound.
        Err(_) => hmac::Key::new(hmac::HMAC_SHA256, password.expose().as_bytes()),
    }
}

/// Refuses a request a browser sent on behalf of another site. `origin` is the app's, e.g. `https://todos.example.com`.
///
/// Browsers send `Sec-Fetch-Site` (all current ones) and `Origin` on every cross-origin or unsafe request; a
/// request carrying neither did not come from a browser page, so it cannot be a forgery riding on the cookie.
pub fn require_same_origin(headers: &HeaderMap, origin: &str) -> Result<(), AppError> {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Err(AppError::CrossOrigin);
    }
    if let Some(sent) = headers.get(header::ORIGIN)
        && sent.as_bytes() != origin.as_bytes()
    {
        return Err(AppError::CrossOrigin);
    }
    Ok(())
}

/// Whether the browser says the request came from one of this app's own pages: its `Origin` is ours, or its
/// `Sec-Fetch-Site` is `same-origin`. Stronger than [`require_same_origin`], which also lets through a request
/// carrying neither (a client that is not a browser).
pub fn from_own_page(headers: &HeaderMap, origin: &str) -> bool {
    headers.get(header::ORIGIN).is_some_and(|sent| sent.as_bytes() == origin.as_bytes())
        || headers.get("sec-fetch-site").is_some_and(|site| site.as_bytes() == b"same-origin")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn keys(current: &str, previous: Option<&str>) -> CsrfKeys {
        CsrfKeys::new(&SessionConfig {
            cookie_password: Secret::new(current),
            previous_cookie_password: previous.map(Secret::new),
            secure_cookies: false,
        })
    }

    #[test]
    fn tokens_are_tied_to_the_session_and_the_key() {
        let keys = keys(&"a".repeat(32), None);
        let token = keys.token("session_1");
        assert!(keys.verify("session_1", &token).is_ok());
        assert!(keys.verify("session_2", &token).is_err());
        assert!(keys.verify("session_1", "").is_err());
        assert!(keys.verify("session_1", "not base64 !").is_err());
        assert!(self::keys(&"b".repeat(32), None).verify("session_1", &token).is_err());
    }

    #[test]
    fn rotation_keeps_open_pages_working() {
        let old = keys(&"a".repeat(32), None).token("session_1");
        assert!(keys(&"b".repeat(32), Some(&"a".repeat(32))).verify("session_1", &old).is_ok());
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let origin = "https://todos.example.com";
        let with = |name: &'static str, value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static(value));
            headers
        };
        assert!(require_same_origin(&HeaderMap::new(), origin).is_ok());
        assert!(require_same_origin(&with("origin", "https://todos.example.com"), origin).is_ok());
        assert!(require_same_origin(&with("sec-fetch-site", "same-origin"), origin).is_ok());
        assert!(require_same_origin(&with("origin", "https://evil.example"), origin).is_err());
        assert!(require_same_origin(&with("origin", "null"), origin).is_err());
        assert!(require_same_origin(&with("sec-fetch-site", "cross-site"), origin).is_err());
        assert!(require_same_origin(&with("sec-fetch-site", "same-site"), origin).is_err());
    }
}

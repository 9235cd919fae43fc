//! What every upstream client (WorkOS, InsForge) shares: how its HTTP client is built, how its URLs are formed,
//! and how a failed request is classified.
//!
//! Each upstream gets exactly one pooled client, built here at start-up, so connections are reused across
//! requests. Redirects are never followed: every request carries a credential (the WorkOS API key, a user's
//! InsForge token), and a redirect must not carry it to another host.

use std::time::Duration;

use url::Url;

pub fn client(connect_timeout: Duration, request_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("authbridge/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `base` with `segments` appended as path segments, each percent-encoded, so a value (a client id, a table name)
/// can never add path components. Appending (instead of `Url::join`) keeps a path prefix such as
/// `https://host/insforge`. `None` for a base that cannot have a path (`mailto:`…), which configuration refuses.
pub fn endpoint(base: &Url, segments: &[&str]) -> Option<Url> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut().ok()?.pop_if_empty().extend(segments);
    Some(url)
}

/// Why a request got no usable answer, as both clients need to tell it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the connect or request timeout.
    Timeout,
    /// Nothing reached the upstream: refused, DNS or TLS failure. Safe to retry, even a write.
    Connect,
    /// The answer arrived but its body is not what was expected.
    Decode,
    /// The connection broke after the request was sent: a write may or may not have been applied.
    Broken,
}

impl Failure {
    pub fn of(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            Self::Connect
        } else if error.is_decode() {
            Self::Decode
        } else {
            Self::Broken
        }
    }
}

/// reqwest's messages include the URL; a URL can carry a code or a filter value, so logs get it without.
pub fn message_without_url(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    if let Some(url) = error.url() {
        message = message.replace(url.as_str(), "<url>");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_base_path_and_encode_each_segment() {
        let base = Url::parse("https://host/prefix/?q=1#f").expect("url");
        let url = endpoint(&base, &["sso", "jwks", "client_1/../x"]).expect("a path base");
        assert_eq!(url.as_str(), "https://host/prefix/sso/jwks/client_1%2F..%2Fx");
        let bare = Url::parse("https://host").expect("url");
        assert_eq!(endpoint(&bare, &["api", "health"]).expect("path").as_str(), "https://host/api/health");
    }
}

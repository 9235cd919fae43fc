//! HTTP pieces both identity-provider stand-ins (WorkOS and OpenID Connect) answer with the same way: their base
//! URL, redirects with query parameters, OAuth error bodies, uncacheable answers, hardened HTML pages, and the time
//! arithmetic of the tokens they issue.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;
use url::Url;

/// The URL clients use: an unspecified bind address (`0.0.0.0`) is reached through loopback.
pub(crate) fn base_url_for(addr: SocketAddr) -> Url {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let mut url = Url::parse("http://127.0.0.1/").unwrap_or_else(|_| unreachable!("a constant URL parses"));
    // Neither call can fail on an http URL with a host, which `url` is.
    let _ = url.set_ip_host(ip);
    let _ = url.set_port(Some(addr.port()));
    url
}

pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |seconds| -seconds),
    }
}

/// A token lifetime in whole seconds, rounded up so a sub-second TTL gives a token valid for a moment rather than
/// one expired at birth; saturating, so `Duration::MAX` means "never" instead of an overflow.
pub(crate) fn whole_seconds(duration: Duration) -> i64 {
    let seconds = duration.as_secs().saturating_add(u64::from(duration.subsec_nanos() > 0));
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// `base` with the pairs that have a value appended to its query.
pub(crate) fn with_query(base: &Url, pairs: &[(&str, Option<&str>)]) -> Url {
    let mut url = base.clone();
    if pairs.iter().any(|(_, value)| value.is_some()) {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
    }
    url
}

/// An OAuth 2.0 error body (RFC 6749 §5.2), never cached.
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    no_store((status, Json(json!({ "error": error, "error_description": description }))).into_response())
}

/// Tokens, codes and their errors must not be cached anywhere on the way (RFC 6749 §5.1).
pub(crate) fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A stand-in page with the headers a real sign-in page sends: never cached, never framed, no scripts, no referrer.
/// `who` names the stand-in in the log and in the fallback answer when the template cannot render.
pub(crate) fn render_page(status: StatusCode, template: &impl Template, who: &str) -> Response {
    match template.render() {
        Ok(body) => {
            let mut response = (status, Html(body)).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
                ),
            );
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "a {who} stand-in page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("The {who} stand-in could not render this page."))
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_is_reachable_and_ends_with_a_slash() {
        let url = base_url_for("0.0.0.0:4321".parse().expect("addr"));
        assert_eq!(url.as_str(), "http://127.0.0.1:4321/");
        let url = base_url_for("[::1]:4321".parse().expect("addr"));
        assert_eq!(url.as_str(), "http://[::1]:4321/");
    }

    #[test]
    fn only_pairs_with_a_value_are_added() {
        let base = Url::parse("http://app.test/callback").expect("url");
        assert_eq!(
            with_query(&base, &[("code", Some("c")), ("state", None)]).as_str(),
            "http://app.test/callback?code=c"
        );
        assert_eq!(with_query(&base, &[("state", None)]).as_str(), "http://app.test/callback");
    }

    #[test]
    fn lifetimes_round_up_and_saturate() {
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(300)), 300);
        assert_eq!(whole_seconds(Duration::MAX), i64::MAX);
    }

    #[test]
    fn times_before_the_epoch_are_negative() {
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(5)), 5);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), -5);
    }
}

//! Cookies that never exceed what browsers keep.
//!
//! Browsers and proxies silently drop a `Set-Cookie` over 4096 bytes (name, value and attributes together), and
//! WorkOS access tokens grow with roles, permissions and custom claims. A silently dropped session cookie looks
//! like "signed in, then instantly signed out", the most confusing failure there is. So a value that does not fit
//! is split across `name.0`, `name.1`, …; reading joins them back; every write expires the chunks (or the unchunked
//! cookie) that the new value no longer uses, so a shrinking session never leaves stale pieces behind.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

/// The most a browser is guaranteed to store for one cookie, attributes included (RFC 6265 §6.1).
pub const MAX_SET_COOKIE_BYTES: usize = 4096;
/// A guard against an absurd value: 16 chunks is 64 KB of cookies, far past what any server accepts in a request.
const MAX_CHUNKS: usize = 16;

/// The attributes every cookie of the app shares.
#[derive(Debug, Clone)]
pub struct CookieSpec {
    pub name: &'static str,
    /// Only sent over https; set when the app's redirect URI is https.
    pub secure: bool,
    /// `None` makes a browser-session cookie.
    pub max_age: Option<Duration>,
}

impl CookieSpec {
    fn build(&self, name: String, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::build((name, value)).http_only(true).same_site(SameSite::Lax).path("/");
        if self.secure {
            cookie = cookie.secure(true);
        }
        if let Some(max_age) = self.max_age {
            cookie = cookie.max_age(time::Duration::seconds(max_age.as_secs() as i64));
        }
        cookie.build()
    }

    fn expired(&self, name: String) -> Cookie<'static> {
        let mut cookie = self.build(name, String::new());
        cookie.make_removal();
        cookie
    }

    fn chunk_name(&self, index: usize) -> String {
        format!("{}.{index}", self.name)
    }

    /// The names of this cookie's pieces the browser sent: the plain name and/or `name.N` chunks — only names the
    /// app could have written (`N` below [`MAX_CHUNKS`], written the way the app writes it), so a request carrying
    /// thousands of made-up chunk names cannot make the response expire each of them.
    /// Names are split out by hand rather than by a cookie parser, so that even a piece whose value no parser
    /// accepts is found, and can be cleared.
    pub fn present(&self, headers: &HeaderMap) -> Vec<String> {
        let mut names: Vec<String> = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|line| line.split(';'))
            .filter_map(|pair| pair.split_once('=').map(|(name, _)| name.trim()))
            .filter(|name| *name == self.name || self.is_chunk_name(name))
            .map(str::to_owned)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    fn is_chunk_name(&self, name: &str) -> bool {
        let Some(digits) = name.strip_prefix(self.name).and_then(|rest| rest.strip_prefix('.')) else { return false };
        // Only the spelling the app writes: `0` to `15`, no sign, no leading zeros.
        digits.parse::<usize>().is_ok_and(|index| index < MAX_CHUNKS && index.to_string() == digits)
    }

    /// The value as the browser holds it, joined from its chunks when it was split.
    pub fn read(&self, headers: &HeaderMap) -> Option<String> {
        let jar = CookieJar::from_headers(headers);
        if let Some(whole) = jar.get(self.name) {
            return Some(whole.value().to_owned());
        }
        let mut value = String::new();
        for index in 0..MAX_CHUNKS {
            match jar.get(&self.chunk_name(index)) {
                Some(chunk) => value.push_str(chunk.value()),
                None if index == 0 => return None,
                None => break,
            }
        }
        Some(value)
    }

    /// `Set-Cookie` values that store `value`, each within [`MAX_SET_COOKIE_BYTES`], and expire the pieces in
    /// `present` that the new value does not overwrite. `value` must be cookie-safe (sealed values are base64url).
    pub fn write(&self, value: &str, present: &[String]) -> Result<Vec<HeaderValue>, CookieTooLarge> {
        let whole = self.build(self.name.to_owned(), value.to_owned());
        let pieces: Vec<Cookie<'static>> = if whole.to_string().len() <= MAX_SET_COOKIE_BYTES {
            vec![whole]
        } else {
            // Room for a value in one chunk: the limit minus everything else in its Set-Cookie line, measured with
            // the widest chunk name so that every chunk fits.
            let overhead = self.build(self.chunk_name(MAX_CHUNKS), String::new()).to_string().len();
            let room = MAX_SET_COOKIE_BYTES - overhead;
            let chunks: Vec<&str> = value.as_bytes().chunks(room).filter_map(|c| std::str::from_utf8(c).ok()).collect();
            if chunks.len() > MAX_CHUNKS || chunks.iter().map(|c| c.len()).sum::<usize>() != value.len() {
                return Err(CookieTooLarge { bytes: value.len() });
            }
            chunks.iter().enumerate().map(|(i, chunk)| self.build(self.chunk_name(i), (*chunk).to_owned())).collect()
        };

        let written: Vec<String> = pieces.iter().map(|c| c.name().to_owned()).collect();
        let stale = present.iter().filter(|name| !written.contains(name)).map(|name| self.expired(name.clone()));
        Ok(pieces.into_iter().chain(stale).filter_map(|c| HeaderValue::from_str(&c.to_string()).ok()).collect())
    }

    /// The `Set-Cookie` value storing `value` as one cookie, or an error when it would need chunks: for values that
    /// must stay small whatever a request asks for (the sign-in state).
    pub fn write_single(&self, value: &str) -> Result<HeaderValue, CookieTooLarge> {
        let line = self.build(self.name.to_owned(), value.to_owned()).to_string();
        if line.len() > MAX_SET_COOKIE_BYTES {
            return Err(CookieTooLarge { bytes: value.len() });
        }
        HeaderValue::from_str(&line).map_err(|_| CookieTooLarge { bytes: value.len() })
    }

    /// `Set-Cookie` values that delete every piece the browser sent (and the plain name, in case it was not sent).
    pub fn clear(&self, present: &[String]) -> Vec<HeaderValue> {
        let mut names: Vec<String> = present.to_vec();
        if !names.iter().any(|n| n == self.name) {
            names.push(self.name.to_owned());
        }
        names.into_iter().filter_map(|name| HeaderValue::from_str(&self.expired(name).to_string()).ok()).collect()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a {bytes}-byte cookie value is more than the browser can be asked to keep")]
pub struct CookieTooLarge {
    pub bytes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::COOKIE;

    fn spec() -> CookieSpec {
        CookieSpec { name: "wos-session", secure: true, max_age: Some(Duration::from_secs(400 * 24 * 3600)) }
    }

    /// What a browser sends back after storing these Set-Cookie lines on top of `before`.
    fn browser_after(before: &[(String, String)], set: &[HeaderValue]) -> HeaderMap {
        let mut jar: Vec<(String, String)> = before.to_vec();
        for line in set {
            let cookie = Cookie::parse(line.to_str().expect("ascii").to_owned()).expect("valid Set-Cookie");
            jar.retain(|(name, _)| name != cookie.name());
            let removed = cookie.max_age().is_some_and(|age| age.is_zero() || age.is_negative());
            if !removed {
                jar.push((cookie.name().to_owned(), cookie.value().to_owned()));
            }
        }
        let mut headers = HeaderMap::new();
        let line = jar.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ");
        headers.insert(COOKIE, HeaderValue::from_str(&line).expect("ascii"));
        headers
    }

    fn jar_of(headers: &HeaderMap) -> Vec<(String, String)> {
        CookieJar::from_headers(headers).iter().map(|c| (c.name().to_owned(), c.value().to_owned())).collect()
    }

    #[test]
    fn small_values_use_one_cookie_with_every_attribute() {
        let set = spec().write("abc", &[]).expect("fits");
        assert_eq!(set.len(), 1);
        let line = set[0].to_str().expect("ascii");
        for attribute in ["wos-session=abc", "HttpOnly", "SameSite=Lax", "Path=/", "Secure", "Max-Age="] {
            assert!(line.contains(attribute), "{attribute} missing from {line}");
        }
    }

    #[test]
    fn large_values_are_chunked_within_the_limit_and_read_back() {
        for size in [3_000, 4_096, 6_000, 9_000, 20_000] {
            let value: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let set = spec().write(&value, &[]).expect("fits in chunks");
            for line in &set {
                assert!(line.len() <= MAX_SET_COOKIE_BYTES, "{} bytes for a {size}-byte value", line.len());
            }
            let headers = browser_after(&[], &set);
            assert_eq!(spec().read(&headers).as_deref(), Some(value.as_str()), "size {size}");
        }
    }

    #[test]
    fn shrinking_expires_the_chunks_no_longer_used() {
        let big = "x".repeat(10_000);
        let headers = browser_after(&[], &spec().write(&big, &[]).expect("chunks"));
        let present = spec().present(&headers);
        assert_eq!(present.len(), 3);

        let headers = browser_after(&jar_of(&headers), &spec().write("small", &present).expect("fits"));
        assert_eq!(jar_of(&headers), vec![("wos-session".to_owned(), "small".to_owned())]);
        assert_eq!(spec().read(&headers).as_deref(), Some("small"));

        let present = spec().present(&headers);
        let headers = browser_after(&jar_of(&headers), &spec().write(&big, &present).expect("chunks"));
        assert!(jar_of(&headers).iter().all(|(name, _)| name != "wos-session"), "the unchunked cookie is expired");
        assert_eq!(spec().read(&headers).as_deref(), Some(big.as_str()));
    }

    #[test]
    fn clear_removes_every_piece() {
        let headers = browser_after(&[], &spec().write(&"y".repeat(9_000), &[]).expect("chunks"));
        let cleared = browser_after(&jar_of(&headers), &spec().clear(&spec().present(&headers)));
        assert!(jar_of(&cleared).is_empty());
        assert_eq!(spec().read(&cleared), None);
    }

    #[test]
    fn other_cookies_are_left_alone() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("wos-session-other=1; wos-session.x=2; theme=dark"));
        assert!(spec().present(&headers).is_empty());
        assert_eq!(spec().read(&headers), None);
    }

    #[test]
    fn only_chunk_names_the_app_writes_are_found() {
        let mut headers = HeaderMap::new();
        let made_up: Vec<String> = (0..2_000).map(|i| format!("wos-session.{i}=x")).collect();
        let line =
            format!("wos-session=a; {}; wos-session.01=x; wos-session.+1=x; wos-session.3=y", made_up.join("; "));
        headers.insert(COOKIE, HeaderValue::from_str(&line).expect("ascii"));
        let present = spec().present(&headers);
        assert_eq!(present.len(), MAX_CHUNKS + 1, "{present:?}");
        assert!(present.iter().all(|name| name == "wos-session" || spec().is_chunk_name(name)));
        assert_eq!(spec().clear(&present).len(), MAX_CHUNKS + 1);
    }

    #[test]
    fn single_cookies_are_never_chunked() {
        assert!(spec().write_single(&"s".repeat(3_000)).is_ok());
        assert!(spec().write_single(&"s".repeat(4_100)).is_err());
    }

    #[test]
    fn absurd_values_are_refused() {
        assert!(spec().write(&"z".repeat(200_000), &[]).is_err());
    }
}

//! Cookies that never exceed what browsers keep.
//!
//! Browsers and proxies silently drop a `Set-Cookie` over 4096 bytes (name, value and attributes together), and
//! WorkOS access tokens grow with roles, permissions and custom claims. A silently dropped session cookie looks
//! like "signed in, then instantly signed out", the most confusing failure there is. So a value that does not fit
//! is split across `name.0`, `name.1`, …; reading joins them back; every write expires the chunks (or the unchunked
//! cookie) that the new value no longer uses, so a shrinking session never leaves stale pieces behind.
//!
//! A cookie a browser may hold several of at once (one per sign-in under way) is a [`CookieFamily`]: each one small
//! cookie `name.<key>`, never chunked, its key spelled so that it can never be taken for a chunk's `N`.

use std::borrow::Cow;
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use axum::http::{HeaderMap, HeaderValue};
use axum_extra::extract::cookie::{Cookie, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
        let mut names: Vec<String> = cookie_pairs(headers)
            .map(|(name, _)| name)
            .filter(|name| *name == self.name || self.is_chunk_name(name))
            .map(str::to_owned)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Whether the pieces present make one value as the app writes it: the whole cookie (which [`CookieSpec::read`]
    /// takes alone, whatever chunks are left beside it), or chunks `0` to `n - 1` with none missing. (A last chunk
    /// lost cannot be seen: nothing says how many there were.)
    pub fn is_whole(&self, headers: &HeaderMap) -> bool {
        let mut whole = false;
        let mut chunks = [false; MAX_CHUNKS];
        for (name, _) in cookie_pairs(headers) {
            if name == self.name {
                whole = true;
            } else if let Some(index) = self.chunk_index(name) {
                chunks[index] = true;
            }
        }
        let count = chunks.iter().filter(|present| **present).count();
        match (whole, count) {
            (true, _) => true,
            (false, 0) => false,
            (false, count) => chunks[..count].iter().all(|present| *present),
        }
    }

    fn is_chunk_name(&self, name: &str) -> bool {
        self.chunk_index(name).is_some()
    }

    /// `N` of a chunk name `name.N`, spelled only the way the app writes it: `0` to `15`, no sign, no leading zeros.
    fn chunk_index(&self, name: &str) -> Option<usize> {
        let digits = name.strip_prefix(self.name)?.strip_prefix('.')?;
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        digits.parse::<usize>().ok().filter(|index| canonical && *index < MAX_CHUNKS)
    }

    /// The value as the browser holds it, joined from its chunks when it was split. Read straight from the
    /// `Cookie` header rather than through a cookie parser: the app's values are base64url, so there is nothing to
    /// decode, and no other cookie the browser sends is parsed or copied on the way (this runs on every request).
    /// When a name repeats, the last one counts, as with a cookie jar.
    pub fn read<'h>(&self, headers: &'h HeaderMap) -> Option<Cow<'h, str>> {
        let mut whole = None;
        let mut chunks = [None; MAX_CHUNKS];
        for (name, value) in cookie_pairs(headers) {
            if name == self.name {
                whole = Some(value);
            } else if let Some(index) = self.chunk_index(name) {
                chunks[index] = Some(value);
            }
        }
        if let Some(whole) = whole {
            return Some(Cow::Borrowed(whole));
        }
        chunks[0]?;
        Some(Cow::Owned(chunks.iter().map_while(|chunk| *chunk).collect()))
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

    /// The `Set-Cookie` value storing `value` as the one cookie `name`, or an error when it would not fit one.
    fn single(&self, name: String, value: &str) -> Result<HeaderValue, CookieTooLarge> {
        let line = self.build(name, value.to_owned()).to_string();
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

    /// [`Self::clear`] for what the request carried, and nothing when it carried none of it.
    pub fn clear_sent(&self, request: &HeaderMap) -> Vec<HeaderValue> {
        let present = self.present(request);
        if present.is_empty() { Vec::new() } else { self.clear(&present) }
    }
}

/// The most cookies of a family a request is read for: far more than the app keeps (five sign-ins at once), and a
/// bound on what made-up names can make a response do (expire each of them).
pub const MAX_FAMILY_MEMBERS: usize = 16;
/// A member's key is this letter and then [`KEY_HASH_BYTES`] of SHA-256 in base64url: a key always starts with a
/// letter, so `name.<key>` is never read as a chunk `name.N` of the plain cookie (see [`CookieSpec::present`]).
const KEY_LETTER: char = 's';
/// 96 bits of the hash, 16 characters: no two of a browser's few keys meet.
const KEY_HASH_BYTES: usize = 12;
const KEY_HASH_CHARS: usize = KEY_HASH_BYTES * 4 / 3;

/// Cookies of one kind that a browser may hold several of at once, each one small cookie of its own named after
/// what it is for: `name.<key>`, the key derived from an identifier (the sign-in state, one cookie per sign-in
/// under way, so that two tabs signing in at once do not overwrite each other's). The identifier is hashed rather
/// than written in the name, because names are not sealed and the identifier may be a secret.
#[derive(Debug, Clone)]
pub struct CookieFamily {
    /// The name the members share, and their attributes.
    spec: CookieSpec,
}

/// One cookie of a [`CookieFamily`] as the browser sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'h> {
    pub name: &'h str,
    pub value: &'h str,
}

impl CookieFamily {
    pub fn new(spec: CookieSpec) -> Self {
        Self { spec }
    }

    /// The name of the member for `id`.
    pub fn name_for(&self, id: &str) -> String {
        keyed_name(self.spec.name, id)
    }

    /// Whether `name` is one of this family's, spelled exactly as the app writes them.
    fn is_member_name(&self, name: &str) -> bool {
        let key = name.strip_prefix(self.spec.name).and_then(|rest| rest.strip_prefix('.'));
        let hash = key.and_then(|key| key.strip_prefix(KEY_LETTER));
        hash.is_some_and(|hash| {
            hash.len() == KEY_HASH_CHARS && hash.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    }

    /// The member for `id`, if the browser sent it (the last one, when the name repeats, as with a cookie jar).
    pub fn read<'h>(&self, headers: &'h HeaderMap, id: &str) -> Option<Member<'h>> {
        let name = self.name_for(id);
        cookie_pairs(headers).filter(|(sent, _)| *sent == name).last().map(|(name, value)| Member { name, value })
    }

    /// The members the browser sent, each name once (with its last value): only names the app could have written,
    /// and at most [`MAX_FAMILY_MEMBERS`] of them, so a request carrying thousands of made-up names cannot make the
    /// response expire each of them.
    pub fn held<'h>(&self, headers: &'h HeaderMap) -> Vec<Member<'h>> {
        let mut held: Vec<Member<'h>> = Vec::new();
        for (name, value) in cookie_pairs(headers).filter(|(name, _)| self.is_member_name(name)) {
            if let Some(member) = held.iter_mut().find(|member| member.name == name) {
                member.value = value;
            } else if held.len() < MAX_FAMILY_MEMBERS {
                held.push(Member { name, value });
            }
        }
        held
    }

    /// The `Set-Cookie` value storing `value` as the member for `id`: always one cookie, an error when it would
    /// need chunks (a member must stay small whatever a request asks for).
    pub fn write(&self, id: &str, value: &str) -> Result<HeaderValue, CookieTooLarge> {
        self.spec.single(self.name_for(id), value)
    }

    /// `Set-Cookie` values expiring the members the browser sent beyond the newest `max - 1`, so that with the one
    /// about to be written it holds at most `max`: first those `age` cannot read (`None`: no use to anyone), then
    /// the oldest by `age` (any order-preserving pair, such as expiry and start time). Only the members
    /// [`Self::held`] reads are looked at, so made-up names cannot make this expire each of them.
    pub fn make_room_for_one(
        &self,
        request: &HeaderMap,
        max: usize,
        age: impl Fn(&str) -> Option<(u64, u64)>,
    ) -> Vec<HeaderValue> {
        let held = self.held(request);
        let excess = (held.len() + 1).saturating_sub(max);
        if excess == 0 {
            return Vec::new();
        }
        // `None` sorts before any age.
        let mut by_age: Vec<(Option<(u64, u64)>, &str)> =
            held.iter().map(|member| (age(member.value), member.name)).collect();
        by_age.sort_unstable();
        self.expire(by_age.into_iter().take(excess).map(|(_, name)| name))
    }

    /// `Set-Cookie` values deleting the members named (names that are not this family's are skipped).
    pub fn expire<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Vec<HeaderValue> {
        names
            .into_iter()
            .filter(|name| self.is_member_name(name))
            .filter_map(|name| HeaderValue::from_str(&self.spec.expired(name.to_owned()).to_string()).ok())
            .collect()
    }
}

/// The name of the member for `id` of the family named `base` (see [`CookieFamily`]): `base.s` and the first 96
/// bits of SHA-256(`id`) in base64url.
pub fn keyed_name(base: &str, id: &str) -> String {
    let hash = digest(&SHA256, id.as_bytes());
    let prefix = hash.as_ref().get(..KEY_HASH_BYTES).unwrap_or_default();
    format!("{base}.{KEY_LETTER}{}", URL_SAFE_NO_PAD.encode(prefix))
}

/// Every `name=value` pair of the request's `Cookie` headers, trimmed, in order. Pairs without `=` are skipped.
///
/// The header is split as bytes and each pair decoded on its own: another cookie of the site with a non-ASCII
/// value (set by a sibling subdomain, or by a script) skips only that pair. Read as one string, such a header
/// would hide every cookie in it, ours included: the user would look signed out, and stay so.
fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .flat_map(|value| split_at_semicolons(value.as_bytes()))
        .filter_map(|pair| std::str::from_utf8(pair).ok())
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.trim(), value.trim()))
}

/// `line` split at each `;`, as `<[u8]>::split` would, found with `memchr`: a session cookie makes the `Cookie`
/// header a few kilobytes, and this runs on every request.
fn split_at_semicolons(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b';', current) {
            Some(at) => {
                rest = Some(&current[at + 1..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
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
    use axum_extra::extract::cookie::CookieJar;

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

    /// A request's headers with `line` as its `Cookie` header.
    fn cookie_header(line: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(line).expect("ascii"));
        headers
    }

    #[test]
    fn a_value_is_whole_alone_or_as_chunks_from_zero_without_a_gap() {
        let whole = |line: &str| spec().is_whole(&cookie_header(line));
        assert!(whole("wos-session=a; other=b"));
        assert!(whole("wos-session.0=a; wos-session.1=b; wos-session.2=c"));
        assert!(!whole("other=b"), "nothing");
        assert!(!whole("wos-session.0=a; wos-session.2=c"), "a gap");
        assert!(!whole("wos-session.1=b"), "no first");
        assert!(whole("wos-session=a; wos-session.0=a"), "the whole one is read alone, as `read` does");
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
    fn reading_takes_the_last_of_a_repeated_name_and_only_contiguous_chunks() {
        let read = |line: &str| spec().read(&cookie_header(line)).map(Cow::into_owned);
        assert_eq!(read("wos-session=old; theme=dark; wos-session=new").as_deref(), Some("new"));
        assert_eq!(read(" wos-session = v1.abc ;other=1").as_deref(), Some("v1.abc"));
        assert_eq!(read("wos-session.0=ab; wos-session.1=cd; wos-session.3=zz").as_deref(), Some("abcd"));
        assert_eq!(
            read("wos-session.1=cd; wos-session.0=ab").as_deref(),
            Some("abcd"),
            "order of pairs does not matter"
        );
        assert_eq!(read("wos-session.1=cd"), None, "no first chunk, no value");
        assert_eq!(read("wos-session.00=ab; wos-session.+0=cd; wos-session.16=ef"), None, "names the app never writes");
        assert_eq!(read("wos-session=whole; wos-session.0=chunk").as_deref(), Some("whole"));
        assert_eq!(read("wos-session"), None, "a name without a value is no cookie");
        assert_eq!(read("wos-session=").as_deref(), Some(""));
    }

    #[test]
    fn the_header_is_split_at_semicolons_as_slice_split_would() {
        for line in ["", ";", "a", "a;b", ";a;;b;", "wos-session=x; theme=dark", "a=1;;;b=2;"] {
            let ours: Vec<&[u8]> = split_at_semicolons(line.as_bytes()).collect();
            let std: Vec<&[u8]> = line.as_bytes().split(|&byte| byte == b';').collect();
            assert_eq!(ours, std, "{line:?}");
        }
    }

    #[test]
    fn other_cookies_are_left_alone() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("wos-session-other=1; wos-session.x=2; theme=dark"));
        assert!(spec().present(&headers).is_empty());
        assert_eq!(spec().read(&headers), None);
    }

    #[test]
    fn a_non_ascii_cookie_beside_ours_hides_nothing() {
        let mut headers = HeaderMap::new();
        // UTF-8 in one cookie, a Latin-1 byte in another (not UTF-8 at all): neither is ours, neither may hide ours.
        let line = b"pref=caf\xc3\xa9; wos-session=abc; legacy=\xe9t\xe9";
        headers.insert(COOKIE, HeaderValue::from_bytes(line).expect("obs-text is a valid header value"));
        assert_eq!(spec().read(&headers).as_deref(), Some("abc"));
        assert_eq!(spec().present(&headers), ["wos-session"]);
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
        assert!(spec().single("wos-session".to_owned(), &"s".repeat(3_000)).is_ok());
        assert!(spec().single("wos-session".to_owned(), &"s".repeat(4_100)).is_err());
    }

    #[test]
    fn absurd_values_are_refused() {
        assert!(spec().write(&"z".repeat(200_000), &[]).is_err());
    }

    #[test]
    fn a_value_filling_every_chunk_exactly_is_stored_and_one_byte_more_is_refused() {
        let spec = spec();
        let room = MAX_SET_COOKIE_BYTES - spec.build(spec.chunk_name(MAX_CHUNKS), String::new()).to_string().len();
        let cookies = spec.write(&"v".repeat(room * MAX_CHUNKS), &[]).expect("the largest value that fits");
        assert_eq!(cookies.len(), MAX_CHUNKS);
        assert!(spec.write(&"v".repeat(room * MAX_CHUNKS + 1), &[]).is_err());
    }

    #[test]
    fn a_single_cookie_may_fill_its_line_exactly_and_no_more() {
        let spec = spec();
        let room = MAX_SET_COOKIE_BYTES - spec.build(spec.name.to_owned(), String::new()).to_string().len();
        let line = spec.single(spec.name.to_owned(), &"s".repeat(room)).expect("a line of exactly the limit");
        assert_eq!(line.len(), MAX_SET_COOKIE_BYTES);
        assert!(spec.single(spec.name.to_owned(), &"s".repeat(room + 1)).is_err());
    }

    fn family() -> CookieFamily {
        CookieFamily::new(CookieSpec { name: "wos-auth-state", secure: true, max_age: Some(Duration::from_secs(600)) })
    }

    #[test]
    fn a_members_name_is_a_hash_of_its_id_and_never_a_chunk_name() {
        let family = family();
        let plain = CookieSpec { name: "wos-auth-state", secure: true, max_age: None };
        let ids: Vec<String> = (0..5_000).map(|i| format!("state-{i}")).chain(["".into(), "0".into()]).collect();
        for id in &ids {
            let name = family.name_for(id);
            assert!(family.is_member_name(&name), "{name}");
            assert!(!plain.is_chunk_name(&name), "{name} would be read as a chunk");
            assert_eq!(name.len(), "wos-auth-state.".len() + 1 + KEY_HASH_CHARS, "{name}");
            assert!(id.len() < 3 || !name.contains(id.as_str()), "{name} names its id in the clear");
        }
        assert_eq!(family.name_for("a"), family.name_for("a"), "the same id finds the same cookie");
        assert_ne!(family.name_for("a"), family.name_for("b"));
        for other in ["wos-auth-state", "wos-auth-state.0", "wos-auth-state.15", "wos-auth-state.s", "wos-session.s"] {
            assert!(!family.is_member_name(other), "{other}");
        }
        let all_digits = format!("wos-auth-state.{}", "1".repeat(KEY_HASH_CHARS + 1));
        assert!(!family.is_member_name(&all_digits), "a key starts with its letter");
        let headers = cookie_header(&format!("{}=v; wos-auth-state=w", family.name_for("a")));
        assert_eq!(plain.present(&headers), ["wos-auth-state"], "the plain cookie's pieces do not include members");
    }

    #[test]
    fn a_member_is_read_by_its_id_the_last_of_a_repeated_name() {
        let family = family();
        let (a, b) = (family.name_for("a"), family.name_for("b"));
        let headers = cookie_header(&format!("{a}=old; {b}=bee; theme=dark; {a}=new"));
        assert_eq!(family.read(&headers, "a"), Some(Member { name: &a, value: "new" }));
        assert_eq!(family.read(&headers, "b").map(|member| member.value), Some("bee"));
        assert_eq!(family.read(&headers, "c"), None);
        let held = family.held(&headers);
        assert_eq!(held, [Member { name: &a, value: "new" }, Member { name: &b, value: "bee" }], "each name once");
    }

    #[test]
    fn only_member_names_the_app_writes_are_held_and_expired_and_never_more_than_the_bound() {
        let family = family();
        let made_up: Vec<String> = (0..2_000).map(|i| format!("{}=x", family.name_for(&i.to_string()))).collect();
        let line = format!("wos-auth-state.junk=x; wos-auth-state.0=x; {}; wos-auth-state.s=x", made_up.join("; "));
        let headers = cookie_header(&line);
        let held = family.held(&headers);
        assert_eq!(held.len(), MAX_FAMILY_MEMBERS);
        assert!(held.iter().all(|member| family.is_member_name(member.name)));
        assert_eq!(family.expire(held.iter().map(|member| member.name)).len(), MAX_FAMILY_MEMBERS);
        assert!(family.expire(["wos-auth-state", "wos-auth-state.0", "theme"]).is_empty(), "not members");
        let expired = family.expire([family.name_for("a").as_str()]);
        let line = expired[0].to_str().expect("ascii");
        assert!(line.starts_with(&format!("{}=;", family.name_for("a"))) && line.contains("Max-Age=0"), "{line}");
    }

    #[test]
    fn a_member_is_always_one_cookie_with_every_attribute() {
        let family = family();
        let line = family.write("a", "abc").expect("fits");
        let line = line.to_str().expect("ascii");
        assert!(line.starts_with(&format!("{}=abc", family.name_for("a"))), "{line}");
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure", "Max-Age=600"] {
            assert!(line.contains(attribute), "{attribute} missing from {line}");
        }
        assert!(family.write("a", &"s".repeat(3_000)).is_ok());
        assert!(family.write("a", &"s".repeat(4_100)).is_err(), "never chunked");
    }

    #[test]
    fn clearing_expires_each_name_once() {
        let spec = spec();
        assert_eq!(spec.clear(&["wos-session".to_owned()]).len(), 1, "the plain name, not twice");
        assert_eq!(spec.clear(&["wos-session.0".to_owned()]).len(), 2, "the chunk and the plain name");
        assert_eq!(spec.clear(&[]).len(), 1);
    }
}

//! Verifying a WorkOS webhook: `WorkOS-Signature: t=<ms>, v1=<hex>`, an HMAC-SHA256 over `<t>.<raw body>`
//! (`docs/workos.md` §3).
//!
//! The body is verified exactly as it arrived, byte for byte: parsing the JSON and serialising it again would
//! change the bytes (key order, spacing, escapes) and with them the HMAC, which is how a "verified" webhook can
//! end up being one that was never checked. The header is parsed by key, tolerant of spaces and order. Either the
//! current or the previous secret (during a rotation) may have signed it. The timestamp must be within
//! [`TOLERANCE`] of now in both directions, so a captured delivery cannot be replayed later. The comparison is
//! constant-time.
//!
//! The header is outside input on a route anyone can reach, and the body may be a megabyte: the HMAC is computed
//! once per configured secret, never once per `v1` value the sender chose to send, and a header with more than
//! [`MAX_CANDIDATES`] of them is refused before any hashing. (Verifying each candidate separately, as
//! `hmac::verify` would, let one unsigned request make the server hash the body a thousand times.)
//!
//! Checking is split in two so that the HTTP handler can refuse before it reads a byte of the body:
//! [`Signature::check`] needs only the header (present, well-formed, fresh), [`WebhookSecrets::verify_body`] then
//! hashes `<t>.` and the body as they are, fed to the HMAC piece by piece rather than copied into one message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;

use crate::config::Secret;

/// How far a signature's timestamp may be from now, either way (the tolerance WorkOS's SDKs use).
pub const TOLERANCE: Duration = Duration::from_secs(180);
pub const SIGNATURE_HEADER: &str = "workos-signature";
/// Most `v1` values a header may carry. WorkOS sends one; a few leave room for signing with two keys at once.
pub const MAX_CANDIDATES: usize = 4;

/// The secrets a delivery may be signed with.
pub struct WebhookSecrets {
    keys: Vec<hmac::Key>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the WorkOS-Signature header is missing")]
    Missing,
    #[error("the WorkOS-Signature header is not of the form t=<ms>, v1=<hex>")]
    Malformed,
    #[error("the signature's timestamp is more than 180 seconds from now")]
    Stale,
    #[error("no configured secret produced this signature")]
    Mismatch,
}

impl WebhookSecrets {
    pub fn new(current: &Secret, previous: Option<&Secret>) -> Self {
        let keys = std::iter::once(current)
            .chain(previous)
            .map(|secret| hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes()))
            .collect();
        Self { keys }
    }

    /// Checks `header` against `body` as received, at time `now`: [`Signature::check`], then
    /// [`WebhookSecrets::verify_body`].
    pub fn verify(&self, header: Option<&str>, body: &[u8], now: SystemTime) -> Result<(), SignatureError> {
        self.verify_body(&Signature::check(header, now)?, body)
    }

    /// Whether a configured secret signed `body` (as received) under `signature`'s timestamp.
    pub fn verify_body(&self, signature: &Signature<'_>, body: &[u8]) -> Result<(), SignatureError> {
        let matches = self.keys.iter().any(|key| {
            // The signed message uses the timestamp exactly as it was sent.
            let expected = tag(key, signature.timestamp_text, body);
            signature.candidates.iter().any(|candidate| verify_slices_are_equal(expected.as_ref(), candidate).is_ok())
        });
        if matches { Ok(()) } else { Err(SignatureError::Mismatch) }
    }
}

/// HMAC-SHA256 of `<timestamp>.<body>`, fed in pieces: the body is hashed where it lies, never copied.
fn tag(key: &hmac::Key, timestamp: &str, body: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(timestamp.as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

/// A `WorkOS-Signature` header that is present, well-formed and fresh: all that can be known before the body.
pub struct Signature<'a> {
    timestamp_text: &'a str,
    timestamp_ms: i64,
    /// Every `v1` value, decoded: one today, more should WorkOS ever sign with two keys at once.
    candidates: Vec<Vec<u8>>,
}

impl<'a> Signature<'a> {
    /// Reads `header` and checks its timestamp against `now`; what it signs is for [`WebhookSecrets::verify_body`].
    pub fn check(header: Option<&'a str>, now: SystemTime) -> Result<Self, SignatureError> {
        let header = header.map(str::trim).filter(|header| !header.is_empty()).ok_or(SignatureError::Missing)?;
        let signature = Self::parse(header)?;
        let now_ms = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis()) as i128;
        if (now_ms - i128::from(signature.timestamp_ms)).unsigned_abs() > TOLERANCE.as_millis() {
            return Err(SignatureError::Stale);
        }
        Ok(signature)
    }

    fn parse(header: &'a str) -> Result<Self, SignatureError> {
        let mut timestamp = None;
        let mut candidates = Vec::new();
        for part in header.split(',') {
            let Some((key, value)) = part.split_once('=') else { continue };
            match key.trim() {
                "t" => timestamp = Some(value.trim()),
                "v1" => candidates.push(decode_hex(value.trim()).ok_or(SignatureError::Malformed)?),
                _ => {}
            }
        }
        let timestamp_text = timestamp.ok_or(SignatureError::Malformed)?;
        let timestamp_ms = timestamp_text.parse::<i64>().map_err(|_| SignatureError::Malformed)?;
        if candidates.is_empty() || candidates.len() > MAX_CANDIDATES {
            return Err(SignatureError::Malformed);
        }
        Ok(Self { timestamp_text, timestamp_ms, candidates })
    }
}

/// The bytes of a `v1` candidate: exactly the 64 hex digits of an HMAC-SHA256, or nothing (no other length can
/// ever match, so none is decoded).
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    let nibble = |byte: u8| (byte as char).to_digit(16).map(|value| value as u8);
    text.as_bytes().chunks(2).map(|pair| Some(nibble(pair[0])? * 16 + nibble(pair[1])?)).collect()
}

/// `t=<ms>, v1=<hex>` for `body` signed with `secret` at `at`: what WorkOS sends, for tests and the benchmark.
pub fn sign(secret: &str, at: SystemTime, body: &[u8]) -> String {
    let timestamp = at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis());
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = tag(&key, &timestamp.to_string(), body);
    let hex: String = tag.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("t={timestamp}, v1={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of docs/workos.md §3.1, computed independently with Python, Node and openssl.
    const VECTOR_SECRET: &str = "wh_secret_example_0123456789";
    const VECTOR_BODY: &str = r#"{"id":"event_01JH8Z7Q3R5T6V8W9X0Y1Z2A3B","event":"session.revoked","data":{"object":"session","id":"session_01JH8Z5K2M4N6P8Q0R2S4T6V8W","user_id":"user_01JH8Z1A2B3C4D5E6F7G8H9J0K"},"created_at":"2026-01-01T00:00:00.000Z"}"#;
    const VECTOR_HEADER: &str = "t=1767225600000, v1=04f078b827ca96c27280933904719c1a3df876d733d09ca1bf81a338ab54b73f";

    fn at_vector_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_767_225_600_000)
    }

    fn secrets(current: &str, previous: Option<&str>) -> WebhookSecrets {
        WebhookSecrets::new(&Secret::new(current), previous.map(Secret::new).as_ref())
    }

    #[test]
    fn the_documented_vector_verifies_and_signing_reproduces_it() {
        let secrets = secrets(VECTOR_SECRET, None);
        assert_eq!(secrets.verify(Some(VECTOR_HEADER), VECTOR_BODY.as_bytes(), at_vector_time()), Ok(()));
        assert_eq!(sign(VECTOR_SECRET, at_vector_time(), VECTOR_BODY.as_bytes()), VECTOR_HEADER);
    }

    #[test]
    fn the_header_is_read_by_key_whatever_the_spacing_order_and_case_of_the_hex() {
        let secrets = secrets(VECTOR_SECRET, None);
        let (t, v1) = VECTOR_HEADER.split_once(", ").expect("two parts");
        for header in [format!("{v1},{t}"), format!(" {t} ,  {v1} "), format!("{t}, {}", v1.to_uppercase())] {
            let header = header.replace("V1=", "v1=");
            assert_eq!(secrets.verify(Some(&header), VECTOR_BODY.as_bytes(), at_vector_time()), Ok(()), "{header}");
        }
    }

    #[test]
    fn each_way_of_being_wrong_is_told_apart() {
        let body = VECTOR_BODY.as_bytes();
        let now = at_vector_time();
        let right = secrets(VECTOR_SECRET, None);
        assert_eq!(right.verify(None, body, now), Err(SignatureError::Missing));
        assert_eq!(right.verify(Some("  "), body, now), Err(SignatureError::Missing));
        for malformed in ["v1=00", "t=1767225600000", "t=abc, v1=00", "t=1767225600000, v1=zz", "garbage"] {
            assert_eq!(right.verify(Some(malformed), body, now), Err(SignatureError::Malformed), "{malformed}");
        }
        let late = now + TOLERANCE + Duration::from_secs(1);
        let early = now - TOLERANCE - Duration::from_secs(1);
        assert_eq!(right.verify(Some(VECTOR_HEADER), body, late), Err(SignatureError::Stale));
        assert_eq!(right.verify(Some(VECTOR_HEADER), body, early), Err(SignatureError::Stale));
        assert_eq!(right.verify(Some(VECTOR_HEADER), body, now + TOLERANCE), Ok(()), "the edge is inside");
        let mut tampered = body.to_vec();
        tampered[10] ^= 1;
        assert_eq!(right.verify(Some(VECTOR_HEADER), &tampered, now), Err(SignatureError::Mismatch));
        let wrong = secrets("another_secret", None);
        assert_eq!(wrong.verify(Some(VECTOR_HEADER), body, now), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_signature_among_a_few_v1_values_verifies_but_a_header_with_more_is_refused_before_any_hashing() {
        let (t, v1) = VECTOR_HEADER.split_once(", ").expect("two parts");
        let decoy = format!("v1={}", "0".repeat(64));
        let body = VECTOR_BODY.as_bytes();
        let secrets = secrets(VECTOR_SECRET, Some("the_previous_secret"));
        let few = format!("{t}, {}, {v1}", [decoy.as_str(); MAX_CANDIDATES - 1].join(", "));
        assert_eq!(secrets.verify(Some(&few), body, at_vector_time()), Ok(()));
        // One more, even with the right one among them: a sender may not make us try a thousand.
        let many = format!("{t}, {}, {v1}", [decoy.as_str(); MAX_CANDIDATES].join(", "));
        assert_eq!(secrets.verify(Some(&many), body, at_vector_time()), Err(SignatureError::Malformed));
        let flood = format!("{t}, {}", [decoy.as_str(); 900].join(", "));
        assert_eq!(secrets.verify(Some(&flood), body, at_vector_time()), Err(SignatureError::Malformed));
    }

    #[test]
    fn the_previous_secret_verifies_during_a_rotation() {
        let rotating = secrets("the_new_secret", Some(VECTOR_SECRET));
        assert_eq!(rotating.verify(Some(VECTOR_HEADER), VECTOR_BODY.as_bytes(), at_vector_time()), Ok(()));
    }
}

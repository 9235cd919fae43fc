//! Sealing: authenticated encryption of what the app keeps in the browser.
//!
//! The session and the sign-in state live in cookies, so any replica can serve any request without shared storage.
//! That is only safe if the browser can neither read nor alter them: each value is encrypted with AES-256-GCM
//! under a key derived (HKDF-SHA256) from `SESSION_COOKIE_PASSWORD`. A separate key per *purpose* means a sealed
//! sign-in state can never be replayed as a session, or the other way round.
//!
//! Key rotation: values sealed with `SESSION_COOKIE_PASSWORD_PREVIOUS` still open, and the caller is told so it
//! can reseal them with the current key; the previous key never seals anything.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::Secret;

/// Prefix of every sealed value: lets a future format be told apart, and rejects random junk cheaply.
const FORMAT: &str = "v1.";
const HKDF_SALT: &[u8] = b"authbridge seal v1";

/// What a sealed value is for; part of the key derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Session,
    SignInState,
    /// A sign-in waiting for the user to pick an organization (it holds WorkOS's pending token).
    OrganizationSelection,
    /// A refreshed session one replica shares with the others through the database (`session::shared_refresh`).
    SharedRefresh,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"session",
            Purpose::SignInState => b"sign-in state",
            Purpose::OrganizationSelection => b"organization selection",
            Purpose::SharedRefresh => b"shared refresh",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sealed value is missing, damaged, or was sealed with another key")]
pub struct SealError;

pub struct Opened {
    pub plaintext: Vec<u8>,
    /// Opened with the previous password: the caller should reseal with the current one.
    pub needs_reseal: bool,
}

pub struct Sealer {
    current: PurposeKeys,
    previous: Option<PurposeKeys>,
}

struct PurposeKeys {
    session: RandomizedNonceKey,
    sign_in_state: RandomizedNonceKey,
    organization_selection: RandomizedNonceKey,
    shared_refresh: RandomizedNonceKey,
}

impl PurposeKeys {
    fn derive(password: &Secret) -> Result<Self, SealError> {
        let prk = Salt::new(HKDF_SHA256, HKDF_SALT).extract(password.expose().as_bytes());
        let key = |purpose: Purpose| -> Result<RandomizedNonceKey, SealError> {
            let mut bytes = [0u8; 32];
            prk.expand(&[purpose.info()], &AES_256_GCM).and_then(|okm| okm.fill(&mut bytes)).map_err(|_| SealError)?;
            RandomizedNonceKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError)
        };
        Ok(Self {
            session: key(Purpose::Session)?,
            sign_in_state: key(Purpose::SignInState)?,
            organization_selection: key(Purpose::OrganizationSelection)?,
            shared_refresh: key(Purpose::SharedRefresh)?,
        })
    }

    fn get(&self, purpose: Purpose) -> &RandomizedNonceKey {
        match purpose {
            Purpose::Session => &self.session,
            Purpose::SignInState => &self.sign_in_state,
            Purpose::OrganizationSelection => &self.organization_selection,
            Purpose::SharedRefresh => &self.shared_refresh,
        }
    }
}

impl Sealer {
    pub fn new(current: &Secret, previous: Option<&Secret>) -> Result<Self, SealError> {
        Ok(Self { current: PurposeKeys::derive(current)?, previous: previous.map(PurposeKeys::derive).transpose()? })
    }

    /// `v1.` + base64url(nonce ‖ ciphertext ‖ tag): cookie-safe without further escaping.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> Result<String, SealError> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .current
            .get(purpose)
            .seal_in_place_append_tag(Aad::from(purpose.info()), &mut in_out)
            .map_err(|_| SealError)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + in_out.len());
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        Ok(format!("{FORMAT}{}", URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// Whether `sealed` has the shape of a seal (the format's prefix, base64url, room for a nonce and a tag), whoever
    /// sealed it: one that does not open is then sealed with another key (or forged), not garbage.
    pub fn is_well_formed(sealed: &str) -> bool {
        const TAG_LEN: usize = 16;
        sealed
            .strip_prefix(FORMAT)
            .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
            .is_some_and(|bytes| bytes.len() >= NONCE_LEN + TAG_LEN)
    }

    pub fn open(&self, purpose: Purpose, sealed: &str) -> Result<Opened, SealError> {
        let decode = || sealed.strip_prefix(FORMAT).and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok()).ok_or(SealError);
        if let Some(plaintext) = open_with(self.current.get(purpose), purpose, decode()?) {
            return Ok(Opened { plaintext, needs_reseal: false });
        }
        // Decoded again: a failed open may have left the buffer changed. Only during a password rotation.
        let previous = self.previous.as_ref().ok_or(SealError)?;
        let plaintext = open_with(previous.get(purpose), purpose, decode()?).ok_or(SealError)?;
        Ok(Opened { plaintext, needs_reseal: true })
    }
}

/// Opens `sealed` (nonce, ciphertext, tag) where it lies: the plaintext is the front of the same buffer, so a
/// cookie of a few kilobytes is not copied twice more on every request.
fn open_with(key: &RandomizedNonceKey, purpose: Purpose, mut sealed: Vec<u8>) -> Option<Vec<u8>> {
    let nonce = Nonce::try_assume_unique_for_key(sealed.get(..NONCE_LEN)?).ok()?;
    let length = key.open_in_place(nonce, Aad::from(purpose.info()), &mut sealed[NONCE_LEN..]).ok()?.len();
    sealed.copy_within(NONCE_LEN..NONCE_LEN + length, 0);
    sealed.truncate(length);
    Some(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(current: &str, previous: Option<&str>) -> Sealer {
        let previous = previous.map(Secret::new);
        Sealer::new(&Secret::new(current), previous.as_ref()).expect("keys derive")
    }

    const A: &str = "a-password-that-is-at-least-32-characters";
    const B: &str = "b-password-that-is-at-least-32-characters";

    #[test]
    fn a_seal_is_told_apart_from_garbage_by_its_shape_alone() {
        let sealed = sealer(A, None).seal(Purpose::Session, b"{}").expect("seal");
        assert!(Sealer::is_well_formed(&sealed));
        assert!(
            sealer(B, None).open(Purpose::Session, &sealed).is_err() && Sealer::is_well_formed(&sealed),
            "another key's"
        );
        for garbage in ["", "v1.", "v1.!!!!", "not-a-seal", &sealed[..12], &sealed.replacen("v1.", "v2.", 1)] {
            assert!(!Sealer::is_well_formed(garbage), "{garbage:?}");
        }
    }

    #[test]
    fn round_trips_and_is_not_readable() {
        let sealer = sealer(A, None);
        let sealed = sealer.seal(Purpose::Session, b"user_123 secret").expect("seal");
        assert!(!sealed.contains("user_123"));
        let opened = sealer.open(Purpose::Session, &sealed).expect("open");
        assert_eq!(opened.plaintext, b"user_123 secret");
        assert!(!opened.needs_reseal);
    }

    #[test]
    fn every_seal_is_different() {
        let sealer = sealer(A, None);
        let one = sealer.seal(Purpose::Session, b"same").expect("seal");
        let two = sealer.seal(Purpose::Session, b"same").expect("seal");
        assert_ne!(one, two, "nonces must not repeat");
    }

    #[test]
    fn tampering_truncation_and_foreign_keys_fail() {
        let sealer = sealer(A, None);
        let sealed = sealer.seal(Purpose::Session, b"payload").expect("seal");

        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert_eq!(sealer.open(Purpose::Session, &tampered).err(), Some(SealError));
        assert_eq!(sealer.open(Purpose::Session, &sealed[..sealed.len() - 5]).err(), Some(SealError));
        assert_eq!(sealer.open(Purpose::Session, "v1.").err(), Some(SealError));
        assert_eq!(sealer.open(Purpose::Session, "garbage").err(), Some(SealError));
        assert_eq!(self::sealer(B, None).open(Purpose::Session, &sealed).err(), Some(SealError));
    }

    #[test]
    fn purposes_do_not_mix() {
        let sealer = sealer(A, None);
        let state = sealer.seal(Purpose::SignInState, b"state").expect("seal");
        assert_eq!(sealer.open(Purpose::Session, &state).err(), Some(SealError));
        let pending = sealer.seal(Purpose::OrganizationSelection, b"pending").expect("seal");
        assert_eq!(sealer.open(Purpose::Session, &pending).err(), Some(SealError));
        assert_eq!(sealer.open(Purpose::SignInState, &pending).err(), Some(SealError));
    }

    #[test]
    fn previous_password_opens_and_asks_for_a_reseal() {
        let old = sealer(A, None).seal(Purpose::Session, b"payload").expect("seal");
        let rotated = sealer(B, Some(A));
        let opened = rotated.open(Purpose::Session, &old).expect("previous key opens");
        assert_eq!(opened.plaintext, b"payload");
        assert!(opened.needs_reseal);

        let resealed = rotated.seal(Purpose::Session, &opened.plaintext).expect("seal");
        assert!(sealer(B, None).open(Purpose::Session, &resealed).is_ok(), "resealed with the current key");
        assert!(sealer(A, None).open(Purpose::Session, &resealed).is_err(), "never sealed with the previous key");
    }
}

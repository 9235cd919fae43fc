//! Property tests of the webhook signature check, the one parser of outside input in the lifecycle that decides
//! whether anything is applied: whatever the `WorkOS-Signature` header and the body hold, the check never panics,
//! and only the exact bytes WorkOS signed, signed moments ago with a configured secret, pass.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use super::webhook::{SignatureError, WebhookSecrets, sign};
use crate::config::Secret;

const SECRET: &str = "whsec_property_test_0123456789";

fn secrets() -> WebhookSecrets {
    WebhookSecrets::new(&Secret::new(SECRET), None)
}

/// Headers shaped like WorkOS's (`t=…, v1=…`, in any order, spacing and repetition) with arbitrary values, and
/// arbitrary strings.
fn header() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        any::<i64>().prop_map(|t| format!("t={t}")),
        "[0-9a-fA-F]{0,80}".prop_map(|hex| format!("v1={hex}")),
        ".{0,20}".prop_map(|junk| format!("t={junk}")),
        ".{0,20}".prop_map(|junk| format!("v1={junk}")),
        ".{0,20}",
    ];
    prop_oneof![prop::collection::vec(part, 0..5).prop_map(|parts| parts.join(", ")), ".{0,200}"]
}

proptest! {
    #![proptest_config(crate::proptest_cases())]

    #[test]
    fn any_header_and_body_is_refused_without_a_panic(
        header in header(),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        prop_assert!(secrets().verify(Some(&header), &body, SystemTime::now()).is_err(), "{header:?}");
    }

    #[test]
    fn a_genuine_signature_covers_every_byte_of_the_body(
        body in prop::collection::vec(any::<u8>(), 1..512),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let now = SystemTime::now();
        let header = sign(SECRET, now, &body);
        prop_assert!(secrets().verify(Some(&header), &body, now).is_ok());
        let mut changed = body.clone();
        let at = position.index(changed.len());
        changed[at] ^= flip;
        prop_assert_eq!(secrets().verify(Some(&header), &changed, now), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_signature_from_outside_three_minutes_either_way_is_stale(
        body in prop::collection::vec(any::<u8>(), 0..64),
        seconds in 181u64..1_000_000_000,
        future in any::<bool>(),
    ) {
        let now = SystemTime::now();
        let offset = Duration::from_secs(seconds);
        let at = if future { now + offset } else { now - offset };
        let header = sign(SECRET, at, &body);
        prop_assert_eq!(secrets().verify(Some(&header), &body, now), Err(SignatureError::Stale));
    }
}

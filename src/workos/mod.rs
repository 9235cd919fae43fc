//! WorkOS: the HTTP client for its User Management API and the verifier for its access tokens, plus the
//! management reads (events, organizations, memberships) of the enterprise lifecycle and the object shapes they
//! return.

pub mod access_token;
pub mod client;
pub mod management;
pub mod objects;
pub mod user_emails;

pub use access_token::{AccessClaims, AccessTokenVerifier, TokenSource, VerifyError};
pub use client::{
    AuthResponse, AuthorizeParams, OrganizationChoice, PendingSelection, WorkosClient, WorkosError,
    is_organization_refusal,
};

/// A time as WorkOS's SDKs send one (JavaScript's `toISOString`, Python's `isoformat(timespec="milliseconds")`): UTC,
/// exactly three fraction digits, `Z`. Our clock has nanoseconds, and WorkOS does not say whether it takes more
/// digits: truncating (never rounding up) keeps a `range_start` from moving past an event.
pub fn sdk_time(at: time::OffsetDateTime) -> Result<String, time::error::Format> {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.to_offset(time::UtcOffset::UTC).format(FORMAT)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    #[test]
    fn times_go_to_workos_with_exactly_three_fraction_digits_in_utc() {
        assert_eq!(
            super::sdk_time(datetime!(2026-01-15 10:00:00.123_987_654 UTC)).expect("formats"),
            "2026-01-15T10:00:00.123Z"
        );
        assert_eq!(super::sdk_time(datetime!(2026-01-15 12:00:00 UTC)).expect("formats"), "2026-01-15T12:00:00.000Z");
        assert_eq!(super::sdk_time(datetime!(2026-01-15 12:00:00.1 UTC)).expect("formats"), "2026-01-15T12:00:00.100Z");
        assert_eq!(
            super::sdk_time(datetime!(2026-01-15 14:30:00.5 +02:30)).expect("formats"),
            "2026-01-15T12:00:00.500Z"
        );
    }
}

//! authbridge: WorkOS AuthKit sign-in in front of InsForge, with PostgreSQL row-level security deciding who
//! sees which rows.
//!
//! The request path runs one way: `http` (extractors decide who the user is) → a handler → `insforge`
//! (with a token from the minter) → the response. `workos` and `session` sit beside it and answer "who is this?".
//! Both providers' token verifiers remember what they verified in `token_cache` (verify once).
//! `lifecycle` (with its own database pool, `db`) keeps what WorkOS reports about people and organizations, and
//! tells `session` whose access has ended; `audit` sends the customer's Audit Log events to WorkOS from an outbox
//! and records what impersonated sessions do.
//! What runs on a developer's machine instead of the real services (a throwaway PostgreSQL and stand-ins for
//! InsForge and WorkOS) is not here but in the `authbridge-standins` crate (`crates/standins`); only `demo`, behind
//! the `demo` feature, uses it, so a build without that feature contains no stand-in code.

pub mod audit;
pub mod config;
pub mod db;
#[cfg(feature = "demo")]
pub mod demo;
pub mod http;
pub mod identity;
pub mod insforge;
pub mod lifecycle;
pub mod metrics;
pub mod migrate;
pub mod oidc;
pub mod outbound;
pub mod random;
pub mod server;
pub mod session;
pub mod startup;
pub mod sync;
pub mod todo;
pub mod token_cache;
pub mod workos;

/// How many cases each property test runs: 10,000, unless `PROPTEST_CASES` lowers it (mutation testing reruns every
/// test once per mutant).
#[cfg(test)]
pub(crate) fn proptest_cases() -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(10_000);
    proptest::test_runner::Config { cases, failure_persistence: None, ..proptest::test_runner::Config::default() }
}

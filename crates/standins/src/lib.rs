//! Stand-ins for what authbridge talks to, so that its tests and `authbridge demo` run on one machine, with no
//! accounts and nothing downloaded.
//!
//! - [`workos_standin`]: WorkOS User Management (AuthKit sign-in page, code and refresh grants, JWKS, logout), with
//!   controls that make it fail, hang or slow down on purpose.
//! - [`oidc_standin`]: an OpenID Connect provider shaped like an Auth0 tenant (discovery, JWKS with rotation,
//!   sign-in page, code + PKCE, rotating refresh tokens with reuse detection, userinfo, logout, revocation), with
//!   fault controls, including ID tokens that break one rule on purpose.
//! - [`insforge_standin`]: InsForge's records API over a real PostgreSQL, leaving every row decision to
//!   row-level security as InsForge does.
//! - [`temp_postgres`]: a throwaway PostgreSQL cluster from the machine's own binaries.
//!
//! This crate is test scaffolding, kept apart from the product so that a production build compiles none of it
//! (authbridge pulls it in only through its `demo` feature and as a dev-dependency). It does not depend on
//! authbridge either: it imitates the real services from the outside, with types of its own, so nothing here can
//! quietly agree with a bug in the product.

pub mod insforge_standin;
pub mod oidc_standin;
pub mod temp_postgres;
pub mod workos_standin;

mod jwt;
mod secret;
mod web;

pub use secret::StandInSecret;

/// The stand-ins' state stays consistent between statements, so a panic elsewhere while a lock was held (a test
/// thread failing) leaves nothing half-done: carry on with the data rather than poison every later request.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

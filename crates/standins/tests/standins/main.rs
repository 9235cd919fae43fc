//! The stand-ins' own tests: each stand-in honours the contract of the service it imitates, and the throwaway
//! PostgreSQL cleans up after itself. One binary, so one link step and one shared PostgreSQL cluster (see
//! `helpers`).
//!
//! These tests use no authbridge code: what they check is the imitation itself, so that authbridge's tests, which
//! run against the stand-ins, prove something about the real services.

mod helpers;

mod insforge_standin;
mod oidc_standin;
mod temp_postgres;
mod workos_lifecycle;
mod workos_standin;

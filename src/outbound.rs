//! The one way authbridge builds an HTTP client for an upstream (WorkOS, InsForge).
//!
//! Each upstream gets exactly one pooled client, built here at start-up, so connections are reused across
//! requests. Redirects are never followed: every request carries a credential (the WorkOS API key, a user's
//! InsForge token), and a redirect must not carry it to another host.

use std::time::Duration;

pub fn client(connect_timeout: Duration, request_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("authbridge/", env!("CARGO_PKG_VERSION")))
        .build()
}

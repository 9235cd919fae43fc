//! Who a request is for, independent of the identity provider.
//!
//! The data path (token minter, InsForge client) takes a [`UserIdentity`], never a WorkOS type, so a second
//! identity source (Auth0, any OIDC provider) only has to produce one of these.

use serde::Serialize;

/// A signed-in user as the data path sees them: the provider's stable user id, and an email when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserIdentity {
    /// The identity provider's user id (`user_01…` for WorkOS). It becomes `sub` in the InsForge token,
    /// and RLS compares it with `todos.user_id`.
    pub id: String,
    pub email: Option<String>,
}

impl UserIdentity {
    pub fn new(id: impl Into<String>, email: Option<String>) -> Self {
        Self { id: id.into(), email }
    }
}

//! Who a request is for, independent of the identity provider.
//!
//! The data path (token minter, InsForge client) takes a [`UserIdentity`], never a provider's type, and the
//! session keeps a [`UserProfile`]: a second identity source (Auth0, any OIDC provider) only has to produce these.

use serde::{Deserialize, Serialize};

/// A signed-in user as the data path sees them: the provider's stable user id, and an email when known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
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

/// The user as the identity provider describes them. The field names are WorkOS's user object's, so an
/// `authenticate` answer deserialises straight into it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct UserProfile {
    pub id: String,
    /// Access tokens carry no email, so a user known only from a bearer token has none.
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
}

impl UserProfile {
    /// Only an id: what a bearer token tells about its user.
    pub fn id_only(id: impl Into<String>) -> Self {
        Self { id: id.into(), email: None, first_name: None, last_name: None }
    }

    pub fn identity(&self) -> UserIdentity {
        UserIdentity::new(&self.id, self.email.clone())
    }

    /// "First Last", else the email, else the id: something a person recognises.
    pub fn display_name(&self) -> String {
        let name = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            return name;
        }
        self.email.clone().unwrap_or_else(|| self.id.clone())
    }
}

/// Set when support staff are signed in as this user (WorkOS impersonation); the app must show it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Impersonator {
    pub email: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_name_prefers_names_then_email_then_id() {
        let mut user = UserProfile::id_only("user_1");
        assert_eq!(user.display_name(), "user_1");
        user.email = Some("a@example.com".into());
        assert_eq!(user.display_name(), "a@example.com");
        user.last_name = Some(" ".into());
        assert_eq!(user.display_name(), "a@example.com");
        user.first_name = Some("Ada".into());
        user.last_name = Some("Lovelace".into());
        assert_eq!(user.display_name(), "Ada Lovelace");
    }
}

//! Which space a request works in — an organization or the user's personal todos — and the membership check that
//! comes first.
//!
//! The active space is the session's organization (the access token's `org_id`, set by a switch) unless the user
//! chose "Personal". Whether the user is still an active member is read from the database on every request (the
//! lifecycle's tables, which webhooks, the Events API and every sign-in keep current): the token may still name an
//! organization the user was removed from. RLS enforces the same rule again in PostgreSQL; this check is what lets
//! the app answer 403 (not an empty list) and write nothing.
//!
//! Organizations follow WorkOS and the lifecycle: without `DATABASE_URL` (or with an OpenID Connect provider)
//! everything is personal, and asking for an organization is answered `organizations_unavailable`.

use std::future::Future;

use crate::insforge::client::InsforgeError;
use crate::lifecycle::store::ActiveMembership;
use crate::todo::Space;

use super::AppState;
use super::error::AppError;
use super::extractors::CurrentUser;

/// A failed create in `space`, as the user should hear it. PostgreSQL refuses a row the insert policy's `WITH CHECK`
/// does not pass with SQLSTATE 42501 (PostgREST: 403), and in an organization that means the membership ended
/// between the check above and the insert: 403 `not_a_member`, and nothing was written. See
/// [`organization_create_failed`] for how that is told apart from the other 42501s.
pub async fn create_failed(state: &AppState, user: &CurrentUser, error: InsforgeError, space: &Space) -> AppError {
    match space.organization_id() {
        // Built here, awaited only if the refusal needs it (a future does nothing until awaited).
        Some(organization_id) => {
            let membership_now = async { membership(state, user, organization_id).await.map(|_| ()) };
            organization_create_failed(error, membership_now).await
        }
        // In the personal space a refusal is a server-side failure: our token or policies are wrong.
        None => AppError::from(error),
    }
}

/// A failed create in an organization. 42501 is also "permission denied for table …" or "… for schema …" (a grant
/// or an owner gone wrong: the deployment's failure), and PostgreSQL words both refusals in the language of the
/// server's `lc_messages`. So a 42501 that is not plainly a missing grant is settled by `membership_now`, the
/// membership read again from the lifecycle's tables, which the insert policy reads too: gone → `not_a_member`;
/// still there → the deployment's failure.
async fn organization_create_failed(
    error: InsforgeError,
    membership_now: impl Future<Output = Result<(), AppError>>,
) -> AppError {
    let InsforgeError::Forbidden { code: Some(code), message } = &error else { return AppError::from(error) };
    if code != INSUFFICIENT_PRIVILEGE || message.starts_with(MISSING_GRANT) {
        return AppError::from(error);
    }
    match membership_now.await {
        Ok(()) => AppError::from(error),
        // `not_a_member`; or the membership cannot be read now (authbridge's database is down), which is then the
        // answer: nothing was written, and it tells when to try again.
        Err(ended_or_unknown) => ended_or_unknown,
    }
}

/// PostgreSQL's SQLSTATE for a refused privilege: a policy's `WITH CHECK` or a missing grant alike.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// How PostgreSQL (in English) begins a missing grant's refusal: `permission denied for table todos`.
const MISSING_GRANT: &str = "permission denied for ";

/// A space as a request names it: `organization_id=org_…`, `personal` (or JSON `null`), or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// The active space: the active organization, else personal.
    Active,
    Personal,
    Organization(String),
}

impl Requested {
    /// From a query parameter or form field: absent or empty → the active space.
    pub fn from_param(raw: Option<&str>) -> Self {
        match raw.map(str::trim) {
            None | Some("") => Self::Active,
            Some("personal") => Self::Personal,
            Some(id) => Self::Organization(id.to_owned()),
        }
    }
}

/// The space a request works in, and the membership that lets it (`None` for personal).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub space: Space,
    pub membership: Option<ActiveMembership>,
}

impl Resolved {
    fn personal() -> Self {
        Self { space: Space::Personal, membership: None }
    }

    /// The organization's name for people: its synced name, never its id (until the name is known, "your
    /// organization").
    pub fn organization_name(&self) -> Option<String> {
        self.membership.as_ref().map(display_name)
    }
}

/// What a person calls an organization: [`organization_label`] of its name.
pub fn display_name(membership: &ActiveMembership) -> String {
    organization_label(membership.name.as_deref())
}

/// An organization's name as the pages show it: without the explicit direction controls (embeddings, overrides,
/// isolates: U+202A–U+202E, U+2066–U+2069), since a name's own pop or isolate end would close the isolation the
/// page puts around it and let an override reorder what follows; "Your organization" until its name is known, and
/// for a name that would show nothing (blank, or zero-width characters only: a heading of just "'s todos", an
/// empty switcher option or button).
pub fn organization_label(name: Option<&str>) -> String {
    let is_direction_control = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    match name.map(|name| name.replace(is_direction_control, "")) {
        Some(name) if !crate::todo::is_invisible(&name) => name,
        _ => "Your organization".to_owned(),
    }
}

/// The user's active memberships (none without the lifecycle).
pub async fn memberships(state: &AppState, user: &CurrentUser) -> Result<Vec<ActiveMembership>, AppError> {
    match &state.lifecycle {
        // Boxed: the query's future is kilobytes; unboxed, it would grow (and be moved with) every handler's future.
        Some(lifecycle) => Ok(Box::pin(lifecycle.active_memberships(user.id())).await?),
        None => Ok(Vec::new()),
    }
}

/// The user's active membership in `organization_id`, or why there is none.
pub async fn membership(
    state: &AppState,
    user: &CurrentUser,
    organization_id: &str,
) -> Result<ActiveMembership, AppError> {
    if state.lifecycle.is_none() {
        return Err(AppError::OrganizationsUnavailable);
    }
    memberships(state, user).await?.into_iter().find(|m| m.id == organization_id).ok_or(AppError::NotAMember)
}

/// The space a request works in; an organization only for an active member (else 403, and nothing happens).
pub async fn resolve(state: &AppState, user: &CurrentUser, requested: &Requested) -> Result<Resolved, AppError> {
    match requested {
        Requested::Personal => Ok(Resolved::personal()),
        Requested::Organization(id) => {
            let membership = membership(state, user, id).await?;
            Ok(Resolved { space: Space::Organization(id.clone()), membership: Some(membership) })
        }
        Requested::Active => match (state.lifecycle.is_some(), user.active_organization()) {
            (true, Some(id)) => {
                let membership = membership(state, user, id).await?;
                Ok(Resolved { space: Space::Organization(id.to_owned()), membership: Some(membership) })
            }
            // No organization chosen, or no organizations here at all: personal.
            _ => Ok(Resolved::personal()),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn forbidden(message: &str) -> InsforgeError {
        InsforgeError::Forbidden { code: Some("42501".to_owned()), message: message.to_owned() }
    }

    /// A membership read again that must not be read: the refusal is settled without it.
    async fn not_asked() -> Result<(), AppError> {
        panic!("the membership was read again for a refusal that does not need it")
    }

    #[test]
    fn an_organization_is_named_for_people_even_when_its_name_shows_nothing() {
        let named = |name: Option<&str>| {
            display_name(&ActiveMembership {
                id: "org_1".to_owned(),
                name: name.map(str::to_owned),
                role: None,
                roles: Vec::new(),
            })
        };
        assert_eq!(named(Some("Acme")), "Acme");
        assert_eq!(named(Some(" Acme ")), " Acme ", "a visible name is shown as WorkOS has it");
        for nothing in [None, Some(""), Some("  "), Some("\u{200B}\u{2800}\u{200D}"), Some("\u{202E}\u{2069}")] {
            assert_eq!(named(nothing), "Your organization", "{nothing:?}");
        }
        // A name's own pop or isolate end would close the page's isolation around it, and its override would then
        // reorder what follows: the explicit direction controls go; right-to-left letters and marks stay.
        assert_eq!(named(Some("\u{2069}\u{202E}emcA")), "emcA");
        assert_eq!(named(Some("\u{202B}שלום\u{202C}\u{200F}")), "שלום\u{200F}");
        assert_eq!(organization_label(Some("\u{2066}Globex\u{2069}")), "Globex");
    }

    #[tokio::test]
    async fn a_refused_insert_into_an_organization_is_a_membership_that_just_ended() {
        let english = r#"new row violates row-level security policy for table "todos""#;
        let ended = || async { Err(AppError::NotAMember) };
        assert!(matches!(organization_create_failed(forbidden(english), ended()).await, AppError::NotAMember));
        // Whatever language PostgreSQL speaks: the membership read again decides.
        let french = "la nouvelle ligne viole la politique de sécurité au niveau ligne pour la table « todos »";
        assert!(matches!(organization_create_failed(forbidden(french), ended()).await, AppError::NotAMember));
        // Still a member: the policy refused for another reason, the deployment's failure.
        let member = || async { Ok(()) };
        for refusal in [english, french] {
            let error = organization_create_failed(forbidden(refusal), member()).await;
            assert!(matches!(error, AppError::InsforgeFailed(_)), "{error:?}");
        }
        // The membership cannot be read: that is the answer (nothing was written).
        let unknown = async { Err(AppError::DatabaseUnavailable { retry_after: Duration::from_secs(1) }) };
        let error = organization_create_failed(forbidden(english), unknown).await;
        assert!(matches!(error, AppError::DatabaseUnavailable { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn other_refusals_of_a_create_are_not_a_membership_question() {
        // A privilege missing is the deployment's failure, whatever the space.
        let no_grant = forbidden("permission denied for schema authbridge_rls");
        assert!(matches!(organization_create_failed(no_grant, not_asked()).await, AppError::InsforgeFailed(_)));
        // InsForge's own 403 (a role it cannot route) is not PostgreSQL's refusal.
        let role = InsforgeError::Forbidden {
            code: Some("AUTH_UNAUTHORIZED".to_owned()),
            message: "Invalid user role claim".to_owned(),
        };
        assert!(matches!(organization_create_failed(role, not_asked()).await, AppError::InsforgeFailed(_)));
        let no_code = InsforgeError::Forbidden { code: None, message: "Forbidden".to_owned() };
        assert!(matches!(organization_create_failed(no_code, not_asked()).await, AppError::InsforgeFailed(_)));
        assert!(matches!(
            organization_create_failed(InsforgeError::Timeout, not_asked()).await,
            AppError::InsforgeTimeout
        ));
    }
}

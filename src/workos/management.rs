//! The WorkOS management calls the enterprise lifecycle makes: the Events API, organizations and memberships
//! (`docs/workos.md` §4, §6). All are reads with the API key; none is retried here (the callers decide: the
//! consumer backs off, sign-in gives up quietly).

use time::OffsetDateTime;

use super::WorkosError;
use super::client::WorkosClient;
use super::objects::{EventEnvelope, ListPage, Membership, Organization, User};

/// The most a WorkOS list returns per page.
pub const PAGE_LIMIT: &str = "100";
/// Every membership status: by default WorkOS lists only active memberships (§6.2), which would hide a
/// deactivation.
const ALL_STATUSES: &str = "active,inactive,pending";

/// Where a page of events starts.
#[derive(Debug, Clone)]
pub enum EventsFrom<'a> {
    /// After the event with this (opaque) id: the cursor.
    After(&'a str),
    /// From this time on: when there is no cursor yet, or WorkOS refused the one we had.
    RangeStart(OffsetDateTime),
}

/// Whose memberships to list.
#[derive(Debug, Clone, Copy)]
pub enum MembershipsOf<'a> {
    User(&'a str),
    Organization(&'a str),
}

impl WorkosClient {
    /// `GET /events`, oldest first, at most 100 events of `types`. `order=asc` is sent explicitly: WorkOS defaults
    /// to `desc`, which would make `after` page backwards (§4.1).
    pub async fn list_events(
        &self,
        types: &[&str],
        from: &EventsFrom<'_>,
    ) -> Result<ListPage<EventEnvelope>, WorkosError> {
        let types = types.join(",");
        let mut query = vec![("events", types.as_str()), ("order", "asc"), ("limit", PAGE_LIMIT)];
        let range_start;
        match from {
            EventsFrom::After(cursor) => query.push(("after", cursor)),
            EventsFrom::RangeStart(at) => {
                range_start = super::sdk_time(*at).map_err(|e| WorkosError::Malformed(e.to_string()))?;
                query.push(("range_start", range_start.as_str()));
            }
        }
        self.get_json(&["events"], &query).await
    }

    /// One page of every organization, following `after` (an organization id) from the previous page.
    pub async fn list_organizations(&self, after: Option<&str>) -> Result<ListPage<Organization>, WorkosError> {
        let mut query = vec![("limit", PAGE_LIMIT)];
        if let Some(after) = after {
            query.push(("after", after));
        }
        self.get_json(&["organizations"], &query).await
    }

    /// Whether WorkOS takes our API key: the smallest authenticated read there is (`GET /organizations?limit=1`).
    /// Every other check of the configuration (the JWKS) is public, so a wrong or revoked `WORKOS_API_KEY` would
    /// otherwise be found only by the first sign-in. `Ok(false)`: WorkOS itself refused it, a 401 carrying WorkOS's
    /// `X-Request-ID` (docs/workos.md §8.1); a 401 without one (a gateway's in front of it) is an error like any other.
    /// `Ok(true)` for WorkOS's own 403 too: it took the key and refused only the listing.
    pub async fn check_api_key(&self) -> Result<bool, WorkosError> {
        match self.get_json_with_headers::<serde::de::IgnoredAny>(&["organizations"], &[("limit", "1")]).await {
            Ok(_) => Ok(true),
            Err((WorkosError::Rejected { status: 401, .. }, headers)) if headers.contains_key("x-request-id") => {
                Ok(false)
            }
            // WorkOS knew the key and only withheld the listing (a key scoped without organization read access):
            // the key itself is good.
            Err((WorkosError::Rejected { status: 403, .. }, headers)) if headers.contains_key("x-request-id") => {
                Ok(true)
            }
            Err((error, _)) => Err(error),
        }
    }

    /// `GET /organizations/{id}`; `None` when WorkOS does not know it (404).
    pub async fn get_organization(&self, id: &str) -> Result<Option<Organization>, WorkosError> {
        self.get_found(&["organizations", id]).await
    }

    /// `GET /user_management/organization_memberships/{id}`; `None` when WorkOS does not know it (404).
    pub async fn get_membership(&self, id: &str) -> Result<Option<Membership>, WorkosError> {
        self.get_found(&["user_management", "organization_memberships", id]).await
    }

    /// One page of memberships in every status (active, inactive, pending).
    pub async fn list_memberships(
        &self,
        of: MembershipsOf<'_>,
        after: Option<&str>,
    ) -> Result<ListPage<Membership>, WorkosError> {
        self.list_memberships_in(ALL_STATUSES, of, after).await
    }

    /// One page of the user's active memberships: the organizations they may sign in to now. Each membership
    /// names its organization (`organization_name`, §6.2), so no organization needs fetching.
    pub async fn list_active_memberships(
        &self,
        user_id: &str,
        after: Option<&str>,
    ) -> Result<ListPage<Membership>, WorkosError> {
        self.list_memberships_in("active", MembershipsOf::User(user_id), after).await
    }

    async fn list_memberships_in(
        &self,
        statuses: &str,
        of: MembershipsOf<'_>,
        after: Option<&str>,
    ) -> Result<ListPage<Membership>, WorkosError> {
        let mut query = vec![("statuses", statuses), ("limit", PAGE_LIMIT)];
        match of {
            MembershipsOf::User(id) => query.push(("user_id", id)),
            MembershipsOf::Organization(id) => query.push(("organization_id", id)),
        }
        if let Some(after) = after {
            query.push(("after", after));
        }
        self.get_json(&["user_management", "organization_memberships"], &query).await
    }
}

/// What an organization admin sets up in the Admin Portal (`POST /portal/generate_link`'s `intent`, §7.1): the four
/// the app offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortalIntent {
    Sso,
    Dsync,
    AuditLogs,
    DomainVerification,
}

impl PortalIntent {
    pub const ALL: [PortalIntent; 4] =
        [PortalIntent::Sso, PortalIntent::Dsync, PortalIntent::AuditLogs, PortalIntent::DomainVerification];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sso => "sso",
            Self::Dsync => "dsync",
            Self::AuditLogs => "audit_logs",
            Self::DomainVerification => "domain_verification",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|intent| intent.as_str() == raw)
    }

    /// What the settings page's button says.
    pub fn label(self) -> &'static str {
        match self {
            Self::Sso => "Set up SSO",
            Self::Dsync => "Set up directory sync",
            Self::AuditLogs => "Audit logs",
            Self::DomainVerification => "Domain verification",
        }
    }
}

impl WorkosClient {
    /// `GET /user_management/users/{id}` (§6.3); `None` when WorkOS does not know the user (404).
    pub async fn get_user(&self, id: &str) -> Result<Option<User>, WorkosError> {
        self.get_found(&["user_management", "users", id]).await
    }

    /// `POST /portal/generate_link` (§7.1): a short-lived Admin Portal link for `organization_id`. The link is a
    /// bearer secret: callers redirect to it and never log it.
    pub async fn generate_portal_link(
        &self,
        organization_id: &str,
        intent: PortalIntent,
        return_url: &url::Url,
        success_url: &url::Url,
    ) -> Result<url::Url, WorkosError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            organization: &'a str,
            intent: &'a str,
            return_url: &'a str,
            success_url: &'a str,
        }
        #[derive(serde::Deserialize)]
        struct Link {
            link: String,
        }
        let body = Body {
            organization: organization_id,
            intent: intent.as_str(),
            return_url: return_url.as_str(),
            success_url: success_url.as_str(),
        };
        let Link { link } = self.post_json(&["portal", "generate_link"], &body, None).await?;
        // Never the link itself in the error: it is a credential.
        url::Url::parse(&link)
            .ok()
            .filter(|url| matches!(url.scheme(), "https" | "http"))
            .ok_or_else(|| WorkosError::Malformed("the portal link is not an http(s) URL".to_owned()))
    }

    /// `POST /audit_logs/events` (§7.2) with a stable `Idempotency-Key`, so a resend of the same event after a lost
    /// answer is the same event to WorkOS.
    pub async fn create_audit_log_event(
        &self,
        organization_id: &str,
        event: &serde_json::Value,
        idempotency_key: &str,
    ) -> Result<(), WorkosError> {
        let body = serde_json::json!({ "organization_id": organization_id, "event": event });
        let _: serde::de::IgnoredAny = self.post_json(&["audit_logs", "events"], &body, Some(idempotency_key)).await?;
        Ok(())
    }
}

//! An organization choice sent twice (a double click on the selection page, the form sent again while the first
//! is under way) is finished with WorkOS once.
//!
//! WorkOS's pending authentication token is single-use: the second exchange would be refused, and the error page it
//! leads to is what the browser shows, although the first request signed it in. So the requests naming the same
//! pending token and organization share one exchange: the second waits for the first and gets the same session (a
//! cookie of its own). A failure is not shared: each request then makes its own attempt and says its own error.
//!
//! Shared for [`SHARED_FOR`] only, and only within this process: the two requests of one double click that reach
//! different replicas are not joined (the second shows WorkOS's refusal, as before). Whoever sends the same pending
//! sign-in holds its sealed cookie and the form's CSRF token bound to it, so could have sent it first: sharing the
//! result gives nobody anything they could not get anyway.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::Session;
use crate::token_cache::{Fingerprint, fingerprint};

/// How long a finished choice is shared with a request that repeats it: a double click, or a form sent again after
/// a slow answer, comes within seconds.
pub const SHARED_FOR: Duration = Duration::from_secs(30);

/// Choices remembered at once, each with its session's tokens (a few KB): far more than can be finished within
/// [`SHARED_FOR`] on one replica, and bounded; the least recently used go first.
const CAPACITY: usize = 256;

struct Exchange {
    started: Instant,
    session: OnceCell<Session>,
}

pub struct RepeatedChoices {
    exchanges: quick_cache::sync::Cache<Fingerprint, Arc<Exchange>>,
}

impl Default for RepeatedChoices {
    fn default() -> Self {
        Self { exchanges: quick_cache::sync::Cache::new(CAPACITY) }
    }
}

impl RepeatedChoices {
    /// The session `exchange` gives for choosing `organization_id` with `pending_token`, or the one an earlier or
    /// concurrent request got for the same within [`SHARED_FOR`]; `true` when it is that other request's.
    pub async fn finish_once<E, F>(
        &self,
        pending_token: &str,
        organization_id: &str,
        exchange: impl FnOnce() -> F,
    ) -> Result<(Session, bool), E>
    where
        F: Future<Output = Result<Session, E>>,
    {
        // Those past their time are of no use, and hold sessions' tokens: gone at the next choice. A few hundred
        // entries at most, and choices are rare next to requests.
        self.exchanges.retain(|_, exchange| exchange.started.elapsed() < SHARED_FOR);
        let key = key(pending_token, organization_id);
        let fresh = || Ok::<_, Infallible>(Arc::new(Exchange { started: Instant::now(), session: OnceCell::new() }));
        let Ok(shared) = self.exchanges.get_or_insert_with(&key, fresh);
        let mut exchanged = false;
        let session = shared
            .session
            .get_or_try_init(|| {
                exchanged = true;
                exchange()
            })
            .await?;
        Ok((session.clone(), !exchanged))
    }
}

/// Both parts, so that a second click on another organization is its own attempt. The token's length comes first,
/// so no two pairs run together into the same text (the organization comes from the form: it may hold anything).
fn key(pending_token: &str, organization_id: &str) -> Fingerprint {
    fingerprint(&format!("{}:{pending_token}{organization_id}", pending_token.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user: &str) -> Session {
        Session {
            access_token: "access".to_owned(),
            refresh_token: Some("refresh".to_owned()),
            user: crate::identity::UserProfile::id_only(user),
            organization_id: Some("org_a".to_owned()),
            impersonator: None,
            session_id: None,
            oidc: None,
            personal: false,
        }
    }

    #[tokio::test]
    async fn a_repeated_choice_shares_the_first_session_and_another_organization_does_not() {
        let choices = RepeatedChoices::default();
        let (first, shared) =
            choices.finish_once("pending", "org_a", || async { Ok::<_, ()>(session("user_a")) }).await.expect("ok");
        assert!(!shared);
        let (again, shared) =
            choices.finish_once("pending", "org_a", || async { Err::<Session, ()>(()) }).await.expect("shared");
        assert!(shared);
        assert_eq!(again.user.id, first.user.id);
        let other = choices.finish_once("pending", "org_b", || async { Err::<Session, ()>(()) }).await;
        assert!(other.is_err(), "another organization is its own exchange");
        let other_token = choices.finish_once("pending2", "org_a", || async { Err::<Session, ()>(()) }).await;
        assert!(other_token.is_err(), "another pending sign-in is its own exchange");
        // The same text split differently between the token and the organization.
        let shifted = choices.finish_once("pendingorg", "_a", || async { Err::<Session, ()>(()) }).await;
        assert!(shifted.is_err(), "another pair is its own exchange");
    }

    #[tokio::test]
    async fn a_choice_finished_longer_ago_than_shared_for_is_not_shared() {
        let choices = RepeatedChoices::default();
        choices.finish_once("pending", "org_a", || async { Ok::<_, ()>(session("user_a")) }).await.expect("ok");
        let key = key("pending", "org_a");
        let Some(finished) = choices.exchanges.get(&key) else { panic!("remembered under its key") };
        let long_ago = Instant::now().checked_sub(SHARED_FOR + Duration::from_secs(1)).expect("a moment in the past");
        let aged = Exchange { started: long_ago, session: OnceCell::new_with(finished.session.get().cloned()) };
        choices.exchanges.insert(key, Arc::new(aged));
        let again = choices.finish_once("pending", "org_a", || async { Err::<Session, ()>(()) }).await;
        assert!(again.is_err(), "asked again, as WorkOS is after its pending token is spent");

        // Another choice removes it, and its session's tokens with it.
        let aged = Exchange { started: long_ago, session: OnceCell::new_with(Some(session("user_a"))) };
        choices.exchanges.insert(key, Arc::new(aged));
        choices.finish_once("other", "org_b", || async { Ok::<_, ()>(session("user_b")) }).await.expect("ok");
        assert!(choices.exchanges.get(&key).is_none(), "a choice past its time is not kept");
    }

    #[tokio::test]
    async fn a_failure_is_not_shared() {
        let choices = RepeatedChoices::default();
        let failed = choices.finish_once("pending", "org_a", || async { Err::<Session, &str>("refused") }).await;
        assert!(failed.is_err());
        let (_, shared) =
            choices.finish_once("pending", "org_a", || async { Ok::<_, &str>(session("user_a")) }).await.expect("ok");
        assert!(!shared, "the second request made its own exchange");
    }

    #[tokio::test]
    async fn concurrent_repeats_make_one_exchange() {
        let choices = RepeatedChoices::default();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let exchange = || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, ()>(session("user_a"))
        };
        let (one, two) = tokio::join!(
            choices.finish_once("pending", "org_a", exchange),
            choices.finish_once("pending", "org_a", exchange)
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        let shared = [one.expect("ok").1, two.expect("ok").1];
        assert_eq!(shared.iter().filter(|shared| **shared).count(), 1, "{shared:?}");
    }
}

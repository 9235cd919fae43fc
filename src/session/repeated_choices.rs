//! An organization choice sent twice (a double click on the selection page, the form sent again while the first
//! is under way) is finished with WorkOS once.
//!
//! WorkOS's pending authentication token is single-use: the second exchange would be refused, and the error page it
//! leads to is what the browser shows, although the first request signed it in. So the requests naming the same
//! pending token and organization share one exchange: the second waits for the first and gets the same session (a
//! cookie of its own). A failure is not shared: each request then makes its own attempt and says its own error.
//!
//! Shared while the first exchange is under way and for [`SHARED_FOR`] after it finished, and only within this
//! process: the two requests of one double click that reach different replicas are not joined (the second shows
//! WorkOS's refusal, as before). Whoever sends the same pending sign-in holds its sealed cookie and the form's CSRF
//! token bound to it, and could have sent it first; but where before a copy sent after the first had finished was
//! refused, within that short window it now signs in too. So the window is kept short, and every request that
//! signs in this way is logged with its request, for whoever must tell a double click from a copied cookie.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::Session;
use crate::token_cache::{Fingerprint, fingerprint};

/// How long after its exchange finished a choice is shared with a request that repeats it: the second request of a
/// double click comes within a second, and one sent while the first was under way waits for it anyway.
pub const SHARED_FOR: Duration = Duration::from_secs(10);

/// How long an exchange that never finished (it failed; the next request tries again itself) is remembered: as long
/// as the pending sign-in lives, after which nobody can send it.
const UNFINISHED_FOR: Duration = super::ORGANIZATION_SELECTION_TTL;

/// Choices remembered at once, each with its session's tokens (a few KB): far more than can be finished within
/// [`SHARED_FOR`] on one replica, and bounded; the least recently used go first.
const CAPACITY: usize = 256;

struct Exchange {
    started: Instant,
    finished: OnceLock<Instant>,
    session: OnceCell<Session>,
    recorded: Arc<AtomicBool>,
}

impl Exchange {
    fn new() -> Self {
        Self { started: Instant::now(), finished: OnceLock::new(), session: OnceCell::new(), recorded: Arc::default() }
    }

    /// Whether a request may still join it.
    fn is_current(&self) -> bool {
        match self.finished.get() {
            Some(at) => at.elapsed() < SHARED_FOR,
            None => self.started.elapsed() < UNFINISHED_FOR,
        }
    }
}

/// Which of the requests that signed in with one session records the sign-in (the Audit Logs): the first to claim
/// it once signed in, so that a request that failed after the exchange (its cookie, its time limit) leaves it to
/// another.
#[derive(Clone, Debug, Default)]
pub struct RecordOnce(Option<Arc<AtomicBool>>);

impl RecordOnce {
    /// `true` for the first caller only (always, for a sign-in nobody shares).
    pub fn claim(&self) -> bool {
        self.0.as_ref().is_none_or(|claimed| !claimed.swap(true, Ordering::AcqRel))
    }
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
    /// The session `exchange` gives for choosing `organization_id` with `pending_token`, or the one another request
    /// got or is getting for the same (see the module's comment); `true` when it is that other request's. With it,
    /// who records the sign-in.
    pub async fn finish_once<E, F>(
        &self,
        pending_token: &str,
        organization_id: &str,
        exchange: impl FnOnce() -> F,
    ) -> Result<(Session, bool, RecordOnce), E>
    where
        F: Future<Output = Result<Session, E>>,
    {
        // Those past their time are of no use, and hold sessions' tokens: gone at the next choice. A few hundred
        // entries at most, and choices are rare next to requests.
        self.exchanges.retain(|_, exchange| exchange.is_current());
        let key = key(pending_token, organization_id);
        let Ok(shared) = self.exchanges.get_or_insert_with(&key, || Ok::<_, Infallible>(Arc::new(Exchange::new())));
        let mut exchanged = false;
        let session = shared
            .session
            .get_or_try_init(|| {
                exchanged = true;
                exchange()
            })
            .await?;
        shared.finished.get_or_init(Instant::now);
        Ok((session.clone(), !exchanged, RecordOnce(Some(Arc::clone(&shared.recorded)))))
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
        let (first, shared, record) =
            choices.finish_once("pending", "org_a", || async { Ok::<_, ()>(session("user_a")) }).await.expect("ok");
        assert!(!shared);
        let (again, shared, record_again) =
            choices.finish_once("pending", "org_a", || async { Err::<Session, ()>(()) }).await.expect("shared");
        assert!(shared);
        assert_eq!(again.user.id, first.user.id);
        // Recorded once, by whichever claims it first.
        assert!(record_again.claim() && !record.claim() && !record_again.claim());
        assert!(RecordOnce::default().claim() && RecordOnce::default().claim(), "a sign-in nobody shares");
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
        // Finished a moment too long ago, though started only then.
        let age = |exchange: &Exchange, started: Instant, finished: Instant| {
            let aged = Exchange { started, finished: OnceLock::from(finished), ..Exchange::new() };
            let _ = aged.session.set(exchange.session.get().cloned().unwrap_or_else(|| session("user_a")));
            Arc::new(aged)
        };
        let Some(finished) = choices.exchanges.get(&key) else { panic!("remembered under its key") };
        let now = Instant::now();
        let just_over = now.checked_sub(SHARED_FOR + Duration::from_millis(100)).expect("a moment in the past");
        choices.exchanges.insert(key, age(&finished, now, just_over));
        let again = choices.finish_once("pending", "org_a", || async { Err::<Session, ()>(()) }).await;
        assert!(again.is_err(), "asked again, as WorkOS is after its pending token is spent");

        // Another choice removes it, and its session's tokens with it.
        choices.exchanges.insert(key, age(&finished, now, just_over));
        choices.finish_once("other", "org_b", || async { Ok::<_, ()>(session("user_b")) }).await.expect("ok");
        assert!(choices.exchanges.get(&key).is_none(), "a choice past its time is not kept");
    }

    /// Under way, an exchange is joined however long it takes (WorkOS may take up to its time limit); finished, for
    /// [`SHARED_FOR`] after it finished.
    #[test]
    fn an_exchange_is_current_while_under_way_and_for_a_moment_after() {
        let now = Instant::now();
        let ago = |by: Duration| now.checked_sub(by).expect("a moment in the past");
        let long_ago = ago(SHARED_FOR * 3);
        assert!(Exchange { started: long_ago, ..Exchange::new() }.is_current(), "under way");
        assert!(
            Exchange { started: long_ago, finished: OnceLock::from(ago(SHARED_FOR / 2)), ..Exchange::new() }
                .is_current()
        );
        let just_over = ago(SHARED_FOR + Duration::from_millis(100));
        assert!(!Exchange { started: just_over, finished: OnceLock::from(just_over), ..Exchange::new() }.is_current());
        // Never finished (it failed), and its pending sign-in expired: nobody can send it any more.
        if let Some(expired) = now.checked_sub(UNFINISHED_FOR + Duration::from_secs(1)) {
            assert!(!Exchange { started: expired, ..Exchange::new() }.is_current());
        }
    }

    #[tokio::test]
    async fn a_failure_is_not_shared() {
        let choices = RepeatedChoices::default();
        let failed = choices.finish_once("pending", "org_a", || async { Err::<Session, &str>("refused") }).await;
        assert!(failed.is_err());
        let (_, shared, _) =
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

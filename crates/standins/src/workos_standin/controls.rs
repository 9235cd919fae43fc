//! The knobs tests turn to make the stand-in misbehave, and the counters they read afterwards.
//!
//! authbridge's hardest promises are about WorkOS misbehaving (down, slow, rate-limiting) and about how often it is
//! called (one refresh for twenty racing requests). Those cannot be tested against the real service, so every
//! request to the stand-in passes through here first: it is counted, then possibly delayed, held, or answered with
//! an injected error before the endpoint's own logic runs, so an injected failure never spends a code or a
//! refresh token.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;

use super::Endpoint;
use crate::lock;

/// The two `authenticate` grants, counted apart because the concurrency test asserts on refreshes alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
}

#[derive(Default)]
struct Plan {
    failures: VecDeque<StatusCode>,
    /// Every request fails with this status until then (an outage of a few seconds).
    failing_until: Option<(Instant, StatusCode)>,
    hangs: usize,
    latency: Duration,
}

pub struct WorkosFaultControls {
    calls: [AtomicUsize; Endpoint::ALL.len()],
    code_calls: AtomicUsize,
    refresh_calls: AtomicUsize,
    plans: Mutex<HashMap<Endpoint, Plan>>,
    /// The `Retry-After` (seconds) of injected 429s: 1 unless a test needs a wait long enough to observe.
    retry_after_secs: AtomicU64,
    /// The most items a list page holds, whatever `limit` asked for (a server may page smaller; 0: no cap).
    page_cap: AtomicUsize,
    /// Objects the list endpoints leave out although they exist (a listing that lags, or skips what its cursor
    /// passed while it changed): `GET` of each still finds it.
    left_out_of_lists: Mutex<std::collections::HashSet<String>>,
    /// Flips to `true` when the stand-in stops, releasing held and delayed requests so shutdown never waits on them.
    stopping: watch::Receiver<bool>,
}

impl WorkosFaultControls {
    pub fn new(stopping: watch::Receiver<bool>) -> Self {
        Self {
            calls: Default::default(),
            code_calls: AtomicUsize::new(0),
            refresh_calls: AtomicUsize::new(0),
            plans: Mutex::new(HashMap::new()),
            retry_after_secs: AtomicU64::new(1),
            page_cap: AtomicUsize::new(0),
            left_out_of_lists: Mutex::default(),
            stopping,
        }
    }

    pub fn fail_next(&self, endpoint: Endpoint, n: usize, status: StatusCode) {
        let mut plans = lock(&self.plans);
        plans.entry(endpoint).or_default().failures.extend(std::iter::repeat_n(status, n));
    }

    pub fn fail_for(&self, endpoint: Endpoint, duration: Duration, status: StatusCode) {
        lock(&self.plans).entry(endpoint).or_default().failing_until = Some((Instant::now() + duration, status));
    }

    pub fn hang_next(&self, endpoint: Endpoint, n: usize) {
        let mut plans = lock(&self.plans);
        let plan = plans.entry(endpoint).or_default();
        plan.hangs = plan.hangs.saturating_add(n);
    }

    pub fn set_latency(&self, endpoint: Endpoint, latency: Duration) {
        lock(&self.plans).entry(endpoint).or_default().latency = latency;
    }

    pub fn calls(&self, endpoint: Endpoint) -> usize {
        self.calls[endpoint.index()].load(Ordering::SeqCst)
    }

    pub fn set_page_cap(&self, cap: usize) {
        self.page_cap.store(cap, Ordering::SeqCst);
    }

    pub fn leave_out_of_lists(&self, id: &str) {
        lock(&self.left_out_of_lists).insert(id.to_owned());
    }

    pub fn is_left_out_of_lists(&self, id: &str) -> bool {
        lock(&self.left_out_of_lists).contains(id)
    }

    /// `limit`, or the cap when one is set and smaller.
    pub fn page_size(&self, limit: usize) -> usize {
        match self.page_cap.load(Ordering::SeqCst) {
            0 => limit,
            cap => limit.min(cap),
        }
    }

    pub fn set_retry_after(&self, after: Duration) {
        self.retry_after_secs.store(after.as_secs(), Ordering::SeqCst);
    }

    pub fn grant_calls(&self, grant: GrantType) -> usize {
        match grant {
            GrantType::AuthorizationCode => self.code_calls.load(Ordering::SeqCst),
            GrantType::RefreshToken => self.refresh_calls.load(Ordering::SeqCst),
        }
    }

    pub fn count(&self, endpoint: Endpoint) {
        self.calls[endpoint.index()].fetch_add(1, Ordering::SeqCst);
    }

    pub fn count_grant(&self, grant: GrantType) {
        match grant {
            GrantType::AuthorizationCode => self.code_calls.fetch_add(1, Ordering::SeqCst),
            GrantType::RefreshToken => self.refresh_calls.fetch_add(1, Ordering::SeqCst),
        };
    }

    /// Counts the request, then applies whatever the test asked for. `Some(response)` means the request is answered
    /// here and the endpoint must not run.
    pub async fn gate(&self, endpoint: Endpoint) -> Option<Response> {
        self.count(endpoint);
        self.intercept(endpoint).await
    }

    /// Applies, in order: a hang (held until shutdown), the latency, then an injected failure.
    pub async fn intercept(&self, endpoint: Endpoint) -> Option<Response> {
        let (hang, latency, failure) = {
            let mut plans = lock(&self.plans);
            let plan = plans.entry(endpoint).or_default();
            let hang = plan.hangs > 0;
            if hang {
                plan.hangs -= 1;
            }
            // A held request never reaches the failure queue, so it must not consume an injected failure either.
            let outage = plan.failing_until.filter(|(until, _)| Instant::now() < *until).map(|(_, status)| status);
            let failure = if hang { None } else { outage.or_else(|| plan.failures.pop_front()) };
            (hang, plan.latency, failure)
        };

        if hang {
            self.until_stopping().await;
            return Some(injected_failure(StatusCode::SERVICE_UNAVAILABLE, 0));
        }
        if !latency.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(latency) => {}
                () = self.until_stopping() => return Some(injected_failure(StatusCode::SERVICE_UNAVAILABLE, 0)),
            }
        }
        let retry_after = self.retry_after_secs.load(Ordering::SeqCst);
        failure.map(|status| injected_failure(status, retry_after))
    }

    async fn until_stopping(&self) {
        let mut stopping = self.stopping.clone();
        // An error means the sender is gone, which only happens once the stand-in is dropped: stop waiting then too.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

/// A WorkOS-shaped error body (`{"code","message"}`) for an injected failure; 429 carries `Retry-After` (seconds)
/// as the real API's does.
fn injected_failure(status: StatusCode, retry_after_secs: u64) -> Response {
    let code = match status.as_u16() {
        400 => "invalid_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "entity_not_found",
        409 => "conflict",
        422 => "unprocessable_entity",
        429 => "rate_limit_exceeded",
        500 => "server_error",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ => "error",
    };
    let message = status.canonical_reason().unwrap_or("Error");
    let mut response = (status, Json(json!({ "code": code, "message": message }))).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_are_served_in_order_after_counting_and_then_stop() {
        let (_stop, stopping) = watch::channel(false);
        let controls = WorkosFaultControls::new(stopping);
        controls.fail_next(Endpoint::Jwks, 1, StatusCode::TOO_MANY_REQUESTS);
        controls.fail_next(Endpoint::Jwks, 1, StatusCode::BAD_GATEWAY);

        let first = controls.gate(Endpoint::Jwks).await.expect("first call fails");
        assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(first.headers().get(header::RETRY_AFTER).expect("Retry-After"), "1");
        let second = controls.gate(Endpoint::Jwks).await.expect("second call fails");
        assert_eq!(second.status(), StatusCode::BAD_GATEWAY);
        assert!(controls.gate(Endpoint::Jwks).await.is_none(), "the third call proceeds");
        controls.set_retry_after(Duration::from_secs(30));
        controls.fail_next(Endpoint::Jwks, 1, StatusCode::TOO_MANY_REQUESTS);
        let limited = controls.gate(Endpoint::Jwks).await.expect("a 429 again");
        assert_eq!(limited.headers().get(header::RETRY_AFTER).expect("Retry-After"), "30", "as set");
        assert!(controls.gate(Endpoint::Logout).await.is_none(), "other endpoints are unaffected");
        assert_eq!(controls.calls(Endpoint::Jwks), 4);
        assert_eq!(controls.calls(Endpoint::Logout), 1);
    }

    #[tokio::test]
    async fn an_outage_fails_every_request_until_it_ends() {
        let (_stop, stopping) = watch::channel(false);
        let controls = WorkosFaultControls::new(stopping);
        controls.fail_for(Endpoint::Authenticate, Duration::from_secs(3600), StatusCode::SERVICE_UNAVAILABLE);
        for _ in 0..3 {
            let response = controls.gate(Endpoint::Authenticate).await.expect("fails during the outage");
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert!(controls.gate(Endpoint::Jwks).await.is_none(), "other endpoints are unaffected");
        controls.fail_for(Endpoint::Authenticate, Duration::ZERO, StatusCode::SERVICE_UNAVAILABLE);
        assert!(controls.gate(Endpoint::Authenticate).await.is_none(), "the outage is over");
    }

    #[tokio::test]
    async fn a_held_request_is_released_when_the_stand_in_stops() {
        let (stop, stopping) = watch::channel(false);
        let controls = WorkosFaultControls::new(stopping);
        controls.hang_next(Endpoint::Authenticate, 1);
        let held = tokio::spawn(async move { controls.gate(Endpoint::Authenticate).await.map(|r| r.status()) });
        stop.send_replace(true);
        let status = tokio::time::timeout(Duration::from_secs(5), held).await.expect("released").expect("task");
        assert_eq!(status, Some(StatusCode::SERVICE_UNAVAILABLE));
    }
}

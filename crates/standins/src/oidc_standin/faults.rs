//! The knobs tests turn to make the OIDC stand-in misbehave, and the counters they read afterwards.
//!
//! Every request passes through [`Faults::gate`] first: it is counted, then possibly held (until the stand-in
//! stops), delayed, or answered with an injected failure before the endpoint's own logic runs, so an injected
//! failure never spends a code or a refresh token. Failures are OAuth-shaped (`{"error","error_description"}`),
//! as Auth0's are; a 429 carries `Retry-After`. A test can also script one exact answer ([`Faults::answer_next`]),
//! for what no real failure mode produces on demand (Auth0's 403 `invalid_grant`, an HTML error page).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;

use super::Endpoint;
use crate::lock;

/// An answer a test scripted: status, content type and body, sent as they are.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
    /// On a 429, when the rate limit's bucket fills again, from the moment of the answer.
    pub rate_limit_reset: Duration,
}

#[derive(Default)]
struct Plan {
    answers: VecDeque<Scripted>,
    hangs: usize,
    latency: Duration,
}

pub struct Faults {
    calls: [AtomicUsize; Endpoint::ALL.len()],
    plans: Mutex<HashMap<Endpoint, Plan>>,
    stopping: watch::Receiver<bool>,
}

impl Faults {
    pub fn new(stopping: watch::Receiver<bool>) -> Self {
        Self { calls: Default::default(), plans: Mutex::new(HashMap::new()), stopping }
    }

    pub fn answer_next(&self, endpoint: Endpoint, n: usize, answer: Scripted) {
        let mut plans = lock(&self.plans);
        plans.entry(endpoint).or_default().answers.extend(std::iter::repeat_n(answer, n));
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

    /// Counts the request, then applies, in order: a hang, the latency, a scripted answer. `Some(response)` means
    /// the endpoint must not run.
    pub async fn gate(&self, endpoint: Endpoint) -> Option<Response> {
        self.calls[endpoint.index()].fetch_add(1, Ordering::SeqCst);
        let (hang, latency, answer) = {
            let mut plans = lock(&self.plans);
            let plan = plans.entry(endpoint).or_default();
            let hang = plan.hangs > 0;
            if hang {
                plan.hangs -= 1;
            }
            let answer = if hang { None } else { plan.answers.pop_front() };
            (hang, plan.latency, answer)
        };
        if hang {
            self.until_stopping().await;
            return Some(failure(StatusCode::SERVICE_UNAVAILABLE).into_response());
        }
        if !latency.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(latency) => {}
                () = self.until_stopping() => return Some(failure(StatusCode::SERVICE_UNAVAILABLE).into_response()),
            }
        }
        answer.map(IntoResponse::into_response)
    }

    async fn until_stopping(&self) {
        let mut stopping = self.stopping.clone();
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

impl IntoResponse for Scripted {
    fn into_response(self) -> Response {
        let mut response = (self.status, [(header::CONTENT_TYPE, self.content_type)], self.body).into_response();
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // As Auth0 answers a 429 ("Rate limit policy"): no Retry-After, but the bucket's size, what is left of it and
        // when it fills again, in Unix seconds.
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            let reset = SystemTime::now() + self.rate_limit_reset;
            let reset = reset.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs());
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", HeaderValue::from_static("30"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
        }
        response
    }
}

/// The OAuth error body an outage of `status` is answered with.
pub fn failure(status: StatusCode) -> Scripted {
    let error = match status.as_u16() {
        429 => "too_many_requests",
        503 => "temporarily_unavailable",
        code if code >= 500 => "server_error",
        400 => "invalid_request",
        401 => "invalid_client",
        403 => "access_denied",
        _ => "error",
    };
    let description = status.canonical_reason().unwrap_or("Error");
    Scripted {
        status,
        content_type: "application/json",
        body: json!({ "error": error, "error_description": description }).to_string(),
        rate_limit_reset: Duration::from_secs(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_are_served_in_order_after_counting_and_then_stop() {
        let (_stop, stopping) = watch::channel(false);
        let faults = Faults::new(stopping);
        faults.answer_next(Endpoint::Token, 1, failure(StatusCode::TOO_MANY_REQUESTS));
        faults.answer_next(Endpoint::Token, 1, failure(StatusCode::BAD_GATEWAY));
        let first = faults.gate(Endpoint::Token).await.expect("scripted");
        assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(first.headers().get(header::RETRY_AFTER).is_none(), "Auth0 sends none");
        let reset = first.headers().get("x-ratelimit-reset").and_then(|value| value.to_str().ok());
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs());
        assert!(
            reset.and_then(|reset| reset.parse::<u64>().ok()).is_some_and(|reset| (now..=now + 2).contains(&reset))
        );
        assert_eq!(faults.gate(Endpoint::Token).await.expect("scripted").status(), StatusCode::BAD_GATEWAY);
        assert!(faults.gate(Endpoint::Token).await.is_none());
        assert!(faults.gate(Endpoint::Jwks).await.is_none());
        assert_eq!(faults.calls(Endpoint::Token), 3);
    }

    #[tokio::test]
    async fn a_held_request_is_released_when_the_stand_in_stops() {
        let (stop, stopping) = watch::channel(false);
        let faults = Faults::new(stopping);
        faults.hang_next(Endpoint::Discovery, 1);
        let held = tokio::spawn(async move { faults.gate(Endpoint::Discovery).await.map(|r| r.status()) });
        stop.send_replace(true);
        let status = tokio::time::timeout(Duration::from_secs(5), held).await.expect("released").expect("task");
        assert_eq!(status, Some(StatusCode::SERVICE_UNAVAILABLE));
    }
}

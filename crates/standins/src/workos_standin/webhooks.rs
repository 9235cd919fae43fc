//! Webhook delivery as WorkOS does it (docs/workos.md §3): every event is POSTed to every registered endpoint with
//! `WorkOS-Signature: t=<ms>, v1=<hex HMAC-SHA256 of "<t>.<body>">`, and any answer but a 2xx is retried with
//! backoff (a handful of attempts; WorkOS spreads six over three days, the stand-in over seconds).
//!
//! A retry sends the very same body and event id. It keeps the original signature while that is within WorkOS's
//! 180-second tolerance (the stand-in's retries are seconds apart, so in practice always) and signs afresh beyond
//! it, as production must. On request, deliveries are held and then released out of order, or sent twice, so tests
//! see what WorkOS warns about: "events are not guaranteed to be delivered in order" and "it is possible to receive
//! the same event more than once".
//!
//! Endpoints receive only events emitted after they were registered, as with a real endpoint set up in the
//! dashboard. Deliveries go out one at a time in history order (first attempts); retries run on their own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use tokio::sync::{Notify, watch};
use url::Url;

use super::WorkosStandInState;
use super::events::StandInEvent;
use crate::{StandInSecret, lock};

/// Retry delays after the first, second, … failed attempt; their count + 1 is the number of attempts.
pub const DEFAULT_RETRY_DELAYS: [Duration; 5] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
/// A signature older than this is replaced on a retry (WorkOS's SDKs refuse beyond 180 s).
const RESIGN_AFTER: Duration = Duration::from_secs(170);
/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// In which order held deliveries are released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandInWebhookOrder {
    AsEmitted,
    Reversed,
}

/// One delivery attempt, as the stand-in saw it go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandInWebhookAttempt {
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt of a delivery.
    pub attempt: usize,
    /// The answer's status, or `None` when there was no answer (refused, timed out).
    pub status: Option<u16>,
    /// The `t` of the signature sent.
    pub signed_at_ms: u128,
}

struct Endpoint {
    url: Url,
    secret: StandInSecret,
    /// The next event (index into the history) this endpoint has not been sent.
    next_event: usize,
}

#[derive(Clone)]
struct Delivery {
    url: Url,
    secret: StandInSecret,
    event_id: String,
    event_type: String,
    body: Arc<Vec<u8>>,
    signed_at: SystemTime,
    header: String,
}

struct Controls {
    hold: bool,
    held: Vec<Delivery>,
    duplicates: usize,
    retry_delays: Vec<Duration>,
}

pub struct StandInWebhooks {
    endpoints: Mutex<Vec<Endpoint>>,
    controls: Mutex<Controls>,
    /// Shared with the retry tasks.
    attempts: Arc<Mutex<Vec<StandInWebhookAttempt>>>,
    wake: Notify,
    http: reqwest::Client,
}

impl StandInWebhooks {
    pub fn new() -> Self {
        Self {
            endpoints: Mutex::new(Vec::new()),
            controls: Mutex::new(Controls {
                hold: false,
                held: Vec::new(),
                duplicates: 0,
                retry_delays: DEFAULT_RETRY_DELAYS.to_vec(),
            }),
            attempts: Arc::default(),
            wake: Notify::new(),
            http: reqwest::Client::builder()
                .timeout(ATTEMPT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                // Before the app closes an idle connection (5 s by default), so that a delivery never goes out on
                // a connection the app is closing and fails for that alone.
                .pool_idle_timeout(std::time::Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn register(&self, url: Url, secret: StandInSecret, next_event: usize) {
        lock(&self.endpoints).push(Endpoint { url, secret, next_event });
        self.wake.notify_one();
    }

    /// New events were recorded: deliver them now rather than at the next tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn hold(&self, hold: bool) {
        lock(&self.controls).hold = hold;
    }

    pub fn duplicate_next(&self, deliveries: usize) {
        lock(&self.controls).duplicates += deliveries;
    }

    pub fn set_retry_delays(&self, delays: Vec<Duration>) {
        lock(&self.controls).retry_delays = delays;
    }

    pub fn attempts(&self) -> Vec<StandInWebhookAttempt> {
        lock(&self.attempts).clone()
    }

    pub fn held(&self) -> usize {
        lock(&self.controls).held.len()
    }

    /// Sends what was held, in `order`, waiting for each first attempt; holding stops.
    pub async fn release(&self, order: StandInWebhookOrder) {
        let mut held = {
            let mut controls = lock(&self.controls);
            controls.hold = false;
            std::mem::take(&mut controls.held)
        };
        if order == StandInWebhookOrder::Reversed {
            held.reverse();
        }
        for delivery in held {
            self.send(delivery).await;
        }
    }

    /// Where the oldest event some endpoint has not been sent yet is, in the history; `None` without endpoints.
    fn oldest_unsent(&self) -> Option<usize> {
        lock(&self.endpoints).iter().map(|endpoint| endpoint.next_event).min()
    }

    /// Sends (or holds) the events each endpoint has not been sent yet; `new` is the history from index `from` on.
    async fn deliver_new(&self, from: usize, new: &[StandInEvent]) {
        let end = from + new.len();
        let deliveries: Vec<Delivery> = {
            let mut endpoints = lock(&self.endpoints);
            let mut deliveries = Vec::new();
            for endpoint in endpoints.iter_mut() {
                let skip = endpoint.next_event.saturating_sub(from);
                for event in new.iter().skip(skip) {
                    deliveries.push(Delivery::new(&endpoint.url, &endpoint.secret, event));
                }
                endpoint.next_event = endpoint.next_event.max(end);
            }
            deliveries
        };
        for delivery in deliveries {
            let held = {
                let mut controls = lock(&self.controls);
                if controls.hold {
                    controls.held.push(delivery.clone());
                }
                controls.hold
            };
            if !held {
                self.send(delivery).await;
            }
        }
    }

    /// The first attempt now (twice, if a duplicate was asked for); retries in the background.
    async fn send(&self, delivery: Delivery) {
        let (copies, delays) = {
            let mut controls = lock(&self.controls);
            let copies = if controls.duplicates > 0 { 2 } else { 1 };
            controls.duplicates = controls.duplicates.saturating_sub(1);
            (copies, controls.retry_delays.clone())
        };
        for _ in 0..copies {
            if attempt(&self.http, &self.attempts, &delivery, 1).await {
                continue;
            }
            let (http, attempts, mut delivery, delays) =
                (self.http.clone(), Arc::clone(&self.attempts), delivery.clone(), delays.clone());
            tokio::spawn(async move {
                for (index, delay) in delays.into_iter().enumerate() {
                    tokio::time::sleep(delay).await;
                    if SystemTime::now().duration_since(delivery.signed_at).unwrap_or_default() > RESIGN_AFTER {
                        delivery.sign(SystemTime::now());
                    }
                    if attempt(&http, &attempts, &delivery, index + 2).await {
                        return;
                    }
                }
                tracing::warn!(event_id = %delivery.event_id, url = %delivery.url, "the WorkOS stand-in gave up delivering a webhook");
            });
        }
    }
}

impl Default for StandInWebhooks {
    fn default() -> Self {
        Self::new()
    }
}

impl Delivery {
    fn new(url: &Url, secret: &StandInSecret, event: &StandInEvent) -> Self {
        let body = serde_json::to_vec(&event.envelope()).unwrap_or_default();
        let mut delivery = Self {
            url: url.clone(),
            secret: secret.clone(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            body: Arc::new(body),
            signed_at: SystemTime::now(),
            header: String::new(),
        };
        delivery.sign(SystemTime::now());
        delivery
    }

    fn sign(&mut self, at: SystemTime) {
        self.signed_at = at;
        self.header = signature_header(self.secret.expose(), at, &self.body);
    }
}

/// `t=<ms>, v1=<hex>`: HMAC-SHA256 with the endpoint's secret over `<t>.<body>`, exactly as WorkOS signs.
pub fn signature_header(secret: &str, at: SystemTime, body: &[u8]) -> String {
    let t = at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis());
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(t.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let hex: String = context.sign().as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("t={t}, v1={hex}")
}

/// One attempt; `true` when the endpoint answered 2xx.
async fn attempt(
    http: &reqwest::Client,
    attempts: &Mutex<Vec<StandInWebhookAttempt>>,
    delivery: &Delivery,
    number: usize,
) -> bool {
    let sent = http
        .post(delivery.url.clone())
        .header("content-type", "application/json")
        .header("workos-signature", &delivery.header)
        .body(delivery.body.as_ref().clone())
        .send()
        .await;
    let status = sent.as_ref().ok().map(|response| response.status().as_u16());
    lock(attempts).push(StandInWebhookAttempt {
        event_id: delivery.event_id.clone(),
        event_type: delivery.event_type.clone(),
        attempt: number,
        status,
        signed_at_ms: delivery.signed_at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis()),
    });
    status.is_some_and(|status| (200..300).contains(&status))
}

/// Delivers whatever is new, whenever something is recorded (and every 100 ms in case a wake-up was missed),
/// until the stand-in stops.
pub async fn run_deliveries(inner: Arc<WorkosStandInState>, mut stopping: watch::Receiver<bool>) {
    loop {
        if let Some(from) = inner.webhooks.oldest_unsent() {
            let new: Vec<StandInEvent> = lock(&inner.store).events.since(from).to_vec();
            if !new.is_empty() {
                inner.webhooks.deliver_new(from, &new).await;
            }
        }
        tokio::select! {
            () = inner.webhooks.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            changed = stopping.wait_for(|stopping| *stopping) => { let _ = changed; return; }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_documented_test_vector() {
        // docs/workos.md §3.1, computed independently with Python, Node and openssl.
        let body = r#"{"id":"event_01JH8Z7Q3R5T6V8W9X0Y1Z2A3B","event":"session.revoked","data":{"object":"session","id":"session_01JH8Z5K2M4N6P8Q0R2S4T6V8W","user_id":"user_01JH8Z1A2B3C4D5E6F7G8H9J0K"},"created_at":"2026-01-01T00:00:00.000Z"}"#;
        let at = UNIX_EPOCH + Duration::from_millis(1_767_225_600_000);
        assert_eq!(
            signature_header("wh_secret_example_0123456789", at, body.as_bytes()),
            "t=1767225600000, v1=04f078b827ca96c27280933904719c1a3df876d733d09ca1bf81a338ab54b73f"
        );
    }
}

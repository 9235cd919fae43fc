//! Prometheus metrics, served on a listener of their own (`METRICS_BIND_ADDR`; unset = off), never on the public
//! one: they describe traffic, which is nobody's business but the operator's.
//!
//! Code records through the `metrics` facade (`metrics::counter!` …), which costs next to nothing while no
//! recorder is installed; [`install`] installs the Prometheus recorder once per process and hands back the handle
//! that renders it. Every series is prefixed `authbridge_`; labels are routes, methods, statuses, upstream names
//! and outcomes, never a user, a token or a session id.
//!
//! | series | labels | what |
//! |---|---|---|
//! | `authbridge_http_requests_total` | `route`, `method`, `status` | requests answered, by route template (`/api/todos/{id}`) |
//! | `authbridge_http_request_duration_seconds` | `route` | histogram of the time to the response's head |
//! | `authbridge_http_errors_total` | `route`, `code` | error answers by their `error.code` (`database_unavailable`, `auth_unavailable`…): which dependency a 503 was |
//! | `authbridge_http_requests_shed_total` | — | requests refused with 503 because `MAX_CONCURRENT_REQUESTS` were in flight |
//! | `authbridge_upstream_requests_total` | `upstream` (`workos`, `insforge`, `oidc`), `outcome` | calls to each upstream |
//! | `authbridge_upstream_request_duration_seconds` | `upstream`, `outcome` | histogram of their latency |
//! | `authbridge_session_refreshes_total` | `event` (`started`, `merged`, `shared`, `succeeded`, `failed`, `held_back`) | token refreshes: started here, requests that joined one under way here, results taken from another replica, results, and refreshes not tried within 2 s of a failure |
//! | `authbridge_session_cookies_unreadable_total` | — | session cookies that did not open with this app's keys (tampered, or sealed by a replica with another `SESSION_COOKIE_PASSWORD`): answered as signed out, the cookie left as it is |
//! | `authbridge_token_cache_total` | `result` (`hit`, `miss`) | access-token checks (WorkOS tokens, OpenID Connect bearer tokens) answered by the verify-once cache (`token_cache`), or not |
//! | `authbridge_webhook_events_total` | `source` (`webhook`, `events_api`), `outcome` (`applied`, `duplicate`, `ignored`, `rejected`) | WorkOS events handled, from either channel |
//! | `authbridge_webhook_event_lag_seconds` | `source` | histogram of the delay from an event's creation at WorkOS to its first handling here |
//! | `authbridge_events_consumer_last_poll_timestamp_seconds` | — | when this replica's Events API consumer last polled WorkOS successfully (gauge, Unix time; only on the replica holding the consumer lock) |
//! | `authbridge_audit_log_events_total` | `outcome` (`delivered`, `retrying`, `failed`) | Audit Log events sent to WorkOS, by what came of each attempt |
//! | `authbridge_database_pool_connections` | `state` (`in_use`, `idle`) | the bookkeeping database's pool (`DATABASE_URL`) at the scrape; connections still being opened count as in use, so a pool with none idle is exhausted or cannot reach the database (the database's errors in the log say which) |
//! | `authbridge_database_pool_max_connections` | — | its size limit (`DATABASE_MAX_CONNECTIONS`) |

use std::sync::{Mutex, OnceLock, PoisonError};

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::db::Database;

/// Histogram buckets for every `*_seconds` series: 100 µs to a minute, past the upstream time limits (10 s by
/// default) and the request time limit (30 s), so a call that ran into one is told apart from a slow one.
const BUCKETS: [f64; 18] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets for an event's lag: a webhook comes within seconds, an Events API poll every 30 s by default, and a
/// consumer that was stopped or behind catches up over minutes to hours.
const LAG_BUCKETS: [f64; 12] = [0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 21600.0];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The features that are on, whose counters are written at zero from the start ([`zero_counters`]). A feature that
/// is off has none: a dashboard would show its zeros as if it ran, and an alert on `absent(…)` meant for a broken
/// scrape would never fire for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    /// `POST /webhooks/workos` (a webhook secret is set).
    pub webhooks: bool,
    /// The Events API consumer (the lifecycle on, polling).
    pub events_api: bool,
    /// Audit Log events sent to WorkOS (the lifecycle on).
    pub audit_logs: bool,
}

/// The process's Prometheus recorder, installed on first call. `None` if another recorder was installed first
/// (nothing in authbridge does that).
pub fn install(features: Features) -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &BUCKETS)
                .ok()?
                // A full name wins over a suffix.
                .set_buckets_for_metric(Matcher::Full("authbridge_webhook_event_lag_seconds".to_owned()), &LAG_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            zero_counters(features);
            // Histograms keep raw samples until rendered: drain them regularly even when nobody scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// Every counter whose labels are a fixed set, at zero, so that it is there from the first scrape: an alert rule
/// (`increase(…[5m]) > 0`, or `absent(…)` to catch a scrape that broke) cannot tell a series that is missing from
/// one that is zero, and `rate()` misses the first increase of a series that only appears with it. Series whose
/// labels are open-ended (routes, statuses, upstream outcomes) appear with their first sample. Only the `features`
/// that are on.
fn zero_counters(features: Features) {
    use metrics::counter;
    counter!("authbridge_http_requests_shed_total").increment(0);
    counter!("authbridge_session_cookies_unreadable_total").increment(0);
    for event in ["started", "merged", "shared", "succeeded", "failed", "held_back"] {
        counter!("authbridge_session_refreshes_total", "event" => event).increment(0);
    }
    for result in ["hit", "miss"] {
        counter!("authbridge_token_cache_total", "result" => result).increment(0);
    }
    use crate::lifecycle::store::Source;
    let sources = [(Source::Webhook, features.webhooks), (Source::EventsApi, features.events_api)];
    for (source, _) in sources.into_iter().filter(|(_, on)| *on) {
        for outcome in ["applied", "duplicate", "ignored", "rejected"] {
            counter!("authbridge_webhook_events_total", "source" => source.as_str(), "outcome" => outcome).increment(0);
        }
    }
    if features.audit_logs {
        for outcome in ["delivered", "retrying", "failed"] {
            counter!("authbridge_audit_log_events_total", "outcome" => outcome).increment(0);
        }
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("authbridge_http_requests_total", "Requests answered, by route template, method and status.");
    describe_histogram!("authbridge_http_request_duration_seconds", Unit::Seconds, "Time to the response's head.");
    describe_counter!("authbridge_http_requests_shed_total", "Requests refused with 503 at the concurrency limit.");
    describe_counter!("authbridge_http_errors_total", "Error answers, by route template and error code.");
    describe_gauge!(
        "authbridge_events_consumer_last_poll_timestamp_seconds",
        Unit::Seconds,
        "When the Events API consumer last polled WorkOS successfully (Unix time)."
    );
    describe_counter!("authbridge_audit_log_events_total", "Audit Log events sent to WorkOS, by outcome.");
    describe_counter!(
        "authbridge_upstream_requests_total",
        "Calls to WorkOS, InsForge and the OpenID Connect provider, by outcome."
    );
    describe_histogram!("authbridge_upstream_request_duration_seconds", Unit::Seconds, "Latency of upstream calls.");
    describe_counter!(
        "authbridge_session_refreshes_total",
        "Session refreshes: started, merged, shared, succeeded, failed, held_back."
    );
    describe_counter!(
        "authbridge_session_cookies_unreadable_total",
        "Session cookies that did not open with this app's keys (tampered, or another replica's password)."
    );
    describe_counter!("authbridge_token_cache_total", "Access-token checks answered from the verify-once cache.");
    describe_counter!("authbridge_webhook_events_total", "WorkOS events received.");
    describe_histogram!("authbridge_webhook_event_lag_seconds", Unit::Seconds, "Delay from an event to its handling.");
    describe_gauge!("authbridge_database_pool_connections", "Connections of the database pool, in use or idle.");
    describe_gauge!("authbridge_database_pool_max_connections", "The database pool's size limit.");
}

/// The metrics listener's router: `GET /metrics` and nothing else. The database pool's gauges are read at each
/// scrape rather than kept up to date by every request that takes a connection.
pub fn router(handle: PrometheusHandle, database: Option<Database>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = render(&handle, database.as_ref());
            async move {
                let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
                ([(header::CONTENT_TYPE, content_type)], text).into_response()
            }
        }),
    )
}

/// The gauges of `database`'s pool and the rendering, under one lock: the recorder is the process's, so two apps
/// in one process (the tests) must not each render the other's pool.
fn render(handle: &PrometheusHandle, database: Option<&Database>) -> String {
    static SCRAPE: Mutex<()> = Mutex::new(());
    let _one_at_a_time = SCRAPE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(database) = database {
        let pool = database.pool();
        let open = pool.size();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(open);
        metrics::gauge!("authbridge_database_pool_connections", "state" => "in_use").set(f64::from(open - idle));
        metrics::gauge!("authbridge_database_pool_connections", "state" => "idle").set(f64::from(idle));
        metrics::gauge!("authbridge_database_pool_max_connections")
            .set(f64::from(pool.options().get_max_connections()));
    }
    handle.render()
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::Features;

    /// The series `zero_counters` writes with `features` on, as Prometheus text.
    fn zeroed(features: Features) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || super::zero_counters(features));
        handle.render()
    }

    #[test]
    fn counters_with_fixed_labels_are_there_at_zero_before_anything_happened() {
        let text = zeroed(Features { webhooks: true, events_api: true, audit_logs: true });
        for series in [
            "authbridge_http_requests_shed_total 0",
            "authbridge_session_cookies_unreadable_total 0",
            r#"authbridge_session_refreshes_total{event="held_back"} 0"#,
            r#"authbridge_token_cache_total{result="miss"} 0"#,
            r#"authbridge_webhook_events_total{source="webhook",outcome="rejected"} 0"#,
            r#"authbridge_webhook_events_total{source="events_api",outcome="applied"} 0"#,
            r#"authbridge_audit_log_events_total{outcome="failed"} 0"#,
        ] {
            assert!(text.lines().any(|line| line == series), "{series} in:\n{text}");
        }
        let zeroed = text.lines().filter(|line| line.starts_with("authbridge_")).count();
        assert_eq!(zeroed, 2 + 6 + 2 + 8 + 3, "{text}");
    }

    /// A feature that is off has no series: no zeros for webhooks nobody can send, or Audit Logs nobody delivers.
    #[test]
    fn the_counters_of_features_that_are_off_are_not_written() {
        let text = zeroed(Features::default());
        let series = text.lines().filter(|line| line.starts_with("authbridge_")).count();
        assert_eq!(series, 2 + 6 + 2, "{text}");
        assert!(!text.contains("authbridge_webhook_events_total") && !text.contains("audit_log"), "{text}");

        let polling = zeroed(Features { events_api: true, ..Features::default() });
        assert!(polling.contains(r#"source="events_api""#) && !polling.contains(r#"source="webhook""#), "{polling}");
        assert!(!polling.contains("audit_log"), "{polling}");
    }
}

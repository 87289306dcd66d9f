//! Request metrics and logs, by route pattern (never by raw path, which
//! would grow without bound).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use voucherd_engine::metrics::EngineMetrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

/// Route patterns as `&'static str`, so that counting a request allocates
/// nothing. The patterns are the router's, a fixed handful, so the memory
/// this keeps is bounded by the routes.
#[derive(Debug, Default)]
struct RoutePatterns(std::sync::RwLock<std::collections::HashSet<&'static str>>);

impl RoutePatterns {
    fn intern(&self, pattern: &str) -> &'static str {
        if let Some(known) = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(pattern)
        {
            return known;
        }
        let mut known = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match known.get(pattern) {
            Some(pattern) => pattern,
            None => {
                let interned: &'static str = Box::leak(pattern.to_owned().into_boxed_str());
                known.insert(interned);
                interned
            }
        }
    }
}

fn method_name(method: &axum::http::Method) -> &'static str {
    match *method {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Family<RouteLabels, Histogram>,
    routes: std::sync::Arc<RoutePatterns>,
    /// Requests in their handlers now, and the bound.
    in_flight: Gauge,
    in_flight_max: Gauge,
    /// The engine's refusals by bound, which the HTTP bounds add to.
    pub(crate) engine: EngineMetrics,
}

/// Counts a request out of the in-flight gauge however its future ends
/// (answered, or dropped by the timeout).
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl HttpMetrics {
    pub fn register(
        registry: &mut Registry,
        engine: EngineMetrics,
        requests_in_flight_max: usize,
    ) -> HttpMetrics {
        let metrics = HttpMetrics {
            requests: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
            }),
            routes: std::sync::Arc::default(),
            in_flight: Gauge::default(),
            in_flight_max: Gauge::default(),
            engine,
        };
        metrics
            .in_flight_max
            .set(i64::try_from(requests_in_flight_max).unwrap_or(i64::MAX));
        registry.register(
            "voucherd_http_requests_in_flight",
            "HTTP requests being served now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "voucherd_http_requests_in_flight_max",
            "HTTP requests that may be served at once (--requests-in-flight-max)",
            metrics.in_flight_max.clone(),
        );
        registry.register(
            "voucherd_http_requests",
            "HTTP requests by method, route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "voucherd_http_request_seconds",
            "HTTP request latency by route",
            metrics.seconds.clone(),
        );
        metrics
    }
}

tokio::task_local! {
    /// The id of the request being answered, for the problem it may answer.
    pub static REQUEST_ID: String;
}

/// Ids this process gives requests: a random prefix per process and a
/// count, so that ids of several nodes do not collide.
fn next_request_id() -> String {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0_u8; 4];
        let _ = getrandom::fill(&mut bytes);
        u32::from_le_bytes(bytes)
    });
    let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix:08x}-{count:x}")
}

/// The id of a request: the one its caller (or the proxy in front) sent
/// when it is a sane one, else a new one.
pub(crate) fn request_id(headers: &axum::http::HeaderMap) -> String {
    sent_request_id(headers).unwrap_or_else(next_request_id)
}

fn sent_request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    let sent = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let sane = (1..=64).contains(&sent.len())
        && sent
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    sane.then(|| sent.to_owned())
}

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Every request gets an id (the caller's `X-Request-Id` when sane): every
/// log line of the request carries it (a span), its answer names it in the
/// same header, and a problem answer in its body.
pub async fn observe(
    State(metrics): State<std::sync::Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let id = request_id(request.headers());
    let span = tracing::warn_span!("request", id = %id);
    let response = REQUEST_ID
        .scope(
            id.clone(),
            tracing::Instrument::instrument(measured(metrics, request, next), span),
        )
        .await;
    named(response, &id)
}

/// The answer with its request's id in [`REQUEST_ID_HEADER`].
pub(crate) fn named(mut response: Response, id: &str) -> Response {
    if let Ok(value) = axum::http::HeaderValue::from_str(id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

async fn measured(metrics: std::sync::Arc<HttpMetrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = metrics.serving();
    let method = method_name(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| metrics.routes.intern(path.as_str()));
    let response = next.run(request).await;
    metrics.record(method, route, response.status(), started.elapsed());
    response
}

impl HttpMetrics {
    /// Counts a request in flight until what it returns is dropped.
    pub(crate) fn serving(&self) -> impl Drop + use<> {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts an answered request and logs it (at debug, or at warn when
    /// the server failed it), inside the request's span when it has one.
    pub(crate) fn record(
        &self,
        method: &'static str,
        route: &'static str,
        status: axum::http::StatusCode,
        elapsed: std::time::Duration,
    ) {
        if status == axum::http::StatusCode::TOO_MANY_REQUESTS {
            self.engine.count_refusal("tenant_rate");
        }
        self.seconds
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
        let failed = status.is_server_error();
        let status = status.as_u16();
        if failed {
            tracing::warn!(%method, %route, status, elapsed_ms = elapsed.as_millis() as u64, "request failed");
        } else {
            tracing::debug!(%method, %route, status, elapsed_ms = elapsed.as_millis() as u64, "request");
        }
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }
}

//! voucherd's HTTP API.
//!
//! - [`router`] builds the whole service: the `/v1` API behind bearer
//!   tokens, health, readiness, metrics and `/openapi.json`.
//! - [`routes`] holds the handlers; [`wire`] the JSON shapes they speak.
//! - [`auth`] checks and mints tokens; [`idempotency`] replays answers under
//!   `Idempotency-Key`; [`problem`] is the one error type, RFC 9457 on the
//!   wire; [`extract`] turns bad bodies into problems; [`codes_csv`] reads
//!   the codes of a CSV upload.
//!
//! The OpenAPI document ([`document`]) is collected from the handlers' own
//! annotations as the routes are registered, so it cannot list a route
//! that does not exist or miss one that does; what the layers in front of
//! the handlers answer is added to every operation.

pub mod auth;
pub mod codes_csv;
pub mod connections;
mod document;
pub mod extract;
pub mod front;
pub mod idempotency;
pub mod observe;
pub mod problem;
pub mod routes;
pub mod web;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::BoxError;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tower::ServiceBuilder;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voucherd_engine::Engine;

use crate::front::Api;
use crate::idempotency::InFlightKeys;
use crate::observe::{HttpMetrics, observe};
use crate::problem::Problem;
use crate::routes::{campaigns, claims, operations, payments, tenant, vouchers};

/// Bounds of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub request_body_bytes_max: usize,
    /// Code uploads may be larger than every other body.
    pub upload_body_bytes_max: usize,
    /// Requests being served at once; one more is answered 503 at once.
    pub requests_in_flight_max: usize,
    pub request_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            request_body_bytes_max: 64 * 1024,
            upload_body_bytes_max: 8 * 1024 * 1024,
            requests_in_flight_max: 8_192,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What every handler shares, behind one `Arc`: axum clones the state for
/// each layer and handler a request passes, so a clone is one count.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub engine: Arc<Engine>,
    pub registry: Registry,
    pub in_flight: InFlightKeys,
    pub tokens: auth::TokenCache,
    /// Password hashes being computed at most at once (sign-up, sign-in).
    pub passwords: web::PasswordGate,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state of [`guard`]: the app, and the body limit of the routes it
/// guards.
#[derive(Debug, Clone)]
struct Guard {
    app: AppState,
    body_bytes_max: usize,
}

/// What every `/v1` request passes before its handler, in one layer (each
/// layer costs a clone of the route and a boxed future per request): the
/// caller is authenticated, then a state-changing request with an
/// `Idempotency-Key` runs under it.
async fn guard(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    if declared_too_large(&request, guard.body_bytes_max) {
        // Refused before a byte of the body is awaited: a client that
        // declares more than the route takes would otherwise hold its
        // place until the request timed out.
        return extract::too_large().into_response();
    }
    // A claim the front passed on carries the principal it was
    // authenticated (and counted against its tenant's rate) as.
    if request.extensions().get::<auth::Principal>().is_none()
        && let Err(refused) = auth::authenticate(&guard.app, &mut request)
    {
        return refused.into_response();
    }
    idempotency::idempotency(&guard.app, guard.body_bytes_max, request, next).await
}

fn declared_too_large(request: &Request, body_bytes_max: usize) -> bool {
    request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .is_some_and(|declared| declared > body_bytes_max as u64)
}

/// The `/v1` routes that take ordinary bodies.
fn v1_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(campaigns::live))
        .routes(routes!(campaigns::get))
        .routes(routes!(campaigns::publish))
        .routes(routes!(campaigns::pause))
        .routes(routes!(campaigns::resume))
        .routes(routes!(campaigns::report))
        .routes(routes!(campaigns::vouchers))
        .routes(routes!(claims::claim))
        .routes(routes!(claims::login))
        .routes(routes!(vouchers::of_user))
        .routes(routes!(vouchers::lock))
        .routes(routes!(vouchers::unlock))
        .routes(routes!(vouchers::redeem))
        .routes(routes!(payments::checkout))
        .routes(routes!(payments::release))
        .routes(routes!(payments::order))
        .routes(routes!(tenant::get))
        .routes(routes!(tenant::rotate_key))
        .routes(routes!(tenant::set_limits))
}

/// The `/v1` routes that take large bodies: code uploads, and campaigns,
/// whose texts (terms up to 50,000 characters) may pass the ordinary
/// limit, so that a text too long is told so (422) rather than 413.
fn upload_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(campaigns::add_codes))
        .routes(routes!(campaigns::create, campaigns::list))
}

fn operation_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(operations::healthz))
        .routes(routes!(operations::readyz))
        .routes(routes!(operations::metrics))
}

/// The OpenAPI document, collected from the same route lists the router
/// serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = document::ApiDoc::openapi();
    for part in [v1_routes(), upload_routes(), operation_routes()] {
        document.merge(part.split_for_parts().1);
    }
    utoipa::Modify::modify(&document::Answers, &mut document);
    document
}

/// The whole service: the crowd's refusals ([`front`]), then the router.
/// `registry` must already hold the engine's metrics; the HTTP metrics are
/// added to it here.
pub fn router(engine: Arc<Engine>, mut registry: Registry, config: &HttpConfig) -> Api {
    // Both are cloned for every request (axum clones a layer's state, and
    // HandleError its closure): behind an Arc, each clone is one count.
    let http_metrics = Arc::new(HttpMetrics::register(
        &mut registry,
        engine.metrics().clone(),
        config.requests_in_flight_max,
    ));
    let refusals = Arc::new(engine.metrics().clone());
    let state = AppState(Arc::new(Shared {
        engine,
        registry,
        in_flight: InFlightKeys::default(),
        tokens: auth::TokenCache::default(),
        passwords: web::PasswordGate::default(),
    }));
    let guarded = |body_bytes_max: usize| {
        from_fn_with_state(
            Guard {
                app: state.clone(),
                body_bytes_max,
            },
            guard,
        )
    };
    let v1 = v1_routes()
        .split_for_parts()
        .0
        .route_layer(guarded(config.request_body_bytes_max))
        .layer(DefaultBodyLimit::max(config.request_body_bytes_max));
    let uploads = upload_routes()
        .split_for_parts()
        .0
        .route_layer(guarded(config.upload_body_bytes_max))
        .layer(DefaultBodyLimit::max(config.upload_body_bytes_max));
    let authenticated = v1.merge(uploads);
    let openapi = Arc::new(openapi());
    let overload = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |error: BoxError| {
            let refusals = Arc::clone(&refusals);
            async move { answer_overload(&refusals, error) }
        }))
        .load_shed()
        .concurrency_limit(config.requests_in_flight_max)
        .timeout(config.request_timeout);
    let pages = web::routes().layer(DefaultBodyLimit::max(web::FORM_BYTES_MAX));
    let router = authenticated
        .merge(operation_routes().split_for_parts().0)
        .merge(pages)
        .route(
            "/openapi.json",
            get(move || async move { axum::Json(openapi.as_ref().clone()) }),
        )
        .fallback(|| async { Problem::not_found("route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not take that method",
            )
        })
        .layer(from_fn_with_state(http_metrics.clone(), observe))
        .layer(overload)
        .with_state(state.clone());
    Api::new(state, http_metrics, config.request_body_bytes_max, router)
}

fn answer_overload(
    refusals: &voucherd_engine::metrics::EngineMetrics,
    error: BoxError,
) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        refusals.count_refusal("request_timeout");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "The request took too long",
            "the server could not answer in time; retry shortly",
        )
        .retry_after(1)
        .into_response()
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        refusals.count_refusal("requests_in_flight");
        Problem::overloaded().into_response()
    } else {
        tracing::error!(%error, "unexpected middleware error");
        Problem::internal().into_response()
    }
}

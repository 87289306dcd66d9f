//! The HTTP face of the simulator: the gateway API (`/charges`), the
//! instrumentation for tests (`/ledger`, `/stats`) and outage control
//! (`/admin/down`, `/admin/up`).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::ledger::{Admission, Charge};
use crate::simulator::Simulator;
use crate::wire::{
    self, BodyError, CHARGE_BODY_BYTES_MAX, ChargeAnswer, ChargeView, DownView, ErrorBody,
    FieldView, LedgerEntry, LedgerView, StatsView,
};

pub fn router(simulator: Simulator) -> Router {
    // Only the gateway API counts against `in_flight_max`: a test must be
    // able to read the ledger and end an outage while the API is flooded.
    let gateway = Router::new()
        .route("/charges", post(create_charge))
        .route("/charges/{idempotency_key}", get(charge))
        .layer(DefaultBodyLimit::max(CHARGE_BODY_BYTES_MAX))
        .route_layer(middleware::from_fn_with_state(
            simulator.clone(),
            limit_in_flight,
        ));
    Router::new()
        .merge(gateway)
        .route("/ledger", get(ledger))
        .route("/stats", get(stats))
        .route("/admin/down", post(go_down))
        .route("/admin/up", post(come_up))
        .fallback(|| async { GatewayError::NotFound("no such route") })
        .with_state(simulator)
}

async fn limit_in_flight(
    State(simulator): State<Simulator>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(permit) = simulator.in_flight().clone().try_acquire_owned() else {
        simulator.count(|stats| stats.refused_busy += 1);
        return GatewayError::Busy.into_response();
    };
    let response = next.run(request).await;
    drop(permit);
    response
}

async fn create_charge(
    State(simulator): State<Simulator>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    if simulator.is_down() {
        simulator.count(|stats| stats.refused_down += 1);
        return Err(GatewayError::Down);
    }
    let request = body
        .map_err(GatewayError::from)
        .and_then(|bytes| wire::parse_charge(&bytes).map_err(GatewayError::from))
        .inspect_err(|_| simulator.count(|stats| stats.rejected_invalid += 1))?;
    let Some(admission) = simulator.admit(request) else {
        return Err(GatewayError::Down);
    };
    match admission {
        Admission::Decided { charge, latency } => {
            if !charge.answered {
                simulator.hold().await;
                return Err(GatewayError::NoAnswer);
            }
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            Ok(answer(StatusCode::CREATED, &charge))
        }
        // A replay answers at once: the charge was decided already, and the
        // client retrying is usually one that has waited long enough.
        Admission::Replayed(charge) => Ok(answer(StatusCode::OK, &charge)),
        Admission::KeyReused(charge) => {
            Err(GatewayError::KeyReused(charge.amount, charge.currency))
        }
        Admission::RateLimited { retry_after } => Err(GatewayError::RateLimited(retry_after)),
        Admission::Lost => {
            simulator.hold().await;
            Err(GatewayError::NoAnswer)
        }
    }
}

fn answer(status: StatusCode, charge: &Charge) -> Response {
    (status, Json(ChargeAnswer::from(charge))).into_response()
}

async fn charge(
    State(simulator): State<Simulator>,
    Path(idempotency_key): Path<String>,
) -> Result<Response, GatewayError> {
    if simulator.is_down() {
        simulator.count(|stats| stats.refused_down += 1);
        return Err(GatewayError::Down);
    }
    match simulator.charge(&idempotency_key) {
        Some(charge) => Ok(Json(ChargeView::from(&charge)).into_response()),
        None => Err(GatewayError::NotFound(
            "no charge with this idempotency key",
        )),
    }
}

async fn ledger(State(simulator): State<Simulator>) -> Response {
    let charges = simulator.ledger();
    let stats = simulator.stats();
    Json(LedgerView {
        charges: charges.iter().map(LedgerEntry::from).collect(),
        rate_per_second: simulator.config().rate_per_second,
        accepted_per_second_max: stats.accepted_per_second_max,
    })
    .into_response()
}

async fn stats(State(simulator): State<Simulator>) -> Json<StatsView> {
    Json(StatsView::from(&simulator.stats()))
}

async fn go_down(State(simulator): State<Simulator>) -> Json<DownView> {
    simulator.set_down(true);
    Json(DownView { down: true })
}

async fn come_up(State(simulator): State<Simulator>) -> Json<DownView> {
    simulator.set_down(false);
    Json(DownView { down: false })
}

/// Every refusal the simulator answers with, and its status.
#[derive(Debug)]
enum GatewayError {
    /// Not JSON, or a body that could not be read (too large, cut off).
    Malformed(StatusCode, String),
    Invalid(Vec<(String, String)>),
    /// The key's charge was for this amount and currency.
    KeyReused(u64, String),
    RateLimited(Duration),
    Down,
    Busy,
    NoAnswer,
    NotFound(&'static str),
}

impl From<BytesRejection> for GatewayError {
    fn from(rejection: BytesRejection) -> GatewayError {
        GatewayError::Malformed(rejection.status(), rejection.body_text())
    }
}

impl From<BodyError> for GatewayError {
    fn from(error: BodyError) -> GatewayError {
        match error {
            BodyError::Malformed(message) => {
                GatewayError::Malformed(StatusCode::BAD_REQUEST, message)
            }
            BodyError::Invalid(fields) => GatewayError::Invalid(fields),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (status, error, message, fields, retry_after) = match self {
            GatewayError::Malformed(status, message) => {
                (status, "malformed", message, vec![], None)
            }
            GatewayError::Invalid(fields) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "the charge has invalid fields".to_owned(),
                fields,
                None,
            ),
            GatewayError::KeyReused(amount, currency) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                format!("this idempotency key was used for a charge of {amount} {currency}"),
                vec![],
                None,
            ),
            GatewayError::RateLimited(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many charges this second".to_owned(),
                vec![],
                Some(wait),
            ),
            GatewayError::Down => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the gateway is down".to_owned(),
                vec![],
                Some(Duration::from_secs(1)),
            ),
            GatewayError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many requests in flight".to_owned(),
                vec![],
                Some(Duration::from_secs(1)),
            ),
            GatewayError::NoAnswer => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "no answer; look the charge up by its idempotency key".to_owned(),
                vec![],
                None,
            ),
            GatewayError::NotFound(message) => (
                StatusCode::NOT_FOUND,
                "not_found",
                message.to_owned(),
                vec![],
                None,
            ),
        };
        let body = ErrorBody {
            error,
            message,
            fields: fields
                .into_iter()
                .map(|(field, message)| FieldView { field, message })
                .collect(),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(wait) = retry_after {
            // Retry-After is whole seconds; rounding up never invites a
            // retry that is bound to be refused again.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

//! Sales after the claim: checkout, release, and the order with its
//! transaction history.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use voucherd_core::ids::{OrderId, ReservationId};
use voucherd_core::payment::{Card, Email};
use voucherd_core::validation::Collector;

use crate::AppState;
use crate::auth::Principal;
use crate::extract::ApiJson;
use crate::idempotency::IDEMPOTENCY_KEY;
use crate::problem::{Problem, ProblemBody};
use crate::wire::{CheckoutAcceptedBody, CheckoutBody, OrderBody};

fn reservation_id(text: &str) -> Result<ReservationId, Problem> {
    text.parse().map_err(|_| Problem::not_found("reservation"))
}

#[utoipa::path(post, path = "/v1/reservations/{id}/checkout", tag = "payments",
    description = "Pays for a reservation: the card is checked and queued for the payment gateways; the voucher is issued when the payment succeeds. Requires `Idempotency-Key`.",
    params(
        ("id" = String, Path, description = "Reservation id"),
        ("Idempotency-Key" = String, Header, description = "Required: the same key and body give the same answer"),
    ),
    request_body = CheckoutBody,
    responses(
        (status = 202, description = "Order opened; poll it", body = CheckoutAcceptedBody),
        (status = 400, description = "No Idempotency-Key", body = ProblemBody),
        (status = 404, description = "No such reservation for this caller", body = ProblemBody),
        (status = 409, description = "payment-in-progress or already-paid", body = ProblemBody),
        (status = 410, description = "reservation-expired", body = ProblemBody),
        (status = 422, description = "Invalid email or card", body = ProblemBody),
        (status = 503, description = "payments-unavailable", body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn checkout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> Result<(StatusCode, Json<CheckoutAcceptedBody>), Problem> {
    if !headers.contains_key(IDEMPOTENCY_KEY) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "idempotency-key-required",
            "Idempotency-Key required",
            "a checkout charges money; send an Idempotency-Key so that a retry cannot pay twice",
        ));
    }
    let reservation_id = reservation_id(&id)?;
    let now = state.engine.now();
    let email = Email::parse(&body.email);
    let card = Card::parse(&body.card.draft(), now);
    let mut collector = Collector::default();
    collector.note(&email);
    collector.note(&card);
    collector.finish(|| ())?;
    let (email, card) = (email?, card?);
    let order = state
        .engine
        .checkout(
            principal.tenant_id(),
            reservation_id,
            principal.holder(),
            email,
            &card,
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(CheckoutAcceptedBody {
            order_id: order.id.to_string(),
            status: order.status.as_str().into(),
            reservation_id: order.reservation_id.to_string(),
            amount: order.amount.amount,
            currency: order.amount.currency.to_string(),
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/reservations/{id}", tag = "payments",
    description = "Gives a reservation back before it expires; its voucher returns to the pool.",
    params(("id" = String, Path, description = "Reservation id")),
    responses(
        (status = 204, description = "Released"),
        (status = 404, body = ProblemBody),
        (status = 409, description = "payment-in-progress", body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn release(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let reservation_id = reservation_id(&id)?;
    let holder = principal.holder();
    state
        .engine
        .release_reservation(principal.tenant_id(), reservation_id, holder.as_ref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/orders/{id}", tag = "payments",
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order, its gateway attempts, and its voucher once paid", body = OrderBody),
        (status = 404, body = ProblemBody),
    ),
    security(("bearer" = [])))]
pub async fn order(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<OrderBody>, Problem> {
    let order_id: OrderId = id.parse().map_err(|_| Problem::not_found("order"))?;
    let holder = principal.holder();
    let details = state
        .engine
        .order(principal.tenant_id(), order_id, holder.as_ref())
        .await?;
    let offer = state
        .engine
        .offer(principal.tenant_id(), &details.voucher)
        .await?;
    Ok(Json(OrderBody::new(&details, offer, state.engine.now())))
}

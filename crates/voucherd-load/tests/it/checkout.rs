//! The checkout half of the Hot Deal against a fake shop that speaks the
//! contract's checkout, release and order shapes, so that the generator's
//! own logic is tested apart from the server (the real server runs the same
//! scenario in the voucherd crate's load tests): orders are paid or failed,
//! a failed payment keeps its reservation until the buyer hands it back,
//! and the gateway ledger is read back. A shop that captures twice fails
//! the verdict.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use voucherd_load::{Config, ProgressMode, ScenarioKind};

const CAMPAIGN: &str = "c1";

#[derive(Debug, Default)]
struct Shop {
    /// Index `rank - 1`.
    slots: Vec<Slot>,
    orders: HashMap<String, Order>,
    /// `(idempotency key, amount)` of each capture.
    ledger: Vec<(String, i64)>,
    /// The rank whose first payment is declined.
    decline_rank: Option<u32>,
    capture_twice: bool,
    /// Orders answer pending to this many polls before they are decided
    /// (at least one).
    pending_polls: u32,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    user: Option<String>,
    state: &'static str,
    reservation: Option<String>,
    reservations: u32,
}

#[derive(Debug)]
struct Order {
    rank: u32,
    polls: u32,
    status: &'static str,
}

type Shared = Arc<Mutex<Shop>>;

const PRICE: i64 = 15_000;

fn code(rank: u32) -> String {
    format!("HOT-{rank:04}-TEST")
}

fn voucher(rank: u32, slot: &Slot) -> Value {
    let issued = slot.state == "issued";
    json!({
        "voucher_id": format!("v{rank}"), "campaign_id": CAMPAIGN, "user_id": slot.user,
        "state": slot.state, "rank": rank, "discount_percent": 50,
        "price": {"amount": PRICE, "currency": "THB"},
        "code": issued.then(|| code(rank)),
        "reservation_id": slot.reservation, "reserved_until": null,
    })
}

fn problem(status: StatusCode, kind: &str) -> Response {
    (
        status,
        Json(json!({"type": format!("https://voucherd.dev/problems/{kind}"), "status": status.as_u16()})),
    )
        .into_response()
}

async fn create(State(shop): State<Shared>, Json(body): Json<Value>) -> Response {
    let supply = body["supply"].as_u64().unwrap_or(0) as usize;
    let mut shop = shop.lock().unwrap();
    shop.slots = vec![
        Slot {
            state: "available",
            ..Slot::default()
        };
        supply
    ];
    (StatusCode::CREATED, Json(json!({"id": CAMPAIGN}))).into_response()
}

async fn campaign(State(shop): State<Shared>) -> Json<Value> {
    let shop = shop.lock().unwrap();
    let remaining = shop.slots.iter().filter(|slot| slot.user.is_none()).count();
    Json(json!({"id": CAMPAIGN, "remaining": remaining}))
}

async fn claim(State(shop): State<Shared>, Json(body): Json<Value>) -> Response {
    let user = body["user_id"].as_str().unwrap().to_owned();
    let mut shop = shop.lock().unwrap();
    let Some(index) = shop.slots.iter().position(|slot| slot.user.is_none()) else {
        return problem(StatusCode::GONE, "sold-out");
    };
    let slot = &mut shop.slots[index];
    slot.reservations += 1;
    slot.user = Some(user);
    slot.state = "reserved";
    slot.reservation = Some(format!("r{}-{}", index + 1, slot.reservations));
    (StatusCode::CREATED, Json(voucher(index as u32 + 1, slot))).into_response()
}

async fn checkout(State(shop): State<Shared>, Path(reservation): Path<String>) -> Response {
    let mut shop = shop.lock().unwrap();
    let Some(index) = shop
        .slots
        .iter()
        .position(|slot| slot.reservation.as_deref() == Some(&reservation))
    else {
        return problem(StatusCode::GONE, "reservation-expired");
    };
    let order_id = format!("o-{reservation}");
    shop.orders.entry(order_id.clone()).or_insert(Order {
        rank: index as u32 + 1,
        polls: 0,
        status: "pending",
    });
    (
        StatusCode::ACCEPTED,
        Json(json!({"order_id": order_id, "status": "pending"})),
    )
        .into_response()
}

async fn release(State(shop): State<Shared>, Path(reservation): Path<String>) -> Response {
    let mut shop = shop.lock().unwrap();
    let Some(slot) = shop
        .slots
        .iter_mut()
        .find(|slot| slot.reservation.as_deref() == Some(&reservation) && slot.state == "reserved")
    else {
        return problem(StatusCode::NOT_FOUND, "not-found");
    };
    *slot = Slot {
        state: "available",
        reservations: slot.reservations,
        ..Slot::default()
    };
    StatusCode::NO_CONTENT.into_response()
}

async fn order(State(shop): State<Shared>, Path(order_id): Path<String>) -> Response {
    let mut guard = shop.lock().unwrap();
    let shop = &mut *guard;
    let Some(order) = shop.orders.get_mut(&order_id) else {
        return problem(StatusCode::NOT_FOUND, "not-found");
    };
    order.polls += 1;
    let rank = order.rank;
    if order.status == "pending" && order.polls > shop.pending_polls.max(1) {
        let slot = &mut shop.slots[rank as usize - 1];
        if shop
            .decline_rank
            .take_if(|declined| *declined == rank)
            .is_some()
        {
            order.status = "failed";
        } else {
            order.status = "paid";
            slot.state = "issued";
            let captures = if shop.capture_twice { 2 } else { 1 };
            for _ in 0..captures {
                shop.ledger.push((order_id.clone(), PRICE));
            }
        }
    }
    let slot = &shop.slots[rank as usize - 1];
    let paid = order.status == "paid";
    Json(json!({
        "order_id": order_id, "status": order.status, "amount": PRICE, "currency": "THB",
        "gateway": "alpha", "attempts": [],
        "voucher": paid.then(|| voucher(rank, slot)),
    }))
    .into_response()
}

async fn report(State(shop): State<Shared>) -> Json<Value> {
    let shop = shop.lock().unwrap();
    let count = |state| shop.slots.iter().filter(|slot| slot.state == state).count();
    let (reserved, issued) = (count("reserved"), count("issued"));
    Json(json!({
        "supply": shop.slots.len(), "reserved": reserved, "issued_total": issued,
        "by_tier": [{"first_rank": 1, "last_rank": shop.slots.len(), "discount_percent": 50,
                     "issued": issued, "reserved": reserved}],
    }))
}

async fn export(State(shop): State<Shared>) -> Json<Value> {
    let shop = shop.lock().unwrap();
    let vouchers: Vec<Value> = shop
        .slots
        .iter()
        .enumerate()
        .map(|(index, slot)| {
            json!({"rank": index + 1, "code": code(index as u32 + 1), "state": slot.state,
                   "user_id": slot.user})
        })
        .collect();
    Json(json!({"vouchers": vouchers, "next_after_rank": null}))
}

async fn ledger(State(shop): State<Shared>) -> Json<Value> {
    let shop = shop.lock().unwrap();
    let charges: Vec<Value> = shop
        .ledger
        .iter()
        .map(|(key, amount)| {
            json!({"idempotency_key": key, "amount": amount, "currency": "THB",
                   "status": "captured", "at": "2026-12-01T12:00:00Z"})
        })
        .collect();
    Json(json!({"charges": charges}))
}

/// Serves a shop on an ephemeral port (voucherd's routes and a gateway's
/// ledger on one listener); answers its base URL.
async fn serve(shop: Shop) -> String {
    let ok = || async { Json(json!({"id": CAMPAIGN, "status": "ok"})) };
    let router = Router::new()
        .route("/healthz", get(ok))
        .route("/ledger", get(ledger))
        .route("/v1/campaigns", post(create))
        .route("/v1/campaigns/{id}", get(campaign))
        .route("/v1/campaigns/{id}/publish", post(ok))
        .route("/v1/campaigns/{id}/pause", post(ok))
        .route("/v1/campaigns/{id}/claims", post(claim))
        .route("/v1/campaigns/{id}/report", get(report))
        .route("/v1/campaigns/{id}/vouchers", get(export))
        .route("/v1/reservations/{id}/checkout", post(checkout))
        .route("/v1/reservations/{id}", axum::routing::delete(release))
        .route("/v1/orders/{id}", get(order))
        .with_state(Arc::new(Mutex::new(shop)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

fn hot_deal(base: &str) -> Config {
    let mut config = Config::new(ScenarioKind::HotDeal, base, "admin", "service");
    config.users = Some(60);
    config.duration = Duration::from_secs(1);
    config.supply = Some(10);
    config.gateways = vec![base.to_owned()];
    config.progress = ProgressMode::Off;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyers_check_out_and_every_paid_order_holds_its_voucher() {
    let base = serve(Shop {
        decline_rank: Some(3),
        ..Shop::default()
    })
    .await;
    let outcome = voucherd_load::run(hot_deal(&base)).await.unwrap();
    assert!(outcome.verdict.passed, "{outcome}");
    let users = |what: &str| outcome.outcomes.get(what).copied().unwrap_or(0);
    assert_eq!(users("payment_failed"), 1, "{outcome}");
    // The declined voucher goes back on sale; a later buyer may take it.
    assert!((9..=10).contains(&users("paid")), "{outcome}");
    assert_eq!(
        users("paid") + users("payment_failed") + users("sold_out"),
        60
    );
    assert_eq!(outcome.latency_ms["order_settled"].count, users("paid") + 1);
    assert_eq!(outcome.answers["checkout"]["202"], users("paid") + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_captures_twice_fails_the_verdict() {
    let base = serve(Shop {
        capture_twice: true,
        ..Shop::default()
    })
    .await;
    let outcome = voucherd_load::run(hot_deal(&base)).await.unwrap();
    assert!(!outcome.verdict.passed, "{outcome}");
    let failed: Vec<&str> = outcome
        .verdict
        .checks
        .iter()
        .filter(|check| !check.passed)
        .map(|check| check.name.as_str())
        .collect();
    assert_eq!(failed, ["gateway_ledgers"], "{outcome}");
}

/// The bound is on requests in flight, not on users: buyers waiting
/// seconds for their orders hold no place, so arrivals behind them are
/// all sent even though the bound is far below the buyers waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_waiting_for_its_order_holds_no_place_in_flight() {
    let base = serve(Shop {
        pending_polls: 4,
        ..Shop::default()
    })
    .await;
    let mut config = hot_deal(&base);
    config.users = Some(12);
    config.supply = Some(12);
    config.duration = Duration::from_secs(2);
    config.in_flight_max = 3;
    let outcome = voucherd_load::run(config).await.unwrap();
    assert!(outcome.verdict.passed, "{outcome}");
    assert_eq!(outcome.arrivals.dropped_by_client, 0, "{outcome}");
    assert_eq!(outcome.outcomes.get("paid").copied(), Some(12), "{outcome}");
    // Each buyer waited through four pending polls (over a second and a
    // half), so most of the twelve were waiting at once: a bound on users
    // would have dropped arrivals.
    assert!(outcome.answers["order"]["200"] >= 12 * 5, "{outcome}");
}

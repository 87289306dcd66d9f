//! Sales in process: reservations that expire or are released, checkout's
//! refusals, declines, and unknown outcomes resolved where they happened.

use std::collections::HashSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use voucherd_core::SignedDuration;
use voucherd_engine::payments::PaymentLimits;
use voucherd_gateway_sim::{Simulator, SimulatorConfig, SimulatorHandle};

use crate::app::{TestApp, TestResponse};

fn deal(supply: u32) -> Value {
    json!({"name": "Hot Deal", "kind": "sale", "supply": supply,
        "price": {"amount": 150000, "currency": "THB"},
        "tiers": [{"until_rank": 1, "discount_percent": 90}, {"until_rank": 2, "discount_percent": 70},
                  {"until_rank": supply, "discount_percent": 50}],
        "reservation_ttl_seconds": 600})
}

fn card() -> Value {
    json!({"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2030, "cvc": "123", "name": "Somchai Jaidee"})
}

async fn checkout(
    app: &TestApp,
    token: &str,
    reservation: &str,
    key: Option<&str>,
    body: Value,
) -> TestResponse {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/reservations/{reservation}/checkout"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    app.send(request.body(Body::from(body.to_string())).unwrap())
        .await
}

async fn reserve(app: &TestApp, id: &str, user: &str) -> Value {
    let reserved = app.claim(id, user).await;
    assert_eq!(reserved.status, StatusCode::CREATED, "{}", reserved.text);
    reserved.body
}

async fn simulator(decline_rate: f64, timeout_rate: f64) -> SimulatorHandle {
    Simulator::start(SimulatorConfig {
        rate_per_second: 1_000,
        latency_ms: 1..=5,
        decline_rate,
        timeout_rate,
        seed: Some(7),
        timeout_hold: Duration::from_secs(5),
        ..SimulatorConfig::default()
    })
    .await
    .expect("a gateway simulator")
}

fn quick_limits() -> PaymentLimits {
    PaymentLimits {
        lookup_delay: Duration::from_millis(50),
        poll_period: Duration::from_millis(20),
        ..PaymentLimits::default()
    }
}

/// Polls an order until it settles. The test clock moves on with each
/// poll, so that retries fall due.
async fn settled(app: &TestApp, order_id: &str) -> Value {
    for _ in 0..500 {
        app.clock.advance(SignedDuration::from_millis(50));
        let order = app
            .get(&format!("/v1/orders/{order_id}"), &app.service)
            .await;
        assert_eq!(order.status, StatusCode::OK, "{}", order.text);
        if order.body["status"] != "pending" {
            return order.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("order {order_id} did not settle");
}

#[tokio::test]
async fn unpaid_reservations_expire_and_their_ranks_go_to_later_buyers_at_their_tier() {
    let app = TestApp::new().await;
    let id = app.live_campaign(deal(4)).await;
    let first = reserve(&app, &id, "a").await;
    let second = reserve(&app, &id, "b").await;
    let third = reserve(&app, &id, "c").await;
    assert_eq!(
        [
            first["rank"].clone(),
            second["rank"].clone(),
            third["rank"].clone()
        ],
        [1, 2, 3]
    );
    app.clock.advance(SignedDuration::from_secs(300));
    let released = app
        .call(
            Method::DELETE,
            &format!(
                "/v1/reservations/{}",
                second["reservation_id"].as_str().unwrap()
            ),
            &app.service,
            None,
        )
        .await;
    assert_eq!(released.status, StatusCode::NO_CONTENT, "{}", released.text);
    let again = reserve(&app, &id, "d").await;
    assert_eq!(
        (again["rank"].clone(), again["discount_percent"].clone()),
        (json!(2), json!(70)),
        "the released rank, at its tier"
    );
    app.clock.advance(SignedDuration::from_secs(300));
    let swept = app.engine.sweep_once(app.engine.now()).await.unwrap();
    assert_eq!(
        swept.reservations_released, 2,
        "a and c ran out; d has five minutes left"
    );
    let live = app.get(&format!("/v1/campaigns/{id}"), &app.service).await;
    assert_eq!(live.body["remaining"], 3, "memory knows the ranks are back");
    let later: Vec<Value> = vec![reserve(&app, &id, "e").await, reserve(&app, &id, "f").await];
    let ranks: Vec<(u64, u64, u64)> = later
        .iter()
        .map(|voucher| {
            (
                voucher["rank"].as_u64().unwrap(),
                voucher["discount_percent"].as_u64().unwrap(),
                voucher["price"]["amount"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ranks, [(1, 90, 15_000), (3, 50, 75_000)]);
}

#[tokio::test]
async fn checkout_refuses_bad_input_and_charges_nothing() {
    let gateway = simulator(0.0, 0.0).await;
    let app = TestApp::with_gateways(&[("alpha", gateway.url(), 1_000, 1)], quick_limits()).await;
    let id = app.live_campaign(deal(5)).await;
    let mine = reserve(&app, &id, "buyer").await;
    let reservation = mine["reservation_id"].as_str().unwrap().to_owned();
    let valid = json!({"email": "buyer@example.com", "card": card()});
    let with_card = |card: Value| json!({"email": "buyer@example.com", "card": card});
    let cases: Vec<(&str, TestResponse, StatusCode, &str)> = vec![
        ("bad Luhn", checkout(&app, &app.service, &reservation, Some("k1"), with_card(json!({"number": "4242424242424241", "exp_month": 12, "exp_year": 2030, "cvc": "123", "name": "X"}))).await,
            StatusCode::UNPROCESSABLE_ENTITY, "validation"),
        ("expired card", checkout(&app, &app.service, &reservation, Some("k2"), with_card(json!({"number": "4242424242424242", "exp_month": 1, "exp_year": 2020, "cvc": "123", "name": "X"}))).await,
            StatusCode::UNPROCESSABLE_ENTITY, "validation"),
        ("bad CVC", checkout(&app, &app.service, &reservation, Some("k3"), with_card(json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "12", "name": "X"}))).await,
            StatusCode::UNPROCESSABLE_ENTITY, "validation"),
        ("bad email", checkout(&app, &app.service, &reservation, Some("k4"), json!({"email": "nobody", "card": card()})).await,
            StatusCode::UNPROCESSABLE_ENTITY, "validation"),
        ("no idempotency key", checkout(&app, &app.service, &reservation, None, valid.clone()).await,
            StatusCode::BAD_REQUEST, "idempotency-key-required"),
        ("someone else's", checkout(&app, &app.customer("thief"), &reservation, Some("k5"), valid.clone()).await,
            StatusCode::NOT_FOUND, "not-found"),
        ("unknown reservation", checkout(&app, &app.service, "0190f5c4-8d2e-7c3a-9b1e-2f4a5b6c7d8e", Some("k6"), valid.clone()).await,
            StatusCode::NOT_FOUND, "not-found"),
    ];
    for (name, answer, status, kind) in cases {
        assert_eq!(
            (answer.status, answer.problem()),
            (status, kind),
            "{name}: {}",
            answer.text
        );
    }
    let paid = checkout(
        &app,
        &app.customer("buyer"),
        &reservation,
        Some("k7"),
        valid.clone(),
    )
    .await;
    assert_eq!(paid.status, StatusCode::ACCEPTED, "{}", paid.text);
    let reused = checkout(
        &app,
        &app.customer("buyer"),
        &reservation,
        Some("k7"),
        json!({"email": "other@example.com", "card": card()}),
    )
    .await;
    reused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    let order = settled(&app, paid.body["order_id"].as_str().unwrap()).await;
    assert_eq!(order["status"], "paid");
    assert_eq!(order["voucher"]["state"], "issued");
    assert!(order["voucher"]["code"].is_string());
    assert_eq!(
        (
            order["voucher"]["discount_percent"].clone(),
            order["voucher"]["price"]["amount"].clone(),
            order["amount"].clone()
        ),
        (json!(90), json!(15_000), json!(15_000)),
        "the paid voucher shows its rank's offer, the price the order charged"
    );
    assert_eq!(order["card"], json!({"brand": "visa", "last4": "4242"}));
    assert_eq!(
        gateway.ledger().len(),
        1,
        "one charge, for the one valid checkout"
    );
    let twice = checkout(&app, &app.service, &reservation, Some("k8"), valid.clone()).await;
    twice.assert_problem(StatusCode::CONFLICT, "already-paid");

    let other = reserve(&app, &id, "slow").await;
    app.clock.advance(SignedDuration::from_secs(600));
    checkout(
        &app,
        &app.service,
        other["reservation_id"].as_str().unwrap(),
        Some("k9"),
        valid,
    )
    .await
    .assert_problem(StatusCode::GONE, "reservation-expired");
    assert_eq!(gateway.ledger().len(), 1, "nothing else was charged");
}

#[tokio::test]
async fn a_declined_card_fails_the_order_and_the_buyer_may_try_again() {
    let gateway = simulator(1.0, 0.0).await;
    let app = TestApp::with_gateways(&[("alpha", gateway.url(), 1_000, 1)], quick_limits()).await;
    let id = app.live_campaign(deal(5)).await;
    let reservation = reserve(&app, &id, "unlucky").await["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"email": "unlucky@example.com", "card": card()});
    let first = checkout(
        &app,
        &app.service,
        &reservation,
        Some("try-1"),
        body.clone(),
    )
    .await;
    let order = settled(&app, first.body["order_id"].as_str().unwrap()).await;
    assert_eq!(
        (order["status"].clone(), order["voucher"].clone()),
        (json!("failed"), json!(null))
    );
    // On a loaded machine the charge's answer may come after its timeout:
    // the attempt is then unknown, and the lookup at the gateway that
    // follows it finds the decline.
    let outcomes: Vec<&str> = order["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| attempt["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.last(), Some(&"declined"), "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|outcome| ["unknown", "declined"].contains(outcome)),
        "{outcomes:?}"
    );
    let second = checkout(&app, &app.service, &reservation, Some("try-2"), body).await;
    assert_eq!(
        second.status,
        StatusCode::ACCEPTED,
        "the reservation still holds the voucher: {}",
        second.text
    );
    let report = app.report(&id).await;
    assert_eq!(
        (report["reserved"].clone(), report["issued"].clone()),
        (json!(1), json!(0))
    );
}

#[tokio::test]
async fn an_unknown_outcome_is_resolved_at_its_gateway_before_any_other() {
    // alpha never answers in time; half its charges are decided anyway.
    let silent = simulator(0.0, 1.0).await;
    let healthy = simulator(0.0, 0.0).await;
    let app = TestApp::with_gateways(
        &[
            ("alpha", silent.url(), 1_000, 1),
            ("beta", healthy.url(), 1_000, 2),
        ],
        quick_limits(),
    )
    .await;
    let id = app.live_campaign(deal(20)).await;
    let mut orders = Vec::new();
    for index in 0..20 {
        let reservation = reserve(&app, &id, &format!("u{index}")).await["reservation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let placed = checkout(
            &app,
            &app.service,
            &reservation,
            Some(&format!("order-{index}")),
            json!({"email": "u@example.com", "card": card()}),
        )
        .await;
        orders.push(placed.body["order_id"].as_str().unwrap().to_owned());
    }
    let mut paid = 0;
    for order_id in &orders {
        let order = settled(&app, order_id).await;
        assert_eq!(order["status"], "paid", "{order}");
        paid += 1;
        let attempts = order["attempts"].as_array().unwrap();
        for pair in attempts.windows(2) {
            if pair[0]["outcome"] == "unknown" {
                assert_eq!(
                    (pair[1]["kind"].clone(), pair[1]["gateway"].clone()),
                    (json!("lookup"), pair[0]["gateway"].clone()),
                    "{order}"
                );
            }
        }
    }
    let at_alpha: HashSet<String> = silent
        .ledger()
        .iter()
        .filter(|charge| charge.status.as_str() == "captured")
        .map(|charge| charge.idempotency_key.clone())
        .collect();
    let at_beta: HashSet<String> = healthy
        .ledger()
        .iter()
        .filter(|charge| charge.status.as_str() == "captured")
        .map(|charge| charge.idempotency_key.clone())
        .collect();
    assert!(
        at_alpha.is_disjoint(&at_beta),
        "a key captured at two gateways: {:?}",
        at_alpha.intersection(&at_beta).collect::<Vec<_>>()
    );
    assert_eq!(
        at_alpha.len() + at_beta.len(),
        paid,
        "every paid order has exactly one capture"
    );
    assert!(
        !at_alpha.is_empty(),
        "some charges alpha decided without answering were found by lookup"
    );
}

#[tokio::test]
async fn the_preferred_gateway_takes_everything_it_has_room_for_and_the_others_the_overflow() {
    let gateways = [
        simulator(0.0, 0.0).await,
        simulator(0.0, 0.0).await,
        simulator(0.0, 0.0).await,
    ];
    let routes: Vec<(&str, String, u32, u32)> = ["alpha", "beta", "gamma"]
        .into_iter()
        .zip(&gateways)
        .enumerate()
        .map(|(index, (name, gateway))| (name, gateway.url(), 100, index as u32 + 1))
        .collect();
    let app = TestApp::with_gateways(&routes, quick_limits()).await;
    let id = app.live_campaign(deal(500)).await;
    let mut buyer = 0;
    let mut check_out_at_once = async |count: usize| {
        let mut reservations = Vec::new();
        for _ in 0..count {
            buyer += 1;
            reservations.push(
                reserve(&app, &id, &format!("b{buyer}")).await["reservation_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        let body = json!({"email": "b@example.com", "card": card()});
        let placed = futures::future::join_all(reservations.iter().map(|reservation| {
            checkout(
                &app,
                &app.service,
                reservation,
                Some(reservation),
                body.clone(),
            )
        }))
        .await;
        for order in placed {
            settled(&app, order.body["order_id"].as_str().unwrap()).await;
        }
    };
    // Less than a second of the preferred gateway's rate: it takes all.
    check_out_at_once(60).await;
    let counts = |gateways: &[SimulatorHandle; 3]| {
        gateways
            .iter()
            .map(|gateway| gateway.ledger().len())
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&gateways), [60, 0, 0]);
    // More than all three can take in a second, at once: each in order of
    // preference fills its second before the next is used.
    check_out_at_once(250).await;
    let after = counts(&gateways);
    assert_eq!(after.iter().sum::<usize>(), 310);
    assert!(after[0] >= after[1] && after[1] >= after[2], "{after:?}");
    assert!(
        after[2] > 0,
        "the least preferred took the last overflow: {after:?}"
    );
}

//! Charges by idempotency key: one decision per key, refusals of bad
//! bodies, what is kept of a card, and the bound on requests in flight.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use voucherd_gateway_sim::{CardBrand, ChargeStatus, SimulatorConfig};

use crate::app::{CARD_NUMBER, TestApp, charge_body, quiet_config};

#[tokio::test]
async fn the_same_key_never_captures_twice_under_concurrent_repeats() {
    // Some latency, so that the first request is still being answered while
    // the repeats arrive.
    let app = TestApp::start(SimulatorConfig {
        latency_ms: 0..=20,
        ..quiet_config()
    })
    .await;

    let replies = join_all((0..50).map(|_| app.charge("order-1-attempt", 150_000))).await;

    let created: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    let replayed: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!((created.len(), replayed.len()), (1, 49), "{replies:?}");
    let original = &created[0].body;
    assert_eq!(original["status"], "captured");
    for reply in &replayed {
        assert_eq!(
            reply.body, *original,
            "a repeat answers with the original charge"
        );
    }
    let ledger = app.ledger().await;
    assert_eq!(
        ledger["charges"].as_array().map(Vec::len),
        Some(1),
        "{ledger}"
    );
    assert_eq!(ledger["charges"][0]["id"], original["id"]);
    let stats = app.handle.stats();
    assert_eq!((stats.captured, stats.replayed), (1, 49));
}

#[tokio::test]
async fn a_decided_key_with_another_amount_or_currency_is_refused() {
    let app = TestApp::start(quiet_config()).await;
    let first = app.charge("k-1", 1000).await;
    assert_eq!(first.status, StatusCode::CREATED);

    let other_amount = app.charge("k-1", 2000).await;
    assert_eq!(other_amount.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other_amount.body["error"], "idempotency_key_reused");

    let mut body = charge_body("k-1", 1000);
    body["currency"] = json!("USD");
    let other_currency = app.charge_body(&body).await;
    assert_eq!(other_currency.status, StatusCode::UNPROCESSABLE_ENTITY);

    let ledger = app.handle.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (ledger[0].amount, ledger[0].currency.as_str()),
        (1000, "THB")
    );
}

#[tokio::test]
async fn bad_bodies_get_a_4xx_json_error_and_change_nothing() {
    let app = TestApp::start(quiet_config()).await;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = charge_body("bad-1", 1000);
        edit(&mut body);
        body
    };
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "missing card",
            with(&|b| {
                if let Some(object) = b.as_object_mut() {
                    object.remove("card");
                }
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "body",
        ),
        (
            "zero amount",
            with(&|b| b["amount"] = json!(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount",
        ),
        (
            "negative amount",
            with(&|b| b["amount"] = json!(-5)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount",
        ),
        (
            "fractional amount",
            with(&|b| b["amount"] = json!(10.5)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "body",
        ),
        (
            "amount as text",
            with(&|b| b["amount"] = json!("1000")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "body",
        ),
        (
            "lower-case currency",
            with(&|b| b["currency"] = json!("thb")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "currency",
        ),
        (
            "empty key",
            with(&|b| b["idempotency_key"] = json!("")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key",
        ),
        (
            "long key",
            with(&|b| b["idempotency_key"] = json!("k".repeat(256))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key",
        ),
        (
            "letters in the number",
            with(&|b| b["card"]["number"] = json!("4242abcd42424242")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "card.number",
        ),
        (
            "check digit",
            with(&|b| b["card"]["number"] = json!("4242424242424241")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "card.number",
        ),
        (
            "month 13",
            with(&|b| b["card"]["exp_month"] = json!(13)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "card.exp_month",
        ),
        (
            "short cvc",
            with(&|b| b["card"]["cvc"] = json!("12")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "card.cvc",
        ),
        (
            "no name",
            with(&|b| b["card"]["name"] = json!(" ")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "card.name",
        ),
    ];
    for (case, body, status, field) in cases {
        let reply = app.charge_body(&body).await;
        assert_eq!(reply.status, status, "{case}: {reply:?}");
        let fields = reply.body["fields"].as_array().cloned().unwrap_or_default();
        assert!(
            fields.iter().any(|f| f["field"] == field),
            "{case}: expected a complaint about {field}: {reply:?}"
        );
        assert_eq!(reply.body["error"], "validation", "{case}");
    }

    let not_json = app.charge_raw("{\"idempotency_key\": ").await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST, "{not_json:?}");
    assert_eq!(not_json.body["error"], "malformed");
    let too_large = app.charge_raw(vec![b' '; 64 * 1024]).await;
    assert_eq!(
        too_large.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{too_large:?}"
    );

    // Several wrong fields are all named in one answer.
    let mut body = with(&|b| b["amount"] = json!(0));
    body["card"]["cvc"] = json!("x");
    let reply = app.charge_body(&body).await;
    assert_eq!(
        reply.body["fields"].as_array().map(Vec::len),
        Some(2),
        "{reply:?}"
    );

    // Expiry fields sent as text, as card forms do, are read.
    let textual = with(&|b| {
        b["card"]["exp_month"] = json!("07");
        b["card"]["exp_year"] = json!("2031");
    });
    assert_eq!(app.charge_body(&textual).await.status, StatusCode::CREATED);
    assert_eq!(
        app.handle.ledger().len(),
        1,
        "no refused body made a charge"
    );
    assert_eq!(app.handle.stats().rejected_invalid, 16);
}

#[tokio::test]
async fn only_the_brand_and_last_four_of_a_card_are_kept() {
    let app = TestApp::start(quiet_config()).await;
    assert_eq!(app.charge("card-1", 5000).await.status, StatusCode::CREATED);

    let lookup = app.lookup("card-1").await;
    assert_eq!(
        lookup.body["card"],
        json!({"brand": "visa", "last4": "4242"})
    );
    let texts = [
        lookup.body.to_string(),
        app.ledger().await.to_string(),
        app.stats().await.to_string(),
    ];
    for text in texts {
        assert!(!text.contains(CARD_NUMBER), "{text}");
        assert!(
            !text.contains("2030") && !text.contains("Somchai"),
            "{text}"
        );
    }
    let charge = app.handle.charge("card-1").expect("the charge");
    assert_eq!(
        (charge.card.brand, charge.card.last_four.as_str()),
        (CardBrand::Visa, "4242")
    );
    assert!(!format!("{charge:?}").contains(CARD_NUMBER));
}

#[tokio::test]
async fn a_lookup_returns_the_charge_or_404() {
    let app = TestApp::start(quiet_config()).await;
    let created = app.charge("look-1", 777).await;

    let found = app.lookup("look-1").await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.body["id"], created.body["id"]);
    assert_eq!(found.body["idempotency_key"], "look-1");
    assert_eq!(found.body["amount"], 777);
    assert_eq!(found.body["currency"], "THB");
    assert_eq!(found.body["status"], "captured");
    let at = found.body["at"].as_str().expect("an RFC 3339 time");
    assert!(at.ends_with('Z'), "{at}");
    at.parse::<jiff::Timestamp>().expect("an RFC 3339 time");

    let missing = app.lookup("never-sent").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"], "not_found");
    assert_eq!(
        app.handle.charge("look-1").map(|c| c.status),
        Some(ChargeStatus::Captured)
    );
}

#[tokio::test]
async fn requests_in_flight_are_bounded_and_held_ones_are_released_on_stop() {
    // Every charge gets no answer, so each one stays in flight.
    let app = TestApp::start(SimulatorConfig {
        timeout_rate: 1.0,
        in_flight_max: 2,
        ..quiet_config()
    })
    .await;
    let held: Vec<_> = (0..2)
        .map(|n| {
            let client = app.client.clone();
            let url = format!("{}/charges", app.handle.url());
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .json(&charge_body(&format!("held-{n}"), 100))
                    .send()
                    .await;
                response
                    .expect("an answer once the simulator stops")
                    .status()
            })
        })
        .collect();
    app.until_stats("both charges are held", |stats| stats.in_flight == 2)
        .await;

    let refused = app.charge("third", 100).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    assert_eq!(refused.body["error"], "overloaded");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert_eq!(
        app.lookup("held-0").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The instrumentation is outside the bound, so a test can still look.
    assert_eq!(app.stats().await["refused_busy"], 2);

    let TestApp { handle, .. } = app;
    handle.stop().await.expect("a clean stop");
    for status in join_all(held).await {
        assert_eq!(
            status.expect("the client task"),
            StatusCode::GATEWAY_TIMEOUT
        );
    }
}

//! `Idempotency-Key`: the same key and body replay; another body is 422.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::app::{TestApp, TestResponse, coupon};

async fn post_with_key(
    app: &TestApp,
    path: &str,
    token: &str,
    key: &str,
    body: Value,
) -> TestResponse {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap();
    app.send(request).await
}

#[tokio::test]
async fn the_same_key_and_body_replay_the_first_answer() {
    let app = TestApp::new().await;
    let first = post_with_key(&app, "/v1/campaigns", &app.admin, "create-1", coupon(5)).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!first.headers.contains_key("idempotent-replayed"));
    let replayed = post_with_key(&app, "/v1/campaigns", &app.admin, "create-1", coupon(5)).await;
    assert_eq!(
        (replayed.status, &replayed.body),
        (StatusCode::CREATED, &first.body)
    );
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    let other = post_with_key(&app, "/v1/campaigns", &app.admin, "create-1", coupon(6)).await;
    other.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    let campaigns = app.get("/v1/campaigns", &app.admin).await;
    assert_eq!(
        campaigns.body["campaigns"].as_array().unwrap().len(),
        1,
        "created once"
    );
}

#[tokio::test]
async fn a_replayed_claim_is_the_same_201() {
    let app = TestApp::new().await;
    let id = app
        .live_campaign(
            json!({"name": "Two each", "kind": "coupon", "supply": 10, "per_user_limit": 2}),
        )
        .await;
    let path = format!("/v1/campaigns/{id}/claims");
    let first = post_with_key(
        &app,
        &path,
        &app.service,
        "claim-1",
        json!({"user_id": "u"}),
    )
    .await;
    let again = post_with_key(
        &app,
        &path,
        &app.service,
        "claim-1",
        json!({"user_id": "u"}),
    )
    .await;
    assert_eq!(
        (first.status, again.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(first.body, again.body);
    assert_eq!(
        app.report(&id).await["issued"],
        1,
        "a retry under the same key does not take a second voucher"
    );
    let fresh = post_with_key(
        &app,
        &path,
        &app.service,
        "claim-2",
        json!({"user_id": "u"}),
    )
    .await;
    assert_eq!(
        (fresh.status, fresh.body["rank"].clone()),
        (StatusCode::CREATED, json!(2))
    );
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    let app = TestApp::new().await;
    let id = app.live_campaign(coupon(10)).await;
    let path = format!("/v1/campaigns/{id}/claims");
    let alice = post_with_key(&app, &path, &app.customer("alice"), "same-key", json!({})).await;
    let bob = post_with_key(&app, &path, &app.customer("bob"), "same-key", json!({})).await;
    assert_eq!(
        (alice.body["user_id"].clone(), bob.body["user_id"].clone()),
        (json!("alice"), json!("bob"))
    );
    let long_key = "k".repeat(300);
    post_with_key(
        &app,
        &path,
        &app.service,
        &long_key,
        json!({"user_id": "c"}),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "invalid-idempotency-key");
}

/// Stripe's rule: a request refused before it was carried out keeps no
/// answer, so the corrected request may use the same key; a request that
/// was carried out replays.
#[tokio::test]
async fn a_refused_request_leaves_its_key_for_the_corrected_one() {
    let app = TestApp::new().await;
    let mut invalid = coupon(5);
    invalid["kind"] = json!("raffle");
    post_with_key(&app, "/v1/campaigns", &app.admin, "fix-me", invalid)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    // Not allowed for this role: 403, not kept either.
    let forbidden = post_with_key(&app, "/v1/campaigns", &app.service, "fix-me", coupon(5)).await;
    assert_eq!(
        forbidden.status,
        StatusCode::FORBIDDEN,
        "{}",
        forbidden.text
    );
    let corrected = post_with_key(&app, "/v1/campaigns", &app.admin, "fix-me", coupon(5)).await;
    assert_eq!(corrected.status, StatusCode::CREATED, "{}", corrected.text);
    let replayed = post_with_key(&app, "/v1/campaigns", &app.admin, "fix-me", coupon(5)).await;
    assert_eq!(
        (replayed.status, &replayed.body),
        (StatusCode::CREATED, &corrected.body)
    );
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
}

/// An upload whose duplicate report is larger than a replay may keep is
/// still answered with what it did, never a 500 after its codes were
/// stored; the campaign then holds what the answer says.
#[tokio::test]
async fn a_large_upload_reports_a_bounded_sample_of_duplicates_and_is_replayed() {
    let app = TestApp::new().await;
    let id = app
        .create_campaign(json!({"name": "Big book", "kind": "coupon", "supply": 100_000, "codes": {"upload": true}}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let codes = format!("/v1/campaigns/{id}/codes");
    let first: Vec<String> = (0..50_000)
        .map(|index| format!("BIG-BOOK-CODE-{index:08}"))
        .collect();
    let stored = app.post(&codes, &app.admin, json!({"codes": first})).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);
    // 50,000 new codes and the 50,000 already stored: the answer counts
    // the duplicates and shows the first thousand, so it stays small
    // enough to be kept, and the same request again replays it.
    let again: Vec<String> = (0..100_000)
        .map(|index| format!("BIG-BOOK-CODE-{index:08}"))
        .collect();
    let answer = post_with_key(
        &app,
        &codes,
        &app.admin,
        "big-upload",
        json!({"codes": again.clone()}),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}",
        &answer.text[..answer.text.len().min(300)]
    );
    assert!(answer.text.len() < 64 * 1024, "{} bytes", answer.text.len());
    assert_eq!(answer.body["added"], 50_000);
    assert_eq!(answer.body["count"], 100_000);
    assert_eq!(answer.body["duplicates_count"], 50_000);
    let shown = answer.body["duplicates"].as_array().unwrap();
    assert_eq!(shown.len(), 1_000);
    assert_eq!(shown[0], "BIG-BOOK-CODE-00000000");
    let replayed = post_with_key(
        &app,
        &codes,
        &app.admin,
        "big-upload",
        json!({"codes": again}),
    )
    .await;
    assert_eq!(replayed.status, StatusCode::OK);
    assert_eq!(
        replayed.body, answer.body,
        "the answer was kept and replayed"
    );
}

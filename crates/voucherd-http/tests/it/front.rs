//! The front (`voucherd_http::front`) answers a claim memory refuses before
//! the router: every answer it gives must be the router's, byte for byte.
//!
//! The router's answer to the same request is had by percent-encoding one
//! character of the campaign id in the path: the route decodes it to the
//! same id, and the front never takes a path it would have to decode
//! (`front::tests::a_percent_encoded_id_is_the_routers`).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

use crate::app::{TestApp, TestResponse, at, coupon, token_for};
use voucherd_http::auth::Role;

/// The same claim twice, once through the front and once through the
/// router, with the same request id; answers both after checking that
/// they are the same answer.
async fn answered_alike(
    app: &TestApp,
    id: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> TestResponse {
    let encoded = format!("%{:02X}{}", id.as_bytes()[0], &id[1..]);
    let mut answers = Vec::new();
    for path_id in [id, encoded.as_str()] {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("/v1/campaigns/{path_id}/claims"))
            .header("x-request-id", "same-request");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body.to_owned()))
            .expect("a request");
        answers.push(app.send(request).await);
    }
    let routed = answers.pop().expect("the router's answer");
    let front = answers.pop().expect("the front's answer");
    assert_eq!(
        front.status, routed.status,
        "{} / {}",
        front.text, routed.text
    );
    assert_eq!(front.text, routed.text);
    let mut front_headers = front.headers.clone();
    let mut routed_headers = routed.headers.clone();
    front_headers.remove(header::DATE);
    routed_headers.remove(header::DATE);
    assert_eq!(front_headers, routed_headers, "{}", front.text);
    assert_eq!(front.headers["x-request-id"], "same-request");
    front
}

#[tokio::test]
async fn every_answer_the_front_gives_is_the_routers() {
    let app = TestApp::new().await;
    let gone = app.live_campaign(coupon(1)).await;
    assert_eq!(app.claim(&gone, "first").await.status, StatusCode::CREATED);
    let json = Some("application/json");
    let service = Some(app.service.as_str());
    let alice = token_for(&app.tenant, Role::Customer, Some("alice"));

    answered_alike(&app, &gone, service, json, r#"{"user_id":"late"}"#)
        .await
        .assert_problem(StatusCode::GONE, "sold-out");
    // The holder of the only voucher hears sold out too, as from the route.
    answered_alike(&app, &gone, service, json, r#"{"user_id":"first"}"#)
        .await
        .assert_problem(StatusCode::GONE, "sold-out");
    answered_alike(&app, &gone, Some(&alice), None, "")
        .await
        .assert_problem(StatusCode::GONE, "sold-out");
    // What refuses the request before memory does is answered first.
    answered_alike(&app, &gone, service, json, "{")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "malformed");
    answered_alike(&app, &gone, service, json, r#"{"user":"late"}"#)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    answered_alike(&app, &gone, service, json, r#"{"user_id":""}"#)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    answered_alike(&app, &gone, service, None, "")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    answered_alike(&app, &gone, service, Some("text/plain"), "late")
        .await
        .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    answered_alike(&app, &gone, service, None, r#"{"user_id":"late"}"#)
        .await
        .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    answered_alike(&app, &gone, Some(&alice), json, r#"{"user_id":"bob"}"#)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    answered_alike(&app, &gone, Some("not-a-token"), json, r#"{"user_id":"x"}"#)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    answered_alike(&app, &gone, None, json, r#"{"user_id":"x"}"#)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    // Another tenant's campaign is not found, whatever memory knows of it.
    let (other, _) = app.other_tenant().await;
    let other_service = token_for(&other, Role::Service, None);
    answered_alike(
        &app,
        &gone,
        Some(&other_service),
        json,
        r#"{"user_id":"x"}"#,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not-found");

    // Not started, ended and paused, as sold out.
    let noon = app
        .live_campaign(json!({"name": "Noon drop", "kind": "coupon", "supply": 25,
            "starts_at": "2026-12-01T13:00:00Z", "ends_at": "2026-12-01T14:00:00Z"}))
        .await;
    answered_alike(&app, &noon, service, json, r#"{"user_id":"early"}"#)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "not-started");
    app.clock.set(at("2026-12-01T14:00:00Z"));
    answered_alike(&app, &noon, service, json, r#"{"user_id":"late"}"#)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "ended");
    app.clock.set(at("2026-12-01T13:30:00Z"));
    app.call(
        Method::POST,
        &format!("/v1/campaigns/{noon}/pause"),
        &app.admin,
        None,
    )
    .await;
    answered_alike(&app, &noon, service, json, r#"{"user_id":"paused"}"#)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "paused");
    // A draft is the store's to answer (memory does not hold it as
    // published): the router's answer either way.
    let draft = app.create_campaign(coupon(5)).await;
    let draft = draft["id"].as_str().expect("an id");
    answered_alike(&app, draft, service, json, r#"{"user_id":"early"}"#)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "not-started");
    assert_eq!(app.report(&noon).await["issued_total"], 0);
    assert_eq!(app.report(&gone).await["issued_total"], 1);
}

#[tokio::test]
async fn a_claim_memory_does_not_refuse_is_claimed_and_counted_against_the_rate_once() {
    let app = TestApp::new().await;
    let limited = crate::app::tenant("metered", "UTC");
    app.engine
        .create_tenant(limited.clone())
        .await
        .expect("a tenant");
    let admin = token_for(&limited, Role::Admin, None);
    let service = token_for(&limited, Role::Service, None);
    let created = app.post("/v1/campaigns", &admin, coupon(100)).await;
    let id = created.body["id"].as_str().expect("an id").to_owned();
    let published = app
        .call(
            Method::POST,
            &format!("/v1/campaigns/{id}/publish"),
            &admin,
            None,
        )
        .await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.text);
    // A fresh bucket of 20 that refills 20 a second: 20 claims at once all
    // pass only if each takes one token, not one in the front and one more
    // in the router.
    app.engine
        .set_tenant_rate_limit(limited.id, Some(20))
        .await
        .expect("a rate limit");
    let path = format!("/v1/campaigns/{id}/claims");
    let claims =
        (0..20).map(|user| app.post(&path, &service, json!({"user_id": format!("user-{user}")})));
    let answers = futures::future::join_all(claims).await;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    }
    let mut codes: Vec<_> = answers
        .iter()
        .map(|answer| answer.body["code"].as_str().expect("a code").to_owned())
        .collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), 20, "twenty distinct vouchers");
    // The limit still holds: a burst past the bucket is refused.
    let more =
        (20..60).map(|user| app.post(&path, &service, json!({"user_id": format!("user-{user}")})));
    let more = futures::future::join_all(more).await;
    let limited_answers = more
        .iter()
        .filter(|answer| answer.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(limited_answers >= 30, "{limited_answers} of 40 refused");
}

#[tokio::test]
async fn the_fronts_refusals_are_counted_as_the_routers() {
    let app = TestApp::new().await;
    let gone = app.live_campaign(coupon(1)).await;
    assert_eq!(app.claim(&gone, "first").await.status, StatusCode::CREATED);
    for user in 0..7 {
        app.claim(&gone, &format!("late-{user}"))
            .await
            .assert_problem(StatusCode::GONE, "sold-out");
    }
    app.post(
        &format!("/v1/campaigns/{gone}/claims"),
        &app.service,
        json!({"user": "x"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let metrics = app.get("/metrics", "").await;
    for line in [
        "voucherd_claims_total{outcome=\"claimed\"} 1",
        "voucherd_claims_total{outcome=\"sold_out\"} 7",
        "voucherd_http_requests_total{method=\"POST\",route=\"/v1/campaigns/{id}/claims\",status=\"201\"} 1",
        "voucherd_http_requests_total{method=\"POST\",route=\"/v1/campaigns/{id}/claims\",status=\"410\"} 7",
        "voucherd_http_requests_total{method=\"POST\",route=\"/v1/campaigns/{id}/claims\",status=\"422\"} 1",
        "voucherd_http_request_seconds_count{route=\"/v1/campaigns/{id}/claims\"} 9",
    ] {
        assert!(metrics.text.contains(line), "{line} in\n{}", metrics.text);
    }
    assert!(
        metrics.text.contains("voucherd_http_requests_in_flight 1"),
        "only the metrics request itself is in flight"
    );
}

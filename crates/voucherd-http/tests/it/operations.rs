//! Health, readiness, metrics and the OpenAPI document.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};

use serde_json::{Value, json};

use crate::app::{TestApp, coupon};

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = TestApp::new().await;
    assert_eq!(app.get("/healthz", "").await.body["status"], "ok");
    assert_eq!(app.get("/readyz", "").await.body["status"], "ready");
    let id = app.live_campaign(coupon(1)).await;
    app.claim(&id, "one").await;
    app.claim(&id, "two").await;
    let metrics = app.get("/metrics", "").await;
    assert!(
        metrics
            .text
            .contains("voucherd_claims_total{outcome=\"claimed\"} 1"),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("voucherd_claims_total{outcome=\"sold_out\"} 1")
    );
    assert!(metrics.text.contains("voucherd_http_requests_total{method=\"POST\",route=\"/v1/campaigns/{id}/claims\",status=\"201\"} 1"));
    assert!(metrics.text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_every_contract_route_documented() {
    let app = TestApp::new().await;
    let document = app.get("/openapi.json", "").await.body;
    assert_eq!(
        document,
        serde_json::to_value(voucherd_http::openapi()).unwrap()
    );
    let paths = document["paths"].as_object().unwrap();
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            operations.push((method.to_uppercase(), path.clone()));
        }
    }
    for (method, path) in &operations {
        let concrete = path
            .replace("{id}", "0190f5c4-8d2e-7c3a-9b1e-2f4a5b6c7d8e")
            .replace("{code}", "SOME-CODE")
            .replace("{user_id}", "u-1");
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(concrete)
            .body(Body::empty())
            .unwrap();
        let answer = app.send(request).await;
        assert_ne!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_ne!(
            answer.body["detail"], "no such route",
            "{method} {path} is documented but not routed"
        );
    }
    for expected in [
        ("POST", "/v1/campaigns"),
        ("GET", "/v1/campaigns/live"),
        ("GET", "/v1/campaigns/{id}"),
        ("POST", "/v1/campaigns/{id}/codes"),
        ("POST", "/v1/campaigns/{id}/publish"),
        ("POST", "/v1/campaigns/{id}/pause"),
        ("POST", "/v1/campaigns/{id}/resume"),
        ("GET", "/v1/campaigns/{id}/report"),
        ("GET", "/v1/campaigns/{id}/vouchers"),
        ("POST", "/v1/campaigns/{id}/claims"),
        ("POST", "/v1/vouchers/{code}/lock"),
        ("POST", "/v1/vouchers/{code}/unlock"),
        ("POST", "/v1/vouchers/{code}/redeem"),
        ("GET", "/v1/users/{user_id}/vouchers"),
        ("POST", "/v1/events/login"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    ] {
        assert!(
            operations.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} is missing from the document"
        );
    }
}

#[tokio::test]
async fn a_tenant_past_its_rate_limit_gets_429_with_retry_after() {
    let app = TestApp::new().await;
    let mut limited = crate::app::tenant("throttled", "UTC");
    limited.rate_limit_per_second = Some(2);
    app.engine.create_tenant(limited.clone()).await.unwrap();
    let token = crate::app::token_for(&limited, voucherd_http::auth::Role::Admin, None);
    let answers =
        futures::future::join_all((0..20).map(|_| app.get("/v1/campaigns/live", &token))).await;
    let limited_answers: Vec<_> = answers
        .iter()
        .filter(|answer| answer.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(
        limited_answers.len() >= 17,
        "at most the burst of 2 (and a sliver of refill) passes"
    );
    for answer in limited_answers {
        answer.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
        assert!(
            answer.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
        assert_eq!(answer.headers["ratelimit-policy"], "\"tenant\";q=2;w=1");
        let reset = answer.headers["retry-after"].to_str().unwrap();
        assert_eq!(
            answer.headers["ratelimit"],
            format!("\"tenant\";r=0;t={reset}").as_str()
        );
        let id = answer.headers["x-request-id"].to_str().unwrap();
        assert_eq!(
            answer.body["request_id"], id,
            "the problem names its request"
        );
    }
    let ids: std::collections::HashSet<&str> = answers
        .iter()
        .map(|answer| answer.headers["x-request-id"].to_str().unwrap())
        .collect();
    assert_eq!(ids.len(), answers.len(), "every request has its own id");
    let other_tenant = app.get("/v1/campaigns/live", &app.admin).await;
    assert_eq!(other_tenant.status, StatusCode::OK, "limits are per tenant");
}

#[tokio::test]
async fn a_tenants_admin_rotates_its_key_and_sets_its_limit_over_the_api() {
    let app = TestApp::new().await;
    let before = app.get("/v1/tenant", &app.admin).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.body);
    assert_eq!(before.body["key_id"], "k1");
    assert!(before.body.get("signing_key").is_none(), "keys never leave");
    let hour = voucherd_http::auth::mint(
        &app.tenant,
        voucherd_http::auth::Role::Admin,
        None,
        app.engine.now(),
        voucherd_core::SignedDuration::from_hours(1),
    );
    let rotated = app
        .post("/v1/tenant/rotate-key", &app.admin, json!({}))
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(rotated.body["tenant"]["key_id"], "k2");
    assert_eq!(rotated.body["tenant"]["retired_key_ids"], json!(["k1"]));
    let fresh = rotated.body["admin_token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/v1/tenant", &fresh).await.status, StatusCode::OK);
    assert_eq!(
        app.get("/v1/tenant", &hour).await.status,
        StatusCode::OK,
        "the old key's token, issued before, still verifies"
    );
    assert_eq!(
        app.get("/v1/tenant", &app.admin).await.status,
        StatusCode::UNAUTHORIZED,
        "but not one that lives longer than any token voucherd mints (five years)"
    );
    let limited = app
        .post(
            "/v1/tenant/limits",
            &fresh,
            json!({"rate_limit_per_second": 50}),
        )
        .await;
    assert_eq!(limited.status, StatusCode::OK, "{}", limited.body);
    assert_eq!(limited.body["rate_limit_per_second"], 50);
    let missing = app.post("/v1/tenant/limits", &fresh, json!({})).await;
    missing.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let zero = app
        .post(
            "/v1/tenant/limits",
            &fresh,
            json!({"rate_limit_per_second": 0}),
        )
        .await;
    zero.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let lifted = app
        .post(
            "/v1/tenant/limits",
            &fresh,
            json!({"rate_limit_per_second": null}),
        )
        .await;
    assert_eq!(lifted.body["rate_limit_per_second"], Value::Null);
    let current = app.engine.tenant(app.tenant.id).unwrap();
    let service = voucherd_http::auth::mint(
        &current.tenant,
        voucherd_http::auth::Role::Service,
        None,
        app.engine.now(),
        voucherd_core::SignedDuration::from_hours(1),
    );
    assert_eq!(
        app.post("/v1/tenant/rotate-key", &service, json!({}))
            .await
            .status,
        StatusCode::FORBIDDEN,
        "only an admin rotates"
    );
}

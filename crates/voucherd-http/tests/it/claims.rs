//! Claims and logins: who gets what, and what is answered from memory.

use std::collections::HashSet;

use axum::http::StatusCode;
use futures::future::join_all;
use serde_json::json;

use crate::app::{TestApp, at, coupon};

#[tokio::test]
async fn a_claim_issues_and_a_repeat_returns_the_same_voucher() {
    let app = TestApp::new().await;
    let id = app
        .live_campaign(
            json!({"name": "Free iPhone", "kind": "coupon", "supply": 25,
            "voucher_valid_for": "P30D", "codes": {"pattern": "FREE-####-????"}}),
        )
        .await;
    let first = app.claim(&id, "u-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.body["state"], "issued");
    assert_eq!(first.body["rank"], 1);
    assert_eq!(first.body["user_id"], "u-1");
    assert_eq!(first.body["expires_at"], "2026-12-31T12:00:00Z");
    assert!(first.body["code"].as_str().unwrap().starts_with("FREE-"));
    let again = app.claim(&id, "u-1").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, first.body, "the same voucher, not a second");
    assert_eq!(app.report(&id).await["issued"], 1);
}

#[tokio::test]
async fn sold_out_is_410_and_later_claims_never_reach_the_store() {
    let app = TestApp::new().await;
    let id = app.live_campaign(coupon(2)).await;
    for user in ["a", "b"] {
        assert_eq!(app.claim(&id, user).await.status, StatusCode::CREATED);
    }
    app.claim(&id, "c")
        .await
        .assert_problem(StatusCode::GONE, "sold-out");
    let batches = app.store.claim_batches();
    for user in ["d", "e", "f"] {
        app.claim(&id, user)
            .await
            .assert_problem(StatusCode::GONE, "sold-out");
    }
    assert_eq!(
        app.store.claim_batches(),
        batches,
        "sold out is answered from memory"
    );
    let campaign = app.get(&format!("/v1/campaigns/{id}"), &app.service).await;
    assert_eq!(
        (
            campaign.body["sold_out"].clone(),
            campaign.body["remaining"].clone()
        ),
        (json!(true), json!(0))
    );
}

#[tokio::test]
async fn not_started_ended_and_paused_are_answered_from_memory() {
    let app = TestApp::new().await;
    let id = app
        .live_campaign(json!({"name": "Noon drop", "kind": "coupon", "supply": 25,
            "starts_at": "2026-12-01T13:00:00Z", "ends_at": "2026-12-01T14:00:00Z"}))
        .await;
    let draft = app.create_campaign(coupon(5)).await;
    let batches = app.store.claim_batches();
    app.claim(&id, "early")
        .await
        .assert_problem(StatusCode::FORBIDDEN, "not-started");
    app.claim(draft["id"].as_str().unwrap(), "early")
        .await
        .assert_problem(StatusCode::FORBIDDEN, "not-started");
    app.clock.set(at("2026-12-01T14:00:00Z"));
    app.claim(&id, "late")
        .await
        .assert_problem(StatusCode::FORBIDDEN, "ended");
    app.clock.set(at("2026-12-01T13:30:00Z"));
    let paused = app
        .call(
            axum::http::Method::POST,
            &format!("/v1/campaigns/{id}/pause"),
            &app.admin,
            None,
        )
        .await;
    assert_eq!(paused.body["state"], "paused");
    app.claim(&id, "paused")
        .await
        .assert_problem(StatusCode::FORBIDDEN, "paused");
    assert_eq!(
        app.store.claim_batches(),
        batches,
        "none of these touched the store"
    );
    app.call(
        axum::http::Method::POST,
        &format!("/v1/campaigns/{id}/resume"),
        &app.admin,
        None,
    )
    .await;
    assert_eq!(app.claim(&id, "on-time").await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn one_coupon_per_user_per_day_across_a_daily_group() {
    let app = TestApp::new().await;
    // The tenant counts days in Bangkok (UTC+7): 12:00Z is 19:00 there.
    let grouped = |name: &str, starts_at: &str| {
        json!({"name": name, "kind": "coupon", "supply": 25, "daily_limit_group": "daily",
            "starts_at": starts_at})
    };
    let coupons = [
        app.live_campaign(grouped("breakfast", "2026-12-01T01:00:00Z"))
            .await,
        app.live_campaign(grouped("lunch", "2026-12-01T05:00:00Z"))
            .await,
        app.live_campaign(grouped("dinner", "2026-12-01T11:00:00Z"))
            .await,
    ];
    let users: Vec<String> = (0..20).map(|index| format!("user-{index}")).collect();
    for (index, user) in users.iter().enumerate() {
        let first = &coupons[index % 3];
        assert_eq!(app.claim(first, user).await.status, StatusCode::CREATED);
        for other in coupons.iter().filter(|coupon| *coupon != first) {
            app.claim(other, user)
                .await
                .assert_problem(StatusCode::CONFLICT, "daily-limit-reached");
        }
        assert_eq!(
            app.claim(first, user).await.status,
            StatusCode::OK,
            "their own coupon, again"
        );
    }
    for user in &users {
        assert_eq!(
            app.user_vouchers(user).await["vouchers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
    // 16:59Z is still the same day in Bangkok; 17:00Z is the next.
    app.clock.set(at("2026-12-01T16:59:59Z"));
    app.claim(&coupons[1], "user-0")
        .await
        .assert_problem(StatusCode::CONFLICT, "daily-limit-reached");
    app.clock.set(at("2026-12-01T17:00:00Z"));
    assert_eq!(
        app.claim(&coupons[1], "user-0").await.status,
        StatusCode::CREATED,
        "a new day in Bangkok"
    );
    app.claim(&coupons[2], "user-0")
        .await
        .assert_problem(StatusCode::CONFLICT, "daily-limit-reached");
    assert_eq!(
        app.user_vouchers("user-0").await["vouchers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn the_first_hundred_logins_are_granted_once_each() {
    let app = TestApp::new().await;
    let id = app
        .live_campaign(
            json!({"name": "30% off top-ups", "kind": "coupon", "supply": 100,
            "trigger": "first_login", "voucher_valid_for": "P7D"}),
        )
        .await;
    // 300 users; every third logs in twice, all at once.
    let logins = (0..300).flat_map(|index| {
        let user = format!("login-{index}");
        let times = if index % 3 == 0 { 2 } else { 1 };
        std::iter::repeat_n(user, times)
    });
    let answers = join_all(logins.map(|user| {
        let app = &app;
        async move { (user.clone(), app.login(&user).await) }
    }))
    .await;
    let mut granted = HashSet::new();
    let mut ranks = HashSet::new();
    for (user, answer) in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        for voucher in answer.body["granted"].as_array().unwrap() {
            assert!(granted.insert(user.clone()), "{user} granted twice");
            assert!(
                ranks.insert(voucher["rank"].as_u64().unwrap()),
                "a rank granted twice"
            );
        }
    }
    assert_eq!(granted.len(), 100);
    assert_eq!(ranks, (1..=100).collect());
    let report = app.report(&id).await;
    assert_eq!(
        (report["issued"].clone(), report["available"].clone()),
        (json!(100), json!(0))
    );
    let again = app.login("login-0").await;
    assert!(again.body["granted"].as_array().unwrap().is_empty());
    let holder = granted.iter().next().unwrap();
    let sold_out_login = app.login(holder).await;
    assert_eq!(
        sold_out_login.body["held"].as_array().unwrap().len(),
        1,
        "a holder still sees their voucher after the sell-out: {}",
        sold_out_login.text
    );
    app.claim(&id, "login-0")
        .await
        .assert_problem(StatusCode::CONFLICT, "login-only");
}

#[tokio::test]
async fn a_sale_claim_reserves_without_revealing_the_code() {
    let app = TestApp::new().await;
    let id = app
        .live_campaign(json!({"name": "LINE Hot Deal", "kind": "sale", "supply": 20,
            "price": {"amount": 150000, "currency": "THB"},
            "tiers": [{"until_rank": 2, "discount_percent": 90}, {"until_rank": 10, "discount_percent": 70},
                      {"until_rank": 20, "discount_percent": 50}],
            "reservation_ttl_seconds": 300}))
        .await;
    let reserved = app.claim(&id, "buyer").await;
    assert_eq!(reserved.status, StatusCode::CREATED);
    assert_eq!(reserved.body["state"], "reserved");
    assert_eq!(reserved.body["code"], json!(null));
    assert_eq!(reserved.body["reserved_until"], "2026-12-01T12:05:00Z");
    assert!(reserved.body["reservation_id"].is_string());
    assert_eq!(
        reserved.body["price"],
        json!({"amount": 15000, "currency": "THB"})
    );
    assert_eq!(reserved.body["discount_percent"], 90);
}

#[tokio::test]
async fn a_customer_claims_for_themselves_only() {
    let app = TestApp::new().await;
    let id = app.live_campaign(coupon(5)).await;
    let alice = app.customer("alice");
    let mine = app
        .call(
            axum::http::Method::POST,
            &format!("/v1/campaigns/{id}/claims"),
            &alice,
            None,
        )
        .await;
    assert_eq!(
        (mine.status, mine.body["user_id"].clone()),
        (StatusCode::CREATED, json!("alice"))
    );
    let for_bob = app
        .post(
            &format!("/v1/campaigns/{id}/claims"),
            &alice,
            json!({"user_id": "bob"}),
        )
        .await;
    for_bob.assert_problem(StatusCode::FORBIDDEN, "forbidden");
    let bobs = app.get("/v1/users/bob/vouchers", &alice).await;
    bobs.assert_problem(StatusCode::FORBIDDEN, "forbidden");
    let own = app.get("/v1/users/alice/vouchers", &alice).await;
    assert_eq!(own.body["vouchers"].as_array().unwrap().len(), 1);
    app.post(
        &format!("/v1/campaigns/{id}/claims"),
        &app.service,
        json!({}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
}

#[tokio::test]
async fn a_full_claim_queue_answers_overloaded_with_retry_after() {
    let mut config = voucherd_engine::EngineConfig::default();
    config.claims.claim_queue_max = 1;
    config.claims.claim_batch_linger = std::time::Duration::ZERO;
    let app = std::sync::Arc::new(TestApp::with_config(config).await);
    let id = app.live_campaign(coupon(10)).await;
    let gate = app.store.hold_claims();
    // The first claim is taken into a batch and held in the store; of five
    // more, one fits in the queue and four find it full.
    let first = tokio::spawn({
        let (app, id) = (app.clone(), id.clone());
        async move { app.claim(&id, "first").await }
    });
    while app.store.claim_batches() == 0 {
        tokio::task::yield_now().await;
    }
    let waiting: Vec<_> = (0..5)
        .map(|index| {
            let (app, id) = (app.clone(), id.clone());
            tokio::spawn(async move { app.claim(&id, &format!("next-{index}")).await })
        })
        .collect();
    while waiting.iter().filter(|task| task.is_finished()).count() < 4 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(1_000);
    let mut answers = Vec::new();
    for task in waiting {
        answers.push(task.await.unwrap());
    }
    let refused: Vec<_> = answers
        .iter()
        .filter(|answer| answer.status != StatusCode::CREATED)
        .collect();
    assert_eq!(refused.len(), 4);
    for answer in refused {
        answer.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
        assert_eq!(answer.headers.get("retry-after").unwrap(), "1");
    }
    assert_eq!(first.await.unwrap().status, StatusCode::CREATED);
    assert_eq!(
        app.report(&id).await["issued"],
        2,
        "the refused claims took nothing"
    );
}

#[tokio::test]
async fn a_database_outage_is_503_and_passes() {
    let app = TestApp::new().await;
    let id = app.live_campaign(coupon(10)).await;
    app.store.set_unavailable(true);
    let refused = app.claim(&id, "patient").await;
    refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(refused.headers.contains_key("retry-after"));
    app.get("/readyz", "")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    app.store.set_unavailable(false);
    assert_eq!(app.claim(&id, "patient").await.status, StatusCode::CREATED);
    assert_eq!(app.get("/readyz", "").await.status, StatusCode::OK);
}

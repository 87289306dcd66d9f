//! Seed 001's redemption flow: lock, unlock, redeem, and lock expiry.

use axum::http::StatusCode;
use futures::future::join_all;
use serde_json::json;
use voucherd_core::SignedDuration;

use crate::app::{TestApp, at};

async fn claimed_code(app: &TestApp, id: &str, user: &str) -> String {
    let claimed = app.claim(id, user).await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.text);
    claimed.body["code"].as_str().expect("a code").to_owned()
}

#[tokio::test]
async fn fifty_concurrent_redeems_of_a_single_use_code_succeed_once() {
    let app = TestApp::new().await;
    let id = app
        .live_campaign(json!({"name": "Single use", "kind": "coupon", "supply": 5}))
        .await;
    let code = claimed_code(&app, &id, "holder").await;
    let answers = join_all((0..50).map(|_| app.act(&code, "redeem", &app.service))).await;
    let redeemed = answers
        .iter()
        .filter(|answer| answer.status == StatusCode::OK)
        .count();
    assert_eq!(redeemed, 1);
    for refused in answers
        .iter()
        .filter(|answer| answer.status != StatusCode::OK)
    {
        refused.assert_problem(StatusCode::CONFLICT, "already-redeemed");
    }
    let report = app.report(&id).await;
    assert_eq!(
        (report["redeemed"].clone(), report["issued"].clone()),
        (json!(1), json!(0))
    );
}

#[tokio::test]
async fn an_expired_voucher_is_refused() {
    let app = TestApp::new().await;
    let id = app
        .live_campaign(json!({"name": "Use by", "kind": "coupon", "supply": 5,
            "voucher_expires_at": "2026-12-02T00:00:00Z"}))
        .await;
    let code = claimed_code(&app, &id, "late").await;
    app.clock.set(at("2026-12-02T00:00:00Z"));
    app.act(&code, "redeem", &app.service)
        .await
        .assert_problem(StatusCode::GONE, "voucher-expired");
    app.act(&code, "lock", &app.service)
        .await
        .assert_problem(StatusCode::GONE, "voucher-expired");
    assert_eq!(app.report(&id).await["redeemed"], 0);
}

#[tokio::test]
async fn a_lock_excludes_others_until_it_expires_and_then_can_be_taken_again() {
    let app = TestApp::new().await;
    let id = app
        .live_campaign(
            json!({"name": "Checkout", "kind": "coupon", "supply": 5, "lock_ttl_seconds": 600}),
        )
        .await;
    let code = claimed_code(&app, &id, "shopper").await;
    let locked = app.act(&code, "lock", &app.service).await;
    assert_eq!(
        (locked.status, locked.body["state"].clone()),
        (StatusCode::OK, json!("locked"))
    );
    assert_eq!(locked.body["locked_until"], "2026-12-01T12:10:00Z");
    app.act(&code, "lock", &app.service)
        .await
        .assert_problem(StatusCode::CONFLICT, "locked");
    app.clock.advance(SignedDuration::from_secs(600));
    let voucher = &app.user_vouchers("shopper").await["vouchers"][0];
    assert_eq!(
        voucher["state"], "issued",
        "a lock past its time is shown as gone"
    );
    let report = app.engine.sweep_once(app.engine.now()).await.unwrap();
    assert_eq!(report.locks_expired, 1);
    assert_eq!(app.report(&id).await["locked"], 0);
    let retaken = app.act(&code, "lock", &app.service).await;
    assert_eq!(retaken.status, StatusCode::OK);
    let unlocked = app.act(&code, "unlock", &app.service).await;
    assert_eq!(unlocked.body["state"], "issued");
    app.act(&code, "unlock", &app.service)
        .await
        .assert_problem(StatusCode::CONFLICT, "not-locked");
}

#[tokio::test]
async fn a_multi_use_voucher_is_redeemed_under_a_lock_up_to_its_maximum() {
    let app = TestApp::new().await;
    let id = app
        .live_campaign(
            json!({"name": "Punch card", "kind": "coupon", "supply": 5, "redemptions_max": 2}),
        )
        .await;
    let code = claimed_code(&app, &id, "regular").await;
    app.act(&code, "redeem", &app.service)
        .await
        .assert_problem(StatusCode::CONFLICT, "lock-required");
    for expected in [json!("issued"), json!("redeemed")] {
        assert_eq!(
            app.act(&code, "lock", &app.service).await.status,
            StatusCode::OK
        );
        let redeemed = app.act(&code, "redeem", &app.service).await;
        assert_eq!(redeemed.body["state"], expected, "{}", redeemed.text);
    }
    app.act(&code, "lock", &app.service)
        .await
        .assert_problem(StatusCode::CONFLICT, "already-redeemed");
}

#[tokio::test]
async fn a_customer_redeems_only_their_own_voucher() {
    let app = TestApp::new().await;
    let id = app
        .live_campaign(json!({"name": "Mine", "kind": "coupon", "supply": 5}))
        .await;
    let code = claimed_code(&app, &id, "owner").await;
    let stranger = app.customer("stranger");
    app.act(&code, "redeem", &stranger)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    let owner = app.customer("owner");
    assert_eq!(
        app.act(&code, "redeem", &owner).await.status,
        StatusCode::OK
    );
    app.act("NO-SUCH-CODE", "redeem", &app.service)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
}

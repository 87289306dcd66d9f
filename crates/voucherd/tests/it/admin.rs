//! Admin work never stalls the crowd: a publish that must make a large
//! supply of codes answers at once and makes them in slices, while claims
//! on other campaigns go on being answered.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::server::TestServer;

/// Large enough that its codes take many slices, small enough for CI.
const SUPPLY: u64 = 300_000;

async fn claim_round(server: &TestServer, id: &str, round: usize) -> Vec<Duration> {
    let claims = (0..20).map(|index| {
        let server = server.handle();
        let path = format!("/v1/campaigns/{id}/claims");
        async move {
            let sent = Instant::now();
            let (status, body) = server
                .post(
                    &path,
                    &server.service,
                    json!({"user_id": format!("r{round}-u{index}")}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            sent.elapsed()
        }
    });
    futures::future::join_all(claims).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_publish_answers_at_once_and_claims_go_on_meanwhile() {
    let directory = tempfile::tempdir().unwrap();
    let server = TestServer::start(directory.path(), &[]);
    let other = server
        .live_campaign(json!({"name": "Meanwhile", "kind": "coupon", "supply": 10_000}))
        .await;
    let idle = claim_round(&server, &other, 0).await;

    let (status, created) = server
        .post(
            "/v1/campaigns",
            &server.admin,
            json!({"name": "Big", "kind": "coupon", "supply": SUPPLY}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let big = created["id"].as_str().unwrap().to_owned();
    let publish = format!("/v1/campaigns/{big}/publish");
    let (status, publishing) = server.post(&publish, &server.admin, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{publishing}");
    assert_eq!(publishing["state"], "draft", "{publishing}");
    assert_eq!(publishing["codes"]["publishing"], true, "{publishing}");
    assert!(publishing["codes"]["count"].as_u64().unwrap() < SUPPLY);
    // Publishing again while it runs answers what is made so far.
    let (status, again) = server.post(&publish, &server.admin, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");

    // Claims on the big one wait for its whole supply; claims elsewhere are
    // answered while its codes are being made.
    let (status, early) = server
        .post(
            &format!("/v1/campaigns/{big}/claims"),
            &server.service,
            json!({"user_id": "eager"}),
        )
        .await;
    assert_ne!(
        status,
        StatusCode::CREATED,
        "claimed before its codes exist: {early}"
    );
    let mut during = Vec::new();
    let mut rounds_while_publishing = 0;
    for round in 1..=5 {
        let latencies = claim_round(&server, &other, round).await;
        let (_, now) = server
            .get(&format!("/v1/campaigns/{big}"), &server.admin)
            .await;
        if now["codes"]["publishing"] == true {
            rounds_while_publishing += 1;
            during.extend(latencies);
        }
    }
    assert!(
        rounds_while_publishing > 0,
        "the claims came after the codes were made"
    );

    let started = Instant::now();
    let live: Value = loop {
        let (status, now) = server
            .get(&format!("/v1/campaigns/{big}"), &server.admin)
            .await;
        assert_eq!(status, StatusCode::OK, "{now}");
        if now["state"] == "live" {
            break now;
        }
        assert!(now["codes"]["publish_failure"].is_null(), "{now}");
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "never went live: {now}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(live["codes"]["count"].as_u64(), Some(SUPPLY), "{live}");
    assert_eq!(live["codes"]["publishing"], false, "{live}");
    let (status, claimed) = server
        .post(
            &format!("/v1/campaigns/{big}/claims"),
            &server.service,
            json!({"user_id": "eager"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{claimed}");
    let worst = |latencies: &[Duration]| latencies.iter().max().copied().unwrap_or_default();
    println!(
        "claims elsewhere: worst {:?} idle, {:?} during {} rounds of the publish; {} codes in {:?} after the answer",
        worst(&idle),
        worst(&during),
        rounds_while_publishing,
        SUPPLY,
        started.elapsed()
    );
}

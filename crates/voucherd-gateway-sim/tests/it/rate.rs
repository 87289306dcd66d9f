//! The rate limit: nobody gets more than `rate_per_second` charges through
//! in any one-second window, bursts included, and a refusal creates nothing.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::Value;
use voucherd_gateway_sim::SimulatorConfig;
use voucherd_gateway_sim::clock::ManualClock;

use crate::app::{Reply, TestApp, keys, quiet_config};

fn count(replies: &[Reply], status: StatusCode) -> usize {
    replies
        .iter()
        .filter(|reply| reply.status == status)
        .count()
}

/// The most charges of the ledger inside any one-second window, from their
/// `at` times alone.
fn accepted_in_any_second_max(ledger: &Value) -> usize {
    let mut times: Vec<Timestamp> = ledger["charges"]
        .as_array()
        .expect("a list of charges")
        .iter()
        .map(|charge| {
            charge["at"]
                .as_str()
                .expect("a time")
                .parse()
                .expect("an RFC 3339 time")
        })
        .collect();
    times.sort();
    let mut first = 0;
    let mut most = 0;
    for last in 0..times.len() {
        while times[last].duration_since(times[first]) >= jiff::SignedDuration::from_secs(1) {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

#[tokio::test]
async fn a_burst_of_three_times_the_rate_at_one_instant_gets_the_rate_and_429s() {
    let clock = Arc::new(ManualClock::new(
        "2026-12-01T12:00:00Z".parse().expect("a time"),
    ));
    let app = TestApp::start_with_clock(
        SimulatorConfig {
            rate_per_second: 20,
            ..quiet_config()
        },
        clock.clone(),
    )
    .await;

    let burst = app.charges_at_once(&keys("burst", 60)).await;
    assert_eq!(count(&burst, StatusCode::CREATED), 20);
    assert_eq!(count(&burst, StatusCode::TOO_MANY_REQUESTS), 40);
    for refused in burst
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
    {
        assert_eq!(refused.retry_after.as_deref(), Some("1"), "{refused:?}");
        assert_eq!(refused.body["error"], "rate_limited");
    }
    let refused_key = (0..60)
        .map(|n| format!("burst-{n}"))
        .find(|key| app.handle.charge(key).is_none())
        .expect("a refused key");
    assert_eq!(
        app.lookup(&refused_key).await.status,
        StatusCode::NOT_FOUND,
        "a 429 creates no charge"
    );

    // Half a second on, the window still holds the whole burst: a bucket
    // refilled at the rate would already admit ten more here.
    clock.advance(Duration::from_millis(500));
    let early = app.charges_at_once(&keys("early", 10)).await;
    assert_eq!(count(&early, StatusCode::TOO_MANY_REQUESTS), 10);

    // One second after the burst, the window has room for the rate again,
    // and a refused key may be charged now.
    clock.advance(Duration::from_millis(500));
    let retry = app.charge(&refused_key, 100).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    let next = app.charges_at_once(&keys("next", 30)).await;
    assert_eq!(count(&next, StatusCode::CREATED), 19);
    assert_eq!(count(&next, StatusCode::TOO_MANY_REQUESTS), 11);

    let ledger = app.ledger().await;
    assert_eq!(ledger["charges"].as_array().map(Vec::len), Some(40));
    assert_eq!(ledger["accepted_per_second_max"], 20);
    assert_eq!(accepted_in_any_second_max(&ledger), 20);
    assert_eq!(app.handle.stats().rate_limited, 61);
}

#[tokio::test]
async fn a_burst_in_real_time_never_exceeds_the_rate_in_any_second() {
    let app = TestApp::start(SimulatorConfig {
        rate_per_second: 30,
        ..quiet_config()
    })
    .await;

    let burst = app.charges_at_once(&keys("real", 90)).await;

    // However slowly this machine sends the burst, the first `rate` always
    // fit, every request is either charged or refused, and no one-second
    // window of the ledger holds more than the rate.
    let created = count(&burst, StatusCode::CREATED);
    assert!(created >= 30, "{created}");
    assert_eq!(created + count(&burst, StatusCode::TOO_MANY_REQUESTS), 90);
    let ledger = app.ledger().await;
    assert_eq!(ledger["charges"].as_array().map(Vec::len), Some(created));
    assert!(accepted_in_any_second_max(&ledger) <= 30, "{ledger}");
    assert!(ledger["accepted_per_second_max"].as_u64() <= Some(30));
}

#[tokio::test]
async fn lookups_and_repeats_are_not_rate_limited() {
    let clock = Arc::new(ManualClock::new(
        "2026-12-01T12:00:00Z".parse().expect("a time"),
    ));
    let app = TestApp::start_with_clock(
        SimulatorConfig {
            rate_per_second: 1,
            ..quiet_config()
        },
        clock,
    )
    .await;
    assert_eq!(app.charge("only", 100).await.status, StatusCode::CREATED);
    assert_eq!(
        app.charge("second", 100).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    for _ in 0..5 {
        assert_eq!(app.lookup("only").await.status, StatusCode::OK);
        assert_eq!(app.charge("only", 100).await.status, StatusCode::OK);
    }
}

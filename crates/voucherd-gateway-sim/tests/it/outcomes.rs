//! Declines and timeouts: drawn at the configured rates, reproducible from
//! a seed, and a charge that got no answer is resolved by looking it up.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use futures::stream;
use reqwest::StatusCode;
use voucherd_gateway_sim::{ChargeStatus, SimulatorConfig};

use crate::app::{TestApp, quiet_config};

/// How a batch of charges came out, as a client and the ledger see it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    captured: usize,
    declined: usize,
    /// Got no answer, but the charge was decided.
    unanswered_decided: usize,
    /// Got no answer and never reached the gateway.
    unanswered_lost: usize,
}

/// Sends `keys` charges, eight at a time, and resolves the ones without an
/// answer by lookup, as the engine's adapter will.
async fn tally(app: &TestApp, keys: &[String]) -> Tally {
    let replies: Vec<_> = stream::iter(keys)
        .map(|key| async move { (key, app.charge(key, 1000).await) })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut tally = Tally::default();
    for (key, reply) in replies {
        match (reply.status, reply.body["status"].as_str()) {
            (StatusCode::CREATED, Some("captured")) => tally.captured += 1,
            (StatusCode::CREATED, Some("declined")) => tally.declined += 1,
            (StatusCode::GATEWAY_TIMEOUT, _) => match app.lookup(key).await.status {
                StatusCode::OK => tally.unanswered_decided += 1,
                StatusCode::NOT_FOUND => tally.unanswered_lost += 1,
                other => panic!("lookup of {key}: {other}"),
            },
            _ => panic!("charge {key}: {reply:?}"),
        }
    }
    tally
}

fn seeded(seed: u64) -> SimulatorConfig {
    SimulatorConfig {
        decline_rate: 0.1,
        timeout_rate: 0.05,
        seed: Some(seed),
        // Held requests are let go at once, so that a thousand charges take
        // no time; how a client experiences the hold is tested below.
        timeout_hold: Duration::ZERO,
        ..quiet_config()
    }
}

#[tokio::test]
async fn declines_and_timeouts_come_at_the_configured_rates_exactly_for_a_seed() {
    let keys: Vec<String> = (0..1000).map(|n| format!("order-{n}")).collect();
    let app = TestApp::start(seeded(7)).await;

    let tally = tally(&app, &keys).await;

    // About 10 % declined and 5 % unanswered, half of those never reached:
    // within three standard deviations of that, and exactly so for seed 7.
    assert!((70..=130).contains(&tally.declined), "{tally:?}");
    assert!(
        (30..=70).contains(&(tally.unanswered_decided + tally.unanswered_lost)),
        "{tally:?}"
    );
    let expected = Tally {
        captured: 855,
        declined: 102,
        unanswered_decided: 16,
        unanswered_lost: 27,
    };
    assert_eq!(tally, expected, "seed 7");
    let stats = app.handle.stats();
    assert_eq!(stats.unanswered as usize, tally.unanswered_decided);
    assert_eq!(stats.lost as usize, tally.unanswered_lost);
    let ledger = app.handle.ledger();
    assert_eq!(ledger.len(), 1000 - tally.unanswered_lost);
    assert_eq!(
        ledger.iter().filter(|c| !c.answered).count(),
        tally.unanswered_decided
    );
}

#[tokio::test]
async fn a_seed_decides_each_key_the_same_whatever_the_order() {
    let keys: Vec<String> = (0..300).map(|n| format!("order-{n}")).collect();
    let reversed: Vec<String> = keys.iter().rev().cloned().collect();
    let first = TestApp::start(seeded(11)).await;
    let second = TestApp::start(seeded(11)).await;
    let other_seed = TestApp::start(seeded(12)).await;
    tally(&first, &keys).await;
    tally(&second, &reversed).await;
    tally(&other_seed, &keys).await;

    let outcomes = |app: &TestApp| -> BTreeMap<String, (String, ChargeStatus, bool)> {
        app.handle
            .ledger()
            .into_iter()
            .map(|c| (c.idempotency_key, (c.id, c.status, c.answered)))
            .collect()
    };
    assert_eq!(outcomes(&first), outcomes(&second));
    assert_ne!(outcomes(&first), outcomes(&other_seed));
}

#[tokio::test]
async fn a_charge_without_an_answer_is_resolved_by_lookup() {
    // Every charge times out; the simulator holds each for 30 s, far longer
    // than this client waits.
    let app = TestApp::start(SimulatorConfig {
        timeout_rate: 1.0,
        decline_rate: 0.5,
        seed: Some(3),
        ..quiet_config()
    })
    .await;
    let keys: Vec<String> = (0..8).map(|n| format!("lost-or-not-{n}")).collect();
    let wait = Duration::from_millis(300);
    let replies =
        futures::future::join_all(keys.iter().map(|key| app.charge_waiting_at_most(key, wait)))
            .await;
    assert!(
        replies.iter().all(Option::is_none),
        "no charge was answered: {replies:?}"
    );

    let mut decided = Vec::new();
    let mut never_reached = Vec::new();
    for key in &keys {
        let lookup = app.lookup(key).await;
        match lookup.status {
            StatusCode::OK => decided.push((key, lookup.body)),
            StatusCode::NOT_FOUND => never_reached.push(key),
            other => panic!("lookup of {key}: {other}"),
        }
    }
    // Which keys fall which way is fixed by the seed.
    assert_eq!((decided.len(), never_reached.len()), (5, 3));

    // A retry of a decided key gets the decision at once, never a second
    // charge; the ledger marks it as one whose request was not answered.
    let (key, charge) = &decided[0];
    let retry = app.charge(key, 1000).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(
        (&retry.body["id"], &retry.body["status"]),
        (&charge["id"], &charge["status"])
    );
    let ledger = app.ledger().await;
    let entry = ledger["charges"]
        .as_array()
        .and_then(|charges| {
            charges
                .iter()
                .find(|c| c["idempotency_key"] == key.as_str())
        })
        .expect("the decided charge in the ledger");
    assert_eq!(entry["answered"], false);
    assert_eq!(app.handle.stats().lost as usize, never_reached.len());
}

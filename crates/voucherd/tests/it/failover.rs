//! Seed 000's data centre goes dark: the PostgreSQL primary dies in the
//! middle of claims and payments, its synchronous standby is promoted, and
//! the nodes, started on both hosts with `target_session_attrs=read-write`,
//! answer 503 with `Retry-After` in the gap and go on with the new primary
//! without a restart. Nothing acknowledged is lost; nothing is oversold;
//! nothing is charged twice.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::crash::assert_acknowledged_are_stored;
use crate::database::ReplicatedPair;
use crate::faults::{assert_unavailable, claim_until};
use crate::kill_loop::{assert_paid_exactly_once, assert_reservations_held, start_buyers};
use crate::payments::{RATE, gateway_flags, gateways, sale, wait_settled};
use crate::server::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_primary_dies_the_standby_takes_over_and_nothing_acknowledged_is_lost() {
    let pair = ReplicatedPair::start();
    let gateways = gateways(61).await;
    let url = pair.url();
    let mut flags = gateway_flags(&gateways, RATE);
    flags.extend(
        [
            "--database-url",
            &url,
            "--database-query-timeout-ms",
            "2000",
        ]
        .map(str::to_owned),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let directory = tempfile::tempdir().unwrap();
    let nodes: Vec<TestServer> = (0..2)
        .map(|_| TestServer::start(directory.path(), &flags))
        .collect();
    let coupon = nodes[0]
        .live_campaign(json!({"name": "Dark data centre", "kind": "coupon", "supply": 30_000}))
        .await;
    let on_sale = sale(&nodes[0], 600).await;

    let (stop, stopping) = watch::channel(false);
    let mut claimers = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        claimers.extend(claim_until(
            node,
            &coupon,
            &format!("dark-{index}"),
            4,
            stopping.clone(),
        ));
    }
    let (told, mut accepted, buyers) = start_buyers(&nodes, &on_sale, "dark-buyer");
    let _ = tokio::time::timeout(
        Duration::from_secs(60),
        accepted.wait_for(|accepted| *accepted >= 100),
    )
    .await;

    pair.kill_primary();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pair.promote_standby();
    // The same processes take writes again, on the new primary.
    for (index, node) in nodes.iter().enumerate() {
        loop {
            let (status, answer) = node
                .post(
                    &format!("/v1/campaigns/{coupon}/claims"),
                    &node.service,
                    json!({"user_id": format!("after-{index}")}),
                )
                .await;
            if status == StatusCode::CREATED || status == StatusCode::OK {
                break;
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "node {index} never recovered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let recovered_after = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send_replace(true);

    let mut answers = Vec::new();
    for claimer in claimers {
        answers.extend(claimer.await.unwrap());
    }
    for buyer in buyers {
        buyer.await.unwrap();
    }
    let mut acknowledged: Vec<Value> = Vec::new();
    let mut unavailable = 0;
    for (user, answer) in &answers {
        match answer.status {
            StatusCode::CREATED => acknowledged.push(answer.body.clone()),
            _ => {
                assert_unavailable(answer, user);
                unavailable += 1;
            }
        }
    }
    assert!(unavailable > 0, "the gap was felt");
    let last = answers.len().saturating_sub(8);
    assert!(
        answers[last..]
            .iter()
            .any(|(_, answer)| answer.status == StatusCode::CREATED),
        "claims go on after the promotion"
    );

    let node = std::sync::Arc::new(nodes[1].handle());
    let stored = assert_acknowledged_are_stored(&node, &coupon, &acknowledged).await;
    let told = std::mem::take(&mut *told.lock().unwrap());
    wait_settled(&node, &on_sale, Duration::from_secs(240)).await;
    assert_reservations_held(&node, &on_sale, &told.reserved).await;
    let (paid, captures) = assert_paid_exactly_once(&node, &on_sale, &told.orders, &gateways).await;
    println!(
        "failover: writes again {recovered_after:?} after the kill; {} claims acknowledged \
         ({stored} stored), {unavailable} answered 503; {} orders accepted, {paid} paid, \
         {captures} captures, none twice",
        acknowledged.len(),
        told.orders.len()
    );
}

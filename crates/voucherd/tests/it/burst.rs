//! 10,000 concurrent claims from 5,000 users on a supply of 1,000, over TCP
//! against the real binary.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::server::TestServer;

const SUPPLY: u64 = 1_000;
const USERS: usize = 5_000;
const CLAIMS: usize = 10_000;
/// Connections open at once: well under the server's in-flight bound, so
/// every answer is a decision rather than a 503.
const CONNECTIONS_MAX: usize = 500;

fn tier_discount(rank: u64) -> u64 {
    match rank {
        1..=100 => 90,
        101..=400 => 70,
        _ => 50,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_issues_exactly_the_supply_first_come_first_served() {
    let directory = tempfile::tempdir().unwrap();
    let server = Arc::new(TestServer::start(directory.path(), &[]));
    let id = server
        .live_campaign(json!({"name": "Burst", "kind": "coupon", "supply": SUPPLY,
            "tiers": [{"until_rank": 100, "discount_percent": 90}, {"until_rank": 400, "discount_percent": 70},
                      {"until_rank": 1000, "discount_percent": 50}]}))
        .await;
    let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let claims: Vec<_> = (0..CLAIMS)
        .map(|index| {
            let (server, id, connections) = (server.clone(), id.clone(), connections.clone());
            let user = format!("burst-user-{}", index % USERS);
            tokio::spawn(async move {
                let _connection = connections.acquire().await.unwrap();
                let answer = server
                    .post(
                        &format!("/v1/campaigns/{id}/claims"),
                        &server.service,
                        json!({"user_id": user}),
                    )
                    .await;
                (user, answer)
            })
        })
        .collect();
    let mut created: HashMap<String, Value> = HashMap::new();
    let mut repeats: Vec<(String, Value)> = Vec::new();
    let mut sold_out = 0;
    for claim in claims {
        let (user, (status, body)) = claim.await.unwrap();
        match status {
            StatusCode::CREATED => {
                assert!(
                    created.insert(user.clone(), body).is_none(),
                    "{user} got two new vouchers"
                );
            }
            StatusCode::OK => repeats.push((user, body)),
            StatusCode::GONE => {
                assert!(
                    body["type"].as_str().unwrap().ends_with("/sold-out"),
                    "{body}"
                );
                sold_out += 1;
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert_eq!(created.len() as u64, SUPPLY, "exactly the supply is issued");
    for (user, repeat) in &repeats {
        assert_eq!(
            Some(repeat),
            created.get(user),
            "a repeat answers the user's own voucher"
        );
    }
    assert_eq!(created.len() + repeats.len() + sold_out, CLAIMS);
    let mut ranks = HashSet::new();
    for voucher in created.values() {
        let rank = voucher["rank"].as_u64().unwrap();
        assert!(ranks.insert(rank), "rank {rank} issued twice");
        assert_eq!(
            voucher["discount_percent"].as_u64().unwrap(),
            tier_discount(rank),
            "{voucher}"
        );
    }
    assert_eq!(ranks, (1..=SUPPLY).collect::<HashSet<_>>());

    let stored = server.export(&id).await;
    assert_eq!(stored.len() as u64, SUPPLY);
    let holders: HashSet<&str> = stored
        .iter()
        .map(|voucher| voucher["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(holders.len() as u64, SUPPLY, "nobody holds two");
    for voucher in &stored {
        let user = voucher["user_id"].as_str().unwrap();
        assert_eq!(
            voucher["code"], created[user]["code"],
            "the stored voucher is the one acknowledged"
        );
        assert_eq!(voucher["rank"], created[user]["rank"]);
    }
    let (_, report) = server
        .get(&format!("/v1/campaigns/{id}/report"), &server.admin)
        .await;
    let by_tier: Vec<u64> = report["by_tier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tier| tier["issued"].as_u64().unwrap())
        .collect();
    assert_eq!(by_tier, [100, 300, 600]);
}

//! Several `voucherd` nodes on one PostgreSQL database: exactly the supply
//! across nodes, nodes following each other, a node killed, and the
//! database restarted under them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::crash::assert_acknowledged_are_stored;
use crate::database::{PrivateCluster, TestDatabase, server_url};
use crate::server::TestServer;

fn start_nodes(directory: &std::path::Path, database_url: &str, count: usize) -> Vec<TestServer> {
    (0..count)
        .map(|_| {
            TestServer::start(
                directory,
                &["--database-url", database_url, "--refresh-period-ms", "200"],
            )
        })
        .collect()
}

/// What a burst across nodes saw: every answer's status, and the bodies
/// of the 201s.
#[derive(Default)]
struct Seen {
    statuses: Vec<StatusCode>,
    acknowledged: Vec<Value>,
    failures: usize,
}

/// Sends `claims` claims for users `index % users`, claim `i` to node
/// `i % nodes`, `connections` at a time.
fn burst(
    nodes: &[TestServer],
    id: &str,
    claims: usize,
    users: usize,
    connections: usize,
) -> (
    Arc<Mutex<Seen>>,
    watch::Receiver<usize>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (counter, count) = watch::channel(0);
    let counter = Arc::new(counter);
    let gate = Arc::new(Semaphore::new(connections));
    let targets: Vec<(reqwest::Client, String, String)> = nodes
        .iter()
        .map(|node| {
            (
                node.client.clone(),
                node.url(&format!("/v1/campaigns/{id}/claims")),
                node.service.clone(),
            )
        })
        .collect();
    let tasks = (0..claims)
        .map(|index| {
            let (client, url, token) = targets[index % targets.len()].clone();
            let (seen, counter, gate) = (seen.clone(), counter.clone(), gate.clone());
            tokio::spawn(async move {
                let _connection = gate.acquire().await.unwrap();
                let user = format!("node-user-{}", index % users);
                let answer = client
                    .post(&url)
                    .bearer_auth(token)
                    .json(&json!({"user_id": user}))
                    .send()
                    .await;
                match answer {
                    Err(_) => seen.lock().unwrap().failures += 1,
                    Ok(response) => {
                        let status = response.status();
                        seen.lock().unwrap().statuses.push(status);
                        if status == StatusCode::CREATED
                            && let Ok(body) = response.json::<Value>().await
                        {
                            let total = {
                                let mut seen = seen.lock().unwrap();
                                seen.acknowledged.push(body);
                                seen.acknowledged.len()
                            };
                            counter.send_replace(total);
                        }
                    }
                }
            })
        })
        .collect();
    (seen, count, tasks)
}

/// Every claim of a burst got an answer, and each one a claim may get:
/// a new voucher, the user's own, or sold out.
fn assert_every_claim_answered(seen: &Seen) {
    assert_eq!(seen.failures, 0);
    for status in &seen.statuses {
        assert!(
            matches!(
                *status,
                StatusCode::CREATED | StatusCode::OK | StatusCode::GONE
            ),
            "unexpected {status}"
        );
    }
}

async fn finish(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        task.await.unwrap();
    }
}

/// Polls `check` on every node until it holds or `patience` runs out.
async fn eventually(
    nodes: &[TestServer],
    patience: Duration,
    check: impl Fn(&Value) -> bool,
    path: &str,
) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for node in nodes {
            let (_, body) = node.get(path, &node.service).await;
            all &= check(&body);
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < patience,
            "the nodes did not converge on {path} within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_issue_exactly_the_supply_and_follow_each_other() {
    let database = TestDatabase::create(&server_url()).await;
    let directory = tempfile::tempdir().unwrap();
    let nodes = start_nodes(directory.path(), &database.url, 3);
    let id = nodes[0]
        .live_campaign(json!({"name": "Across nodes", "kind": "coupon", "supply": 2_000}))
        .await;
    let (seen, _, tasks) = burst(&nodes, &id, 30_000, 15_000, 600);
    finish(tasks).await;
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    assert_every_claim_answered(&seen);
    assert_eq!(
        seen.acknowledged.len(),
        2_000,
        "exactly the supply across three nodes"
    );
    let users: HashSet<&str> = seen
        .acknowledged
        .iter()
        .map(|voucher| voucher["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 2_000, "nobody twice");
    let ranks: HashSet<u64> = seen
        .acknowledged
        .iter()
        .map(|voucher| voucher["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(ranks, (1..=2_000).collect());
    assert_eq!(
        assert_acknowledged_are_stored(&nodes[1], &id, &seen.acknowledged).await,
        2_000
    );

    // Sold out on every node's memory, then paused on one and seen paused
    // on the others.
    let path = format!("/v1/campaigns/{id}");
    eventually(
        &nodes,
        Duration::from_secs(5),
        |campaign| campaign["sold_out"] == true,
        &path,
    )
    .await;
    let other = nodes[2]
        .live_campaign(json!({"name": "Pause me", "kind": "coupon", "supply": 10}))
        .await;
    let (status, _) = nodes[0]
        .post(
            &format!("/v1/campaigns/{other}/pause"),
            &nodes[0].admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let took = eventually(
        &nodes,
        Duration::from_secs(5),
        |campaign| campaign["state"] == "paused",
        &format!("/v1/campaigns/{other}"),
    )
    .await;
    assert!(
        took < Duration::from_secs(2),
        "paused everywhere within about a second: {took:?}"
    );
    for node in &nodes {
        let (status, problem) = node
            .post(
                &format!("/v1/campaigns/{other}/claims"),
                &node.service,
                json!({"user_id": "late"}),
            )
            .await;
        assert_eq!(
            (status, problem["type"].as_str().unwrap().rsplit('/').next()),
            (StatusCode::FORBIDDEN, Some("paused"))
        );
    }
}

/// Codes made on claim, minted by three nodes' batches at once: each
/// batch mints on the room its snapshot saw, and one that another node's
/// batch got ahead of is refused by the count's check and runs again, so
/// exactly the supply is minted, each rank and code once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_mint_exactly_the_supply_of_codes_made_on_claim() {
    const SUPPLY: u64 = 2_000;
    let database = TestDatabase::create(&server_url()).await;
    let directory = tempfile::tempdir().unwrap();
    let nodes = start_nodes(directory.path(), &database.url, 3);
    let id = nodes[0]
        .live_campaign(json!({"name": "Minted across nodes", "kind": "coupon",
                              "supply": SUPPLY, "codes": {"on_claim": true}}))
        .await;
    let (seen, _, tasks) = burst(&nodes, &id, 8_000, 6_000, 600);
    finish(tasks).await;
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    assert_every_claim_answered(&seen);
    assert_eq!(seen.acknowledged.len() as u64, SUPPLY, "exactly the supply");
    let ranks: HashSet<u64> = seen
        .acknowledged
        .iter()
        .map(|voucher| voucher["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(ranks, (1..=SUPPLY).collect(), "each rank once");
    let codes: HashSet<&str> = seen
        .acknowledged
        .iter()
        .map(|voucher| voucher["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len() as u64, SUPPLY, "each code once");
    assert_eq!(
        assert_acknowledged_are_stored(&nodes[1], &id, &seen.acknowledged).await as u64,
        SUPPLY
    );
    let (_, report) = nodes[2]
        .get(&format!("/v1/campaigns/{id}/report"), &nodes[2].admin)
        .await;
    assert_eq!(report["issued"], SUPPLY, "{report}");
    assert_eq!(report["available"], 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_burst_loses_nothing_and_the_others_carry_on() {
    let database = TestDatabase::create(&server_url()).await;
    let directory = tempfile::tempdir().unwrap();
    let mut nodes = start_nodes(directory.path(), &database.url, 3);
    let id = nodes[0]
        .live_campaign(json!({"name": "Kill one", "kind": "coupon", "supply": 50_000}))
        .await;
    let (seen, mut count, tasks) = burst(&nodes, &id, 12_000, 12_000, 300);
    count.wait_for(|count| *count >= 1_500).await.unwrap();
    nodes[1].kill();
    finish(tasks).await;
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    assert!(seen.failures > 0, "the killed node stopped answering");
    assert!(
        seen.acknowledged.len() > 6_000,
        "the other two nodes carried on: {}",
        seen.acknowledged.len()
    );
    let stored = assert_acknowledged_are_stored(&nodes[0], &id, &seen.acknowledged).await;
    assert!(stored >= seen.acknowledged.len());
    let (status, _) = nodes[2]
        .post(
            &format!("/v1/campaigns/{id}/claims"),
            &nodes[2].service,
            json!({"user_id": "after"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_is_answered_503_and_the_nodes_recover_by_themselves() {
    let cluster = PrivateCluster::start();
    let directory = tempfile::tempdir().unwrap();
    let nodes = start_nodes(directory.path(), &cluster.url(), 2);
    let supply = 3_000;
    let id = nodes[0]
        .live_campaign(json!({"name": "Restart", "kind": "coupon", "supply": supply}))
        .await;
    // Fewer claims than the supply, so that what the second burst gets
    // proves the nodes work again.
    let (seen, mut count, tasks) = burst(&nodes, &id, 2_500, 2_500, 100);
    count.wait_for(|count| *count >= 500).await.unwrap();
    cluster.stop_immediately();
    // Claims sent while the database is down are answered, with 503.
    let during: Vec<StatusCode> = futures::future::join_all((0..20).map(|index| {
        let node = &nodes[index % nodes.len()];
        let id = &id;
        async move {
            node.post(
                &format!("/v1/campaigns/{id}/claims"),
                &node.service,
                json!({"user_id": format!("gap-{index}")}),
            )
            .await
            .0
        }
    }))
    .await;
    assert!(
        during.contains(&StatusCode::SERVICE_UNAVAILABLE),
        "{during:?}"
    );
    assert!(
        during
            .iter()
            .all(|status| *status == StatusCode::SERVICE_UNAVAILABLE || status.is_success()),
        "{during:?}"
    );
    for node in &nodes {
        let (ready, _) = node.get("/readyz", "").await;
        assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);
    }
    cluster.restart();
    finish(tasks).await;
    // The same processes answer again without being restarted.
    let started = Instant::now();
    for (index, node) in nodes.iter().enumerate() {
        while node.get("/readyz", "").await.0 != StatusCode::OK {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "node {index} did not recover"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Enough claims to sell out what is left, through both nodes.
    let (after, _, tasks) = burst(&nodes, &id, 8_000, 8_000, 100);
    finish(tasks).await;
    let mut acknowledged = Arc::try_unwrap(seen)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap()
        .acknowledged;
    let after = Arc::try_unwrap(after).ok().unwrap().into_inner().unwrap();
    assert!(after.statuses.iter().all(|status| matches!(
        *status,
        StatusCode::CREATED | StatusCode::OK | StatusCode::GONE
    )));
    assert!(
        !after.acknowledged.is_empty(),
        "claims succeed again after the restart"
    );
    acknowledged.extend(after.acknowledged);
    let stored = assert_acknowledged_are_stored(&nodes[0], &id, &acknowledged).await;
    assert_eq!(
        stored, supply as usize,
        "sold out exactly: nothing lost, nothing oversold"
    );
}

/// Behind a load balancer a user's next request lands on any node: a
/// campaign created on one node, claimed on a second, is redeemed on a
/// third and listed on a fourth at once, though neither has refreshed
/// (a refresh period of a minute keeps them from learning it that way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_is_answered_right_on_every_other_at_once() {
    let database = TestDatabase::create(&server_url()).await;
    let directory = tempfile::tempdir().unwrap();
    let nodes: Vec<TestServer> = (0..4)
        .map(|_| {
            TestServer::start(
                directory.path(),
                &[
                    "--database-url",
                    &database.url,
                    "--refresh-period-ms",
                    "60000",
                ],
            )
        })
        .collect();
    let id = nodes[0]
        .live_campaign(json!({"name": "Any node", "kind": "coupon", "supply": 5}))
        .await;
    let (status, claimed) = nodes[1]
        .post(
            &format!("/v1/campaigns/{id}/claims"),
            &nodes[1].service,
            json!({"user_id": "roaming"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{claimed}");
    let code = claimed["code"].as_str().unwrap();
    let (status, redeemed) = nodes[2]
        .post(
            &format!("/v1/vouchers/{code}/redeem"),
            &nodes[2].service,
            json!({"user_id": "roaming"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a committed redeem answered {status}: {redeemed}"
    );
    assert_eq!(redeemed["state"], "redeemed", "{redeemed}");
    let (status, listed) = nodes[3]
        .get("/v1/users/roaming/vouchers", &nodes[3].service)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let vouchers = listed["vouchers"].as_array().unwrap();
    assert_eq!(vouchers.len(), 1, "{listed}");
    assert_eq!(vouchers[0]["code"], code);
    assert_eq!(vouchers[0]["state"], "redeemed");
}

/// Three nodes on one PostgreSQL, none refreshing from the store during the
/// test: every answer after a write on another node is right the first
/// time, and a first-login campaign published on one node grants exactly
/// its supply to logins spread over all three, each grant seen on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_answer_as_one_from_the_first_request() {
    let database = TestDatabase::create(&server_url()).await;
    let directory = tempfile::tempdir().unwrap();
    let nodes: Vec<TestServer> = (0..3)
        .map(|_| {
            TestServer::start(
                directory.path(),
                &[
                    "--database-url",
                    &database.url,
                    "--refresh-period-ms",
                    "600000",
                ],
            )
        })
        .collect();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    let id = a
        .live_campaign(
            json!({"name": "One of three", "kind": "coupon", "supply": 5,
            "lock_ttl_seconds": 60}),
        )
        .await;
    let (status, seen) = c.get(&format!("/v1/campaigns/{id}"), &c.admin).await;
    assert_eq!(
        (status, seen["state"].as_str()),
        (StatusCode::OK, Some("live")),
        "{seen}"
    );
    let (status, listed) = b.get("/v1/campaigns", &b.admin).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        listed["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|campaign| campaign["id"] == id),
        "the list on another node has it: {listed}"
    );
    let (status, claimed) = b
        .post(
            &format!("/v1/campaigns/{id}/claims"),
            &b.service,
            json!({"user_id": "trio"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{claimed}");
    let code = claimed["code"].as_str().unwrap().to_owned();
    let act = |node: &TestServer, action: &str| {
        let (node, path) = (node.handle(), format!("/v1/vouchers/{code}/{action}"));
        async move {
            node.post(&path, &node.service, json!({"user_id": "trio"}))
                .await
        }
    };
    let (status, locked) = act(c, "lock").await;
    assert_eq!(
        (status, locked["state"].as_str()),
        (StatusCode::OK, Some("locked")),
        "{locked}"
    );
    let (status, unlocked) = act(a, "unlock").await;
    assert_eq!(
        (status, unlocked["state"].as_str()),
        (StatusCode::OK, Some("issued")),
        "{unlocked}"
    );
    let (status, redeemed) = act(b, "redeem").await;
    assert_eq!(
        (status, redeemed["state"].as_str()),
        (StatusCode::OK, Some("redeemed")),
        "{redeemed}"
    );
    for node in &nodes {
        let (status, held) = node.get("/v1/users/trio/vouchers", &node.service).await;
        assert_eq!(status, StatusCode::OK, "{held}");
        let vouchers = held["vouchers"].as_array().unwrap();
        assert_eq!(vouchers.len(), 1, "{held}");
        assert_eq!(vouchers[0]["state"], "redeemed", "{held}");
    }

    // First login, fired at right after publishing, from all three nodes.
    const SUPPLY: usize = 20;
    const USERS: usize = 90;
    let welcome = c
        .live_campaign(
            json!({"name": "First 20 to log in", "kind": "coupon", "supply": SUPPLY,
            "trigger": "first_login"}),
        )
        .await;
    let logins: Vec<_> = (0..USERS * 2)
        .map(|login| {
            // Each user logs in twice, on two different nodes.
            let node = nodes[login % 3].handle();
            let user = format!("newcomer-{}", login % USERS);
            tokio::spawn(async move {
                let (status, answer) = node
                    .post("/v1/events/login", &node.service, json!({"user_id": user}))
                    .await;
                assert_eq!(status, StatusCode::OK, "{answer}");
                (user, answer)
            })
        })
        .collect();
    let mut granted: HashMap<String, Vec<String>> = HashMap::new();
    for login in logins {
        let (user, answer) = login.await.unwrap();
        for voucher in answer["granted"].as_array().unwrap() {
            assert_eq!(voucher["campaign_id"], welcome);
            granted
                .entry(user.clone())
                .or_default()
                .push(voucher["code"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        granted.len(),
        SUPPLY,
        "exactly the supply granted: {granted:?}"
    );
    assert!(
        granted.values().all(|codes| codes.len() == 1),
        "nobody granted twice: {granted:?}"
    );
    for node in &nodes {
        for (user, codes) in &granted {
            let (status, held) = node
                .get(&format!("/v1/users/{user}/vouchers"), &node.service)
                .await;
            assert_eq!(status, StatusCode::OK, "{held}");
            let held: Vec<&str> = held["vouchers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|voucher| voucher["campaign_id"] == welcome)
                .filter_map(|voucher| voucher["code"].as_str())
                .collect();
            assert_eq!(held, [codes[0].as_str()], "{user} on {}", node.base);
        }
    }
}

//! SIGKILL in the middle of a claim burst loses nothing acknowledged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::server::TestServer;

/// Claims the burst runs, acknowledged ones, and how many to see before the
/// kill: the kill lands while claims are still arriving.
pub struct Burst {
    pub acknowledged: Arc<Mutex<Vec<Value>>>,
    pub count: watch::Receiver<usize>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Sends `claims` claims from distinct users, `connections` at a time,
/// keeping every 201 body. Errors (the server is gone) are not answers.
pub fn start_burst(server: &TestServer, id: &str, claims: usize, connections: usize) -> Burst {
    start_burst_of(server, id, "crash-user", claims, connections)
}

/// [`start_burst`] with users named `{prefix}-{index}`.
pub fn start_burst_of(
    server: &TestServer,
    id: &str,
    prefix: &str,
    claims: usize,
    connections: usize,
) -> Burst {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let (counter, count) = watch::channel(0);
    let counter = Arc::new(counter);
    let gate = Arc::new(Semaphore::new(connections));
    let url = server.url(&format!("/v1/campaigns/{id}/claims"));
    let tasks = (0..claims)
        .map(|index| {
            let (client, url, token) = (server.client.clone(), url.clone(), server.service.clone());
            let (acknowledged, counter, gate) =
                (acknowledged.clone(), counter.clone(), gate.clone());
            let user = format!("{prefix}-{index}");
            tokio::spawn(async move {
                let _connection = gate.acquire().await.unwrap();
                let sent = client
                    .post(&url)
                    .bearer_auth(token)
                    .json(&json!({"user_id": user}))
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status() != StatusCode::CREATED {
                    return;
                }
                let Ok(body) = response.json::<Value>().await else {
                    return;
                };
                let total = {
                    let mut acknowledged = acknowledged.lock().unwrap();
                    acknowledged.push(body);
                    acknowledged.len()
                };
                counter.send_replace(total);
            })
        })
        .collect();
    Burst {
        acknowledged,
        count,
        tasks,
    }
}

/// Every acknowledged voucher is stored as acknowledged; ranks are 1..=n.
pub async fn assert_acknowledged_are_stored(
    server: &TestServer,
    id: &str,
    acknowledged: &[Value],
) -> usize {
    let stored = server.export(id).await;
    let claimed: Vec<&Value> = stored
        .iter()
        .filter(|voucher| voucher["user_id"].is_string())
        .collect();
    let by_user: HashMap<&str, &Value> = claimed
        .iter()
        .map(|voucher| (voucher["user_id"].as_str().unwrap(), *voucher))
        .collect();
    assert_eq!(by_user.len(), claimed.len(), "nobody holds two");
    for voucher in acknowledged {
        let user = voucher["user_id"].as_str().unwrap();
        let stored = by_user
            .get(user)
            .unwrap_or_else(|| panic!("acknowledged {user} was lost"));
        assert_eq!(stored["code"], voucher["code"], "{user}'s code");
        assert_eq!(stored["rank"], voucher["rank"], "{user}'s rank");
    }
    let ranks: HashSet<u64> = claimed
        .iter()
        .map(|voucher| voucher["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ranks,
        (1..=claimed.len() as u64).collect(),
        "ranks are 1..=n, each once"
    );
    claimed.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_burst_loses_no_acknowledged_claim() {
    let directory = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(directory.path(), &[]);
    let id = server
        .live_campaign(json!({"name": "Crash", "kind": "coupon", "supply": 50_000}))
        .await;
    let mut burst = start_burst(&server, &id, 20_000, 200);
    burst.count.wait_for(|count| *count >= 2_000).await.unwrap();
    server.kill();
    for task in burst.tasks {
        task.await.unwrap();
    }
    let acknowledged = burst.acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() < 20_000, "the kill landed mid-burst");

    let restarted = TestServer::start(directory.path(), &[]);
    let stored = assert_acknowledged_are_stored(&restarted, &id, &acknowledged).await;
    assert!(stored >= acknowledged.len());
    let (status, resumed) = restarted
        .post(
            &format!("/v1/campaigns/{id}/claims"),
            &restarted.service,
            json!({"user_id": "after-the-crash"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{resumed}");
    assert_eq!(
        resumed["rank"].as_u64(),
        Some(stored as u64 + 1),
        "claiming resumes at the next rank"
    );
}

//! SIGTERM finishes what is in flight and exits cleanly; the demo serves.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::crash::{assert_acknowledged_are_stored, start_burst};
use crate::server::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_burst_finishes_in_flight_claims_and_exits_cleanly() {
    let directory = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(directory.path(), &[]);
    let id = server
        .live_campaign(json!({"name": "Shutdown", "kind": "coupon", "supply": 50_000}))
        .await;
    let mut burst = start_burst(&server, &id, 10_000, 100);
    burst.count.wait_for(|count| *count >= 1_000).await.unwrap();
    let signalled = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let status = server.wait();
    assert!(
        status.success(),
        "a graceful shutdown exits 0, not {status}"
    );
    for task in burst.tasks {
        task.await.unwrap();
    }
    let acknowledged = burst.acknowledged.lock().unwrap().clone();
    let restarted = TestServer::start(directory.path(), &[]);
    assert_acknowledged_are_stored(&restarted, &id, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_start_serves_a_claimable_demo() {
    let directory = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_voucherd"));
    command
        .env("VOUCHERD_LISTEN", "127.0.0.1:0")
        .env("VOUCHERD_DATA_DIR", directory.path());
    let server = TestServer::spawn(command);
    let (status, live) = server.get("/v1/campaigns/live", &server.service).await;
    assert_eq!(status, StatusCode::OK);
    let id = live["campaigns"][0]["id"]
        .as_str()
        .expect("a live demo campaign")
        .to_owned();
    let (status, voucher) = server
        .post(
            &format!("/v1/campaigns/{id}/claims"),
            &server.service,
            json!({"user_id": "alice"}),
        )
        .await;
    assert_eq!(
        (status, voucher["rank"].as_u64()),
        (StatusCode::CREATED, Some(1))
    );
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_bound_are_answered_503_and_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let directory = tempfile::tempdir().unwrap();
    let server = TestServer::start(directory.path(), &["--connections-max", "4"]);
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    // The bound is counted as connections are accepted: a fifth gets the
    // refusal without sending anything.
    let mut extra = tokio::net::TcpStream::connect(&address).await.unwrap();
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .ok();
    let mut answer = String::new();
    extra.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("retry-after: 1") && answer.contains("/problems/overloaded"),
        "{answer}"
    );
    // Closing one makes room again.
    drop(held.pop());
    let mut answered = None;
    for _ in 0..100 {
        let response = reqwest::get(server.url("/healthz")).await;
        if let Ok(response) = response
            && response.status() == StatusCode::OK
        {
            answered = Some(response.status());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(answered, Some(StatusCode::OK));
}

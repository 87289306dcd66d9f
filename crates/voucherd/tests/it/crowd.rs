//! A crowd of new connections, each one user with one request, far past
//! the node's connection and in-flight bounds; and slow clients holding
//! every place. Every request that reaches the node gets an HTTP answer,
//! and what the answers said is what the store holds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

use crate::server::TestServer;

const SUPPLY: u64 = 150;
const CROWD: usize = 1_500;
/// The node's bounds in this test, far below the crowd.
const CONNECTIONS_MAX: &str = "48";
const REQUESTS_IN_FLIGHT_MAX: &str = "16";
/// The node's peak resident memory must stay under this.
const RSS_MAX_KIB: u64 = 300 * 1024;

/// One HTTP/1.1 exchange on a connection of its own: the status, the
/// `Retry-After` header and the body; `Err` when no answer came.
async fn exchange_once(
    address: &str,
    request: &str,
) -> Result<(u16, Option<String>, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| format!("write: {error}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|error| format!("read: {error} after {} bytes", answer.len()))?;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no answer: {answer:?}"))?;
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("no status line: {head:?}"))?;
        let retry_after = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().to_owned())
        });
        Ok((status, retry_after, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 60 s".to_owned()))
}

fn request(method: &str, path: &str, token: &str, body: Option<&Value>) -> String {
    let body = body.map(Value::to_string).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nhost: voucherd\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The node's peak resident memory, from the kernel.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the node's status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in the node's status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_new_connections_past_every_bound_is_answered_every_time() {
    let directory = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        directory.path(),
        &[
            "--connections-max",
            CONNECTIONS_MAX,
            "--requests-in-flight-max",
            REQUESTS_IN_FLIGHT_MAX,
        ],
    );
    let id = server
        .live_campaign(json!({"name": "Crowd", "kind": "sale", "supply": SUPPLY,
            "price": {"amount": 150_000, "currency": "THB"},
            "tiers": [{"until_rank": 15, "discount_percent": 90}, {"until_rank": 150, "discount_percent": 50}]}))
        .await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let start = Arc::new(Barrier::new(CROWD));
    let crowd: Vec<_> = (0..CROWD)
        .map(|index| {
            let (address, start) = (address.clone(), start.clone());
            let (path, method, body) = match index % 3 {
                0 => (format!("/v1/campaigns/{id}"), "GET", None),
                1 => (
                    format!("/v1/campaigns/{id}/claims"),
                    "POST",
                    Some(json!({"user_id": format!("crowd-{index}")})),
                ),
                _ => ("/healthz".to_owned(), "GET", None),
            };
            let request = request(method, &path, &server.service, body.as_ref());
            tokio::spawn(async move {
                start.wait().await;
                (index, exchange_once(&address, &request).await)
            })
        })
        .collect();
    let mut unanswered = Vec::new();
    let mut reserved_users = HashSet::new();
    let mut ranks = HashSet::new();
    let mut refused = 0;
    for answer in crowd {
        let (index, answered) = answer.await.unwrap();
        let (status, retry_after, body) = match answered {
            Ok(answer) => answer,
            Err(failure) => {
                unanswered.push(failure);
                continue;
            }
        };
        match (status, index % 3) {
            (503 | 429, _) => {
                assert!(
                    retry_after.is_some(),
                    "a {status} without Retry-After: {body}"
                );
                refused += 1;
            }
            (200, 0 | 2) | (410, 1) => {}
            (201, 1) => {
                let voucher: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(voucher["state"], "reserved", "{voucher}");
                assert!(
                    ranks.insert(voucher["rank"].as_u64().unwrap()),
                    "a rank twice: {voucher}"
                );
                reserved_users.insert(voucher["user_id"].as_str().unwrap().to_owned());
            }
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    assert!(
        unanswered.is_empty(),
        "{} of {CROWD} connections got no HTTP answer, e.g. {:?}",
        unanswered.len(),
        &unanswered[..unanswered.len().min(5)]
    );
    // The crowd really was past the bounds, and the node said so.
    assert!(
        refused > 0,
        "no request was refused: the crowd did not reach a bound"
    );
    // What the node acknowledged is what it holds: every 201 a reservation
    // of that user, no other.
    let held: HashSet<String> = server
        .export(&id)
        .await
        .iter()
        .filter(|voucher| voucher["state"] == "reserved")
        .map(|voucher| voucher["user_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(held, reserved_users);
    assert!(reserved_users.len() as u64 <= SUPPLY);
    let peak = peak_rss_kib(server.pid());
    assert!(peak < RSS_MAX_KIB, "peak RSS {peak} KiB");
}

/// A client that sends its request's head a byte at a time.
async fn trickle(address: String) {
    let Ok(mut stream) = TcpStream::connect(&address).await else {
        return;
    };
    let head = b"GET /healthz HTTP/1.1\r\nhost: voucherd\r\nx-slow: ";
    if stream.write_all(head).await.is_err() {
        return;
    }
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if stream.write_all(b"z").await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_past_the_connection_bound_do_not_keep_others_out() {
    let directory = tempfile::tempdir().unwrap();
    let server = TestServer::start(directory.path(), &["--connections-max", "24"]);
    let id = server
        .live_campaign(json!({"name": "Behind the slow", "kind": "coupon", "supply": 10}))
        .await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let slow: Vec<_> = (0..40)
        .map(|_| tokio::spawn(trickle(address.clone())))
        .collect();
    let claim = request(
        "POST",
        &format!("/v1/campaigns/{id}/claims"),
        &server.service,
        Some(&json!({"user_id": "behind-the-slow"})),
    );
    let health = request("GET", "/healthz", &server.service, None);
    for (what, request, wanted) in [("healthz", &health, 200), ("claim", &claim, 201)] {
        let mut statuses = Vec::new();
        // A client honouring Retry-After, as the refusals ask.
        for _ in 0..20 {
            let (status, retry_after, body) = exchange_once(&address, request)
                .await
                .unwrap_or_else(|failure| panic!("{what}: no answer: {failure}"));
            statuses.push(status);
            if status == wanted {
                break;
            }
            assert_eq!(status, 503, "{what}: {body}");
            let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
            tokio::time::sleep(Duration::from_secs(seconds)).await;
        }
        assert_eq!(statuses.last(), Some(&wanted), "{what}: {statuses:?}");
    }
    for client in slow {
        client.abort();
    }
}

/// Reads one answer off a kept-alive connection: its status line and
/// headers, and its body by `content-length`.
async fn read_answer(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (String, String) {
    let read = async {
        loop {
            if let Some(end) = pending.windows(4).position(|window| window == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if pending.len() >= end + 4 + length {
                    let body =
                        String::from_utf8_lossy(&pending[end + 4..end + 4 + length]).into_owned();
                    pending.drain(..end + 4 + length);
                    return (head, body);
                }
            }
            let mut buffer = [0_u8; 4096];
            let read = stream.read(&mut buffer).await.expect("reading an answer");
            assert!(read > 0, "the node closed the connection: {pending:?}");
            pending.extend_from_slice(&buffer[..read]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s")
}

/// A sold-out claim is answered before the router when its body came with
/// its head, and by the router otherwise (`voucherd_http::front`): over a
/// real connection kept alive, every way its bytes may arrive gets the
/// same answer, and the connection serves the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_claim_is_answered_alike_however_its_bytes_arrive() {
    let directory = tempfile::tempdir().unwrap();
    let server = TestServer::start(directory.path(), &[]);
    let gone = server
        .live_campaign(json!({"name": "Gone", "kind": "coupon", "supply": 1}))
        .await;
    let (status, _) = server
        .post(
            &format!("/v1/campaigns/{gone}/claims"),
            &server.service,
            json!({"user_id": "first"}),
        )
        .await;
    assert_eq!(status.as_u16(), 201);
    let open = server
        .live_campaign(json!({"name": "Open", "kind": "coupon", "supply": 10}))
        .await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut pending = Vec::new();
    let claim = |id: &str, user: &str, request_id: &str, extra: &str| {
        let body = format!("{{\"user_id\":\"{user}\"}}");
        let head = format!(
            "POST /v1/campaigns/{id}/claims HTTP/1.1\r\nhost: voucherd\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}\r\n{extra}\r\n",
            server.service,
            body.len()
        );
        (head, body)
    };
    let sold_out = |request_id: &str| {
        format!(
            "{{\"type\":\"https://voucherd.dev/problems/sold-out\",\"title\":\"Sold out\",\"status\":410,\"detail\":\"every voucher has been claimed\",\"request_id\":\"{request_id}\"}}"
        )
    };
    let pause = || tokio::time::sleep(Duration::from_millis(50));
    let check = |(head, body): (String, String), request_id: &str| {
        assert!(head.starts_with("HTTP/1.1 410 "), "{head}\n{body}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("content-type: application/problem+json"),
            "{head}"
        );
        assert!(
            head.contains(&format!("x-request-id: {request_id}")),
            "{head}"
        );
        assert_eq!(body, sold_out(request_id));
    };

    // All at once: the front's.
    let (head, body) = claim(&gone, "a", "whole", "");
    stream
        .write_all(format!("{head}{body}").as_bytes())
        .await
        .unwrap();
    check(read_answer(&mut stream, &mut pending).await, "whole");
    // The head, then the body a moment later: the router's, when the node
    // looked at the request before the body came (the answer must be the
    // same either way).
    let (head, body) = claim(&gone, "b", "late-body", "");
    stream.write_all(head.as_bytes()).await.unwrap();
    pause().await;
    stream.write_all(body.as_bytes()).await.unwrap();
    check(read_answer(&mut stream, &mut pending).await, "late-body");
    // The head with part of the body, then the rest: the router's, with
    // the part the front read given back.
    let (head, body) = claim(&gone, "c", "split-body", "");
    let (first, rest) = body.split_at(5);
    stream
        .write_all(format!("{head}{first}").as_bytes())
        .await
        .unwrap();
    pause().await;
    stream.write_all(rest.as_bytes()).await.unwrap();
    check(read_answer(&mut stream, &mut pending).await, "split-body");
    // A client that waits to be told to send its body.
    let (head, body) = claim(&gone, "d", "continue", "expect: 100-continue\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0_u8; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).await.unwrap();
    check(read_answer(&mut stream, &mut pending).await, "continue");
    // Two requests in one write, answered in order.
    let (head_e, body_e) = claim(&gone, "e", "first-of-two", "");
    let (head_f, body_f) = claim(&gone, "f", "second-of-two", "");
    stream
        .write_all(format!("{head_e}{body_e}{head_f}{body_f}").as_bytes())
        .await
        .unwrap();
    check(read_answer(&mut stream, &mut pending).await, "first-of-two");
    check(
        read_answer(&mut stream, &mut pending).await,
        "second-of-two",
    );
    // And the connection goes on to claim where there is supply.
    let (head, body) = claim(&open, "g", "claimed", "");
    stream
        .write_all(format!("{head}{body}").as_bytes())
        .await
        .unwrap();
    let (head, body) = read_answer(&mut stream, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 201 "), "{head}\n{body}");
    let voucher: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(voucher["user_id"], "g");
    assert!(pending.is_empty(), "nothing more was answered: {pending:?}");

    let report = server
        .get(&format!("/v1/campaigns/{gone}/report"), &server.admin)
        .await
        .1;
    assert_eq!(report["issued_total"], 1, "{report}");
}

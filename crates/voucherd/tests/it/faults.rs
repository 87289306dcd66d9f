//! Faults below the node: the disk under SQLite fills up, the network to
//! PostgreSQL stalls mid-batch. The node answers 503 with `Retry-After`,
//! acknowledges nothing it did not commit, and recovers by itself once the
//! fault is gone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::crash::assert_acknowledged_are_stored;
use crate::server::TestServer;

/// A tmpfs of a few MiB mounted for the test: a real file system that
/// really fills up. Mounting needs root, as CI runs; anywhere else the test
/// fails and says why rather than pass without having run.
struct SmallDisk {
    mount: PathBuf,
    _directory: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size_mib: u32) -> SmallDisk {
        let directory = tempfile::tempdir().unwrap();
        let mount = directory.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&mount)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a {size_mib} MiB tmpfs failed ({status}): this test needs root (CI runs as root)"
        );
        SmallDisk {
            mount,
            _directory: directory,
        }
    }

    fn path(&self) -> &Path {
        &self.mount
    }

    /// Writes a file until the file system refuses: the disk is full.
    fn fill(&self) -> PathBuf {
        let ballast = self.mount.join("ballast");
        let mut file = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0_u8; 64 * 1024];
        let mut written = 0_u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(count) => written += count as u64,
                Err(error) => {
                    assert_eq!(error.raw_os_error(), Some(28), "ENOSPC, got {error}");
                    break;
                }
            }
        }
        assert!(written > 0, "the disk had room to fill");
        // The last partial pages too.
        let mut byte = [0_u8; 1];
        while file.write(&byte).is_ok_and(|count| count == 1) {
            byte[0] = byte[0].wrapping_add(1);
        }
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// What the node answered one request, with its `Retry-After`.
pub struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<String>,
    pub body: Value,
}

pub async fn send(server: &TestServer, path: &str, token: &str, body: Value) -> Answer {
    let response = server
        .client
        .post(server.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("an HTTP answer, not a closed connection");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
    }
}

/// A refusal for a fault below the node: 503, with when to come back.
pub fn assert_unavailable(answer: &Answer, what: &str) {
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        answer.body
    );
    assert!(
        answer.retry_after.is_some(),
        "{what}: 503 without Retry-After"
    );
    assert_eq!(answer.body["status"], 503, "{what}: a problem document");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_is_answered_503_and_the_node_recovers_when_space_returns() {
    let disk = SmallDisk::mount(24);
    let mut server = TestServer::start(disk.path(), &[]);
    let holding = server
        .live_campaign(json!({"name": "Before the disk filled", "kind": "coupon", "supply": 2_000}))
        .await;
    let claims = format!("/v1/campaigns/{holding}/claims");
    let mut acknowledged = Vec::new();
    for user in 0..20 {
        let answer = send(
            &server,
            &claims,
            &server.service,
            json!({"user_id": format!("early-{user}")}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        acknowledged.push(answer.body);
    }

    let (status, created) = server
        .post(
            "/v1/campaigns",
            &server.admin,
            json!({"name": "Too big for the disk", "kind": "coupon", "supply": 20_000}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let big = created["id"].as_str().unwrap().to_owned();

    let ballast = disk.fill();
    // A new campaign is one row: refused, or made; never made and refused.
    let made = send(
        &server,
        "/v1/campaigns",
        &server.admin,
        json!({"name": "Made on a full disk", "kind": "coupon", "supply": 1}),
    )
    .await;
    let (_, listed) = server.get("/v1/campaigns", &server.admin).await;
    let names: Vec<&str> = listed["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|campaign| campaign["name"].as_str())
        .collect();
    match made.status {
        StatusCode::CREATED => assert!(names.contains(&"Made on a full disk")),
        _ => {
            assert_unavailable(&made, "creating a campaign on a full disk");
            assert!(!names.contains(&"Made on a full disk"), "refused, yet made");
        }
    }
    // Publishing must write 20,000 rows: there is no room.
    let publish = format!("/v1/campaigns/{big}/publish");
    let refused = send(&server, &publish, &server.admin, json!({})).await;
    assert_unavailable(&refused, "publishing onto a full disk");
    let (_, campaign) = server
        .get(&format!("/v1/campaigns/{big}"), &server.admin)
        .await;
    assert_eq!(
        campaign["state"], "draft",
        "a refused publish changed nothing"
    );

    // Claims go on where the disk lets them and are refused where it does
    // not; every one answered, none 500, every 201 stored.
    let mut unavailable = 0;
    for user in 0..300 {
        let answer = send(
            &server,
            &claims,
            &server.service,
            json!({"user_id": format!("full-{user}")}),
        )
        .await;
        match answer.status {
            StatusCode::CREATED => acknowledged.push(answer.body),
            _ => {
                assert_unavailable(&answer, "a claim on a full disk");
                unavailable += 1;
            }
        }
    }
    println!("on the full disk: {unavailable} of 300 claims answered 503");
    let (status, report) = server
        .get(&format!("/v1/campaigns/{holding}/report"), &server.admin)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "reads go on while the disk is full: {report}"
    );

    // Space returns: the same node, without a restart, publishes and claims.
    std::fs::remove_file(ballast).unwrap();
    let published = send(&server, &publish, &server.admin, json!({})).await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.body);
    let later = send(
        &server,
        &format!("/v1/campaigns/{big}/claims"),
        &server.service,
        json!({"user_id": "after-space"}),
    )
    .await;
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.body);
    for user in 0..20 {
        let answer = send(
            &server,
            &claims,
            &server.service,
            json!({"user_id": format!("late-{user}")}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        acknowledged.push(answer.body);
    }

    // And a restart finds every acknowledged claim, ranks 1..=n once each.
    server.kill();
    let server = TestServer::start(disk.path(), &[]);
    let stored = assert_acknowledged_are_stored(&server, &holding, &acknowledged).await;
    assert_eq!(
        stored,
        acknowledged.len(),
        "nothing stored that was not acknowledged"
    );
}

/// A TCP proxy between the node and PostgreSQL that can stop passing
/// bytes in both directions while keeping every connection open: the
/// network stalls mid-batch, and nothing tells the node.
struct StallProxy {
    address: std::net::SocketAddr,
    stalled: tokio::sync::watch::Sender<bool>,
    accepting: tokio::task::JoinHandle<()>,
}

impl StallProxy {
    async fn start(upstream: String) -> StallProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stalled, watching) = tokio::sync::watch::channel(false);
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, watching.clone()));
                tokio::spawn(pump(server_read, client_write, watching.clone()));
            }
        });
        StallProxy {
            address,
            stalled,
            accepting,
        }
    }

    fn stall(&self, stalled: bool) {
        self.stalled.send_replace(stalled);
    }

    /// `url` with its host and port replaced by the proxy's.
    fn proxied(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority.rsplit_once('@').map_or("", |(user, _)| user);
        let at = if user.is_empty() { "" } else { "@" };
        format!("{scheme}://{user}{at}{}/{path}", self.address)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// The host and port of a `postgres://` URL.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL").1;
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        if stalled.wait_for(|stalled| !*stalled).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        // Bytes read just before a stall wait for its end too.
        if stalled.wait_for(|stalled| !*stalled).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// How long a claiming worker waits between its claims: 16 workers make at
/// most 1,600 claims a second.
const CLAIM_PACE: std::time::Duration = std::time::Duration::from_millis(10);

/// Claims from distinct users, `workers` at a time, until told to stop;
/// every answer kept with the user it was for. Each worker waits
/// `CLAIM_PACE` after an answer, so a run of seconds stays well inside the
/// campaign's supply however fast the node is: a sold-out campaign would
/// answer 410 and hide the fault the test is about.
pub fn claim_until(
    server: &TestServer,
    id: &str,
    prefix: &str,
    workers: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Vec<(String, Answer)>>> {
    (0..workers)
        .map(|worker| {
            let server = server.handle();
            let path = format!("/v1/campaigns/{id}/claims");
            let stop = stop.clone();
            let prefix = prefix.to_owned();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for index in 0..100_000 {
                    if *stop.borrow() {
                        break;
                    }
                    let user = format!("{prefix}-{worker}-{index}");
                    let answer =
                        send(&server, &path, &server.service, json!({"user_id": user})).await;
                    answers.push((user, answer));
                    tokio::time::sleep(CLAIM_PACE).await;
                }
                answers
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_database_is_answered_503_and_the_node_recovers_without_a_restart() {
    use crate::database::{TestDatabase, server_url};
    let database = TestDatabase::create(&server_url()).await;
    let proxy = StallProxy::start(authority(&database.url)).await;
    let directory = tempfile::tempdir().unwrap();
    let url = proxy.proxied(&database.url);
    let server = TestServer::start(
        directory.path(),
        &[
            "--database-url",
            &url,
            "--database-query-timeout-ms",
            "1000",
        ],
    );
    let id = server
        .live_campaign(json!({"name": "Stall", "kind": "coupon", "supply": 20_000}))
        .await;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let workers = claim_until(&server, &id, "stall", 16, stopping);

    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    proxy.stall(true);
    // Longer than the node gives a stalled database (5 s for a pooled
    // connection plus twice the statement timeout).
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    let (status, _) = server.get("/healthz", &server.admin).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the node itself answers during the stall"
    );
    proxy.stall(false);
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    stop.send_replace(true);

    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }
    let unavailable = answers
        .iter()
        .filter(|(_, answer)| answer.status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    for (user, answer) in &answers {
        match answer.status {
            StatusCode::CREATED => {}
            _ => assert_unavailable(answer, user),
        }
    }
    assert!(
        unavailable > 0,
        "the stall was felt: {} answers, none 503",
        answers.len()
    );
    // Recovered without a restart: the last answers are claims again.
    let recovered = answers
        .iter()
        .rev()
        .take(16)
        .filter(|(_, answer)| answer.status == StatusCode::CREATED)
        .count();
    assert!(recovered > 0, "claims succeed again after the stall");

    // A 503 said "not now", not "no": the user asks again and gets the
    // voucher the stalled claim may have made, or a new one, never two.
    let mut acknowledged: Vec<Value> = Vec::new();
    for (user, answer) in answers {
        if answer.status == StatusCode::CREATED {
            acknowledged.push(answer.body);
            continue;
        }
        let again = send(
            &server,
            &format!("/v1/campaigns/{id}/claims"),
            &server.service,
            json!({"user_id": user}),
        )
        .await;
        assert!(
            again.status == StatusCode::CREATED || again.status == StatusCode::OK,
            "{user} asked again: {} {}",
            again.status,
            again.body
        );
        acknowledged.push(again.body);
    }
    let stored = assert_acknowledged_are_stored(&server, &id, &acknowledged).await;
    assert_eq!(
        stored,
        acknowledged.len(),
        "every voucher made is one a user was told of"
    );
    println!(
        "stall: {} claims, {unavailable} answered 503, all retried; {stored} vouchers",
        acknowledged.len()
    );
}

//! Starting the real binary on a port of its choosing, reading what it
//! prints, and killing it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

/// How long a starting server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct TestServer {
    child: Option<Child>,
    pub base: String,
    pub admin: String,
    pub service: String,
    pub client: reqwest::Client,
}

/// The name of the tenant the tests make on a shared database.
const TEST_TENANT: &str = "it";

/// Runs a `voucherd` command against the store `store_args` name; answers
/// what it printed.
fn voucherd(args: &[&str], store_args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_voucherd"))
        .args(args)
        .args(store_args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running voucherd");
    assert!(output.status.success(), "voucherd {args:?}: {output:?}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// The admin and service tokens of the test tenant of a shared database,
/// made the way an operator makes them (a production start prints none):
/// `voucherd tenant create` the first time, then `voucherd token`.
fn tokens_of_database(data_dir: &Path, extra: &[&str]) -> (String, String) {
    let url = extra
        .iter()
        .position(|arg| *arg == "--database-url")
        .and_then(|at| extra.get(at + 1))
        .expect("a database URL");
    let data_dir = data_dir.to_str().expect("a UTF-8 path");
    let store = ["--database-url", url, "--data-dir", data_dir];
    let listed = voucherd(&["tenant", "list"], &store);
    let tenant = match listed
        .lines()
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .find(|fields| fields.get(1) == Some(&TEST_TENANT))
    {
        Some(fields) => fields[0].to_owned(),
        None => {
            let created = voucherd(&["tenant", "create", "--name", TEST_TENANT], &store);
            created
                .lines()
                .find_map(|line| line.strip_prefix("tenant "))
                .expect("the new tenant's id")
                .to_owned()
        }
    };
    let token = |role| {
        voucherd(&["token", "--tenant", &tenant, "--role", role], &store)
            .trim()
            .to_owned()
    };
    (token("admin"), token("service"))
}

impl TestServer {
    /// A node on the embedded store in `data_dir`, or on the database an
    /// `--database-url` in `extra` names.
    pub fn start(data_dir: &Path, extra: &[&str]) -> TestServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_voucherd"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra);
        let tokens = extra
            .contains(&"--database-url")
            .then(|| tokens_of_database(data_dir, extra));
        TestServer::launch(command, tokens)
    }

    pub fn spawn(command: Command) -> TestServer {
        TestServer::launch(command, None)
    }

    /// Starts `command`; a node that prints no tokens (a production start)
    /// is given `tokens`.
    fn launch(mut command: Command, tokens: Option<(String, String)>) -> TestServer {
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting voucherd");
        let stdout = child.stdout.take().expect("stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            // Reading goes on after the test stopped listening: closing the
            // pipe would make the server's next line (the demo prints more
            // after the tokens) fail, and println! panics on that.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let (mut admin, mut service) = match tokens {
            Some((admin, service)) => (Some(admin), Some(service)),
            None => (None, None),
        };
        let mut base = None;
        while base.is_none() || admin.is_none() || service.is_none() {
            let line = received
                .recv_timeout(START_TIMEOUT)
                .expect("voucherd printed its address and tokens");
            if let Some(address) = line.strip_prefix("voucherd listening on ") {
                base = Some(address.to_owned());
            } else if let Some(token) = line.strip_prefix("export VOUCHERD_ADMIN_TOKEN=") {
                admin = Some(token.to_owned());
            } else if let Some(token) = line.strip_prefix("export VOUCHERD_SERVICE_TOKEN=") {
                service = Some(token.to_owned());
            }
        }
        TestServer {
            child: Some(child),
            base: base.unwrap_or_default(),
            admin: admin.unwrap_or_default(),
            service: service.unwrap_or_default(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(1_024)
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// Another handle on the same server that does not own the process.
    pub fn handle(&self) -> TestServer {
        TestServer {
            child: None,
            base: self.base.clone(),
            admin: self.admin.clone(),
            service: self.service.clone(),
            client: self.client.clone(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaping voucherd");
        }
    }

    /// Waits for the process to exit by itself; answers its exit status.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child
            .take()
            .expect("a running server")
            .wait()
            .expect("waiting for voucherd")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("an answer");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("an answer");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates and publishes a campaign; answers its id.
    pub async fn live_campaign(&self, body: Value) -> String {
        let (status, created) = self.post("/v1/campaigns", &self.admin, body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().expect("an id").to_owned();
        let (status, mut published) = self
            .post(
                &format!("/v1/campaigns/{id}/publish"),
                &self.admin,
                json!({}),
            )
            .await;
        assert!(
            status == StatusCode::OK || status == StatusCode::ACCEPTED,
            "{status} {published}"
        );
        // A publish that makes many codes answers 202 and goes live later.
        let started = std::time::Instant::now();
        while published["state"] == "draft" {
            assert!(
                started.elapsed() < START_TIMEOUT * 10,
                "never went live: {published}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            published = self
                .get(&format!("/v1/campaigns/{id}"), &self.admin)
                .await
                .1;
        }
        id
    }

    /// Every voucher of a campaign, in rank order.
    pub async fn export(&self, id: &str) -> Vec<Value> {
        let mut vouchers = Vec::new();
        let mut after_rank = 0;
        loop {
            let (status, page) = self
                .get(
                    &format!("/v1/campaigns/{id}/vouchers?after_rank={after_rank}&limit=10000"),
                    &self.admin,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            vouchers.extend(
                page["vouchers"]
                    .as_array()
                    .expect("vouchers")
                    .iter()
                    .cloned(),
            );
            match page["next_after_rank"].as_u64() {
                Some(next) => after_rank = next,
                None => return vouchers,
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

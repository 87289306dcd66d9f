//! Tenancy and secrets with the real binary: a production start makes no
//! tenant and prints no credential; a rotated key keeps verifying the
//! tokens it signed while new tokens carry the new key's id; forged tokens
//! are refused.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::database::{TestDatabase, server_url};
use crate::server::TestServer;

fn voucherd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_voucherd"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running voucherd")
}

fn printed(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_start_makes_no_tenant_and_prints_no_credential() {
    let database = TestDatabase::create(&server_url()).await;
    let data = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new(env!("CARGO_BIN_EXE_voucherd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &database.url,
            "--data-dir",
        ])
        .arg(data.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting voucherd");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (lines, received) = std::sync::mpsc::channel();
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr) as Box<dyn std::io::Read + Send>,
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
    }
    let mut seen = Vec::new();
    let mut base = None;
    loop {
        let line = received
            .recv_timeout(Duration::from_secs(60))
            .expect("the node says what it did");
        if let Some(address) = line.strip_prefix("voucherd listening on ") {
            base = Some(address.to_owned());
        }
        let done = line.starts_with("no tenant made");
        seen.push(line);
        if done {
            break;
        }
    }
    let base = base.expect("the node's address");
    // What a log collector would keep holds no token: no JWT, no export.
    for line in &seen {
        assert!(!line.contains("eyJ"), "a token in the output: {line}");
        assert!(!line.contains("TOKEN"), "{line}");
    }
    let listed = printed(&voucherd(&[
        "tenant",
        "list",
        "--database-url",
        &database.url,
        "--data-dir",
        data.path().to_str().expect("a path"),
    ]));
    assert_eq!(
        listed.lines().count(),
        1,
        "a header and no tenant: {listed}"
    );
    let health = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("an answer");
    assert_eq!(health.status(), StatusCode::OK);
    let anonymous = reqwest::get(format!("{base}/v1/campaigns"))
        .await
        .expect("an answer");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let again: Vec<&String> = seen
        .iter()
        .filter(|line| line.contains("development"))
        .collect();
    assert!(again.is_empty(), "{again:?}");
}

/// The token's parts, its header and payload decoded.
fn parts(token: &str) -> (Value, Value, String) {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut split = token.split('.');
    let header = engine
        .decode(split.next().expect("a header"))
        .expect("base64");
    let payload = engine
        .decode(split.next().expect("a payload"))
        .expect("base64");
    (
        serde_json::from_slice(&header).expect("JSON"),
        serde_json::from_slice(&payload).expect("JSON"),
        split.next().expect("a signature").to_owned(),
    )
}

fn encode(value: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_verifies_its_tokens_new_tokens_use_the_new_key_and_forgeries_fail() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let server = TestServer::start(data.path(), &["--refresh-period-ms", "100"]);
    let dir = data.path().to_str().expect("a path");
    let listed = printed(&voucherd(&["tenant", "list", "--data-dir", dir]));
    let row: Vec<&str> = listed
        .lines()
        .nth(1)
        .expect("the development tenant")
        .split('\t')
        .collect();
    let tenant = row[0].to_owned();
    assert_eq!(row[4], "k1");
    let old = server.admin.clone();
    assert_eq!(parts(&old).0["kid"], "k1");
    let (status, _) = server.get("/v1/campaigns", &old).await;
    assert_eq!(status, StatusCode::OK);

    let rotated = printed(&voucherd(&[
        "tenant",
        "rotate-key",
        "--tenant",
        &tenant,
        "--data-dir",
        dir,
    ]));
    assert!(rotated.contains("now signs with key k2"), "{rotated}");
    let new = printed(&voucherd(&[
        "token",
        "--tenant",
        &tenant,
        "--role",
        "admin",
        "--data-dir",
        dir,
    ]))
    .trim()
    .to_owned();
    assert_eq!(parts(&new).0["kid"], "k2");
    // The node follows within a refresh: the new token verifies, and the
    // old one still does until it expires.
    let started = std::time::Instant::now();
    loop {
        let (status, _) = server.get("/v1/campaigns", &new).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the node never took the new key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = server.get("/v1/campaigns", &old).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a token of the retired key, issued before"
    );
    let listed = printed(&voucherd(&["tenant", "list", "--data-dir", dir]));
    assert!(listed.contains("\tk2\tk1"), "{listed}");

    // Forgeries: alg none, a kid the tenant does not have, another tenant's key.
    let (header, payload, signature) = parts(&new);
    let mut none = header.clone();
    none["alg"] = "none".into();
    let unsigned = format!("{}.{}.", encode(&none), encode(&payload));
    let mut other_kid = header.clone();
    other_kid["kid"] = "k7".into();
    let wrong_kid = format!("{}.{}.{signature}", encode(&other_kid), encode(&payload));
    let created = printed(&voucherd(&[
        "tenant",
        "create",
        "--name",
        "another",
        "--data-dir",
        dir,
    ]));
    let other_tenant = created
        .lines()
        .find_map(|line| line.strip_prefix("tenant "))
        .expect("an id")
        .to_owned();
    let theirs = printed(&voucherd(&[
        "token",
        "--tenant",
        &other_tenant,
        "--role",
        "admin",
        "--data-dir",
        dir,
    ]))
    .trim()
    .to_owned();
    let (their_header, mut their_payload, their_signature) = parts(&theirs);
    their_payload["tenant"] = tenant.clone().into();
    let cross = format!(
        "{}.{}.{their_signature}",
        encode(&their_header),
        encode(&their_payload)
    );
    // Until the node has read the other tenant (one refresh), its own
    // token would be refused for a reason other than the one tested.
    let started = std::time::Instant::now();
    while server.get("/v1/campaigns", &theirs).await.0 != StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the node never read the other tenant"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (what, token) in [
        ("alg none", unsigned),
        ("a wrong kid", wrong_kid),
        ("another tenant's key", cross),
    ] {
        let (status, body) = server.get("/v1/campaigns", &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["status"], 401, "{what}: a problem answer");
    }
    let (status, _) = server.get("/v1/campaigns", &theirs).await;
    assert_eq!(status, StatusCode::OK, "their own token is theirs");

    // A partner's identity provider: voucherd holds only the public half.
    use ed25519_dalek::Signer as _;
    let provider = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
    let x = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(provider.verifying_key().to_bytes())
    };
    let jwks = serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "partner-idp-1", "x": x}
    ]});
    let file = data.path().join("partner.jwks");
    std::fs::write(&file, jwks.to_string()).expect("writing the JWKS");
    let registered = printed(&voucherd(&[
        "tenant",
        "set-public-keys",
        "--tenant",
        &tenant,
        "--jwks",
        file.to_str().expect("a path"),
        "--data-dir",
        dir,
    ]));
    assert!(registered.contains("partner-idp-1: EdDSA"), "{registered}");
    let mut claims = payload.clone();
    claims["role"] = "customer".into();
    claims["sub"] = "partner-user-1".into();
    let signing_input = format!(
        "{}.{}",
        encode(&serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "partner-idp-1"})),
        encode(&claims)
    );
    let partner_token = {
        use base64::Engine as _;
        let signature = provider.sign(signing_input.as_bytes()).to_bytes();
        format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        )
    };
    let started = std::time::Instant::now();
    loop {
        let (status, body) = server
            .get("/v1/users/partner-user-1/vouchers", &partner_token)
            .await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never took the key: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[12; 32]);
    let forged = {
        use base64::Engine as _;
        let signature = stranger.sign(signing_input.as_bytes()).to_bytes();
        format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        )
    };
    let (status, _) = server
        .get("/v1/users/partner-user-1/vouchers", &forged)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a key the tenant did not register"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_of_a_request_carry_its_id_and_so_does_its_problem() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new(env!("CARGO_BIN_EXE_voucherd"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting voucherd");
    let stdout = child.stdout.take().expect("stdout");
    let (addresses, address) = std::sync::mpsc::channel();
    // Read to the end: a closed pipe would fail the node's next line.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(base) = line.strip_prefix("voucherd listening on ") {
                let _ = addresses.send(base.to_owned());
            }
        }
    });
    let (lines, received) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let base = address
        .recv_timeout(Duration::from_secs(60))
        .expect("the address");
    let answer = reqwest::Client::new()
        .get(format!("{base}/v1/campaigns"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(answer.headers()["x-request-id"], "trace-me-42");
    let problem: Value = answer.json().await.expect("a problem");
    assert_eq!(problem["request_id"], "trace-me-42");
    let generated = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("an answer");
    let id = generated.headers()["x-request-id"]
        .to_str()
        .expect("an id")
        .to_owned();
    assert!(id.len() > 8, "{id}");
    let started = std::time::Instant::now();
    let mut of_request = Vec::new();
    while started.elapsed() < Duration::from_secs(5) && of_request.is_empty() {
        while let Ok(line) = received.recv_timeout(Duration::from_millis(100)) {
            let parsed: Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("a JSON line: {line}"));
            if line.contains("trace-me-42") {
                assert_eq!(parsed["span"]["id"], "trace-me-42", "{line}");
                of_request.push(parsed);
            }
        }
    }
    assert!(!of_request.is_empty(), "the request's log lines name it");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
}

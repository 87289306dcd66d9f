//! A simulator on an ephemeral port and a client with one method per
//! endpoint.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use voucherd_gateway_sim::clock::Clock;
use voucherd_gateway_sim::{Simulator, SimulatorConfig, SimulatorHandle};

/// A card number that passes the check digit; its last four are 4242.
pub const CARD_NUMBER: &str = "4242424242424242";

/// A gateway that answers at once and never declines or times out, for the
/// tests where those are not the point.
pub fn quiet_config() -> SimulatorConfig {
    SimulatorConfig {
        rate_per_second: 100_000,
        latency_ms: 0..=0,
        decline_rate: 0.0,
        timeout_rate: 0.0,
        seed: Some(1),
        ..SimulatorConfig::default()
    }
}

pub fn charge_body(idempotency_key: &str, amount: i64) -> Value {
    json!({
        "idempotency_key": idempotency_key,
        "amount": amount,
        "currency": "THB",
        "card": {
            "number": CARD_NUMBER,
            "exp_month": 12,
            "exp_year": 2030,
            "cvc": "123",
            "name": "Somchai Jaidee"
        }
    })
}

/// `count` keys named `prefix-0`, `prefix-1`, ...
pub fn keys(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n}")).collect()
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub retry_after: Option<String>,
    pub body: Value,
}

pub struct TestApp {
    pub handle: SimulatorHandle,
    pub client: reqwest::Client,
}

impl TestApp {
    pub async fn start(config: SimulatorConfig) -> TestApp {
        let handle = Simulator::start(config)
            .await
            .expect("starting the simulator");
        TestApp::around(handle)
    }

    pub async fn start_with_clock(config: SimulatorConfig, clock: Arc<dyn Clock>) -> TestApp {
        let simulator = Simulator::with_clock(config, clock).expect("a valid configuration");
        let handle = simulator.spawn().await.expect("starting the simulator");
        TestApp::around(handle)
    }

    fn around(handle: SimulatorHandle) -> TestApp {
        TestApp {
            handle,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.url())
    }

    pub async fn charge(&self, idempotency_key: &str, amount: i64) -> Reply {
        self.charge_body(&charge_body(idempotency_key, amount))
            .await
    }

    /// Sends a charge for each key, all at once.
    pub async fn charges_at_once(&self, keys: &[String]) -> Vec<Reply> {
        futures::future::join_all(keys.iter().map(|key| self.charge(key, 100))).await
    }

    pub async fn charge_body(&self, body: &Value) -> Reply {
        let request = self.client.post(self.url("/charges")).json(body);
        reply(request).await
    }

    pub async fn charge_raw(&self, body: impl Into<reqwest::Body>) -> Reply {
        let request = self
            .client
            .post(self.url("/charges"))
            .header("content-type", "application/json")
            .body(body);
        reply(request).await
    }

    /// A charge the client gives up on after `wait`: `None` when no answer
    /// came in time.
    pub async fn charge_waiting_at_most(
        &self,
        idempotency_key: &str,
        wait: Duration,
    ) -> Option<Reply> {
        let request = self
            .client
            .post(self.url("/charges"))
            .json(&charge_body(idempotency_key, 1000))
            .timeout(wait);
        match request.send().await {
            Ok(response) => Some(read(response).await),
            Err(error) if error.is_timeout() => None,
            Err(error) => panic!("charge {idempotency_key}: {error}"),
        }
    }

    pub async fn lookup(&self, idempotency_key: &str) -> Reply {
        reply(
            self.client
                .get(self.url(&format!("/charges/{idempotency_key}"))),
        )
        .await
    }

    pub async fn ledger(&self) -> Value {
        let reply = reply(self.client.get(self.url("/ledger"))).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body
    }

    pub async fn stats(&self) -> Value {
        let reply = reply(self.client.get(self.url("/stats"))).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body
    }

    pub async fn admin(&self, action: &str) -> Reply {
        reply(self.client.post(self.url(&format!("/admin/{action}")))).await
    }

    /// Waits until `condition` holds of the simulator's stats, for requests
    /// that are on their way over TCP and cannot be awaited directly.
    pub async fn until_stats(
        &self,
        what: &str,
        condition: impl Fn(&voucherd_gateway_sim::Stats) -> bool,
    ) {
        for _ in 0..1000 {
            if condition(&self.handle.stats()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gave up waiting until {what}: {:?}", self.handle.stats());
    }
}

async fn reply(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("an answer from the simulator");
    read(response).await
}

async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("an ASCII Retry-After").to_owned());
    let bytes = response.bytes().await.expect("a whole body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("a JSON body, got {:?}", String::from_utf8_lossy(&bytes)));
    Reply {
        status,
        retry_after,
        body,
    }
}

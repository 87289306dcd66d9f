//! `TestApp`: one method per endpoint, over the real router.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use voucherd_core::ids::{TenantId, UserId};
use voucherd_core::{SignedDuration, Timestamp};
use voucherd_engine::clock::ManualClock;
use voucherd_engine::model::Tenant;
use voucherd_engine::payments::gateway::HttpGateway;
use voucherd_engine::payments::seal::PaymentKey;
use voucherd_engine::payments::{GatewayRoute, PaymentLimits};
use voucherd_engine::{Engine, EngineConfig, PaymentSetup};
use voucherd_http::HttpConfig;
use voucherd_http::auth::{Role, mint};
use voucherd_http::front::Api;
use voucherd_store::Store;
use voucherd_store::faults::FaultyStore;
use voucherd_store::sqlite::{SqliteConfig, SqliteStore};

pub const NOON: &str = "2026-12-01T12:00:00Z";

pub fn at(text: &str) -> Timestamp {
    text.parse().expect("a test time")
}

pub struct TestApp {
    _directory: tempfile::TempDir,
    pub router: Api,
    pub engine: Arc<Engine>,
    pub clock: Arc<ManualClock>,
    pub store: Arc<FaultyStore>,
    pub tenant: Tenant,
    pub admin: String,
    pub service: String,
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    /// The case name of a problem answer: the last segment of its type.
    pub fn problem(&self) -> &str {
        self.body["type"]
            .as_str()
            .and_then(|kind| kind.rsplit('/').next())
            .unwrap_or("")
    }

    pub fn assert_problem(&self, status: StatusCode, kind: &str) {
        assert_eq!(
            (self.status, self.problem()),
            (status, kind),
            "{}",
            self.text
        );
        assert_eq!(
            self.headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok()),
            Some("application/problem+json"),
            "{}",
            self.text
        );
    }
}

pub fn tenant(name: &str, time_zone: &str) -> Tenant {
    Tenant {
        id: TenantId::from_uuid(uuid_like(name)),
        name: name.into(),
        signing_key: name.bytes().cycle().take(32).collect(),
        time_zone: time_zone.into(),
        rate_limit_per_second: None,
        key_id: "k1".into(),
        retired_keys: Vec::new(),
        public_keys: Vec::new(),
        created_at: at("2026-11-01T00:00:00Z"),
    }
}

fn uuid_like(name: &str) -> uuid::Uuid {
    let mut bytes = [0_u8; 16];
    for (index, byte) in name.bytes().enumerate() {
        bytes[index % 16] ^= byte;
    }
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

impl TestApp {
    pub async fn new() -> TestApp {
        TestApp::with_config(EngineConfig::default()).await
    }

    /// With the payment router running against `gateways`: (name, url,
    /// rate, priority).
    pub async fn with_gateways(
        gateways: &[(&str, String, u32, u32)],
        limits: PaymentLimits,
    ) -> TestApp {
        let routes = gateways
            .iter()
            .map(|(name, url, rate_per_second, priority)| GatewayRoute {
                gateway: Arc::new(HttpGateway::new(
                    name,
                    url,
                    std::time::Duration::from_millis(300),
                )),
                priority: *priority,
                rate_per_second: *rate_per_second,
            })
            .collect();
        let config = EngineConfig {
            payments: Some(PaymentSetup {
                key: PaymentKey::from_bytes(&[42; 32]).expect("a 32-byte key"),
                gateways: routes,
                limits,
            }),
            ..EngineConfig::default()
        };
        let app = TestApp::with_config(config).await;
        if let Some(router) = app.engine.payments() {
            tokio::spawn(router.run(std::future::pending::<()>()));
        }
        app
    }

    pub async fn with_config(config: EngineConfig) -> TestApp {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let sqlite = SqliteStore::open(&SqliteConfig::new(directory.path().join("test.sqlite3")))
            .expect("SQLite");
        let store = Arc::new(FaultyStore::new(Arc::new(sqlite)));
        let clock = Arc::new(ManualClock::new(at(NOON)));
        let tenant = tenant("acme", "Asia/Bangkok");
        store.insert_tenant(&tenant).await.expect("a tenant");
        let mut registry = Registry::default();
        let engine = Engine::start(store.clone(), clock.clone(), config, &mut registry)
            .await
            .expect("the engine");
        let router = voucherd_http::router(engine.clone(), registry, &HttpConfig::default());
        let admin = token_for(&tenant, Role::Admin, None);
        let service = token_for(&tenant, Role::Service, None);
        TestApp {
            _directory: directory,
            router,
            engine,
            clock,
            store,
            tenant,
            admin,
            service,
        }
    }

    pub fn customer(&self, user: &str) -> String {
        token_for(&self.tenant, Role::Customer, Some(user))
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self.router.answer(request).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        TestResponse {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).expect("a request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> TestResponse {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> TestResponse {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn create_campaign(&self, body: Value) -> Value {
        let response = self.post("/v1/campaigns", &self.admin, body).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
        response.body
    }

    /// Creates and publishes a campaign; answers its id.
    pub async fn live_campaign(&self, body: Value) -> String {
        let id = self.create_campaign(body).await["id"]
            .as_str()
            .expect("an id")
            .to_owned();
        let published = self.publish(&id).await;
        assert_eq!(published.status, StatusCode::OK, "{}", published.text);
        id
    }

    pub async fn publish(&self, id: &str) -> TestResponse {
        self.call(
            Method::POST,
            &format!("/v1/campaigns/{id}/publish"),
            &self.admin,
            None,
        )
        .await
    }

    pub async fn claim(&self, id: &str, user: &str) -> TestResponse {
        self.post(
            &format!("/v1/campaigns/{id}/claims"),
            &self.service,
            json!({"user_id": user}),
        )
        .await
    }

    pub async fn login(&self, user: &str) -> TestResponse {
        self.post("/v1/events/login", &self.service, json!({"user_id": user}))
            .await
    }

    pub async fn act(&self, code: &str, action: &str, token: &str) -> TestResponse {
        self.call(
            Method::POST,
            &format!("/v1/vouchers/{code}/{action}"),
            token,
            None,
        )
        .await
    }

    pub async fn report(&self, id: &str) -> Value {
        let response = self
            .get(&format!("/v1/campaigns/{id}/report"), &self.admin)
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        response.body
    }

    pub async fn user_vouchers(&self, user: &str) -> Value {
        let response = self
            .get(&format!("/v1/users/{user}/vouchers"), &self.service)
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        response.body
    }

    /// Another tenant, and an admin token of it.
    pub async fn other_tenant(&self) -> (Tenant, String) {
        let other = tenant("globex", "UTC");
        self.engine
            .create_tenant(other.clone())
            .await
            .expect("another tenant");
        let token = token_for(&other, Role::Admin, None);
        (other, token)
    }
}

/// Tokens valid for years of test-clock time.
pub fn token_for(tenant: &Tenant, role: Role, user: Option<&str>) -> String {
    let user = user.map(|user| UserId::parse(user).expect("a test user"));
    mint(
        tenant,
        role,
        user.as_ref(),
        at("2026-11-01T00:00:00Z"),
        SignedDuration::from_hours(24 * 365 * 5),
    )
}

pub fn coupon(supply: u32) -> Value {
    json!({"name": "Test coupon", "kind": "coupon", "supply": supply})
}

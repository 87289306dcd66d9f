//! Talking to voucherd: the run's client over every target node (see
//! [`crate::http1`]), the bearer tokens, answers as status and bytes, and
//! failures sorted by kind.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::LoadError;
use crate::http1::{Client, Endpoint, Request, split_url};
use crate::wire::{
    CampaignWire, ExportedVoucherWire, LedgerWire, ProblemWire, ReportWire, VoucherListWire,
    VoucherPageWire,
};

/// Export pages are read this many vouchers at a time, the server's most.
const EXPORT_PAGE_MAX: u32 = 10_000;

/// Who a request acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    /// The tenant's backend, naming the user in the body.
    Service,
    /// No token: health checks and gateway ledgers.
    Anonymous,
}

/// An HTTP answer, whatever its status.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The case name of a problem answer (`sold-out`), or `"-"`.
    pub fn problem_kind(&self) -> String {
        self.json::<ProblemWire>()
            .ok()
            .and_then(|problem| problem.kind.rsplit('/').next().map(str::to_owned))
            .filter(|kind| !kind.is_empty())
            .unwrap_or_else(|| "-".to_owned())
    }

    /// `429` and `503`: the server refused for now and may say when to
    /// come back.
    pub fn is_refusal(&self) -> bool {
        self.status == 429 || self.status == 503
    }
}

/// A request that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Connect,
    Timeout,
    Transport,
    /// Never sent: the generator's own bound on requests in flight was
    /// full.
    DroppedByClient,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::Transport => "transport",
            FailureKind::DroppedByClient => "dropped_by_client",
        }
    }
}

impl Failure {
    /// Never sent: the generator's own in-flight bound was full.
    pub fn is_dropped_by_client(&self) -> bool {
        self.kind == FailureKind::DroppedByClient
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.kind.as_str(), self.detail)
    }
}

/// The client of a run.
#[derive(Debug)]
pub struct Api {
    client: Client,
    targets: Vec<Endpoint>,
    admin: String,
    service: String,
}

impl Api {
    pub fn new(
        targets: &[String],
        admin_token: &str,
        service_token: &str,
        pool_connections_max: usize,
        request_timeout: Duration,
    ) -> Result<Api, LoadError> {
        let bearer = |token: &str| {
            if token.bytes().all(|byte| byte.is_ascii_graphic()) {
                Ok(format!("Bearer {token}"))
            } else {
                Err(LoadError::Config(
                    "a token holds characters a header cannot".into(),
                ))
            }
        };
        let targets = targets
            .iter()
            .map(|target| {
                Endpoint::parse(target.trim_end_matches('/'), pool_connections_max)
                    .map_err(LoadError::Config)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Api {
            client: Client {
                request_timeout,
                connect_timeout: request_timeout.min(Duration::from_secs(5)),
            },
            targets,
            admin: bearer(admin_token)?,
            service: bearer(service_token)?,
        })
    }

    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// The target node for a user: users are spread evenly over them.
    pub fn target_of(&self, user: u32) -> usize {
        user as usize % self.targets.len()
    }

    pub async fn get(&self, target: usize, path: &str, role: Role) -> Result<Answer, Failure> {
        self.send(target, "GET", path, role, None, None).await
    }

    pub async fn post(
        &self,
        target: usize,
        path: &str,
        role: Role,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Failure> {
        self.send(target, "POST", path, role, body.as_deref(), idempotency_key)
            .await
    }

    pub async fn delete(&self, target: usize, path: &str, role: Role) -> Result<Answer, Failure> {
        self.send(target, "DELETE", path, role, None, None).await
    }

    /// A GET of an absolute URL (a gateway's ledger), on a connection of
    /// its own.
    pub async fn get_url(&self, url: &str) -> Result<Answer, Failure> {
        let (authority, path) = split_url(url).map_err(|detail| Failure {
            kind: FailureKind::Connect,
            detail,
        })?;
        let endpoint =
            Endpoint::parse(&format!("http://{authority}"), 1).map_err(|detail| Failure {
                kind: FailureKind::Connect,
                detail,
            })?;
        let request = Request {
            method: "GET",
            path,
            headers: &[],
            body: None,
        };
        self.client.send(&endpoint, &request).await
    }

    async fn send(
        &self,
        target: usize,
        method: &str,
        path: &str,
        role: Role,
        body: Option<&[u8]>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Failure> {
        let mut headers: [(&str, &str); 3] = [("", ""); 3];
        let mut count = 0;
        let mut add = |name, value| {
            headers[count] = (name, value);
            count += 1;
        };
        match role {
            Role::Admin => add("authorization", self.admin.as_str()),
            Role::Service => add("authorization", self.service.as_str()),
            Role::Anonymous => {}
        }
        if body.is_some() {
            add("content-type", "application/json");
        }
        if let Some(key) = idempotency_key {
            add("idempotency-key", key);
        }
        let request = Request {
            method,
            path,
            headers: &headers[..count],
            body,
        };
        let endpoint = &self.targets[target % self.targets.len()];
        self.client.send(endpoint, &request).await
    }

    /// Reads an answer that must have one of the `expected` statuses and a
    /// JSON body: the setup and verification calls, where anything else
    /// ends the run.
    pub fn expect<T: DeserializeOwned>(
        what: &str,
        sent: Result<Answer, Failure>,
        expected: &[u16],
    ) -> Result<T, LoadError> {
        let answer = sent.map_err(|failure| LoadError::Unreachable {
            what: what.to_owned(),
            failure,
        })?;
        if !expected.contains(&answer.status) {
            return Err(LoadError::Refused {
                what: what.to_owned(),
                status: answer.status,
                body: String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(500)
                    .collect(),
            });
        }
        answer.json().map_err(|source| LoadError::Decode {
            what: what.to_owned(),
            source,
        })
    }

    pub async fn create_campaign(&self, body: &serde_json::Value) -> Result<String, LoadError> {
        let sent = self
            .post(0, "/v1/campaigns", Role::Admin, Some(to_bytes(body)), None)
            .await;
        let campaign: CampaignWire = Api::expect("creating a campaign", sent, &[201])?;
        Ok(campaign.id)
    }

    /// Publishes and waits until the campaign is live: a publish that must
    /// make many codes answers 202 at once and makes them afterwards.
    pub async fn publish(&self, campaign_id: &str) -> Result<(), LoadError> {
        let path = format!("/v1/campaigns/{campaign_id}/publish");
        let sent = self.post(0, &path, Role::Admin, None, None).await;
        let mut campaign: CampaignWire = Api::expect("publishing a campaign", sent, &[200, 202])?;
        let campaign_path = format!("/v1/campaigns/{campaign_id}");
        // Bounded: making 5,000,000 codes takes minutes, not hours.
        for _ in 0..36_000 {
            if campaign.state != "draft" {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let sent = self.get(0, &campaign_path, Role::Admin).await;
            campaign = Api::expect("waiting for a campaign to go live", sent, &[200])?;
        }
        Err(LoadError::Refused {
            what: "waiting for a campaign to go live".into(),
            status: 202,
            body: format!("campaign {campaign_id} was still a draft an hour after publishing"),
        })
    }

    pub async fn pause(&self, campaign_id: &str) -> Result<(), LoadError> {
        let path = format!("/v1/campaigns/{campaign_id}/pause");
        let sent = self.post(0, &path, Role::Admin, None, None).await;
        Api::expect::<CampaignWire>("pausing a campaign", sent, &[200]).map(drop)
    }

    pub async fn campaign(&self, campaign_id: &str) -> Result<CampaignWire, LoadError> {
        let path = format!("/v1/campaigns/{campaign_id}");
        let sent = self.get(0, &path, Role::Admin).await;
        Api::expect("reading a campaign", sent, &[200])
    }

    pub async fn report(&self, campaign_id: &str) -> Result<ReportWire, LoadError> {
        let path = format!("/v1/campaigns/{campaign_id}/report");
        let sent = self.get(0, &path, Role::Admin).await;
        Api::expect("reading a campaign's report", sent, &[200])
    }

    /// Every voucher of a campaign, page by page in rank order.
    pub async fn export(&self, campaign_id: &str) -> Result<Vec<ExportedVoucherWire>, LoadError> {
        let mut vouchers = Vec::new();
        let mut after_rank = 0;
        loop {
            let path = format!(
                "/v1/campaigns/{campaign_id}/vouchers?after_rank={after_rank}&limit={EXPORT_PAGE_MAX}"
            );
            let sent = self.get(0, &path, Role::Admin).await;
            let page: VoucherPageWire =
                Api::expect("exporting a campaign's vouchers", sent, &[200])?;
            vouchers.extend(page.vouchers);
            match page.next_after_rank {
                Some(next) => after_rank = next,
                None => return Ok(vouchers),
            }
        }
    }

    pub async fn user_vouchers(&self, user_id: &str) -> Result<VoucherListWire, LoadError> {
        let path = format!("/v1/users/{user_id}/vouchers");
        let sent = self.get(0, &path, Role::Service).await;
        Api::expect("reading a user's vouchers", sent, &[200])
    }

    pub async fn ledger(&self, gateway: &str) -> Result<LedgerWire, LoadError> {
        let url = format!("{}/ledger", gateway.trim_end_matches('/'));
        Api::expect(
            "reading a gateway's ledger",
            self.get_url(&url).await,
            &[200],
        )
    }
}

pub fn to_bytes(body: &serde_json::Value) -> Vec<u8> {
    body.to_string().into_bytes()
}

//! Payment gateways: the adapter trait a real provider plugs into, and the
//! HTTP adapter that speaks the protocol `voucherd gateway-sim` serves.
//!
//! Every answer is sorted by what it proves about the money: captured and
//! declined are decided; `Refused` proves the charge was not processed (a
//! refused connection, 429, 503), so it may go to another gateway; anything
//! else (a timeout, a reset, another 5xx) is `Unknown` and must be resolved
//! by asking the same gateway before the charge goes anywhere else.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use voucherd_core::money::Money;
use voucherd_core::payment::Card;

/// One charge as sent: the key is the order's and never changes across
/// retries, so the gateway can never capture it twice.
#[derive(Debug)]
pub struct ChargeRequest<'a> {
    pub idempotency_key: &'a str,
    pub amount: Money,
    pub card: &'a Card,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeAnswer {
    Captured {
        charge_id: String,
    },
    Declined {
        charge_id: String,
    },
    /// Not processed; safe to send elsewhere. `rate_limited` is a 429: the
    /// gateway is healthy but full.
    Refused {
        reason: String,
        retry_after: Option<Duration>,
        rate_limited: bool,
    },
    /// Perhaps processed; ask this gateway before anything else.
    Unknown {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupAnswer {
    Captured {
        charge_id: String,
    },
    Declined {
        charge_id: String,
    },
    /// The gateway never saw the charge.
    NotFound,
    /// The gateway could not be asked; ask again later.
    Failed {
        reason: String,
    },
}

#[async_trait]
pub trait Gateway: Send + Sync + fmt::Debug {
    fn name(&self) -> &str;
    async fn charge(&self, request: &ChargeRequest<'_>) -> ChargeAnswer;
    async fn lookup(&self, idempotency_key: &str) -> LookupAnswer;
}

/// A gateway reached over HTTP.
#[derive(Debug)]
pub struct HttpGateway {
    name: String,
    base_url: String,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct ChargeBody<'a> {
    idempotency_key: &'a str,
    amount: i64,
    currency: &'a str,
    card: CardBody<'a>,
}

#[derive(Serialize)]
struct CardBody<'a> {
    number: &'a str,
    exp_month: u8,
    exp_year: u16,
    cvc: &'a str,
    name: &'a str,
}

#[derive(Deserialize)]
struct ChargeReply {
    id: String,
    status: String,
}

impl HttpGateway {
    /// `timeout` bounds one request; a charge that outlives it is Unknown.
    pub fn new(name: &str, base_url: &str, timeout: Duration) -> HttpGateway {
        HttpGateway {
            name: name.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(2)))
                .pool_max_idle_per_host(256)
                .build()
                .expect("an HTTP client with a timeout"),
        }
    }
}

fn decided(reply: ChargeReply) -> Option<(bool, String)> {
    match reply.status.as_str() {
        "captured" => Some((true, reply.id)),
        "declined" => Some((false, reply.id)),
        _ => None,
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[async_trait]
impl Gateway for HttpGateway {
    fn name(&self) -> &str {
        &self.name
    }

    async fn charge(&self, request: &ChargeRequest<'_>) -> ChargeAnswer {
        let body = ChargeBody {
            idempotency_key: request.idempotency_key,
            amount: request.amount.amount,
            currency: request.amount.currency.as_str(),
            card: CardBody {
                number: request.card.number(),
                exp_month: request.card.exp_month,
                exp_year: request.card.exp_year,
                cvc: request.card.cvc(),
                name: &request.card.name,
            },
        };
        let sent = self
            .client
            .post(format!("{}/charges", self.base_url))
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.is_connect() => {
                return ChargeAnswer::Refused {
                    reason: format!("could not connect: {error}"),
                    retry_after: None,
                    rate_limited: false,
                };
            }
            Err(error) => {
                return ChargeAnswer::Unknown {
                    reason: error.to_string(),
                };
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
        {
            return ChargeAnswer::Refused {
                reason: format!("answered {status}"),
                retry_after: retry_after(&response),
                rate_limited: status == reqwest::StatusCode::TOO_MANY_REQUESTS,
            };
        }
        if !status.is_success() {
            return ChargeAnswer::Unknown {
                reason: format!("answered {status}"),
            };
        }
        match response.json::<ChargeReply>().await.ok().and_then(decided) {
            Some((true, charge_id)) => ChargeAnswer::Captured { charge_id },
            Some((false, charge_id)) => ChargeAnswer::Declined { charge_id },
            None => ChargeAnswer::Unknown {
                reason: "an answer that is neither captured nor declined".into(),
            },
        }
    }

    async fn lookup(&self, idempotency_key: &str) -> LookupAnswer {
        let url = format!("{}/charges/{idempotency_key}", self.base_url);
        let response = match self.client.get(url).send().await {
            Ok(response) => response,
            Err(error) => {
                return LookupAnswer::Failed {
                    reason: error.to_string(),
                };
            }
        };
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => LookupAnswer::NotFound,
            status if status.is_success() => {
                match response.json::<ChargeReply>().await.ok().and_then(decided) {
                    Some((true, charge_id)) => LookupAnswer::Captured { charge_id },
                    Some((false, charge_id)) => LookupAnswer::Declined { charge_id },
                    None => LookupAnswer::Failed {
                        reason: "a lookup answer that is neither captured nor declined".into(),
                    },
                }
            }
            status => LookupAnswer::Failed {
                reason: format!("answered {status}"),
            },
        }
    }
}

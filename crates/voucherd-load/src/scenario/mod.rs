//! The scenarios: how each creates its campaigns and what one user does.
//!
//! - [`sale`] is seed 000's Hot Deal and seed 004's course enrollment (view,
//!   claim, check out, wait for the order), with the enrollment's admin
//!   loop.
//! - [`coupons`] is seed 002's first login and seed 003's daily coupons.
//! - The baseline is here: one `GET /healthz` per arrival.

pub mod coupons;
pub mod sale;

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::LoadError;
use crate::api::{Answer, Api, Failure, FailureKind, Role};
use crate::book::{Book, UserOutcome};
use crate::config::{Config, ScenarioKind};
use crate::recorder::{AnswerClass, Operation, Recorder};
use crate::verdict::Holder;

/// A campaign the run created.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: String,
    pub supply: Option<u32>,
}

/// What one user does, per scenario, with the campaigns it acts on.
#[derive(Debug)]
pub enum Flow {
    Baseline,
    /// Hot Deal and enrollment: the one campaign on sale.
    Sale {
        campaign_id: String,
    },
    FirstLogin {
        campaign_id: String,
    },
    DailyCoupons {
        campaign_ids: Vec<String>,
    },
}

/// Everything a user's visit shares with the others.
#[derive(Debug)]
pub struct Context {
    pub api: Api,
    pub config: Config,
    pub run_id: String,
    pub recorder: Recorder,
    pub book: Book,
    pub order_polls: Semaphore,
    /// The bound on requests in flight, across users.
    pub requests_in_flight: Semaphore,
}

/// How a scenario counts an answer that is not a 429/503.
#[derive(Debug)]
pub struct Judged {
    pub class: AnswerClass,
    /// A success of the primary operation (a new voucher), for the chart.
    pub success: bool,
}

impl Judged {
    pub fn expected(success: bool) -> Judged {
        Judged {
            class: AnswerClass::Expected,
            success,
        }
    }

    pub fn unexpected() -> Judged {
        Judged {
            class: AnswerClass::Unexpected,
            success: false,
        }
    }
}

/// The last answer of a request and its retries, and when it came.
#[derive(Debug)]
pub struct Attempted {
    pub sent: Result<Answer, Failure>,
    pub finished: Instant,
}

impl Attempted {
    pub fn status(&self) -> Option<u16> {
        self.sent.as_ref().ok().map(|answer| answer.status)
    }

    /// Where a visit ends when this answer is not one the flow goes on
    /// from: still refused after the retries, or anything else.
    pub fn failed_outcome(&self) -> UserOutcome {
        match &self.sent {
            Ok(answer) if answer.is_refusal() => UserOutcome::GaveUp,
            Err(failure) if failure.is_dropped_by_client() => UserOutcome::DroppedByClient,
            _ => UserOutcome::Failed,
        }
    }
}

impl Context {
    /// User ids carry the run's id, so runs against the same tenant never
    /// share a user (nor a daily limit).
    pub fn user_id(&self, user: u32) -> String {
        format!("{}-{user}", self.run_id)
    }

    pub fn holder(&self, user_id: Option<&str>) -> Holder {
        let Some(user_id) = user_id else {
            return Holder::Nobody;
        };
        user_id
            .strip_prefix(self.run_id.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|number| number.parse().ok())
            .map_or_else(|| Holder::Stranger(user_id.to_owned()), Holder::User)
    }

    /// Sends a request due at `due`, retrying 429/503 after their
    /// `Retry-After` (cut to the configured most) up to the retry bound.
    /// Each try is recorded from the time it was due.
    pub async fn attempt<Make, Sending>(
        &self,
        operation: Operation,
        due: Instant,
        send: Make,
        judge: impl Fn(&Answer) -> Judged,
    ) -> Attempted
    where
        Make: Fn() -> Sending,
        Sending: Future<Output = Result<Answer, Failure>>,
    {
        let mut due = due;
        let mut retries = 0;
        loop {
            let sent = self.send_in_bound(&send).await;
            if sent.as_ref().is_err_and(Failure::is_dropped_by_client) {
                return Attempted {
                    sent,
                    finished: Instant::now(),
                };
            }
            let judged = match &sent {
                Ok(answer) if answer.is_refusal() => Judged {
                    class: AnswerClass::Refused,
                    success: false,
                },
                Ok(answer) => judge(answer),
                Err(_) => Judged::unexpected(),
            };
            self.recorder
                .request(operation, due, &sent, judged.class, judged.success);
            let retry_after = match &sent {
                Ok(answer) if answer.is_refusal() && retries < self.config.retries_max => {
                    answer.retry_after.unwrap_or(Duration::from_secs(1))
                }
                _ => {
                    return Attempted {
                        sent,
                        finished: Instant::now(),
                    };
                }
            };
            retries += 1;
            tokio::time::sleep(retry_after.min(self.config.retry_after_max)).await;
            due = Instant::now();
        }
    }
}

impl Context {
    /// Sends under the bound on requests in flight; when the bound is full
    /// the request is never sent, counted `dropped_by_client`, and
    /// answered with that failure (which no caller records as a request).
    pub async fn send_in_bound<Make, Sending>(&self, send: &Make) -> Result<Answer, Failure>
    where
        Make: Fn() -> Sending,
        Sending: Future<Output = Result<Answer, Failure>>,
    {
        let Ok(_in_flight) = self.requests_in_flight.try_acquire() else {
            self.recorder.dropped();
            return Err(Failure {
                kind: FailureKind::DroppedByClient,
                detail: "the in-flight bound was full".to_owned(),
            });
        };
        send().await
    }
}

/// Creates and publishes the scenario's campaigns.
pub async fn setup(
    api: &Api,
    config: &Config,
    run_id: &str,
) -> Result<(Flow, Vec<Campaign>), LoadError> {
    match config.scenario {
        ScenarioKind::Baseline => Ok((Flow::Baseline, Vec::new())),
        ScenarioKind::HotDeal => sale::setup_hot_deal(api, config, run_id).await,
        ScenarioKind::Enrollment => sale::setup_enrollment(api, run_id).await,
        ScenarioKind::FirstLogin => coupons::setup_first_login(api, config, run_id).await,
        ScenarioKind::DailyCoupons => coupons::setup_daily_coupons(api, config, run_id).await,
    }
}

/// The operation whose latency the chart draws.
pub fn primary(scenario: ScenarioKind) -> Operation {
    match scenario {
        ScenarioKind::Baseline => Operation::Healthz,
        ScenarioKind::FirstLogin => Operation::Login,
        ScenarioKind::HotDeal | ScenarioKind::DailyCoupons | ScenarioKind::Enrollment => {
            Operation::Claim
        }
    }
}

/// One user's visit, from the time it was due.
pub async fn visit(context: &Context, flow: &Flow, user: u32, due: Instant) {
    match flow {
        Flow::Baseline => baseline(context, user, due).await,
        Flow::Sale { campaign_id } => sale::visit(context, campaign_id, user, due).await,
        Flow::FirstLogin { campaign_id } => {
            coupons::first_login(context, campaign_id, user, due).await;
        }
        Flow::DailyCoupons { campaign_ids } => {
            coupons::daily_coupons(context, campaign_ids, user, due).await;
        }
    }
}

async fn baseline(context: &Context, user: u32, due: Instant) {
    let target = context.api.target_of(user);
    let attempted = context
        .attempt(
            Operation::Healthz,
            due,
            || context.api.get(target, "/healthz", Role::Anonymous),
            |answer| {
                if answer.status == 200 {
                    Judged::expected(true)
                } else {
                    Judged::unexpected()
                }
            },
        )
        .await;
    let outcome = match attempted.status() {
        Some(200) => UserOutcome::Served,
        _ => attempted.failed_outcome(),
    };
    context.book.set(user, outcome);
}

/// Whether user `user` is one of the `percent` in a hundred picked for
/// something: spread evenly and the same in every run.
pub fn picked(user: u32, percent: u8) -> bool {
    let spread = u64::from(user).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    spread % 100 < u64::from(percent)
}

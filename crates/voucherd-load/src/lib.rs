//! voucherd's load generator: replays the product's scenarios against
//! running voucherd nodes over HTTP, as users would, and proves the
//! outcome.
//!
//! - [`run`] takes a [`Config`] and answers an [`Outcome`]: it creates and
//!   publishes the scenario's own campaigns through the admin API (so each
//!   run is isolated), drives the users, reads back what the server holds
//!   and judges it.
//! - [`curve`] is the target arrival rate over time (`"0:0,5:20000,60:20000"`)
//!   and the schedule of arrivals it implies; the driver starts each
//!   arrival when it is due whatever the server answers (open loop), under
//!   a bound on requests in flight past which an arrival is counted
//!   `dropped_by_client` instead of delaying the schedule.
//! - The scenarios ([`ScenarioKind`]) are `baseline` (`GET /healthz`),
//!   `hot-deal` (seed 000: view, claim, check out, wait for the order),
//!   `first-login` (seed 002), `daily-coupons` (seed 003) and `enrollment`
//!   (seed 004, with an admin at work beside the buyers).
//! - Latency is measured from each request's *due* time, so a slow answer
//!   also counts the wait of what queued behind it (no coordinated
//!   omission), into HDR histograms per operation and per second.
//! - [`verdict`] checks the invariants (supply never exceeded, sold equals
//!   supply, per-tier counts, nobody twice, every acknowledged voucher
//!   stored, every paid order with its voucher, gateway ledgers) as a pure
//!   function of an [`verdict::Evidence`], so it can be shown to bite.
//! - [`Outcome`] is `result.json`; it prints as the summary table and
//!   writes `chart.svg` (throughput and p50/p99 per second) beside it.
//!
//! The load generator never links voucherd's core, store, engine or HTTP
//! crates: it knows the service only by its API contract.
//!
//! # Command line
//!
//! ```text
//! voucherd-load SCENARIO --target URL [--target URL ...]
//!     --admin-token T --service-token T      (or VOUCHERD_ADMIN_TOKEN / VOUCHERD_SERVICE_TOKEN)
//!     [--users N] [--duration 60s] [--rate-curve "0:0,5:20000,60:20000"]
//!     [--supply N] [--checkout true|false] [--gateways URL,URL,...]
//!     [--in-flight-max N] [--retries-max N] [--retry-after-max 2s]
//!     [--request-timeout 30s] [--order-wait-max 180s] [--drain-max 240s]
//!     [--repeat-login-percent 10] [--admin-interval 250ms]
//!     [--out DIR] [--progress auto|off]
//! ```
//!
//! Exit status: 0 when the verdict passed, 1 when it failed, 2 when the
//! run could not be made.

pub mod api;
pub mod book;
pub mod chart;
pub mod config;
pub mod curve;
mod driver;
mod evidence;
pub mod http1;
pub mod outcome;
mod progress;
pub mod recorder;
pub mod scenario;
pub mod verdict;
pub mod wire;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, watch};

pub use crate::config::{Config, ProgressMode, ScenarioKind};
pub use crate::curve::RateCurve;
pub use crate::outcome::Outcome;
pub use crate::verdict::{Check, Verdict};

use crate::api::{Api, Failure};
use crate::book::Book;
use crate::curve::Schedule;
use crate::driver::Driven;
use crate::outcome::{Arrivals, ConfigRecord, RunFacts, outcome_counts};
use crate::recorder::Recorder;
use crate::scenario::sale::AdminLog;
use crate::scenario::{Campaign, Context, Flow};

/// Why a run could not be made (as opposed to a verdict that failed).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{what}: no answer: {failure}")]
    Unreachable { what: String, failure: Failure },
    #[error("{what}: answered {status}: {body}")]
    Refused {
        what: String,
        status: u16,
        body: String,
    },
    #[error("{what}: the answer is not the JSON expected: {source}")]
    Decode {
        what: String,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a verification task failed: {0}")]
    Task(String),
}

/// Runs one scenario to its verdict. Writes `result.json` and `chart.svg`
/// when [`Config::out`] is set.
pub async fn run(config: Config) -> Result<Outcome, LoadError> {
    let Prepared {
        api,
        config,
        schedule,
        ledger_before,
        run_id,
        flow,
        campaigns,
    } = prepare(config).await?;
    let started_at = jiff::Timestamp::now().to_string();
    let start = Instant::now();
    let context = Arc::new(Context {
        recorder: Recorder::new(start, scenario::primary(config.scenario)),
        book: Book::new(schedule.arrivals),
        order_polls: Semaphore::new(config.order_polls_in_flight_max),
        requests_in_flight: Semaphore::new(config.in_flight_max),
        api,
        config,
        run_id,
    });
    let (driven, admin_log) = drive(&context, flow, &campaigns, &schedule).await?;
    let elapsed = start.elapsed();
    let evidence = evidence::gather(
        &context,
        &campaigns,
        ledger_before.as_ref(),
        admin_log.failures,
    )
    .await?;
    let verdict = verdict::judge(&evidence);
    // Paused campaigns grant nothing more: a later run's logins and claims
    // cannot land in this run's campaigns.
    for id in campaigns
        .iter()
        .map(|campaign| &campaign.id)
        .chain(&admin_log.created)
    {
        let _ = context.api.pause(id).await;
    }
    let facts = RunFacts {
        scenario: context.config.scenario,
        run_id: context.run_id.clone(),
        started_at,
        config: ConfigRecord::new(&context.config),
        campaigns: campaigns
            .iter()
            .map(|campaign| campaign.id.clone())
            .collect(),
        arrivals: Arrivals {
            scheduled: driven.scheduled,
            started: driven.started,
            dropped_by_client: driven.dropped_by_client,
            unfinished: driven.unfinished,
        },
        schedule_seconds: driven.schedule_elapsed.as_secs_f64(),
        elapsed_seconds: elapsed.as_secs_f64(),
        outcomes: outcome_counts(|outcome| context.book.count(outcome)),
        primary: context.recorder.primary().as_str().to_owned(),
        verdict,
    };
    let outcome = context.recorder.outcome(facts);
    if let Some(directory) = &context.config.out {
        outcome.write(directory)?;
    }
    Ok(outcome)
}

/// A run ready to start: its campaigns live, its targets answering.
struct Prepared {
    api: Api,
    config: Config,
    schedule: Schedule,
    ledger_before: Option<HashSet<String>>,
    run_id: String,
    flow: Flow,
    campaigns: Vec<Campaign>,
}

async fn prepare(config: Config) -> Result<Prepared, LoadError> {
    config.validate()?;
    let schedule = Schedule::new(config.curve(), config.duration, config.users);
    if schedule.arrivals > config::USERS_MAX {
        return Err(LoadError::Config(format!(
            "{} arrivals is more than the {} users a run can follow",
            schedule.arrivals,
            config::USERS_MAX
        )));
    }
    let api = Api::new(
        &config.targets,
        &config.admin_token,
        &config.service_token,
        config.pool_connections_max,
        config.request_timeout,
    )?;
    for target in 0..api.target_count() {
        let sent = api.get(target, "/healthz", api::Role::Anonymous).await;
        Api::expect::<serde_json::Value>("checking a target's /healthz", sent, &[200])?;
    }
    let ledger_before = if config.gateways.is_empty() {
        None
    } else {
        Some(evidence::captured_keys(&api, &config.gateways).await?)
    };
    let run_id = new_run_id();
    let (flow, campaigns) = scenario::setup(&api, &config, &run_id).await?;
    Ok(Prepared {
        api,
        config,
        schedule,
        ledger_before,
        run_id,
        flow,
        campaigns,
    })
}

/// Drives the users with the progress line and, for the enrollment, the
/// admin beside them; answers when every visit ended.
async fn drive(
    context: &Arc<Context>,
    flow: Flow,
    campaigns: &[Campaign],
    schedule: &Schedule,
) -> Result<(Driven, AdminLog), LoadError> {
    let (stop, stopped) = watch::channel(false);
    let progress = progress::spawn(
        context.clone(),
        campaigns.to_vec(),
        schedule.arrivals,
        stopped.clone(),
    );
    let admin = match (&flow, context.config.scenario) {
        // The admin works at a console of their own: on a connection of
        // its own, never queued behind the crowd's pooled connections.
        (Flow::Sale { campaign_id }, ScenarioKind::Enrollment) => {
            Some(tokio::spawn(http1::own_connection(
                scenario::sale::admin_loop(context.clone(), campaign_id.clone(), stopped),
            )))
        }
        _ => None,
    };
    let driven = driver::drive(context.clone(), Arc::new(flow), schedule).await;
    stop.send_replace(true);
    let admin_log = match admin {
        Some(admin) => admin
            .await
            .map_err(|error| LoadError::Task(error.to_string()))?,
        None => AdminLog::default(),
    };
    let _ = progress.await;
    Ok((driven, admin_log))
}

/// `load-` and eight random hex digits: the prefix of the run's users and
/// campaign names.
fn new_run_id() -> String {
    let mut bytes = [0_u8; 4];
    // Without entropy the clock still tells runs apart.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        bytes = nanos.to_le_bytes();
    }
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("load-{hex}")
}

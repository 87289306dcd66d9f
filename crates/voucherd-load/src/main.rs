//! `voucherd-load`: the command line around [`voucherd_load::run`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use voucherd_load::curve::{RateCurve, parse_duration};
use voucherd_load::http1::ConnectionModel;
use voucherd_load::{Config, ProgressMode, ScenarioKind};

#[derive(Debug, Parser)]
#[command(
    name = "voucherd-load",
    version,
    about = "Replays voucherd's scenarios over HTTP at a target arrival rate and checks the invariants"
)]
struct Cli {
    /// baseline, hot-deal, first-login, daily-coupons or enrollment.
    #[arg(value_enum)]
    scenario: Scenario,
    /// A node's base URL; repeat for several nodes (users are spread over
    /// them; admin calls go to the first).
    #[arg(
        long = "target",
        default_value = "http://127.0.0.1:8080",
        env = "VOUCHERD_TARGET"
    )]
    targets: Vec<String>,
    #[arg(long, env = "VOUCHERD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    #[arg(long, env = "VOUCHERD_SERVICE_TOKEN", hide_env_values = true)]
    service_token: String,
    /// Distinct users (arrivals) at most; by default as many as the curve
    /// schedules within the duration.
    #[arg(long)]
    users: Option<u64>,
    /// How long arrivals are scheduled for: 60s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Arrivals per second over time, "seconds:rate,...", straight lines
    /// between points; or one rate. By default users / duration, flat.
    #[arg(long)]
    rate_curve: Option<RateCurve>,
    /// The supply (daily-coupons: of the three coupons together).
    /// Defaults: hot-deal 20000, first-login 100, daily-coupons 75.
    #[arg(long)]
    supply: Option<u32>,
    /// Sale scenarios: check out and wait for the order (false: the visit
    /// ends at the reservation).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    checkout: bool,
    /// Gateway simulators' base URLs, comma-separated, whose ledgers the
    /// verdict reads.
    #[arg(long, value_delimiter = ',')]
    gateways: Vec<String>,
    /// Requests in flight at once; a request past it is never sent,
    /// counted dropped_by_client, and fails the run.
    #[arg(long, default_value_t = 2_048)]
    in_flight_max: usize,
    /// pooled: a bounded pool of keep-alive connections per target (as a
    /// load balancer presents a crowd); per-user: each user opens its own
    /// connection for its visit (as a million browsers do).
    #[arg(long, default_value = "pooled", value_parser = parse_connections)]
    connections: ConnectionModel,
    /// pooled: connections per target at most; a request waits for one.
    #[arg(long, default_value_t = 512)]
    pool_connections_max: usize,
    /// Retries of a request answered 429/503, after its Retry-After.
    #[arg(long, default_value_t = 3)]
    retries_max: u32,
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    retry_after_max: Duration,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// How long a buyer waits for the order to be paid or failed.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    order_wait_max: Duration,
    /// How long to wait after the last arrival for visits still going.
    #[arg(long, default_value = "240s", value_parser = parse_duration)]
    drain_max: Duration,
    /// first-login: the share of users who log in twice.
    #[arg(long, default_value_t = 10)]
    repeat_login_percent: u8,
    /// enrollment: the pause between the admin's rounds.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    admin_interval: Duration,
    /// Directory for result.json and chart.svg.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    progress: Progress,
    /// Threads running the users' visits (the schedule has one more of its
    /// own).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn parse_connections(text: &str) -> Result<ConnectionModel, String> {
    ConnectionModel::parse(text).ok_or_else(|| format!("{text:?} is neither pooled nor per-user"))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    Baseline,
    HotDeal,
    FirstLogin,
    DailyCoupons,
    Enrollment,
}

impl From<Scenario> for ScenarioKind {
    fn from(scenario: Scenario) -> ScenarioKind {
        match scenario {
            Scenario::Baseline => ScenarioKind::Baseline,
            Scenario::HotDeal => ScenarioKind::HotDeal,
            Scenario::FirstLogin => ScenarioKind::FirstLogin,
            Scenario::DailyCoupons => ScenarioKind::DailyCoupons,
            Scenario::Enrollment => ScenarioKind::Enrollment,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Progress {
    Auto,
    Off,
}

impl Cli {
    fn into_config(self) -> Config {
        let mut config = Config::new(
            self.scenario.into(),
            String::new(),
            self.admin_token,
            self.service_token,
        );
        config.targets = self.targets;
        config.users = self.users;
        config.duration = self.duration;
        config.rate_curve = self.rate_curve;
        config.supply = self.supply;
        config.checkout = self.checkout;
        config.gateways = self.gateways;
        config.in_flight_max = self.in_flight_max;
        config.connections = self.connections;
        config.pool_connections_max = self.pool_connections_max;
        config.retries_max = self.retries_max;
        config.retry_after_max = self.retry_after_max;
        config.request_timeout = self.request_timeout;
        config.order_wait_max = self.order_wait_max;
        config.drain_max = self.drain_max;
        config.repeat_login_percent = self.repeat_login_percent;
        config.admin_interval = self.admin_interval;
        config.out = self.out;
        config.progress = match self.progress {
            Progress::Auto => ProgressMode::Auto,
            Progress::Off => ProgressMode::Off,
        };
        config
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = cli.threads;
    let config = cli.into_config();
    // One worker by default: a run's visits wait on sockets, and one thread
    // spares the server the cost of waking others.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime");
    let outcome = runtime.and_then(|runtime| {
        runtime
            .block_on(voucherd_load::run(config))
            .context("running the scenario")
    });
    match outcome {
        Ok(outcome) => {
            print!("{outcome}");
            if outcome.verdict.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("voucherd-load: {error:#}");
            ExitCode::from(2)
        }
    }
}

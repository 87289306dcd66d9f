//! What a run does: the scenario, the targets and tokens, the arrival
//! curve, and the bounds on everything the run keeps or waits for.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::LoadError;
use crate::curve::RateCurve;
use crate::http1::ConnectionModel;

/// Users a run can hold records for; user numbers are `u32`.
pub const USERS_MAX: u64 = 50_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    /// `GET /healthz` at the curve's rate: the machine's reference.
    Baseline,
    /// Seed 000: view, claim, check out, wait for the order.
    HotDeal,
    /// Seed 002: login events grant a `first_login` coupon.
    FirstLogin,
    /// Seed 003: three coupons in one daily group; each user claims all.
    DailyCoupons,
    /// Seed 004: an unlimited course bought by many while an admin works.
    Enrollment,
}

impl ScenarioKind {
    pub const ALL: [ScenarioKind; 5] = [
        ScenarioKind::Baseline,
        ScenarioKind::HotDeal,
        ScenarioKind::FirstLogin,
        ScenarioKind::DailyCoupons,
        ScenarioKind::Enrollment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioKind::Baseline => "baseline",
            ScenarioKind::HotDeal => "hot-deal",
            ScenarioKind::FirstLogin => "first-login",
            ScenarioKind::DailyCoupons => "daily-coupons",
            ScenarioKind::Enrollment => "enrollment",
        }
    }

    /// The supply when none is given: seed 000's 20,000, seed 002's 100,
    /// seed 003's three coupons of 25 a day; the course has no limit.
    pub fn default_supply(self) -> Option<u32> {
        match self {
            ScenarioKind::Baseline | ScenarioKind::Enrollment => None,
            ScenarioKind::HotDeal => Some(20_000),
            ScenarioKind::FirstLogin => Some(100),
            ScenarioKind::DailyCoupons => Some(75),
        }
    }
}

impl fmt::Display for ScenarioKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for ScenarioKind {
    type Err = LoadError;

    fn from_str(text: &str) -> Result<ScenarioKind, LoadError> {
        ScenarioKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| LoadError::Config(format!("no scenario {text:?}")))
    }
}

/// Whether to draw the progress line on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Redrawn in place on a terminal; a line every few seconds otherwise
    /// or under `CI=true`.
    Auto,
    Off,
}

/// One run. [`Config::new`] fills the defaults; every field is public to
/// change before [`crate::run`].
#[derive(Debug, Clone)]
pub struct Config {
    pub scenario: ScenarioKind,
    /// Base URLs of the nodes (`http://127.0.0.1:8080`); users are spread
    /// over them, admin calls go to the first.
    pub targets: Vec<String>,
    pub admin_token: String,
    pub service_token: String,
    /// At most this many users (arrivals); `None` for as many as the curve
    /// schedules within the duration.
    pub users: Option<u64>,
    /// How long arrivals are scheduled for.
    pub duration: Duration,
    /// Arrivals per second over time; `None` for `users / duration`, flat.
    pub rate_curve: Option<RateCurve>,
    /// The campaign's supply (for daily-coupons, the three coupons'
    /// together); `None` for the scenario's default.
    pub supply: Option<u32>,
    /// Sale scenarios check out and wait for the order; without it a
    /// claim (a reservation) ends the visit.
    pub checkout: bool,
    /// Gateway simulators whose ledgers the verdict reads.
    pub gateways: Vec<String>,
    /// Requests in flight at once, across users; a request past it is
    /// counted `dropped_by_client` and never sent (nor delayed), and its
    /// user stops there. A user waiting between requests holds nothing.
    pub in_flight_max: usize,
    /// How users reach the targets: a bounded pool of keep-alive
    /// connections per target, or a connection of each user's own.
    pub connections: ConnectionModel,
    /// Pooled: connections per target at most.
    pub pool_connections_max: usize,
    /// Retries of a request answered 429/503.
    pub retries_max: u32,
    /// The longest `Retry-After` honoured; longer ones are cut to it.
    pub retry_after_max: Duration,
    pub request_timeout: Duration,
    /// How long a user waits for an order to be paid or failed.
    pub order_wait_max: Duration,
    /// Order polls in flight at once, across users.
    pub order_polls_in_flight_max: usize,
    /// How long the run waits for visits still going after the last
    /// arrival before counting them unfinished.
    pub drain_max: Duration,
    /// First-login: the share of users who log in a second time.
    pub repeat_login_percent: u8,
    /// Enrollment: the pause between the admin's rounds of create,
    /// publish and report.
    pub admin_interval: Duration,
    /// Enrollment: buyers whose dashboards the verdict reads, at most.
    pub dashboards_checked_max: usize,
    /// Where `result.json` and `chart.svg` go; `None` writes nothing.
    pub out: Option<PathBuf>,
    pub progress: ProgressMode,
}

impl Config {
    pub fn new(
        scenario: ScenarioKind,
        target: impl Into<String>,
        admin_token: impl Into<String>,
        service_token: impl Into<String>,
    ) -> Config {
        Config {
            scenario,
            targets: vec![target.into()],
            admin_token: admin_token.into(),
            service_token: service_token.into(),
            users: None,
            duration: Duration::from_secs(10),
            rate_curve: None,
            supply: None,
            checkout: true,
            gateways: Vec::new(),
            in_flight_max: 2_048,
            connections: ConnectionModel::Pooled,
            pool_connections_max: 512,
            retries_max: 3,
            retry_after_max: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            order_wait_max: Duration::from_secs(180),
            order_polls_in_flight_max: 256,
            drain_max: Duration::from_secs(240),
            repeat_login_percent: 10,
            admin_interval: Duration::from_millis(250),
            dashboards_checked_max: 20_000,
            out: None,
            progress: ProgressMode::Auto,
        }
    }

    /// The curve the run follows: the one given, or `users / duration`.
    pub fn curve(&self) -> RateCurve {
        match (&self.rate_curve, self.users) {
            (Some(curve), _) => curve.clone(),
            (None, Some(users)) => {
                RateCurve::constant(users as f64 / self.duration.as_secs_f64().max(0.001))
            }
            (None, None) => RateCurve::constant(100.0),
        }
    }

    pub fn supply_or_default(&self) -> Option<u32> {
        match self.scenario {
            ScenarioKind::Enrollment | ScenarioKind::Baseline => None,
            scenario => self.supply.or(scenario.default_supply()),
        }
    }

    /// Refuses a configuration no run can follow.
    pub fn validate(&self) -> Result<(), LoadError> {
        let refuse = |why: &str| Err(LoadError::Config(why.to_owned()));
        if self.targets.is_empty() {
            return refuse("at least one target is needed");
        }
        for url in self.targets.iter().chain(&self.gateways) {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(LoadError::Config(format!("{url:?} is not an http:// URL")));
            }
        }
        if self.duration.is_zero() {
            return refuse("the duration must be above zero");
        }
        if self.in_flight_max == 0
            || self.order_polls_in_flight_max == 0
            || self.pool_connections_max == 0
        {
            return refuse("the in-flight bounds must be above zero");
        }
        if self.repeat_login_percent > 100 {
            return refuse("repeat-login-percent is at most 100");
        }
        match (self.scenario, self.supply_or_default()) {
            (ScenarioKind::DailyCoupons, Some(supply)) if supply < 3 => {
                refuse("daily-coupons needs a supply of at least 3 (three coupons)")
            }
            (ScenarioKind::HotDeal | ScenarioKind::FirstLogin, Some(0)) => {
                refuse("the supply must be above zero")
            }
            _ => Ok(()),
        }
    }
}

//! The result of a run: what `result.json` holds, the summary table, and
//! writing both files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::LoadError;
use crate::book::UserOutcome;
use crate::config::{Config, ScenarioKind};
use crate::recorder::Tally;
use crate::verdict::Verdict;

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: ScenarioKind,
    /// Prefix of every user id and campaign name the run made.
    pub run_id: String,
    pub started_at: String,
    pub config: ConfigRecord,
    /// Ids of the campaigns the run created and acted on.
    pub campaigns: Vec<String>,
    pub arrivals: Arrivals,
    /// From the start to the last arrival.
    pub schedule_seconds: f64,
    /// From the start until every visit ended (or the drain bound).
    pub elapsed_seconds: f64,
    /// Users by where their visit ended.
    pub outcomes: BTreeMap<String, u64>,
    /// Answers by operation, then by HTTP status (`"0"`: no answer).
    pub answers: BTreeMap<String, BTreeMap<String, u64>>,
    /// Unexpected answers and failures by kind, e.g. `claim 500 internal`.
    pub errors: BTreeMap<String, u64>,
    pub throughput: Throughput,
    /// Latency per operation, in milliseconds from each request's due time.
    pub latency_ms: BTreeMap<String, LatencySummary>,
    /// One entry per second of the run.
    pub series: Vec<SecondRecord>,
    pub verdict: Verdict,
}

/// The configuration, without the tokens.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigRecord {
    pub targets: Vec<String>,
    pub users: Option<u64>,
    pub duration_seconds: f64,
    pub rate_curve: String,
    pub supply: Option<u32>,
    pub checkout: bool,
    pub gateways: Vec<String>,
    pub in_flight_max: usize,
    pub connections: &'static str,
    pub pool_connections_max: usize,
    pub retries_max: u32,
    pub retry_after_max_seconds: f64,
    pub request_timeout_seconds: f64,
    pub order_wait_max_seconds: f64,
    pub drain_max_seconds: f64,
    pub repeat_login_percent: u8,
    pub admin_interval_seconds: f64,
}

impl ConfigRecord {
    pub fn new(config: &Config) -> ConfigRecord {
        ConfigRecord {
            targets: config.targets.clone(),
            users: config.users,
            duration_seconds: config.duration.as_secs_f64(),
            rate_curve: config.curve().to_string(),
            supply: config.supply_or_default(),
            checkout: config.checkout,
            gateways: config.gateways.clone(),
            in_flight_max: config.in_flight_max,
            connections: config.connections.as_str(),
            pool_connections_max: config.pool_connections_max,
            retries_max: config.retries_max,
            retry_after_max_seconds: config.retry_after_max.as_secs_f64(),
            request_timeout_seconds: config.request_timeout.as_secs_f64(),
            order_wait_max_seconds: config.order_wait_max.as_secs_f64(),
            drain_max_seconds: config.drain_max.as_secs_f64(),
            repeat_login_percent: config.repeat_login_percent,
            admin_interval_seconds: config.admin_interval.as_secs_f64(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Arrivals {
    pub scheduled: u64,
    pub started: u64,
    pub dropped_by_client: u64,
    pub unfinished: u64,
}

/// Rates averaged from the first answer to the last, and the best single
/// second of the series.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// The scenario's main request: `claim`, `login` or `healthz`.
    pub primary: String,
    /// From the first to the last answer of the primary operation.
    pub primary_seconds: f64,
    /// Every request, from the first answer of any to the last.
    pub requests_per_second: f64,
    pub primary_per_second: f64,
    /// Primary answers that were a success: a new voucher, a healthy
    /// answer.
    pub successes_per_second: f64,
    pub peak_primary_per_second: u64,
    pub peak_successes_per_second: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    fn new(histogram: &Histogram<u64>) -> LatencySummary {
        // Microseconds to milliseconds, kept to the microsecond.
        let millis = |micros: f64| micros.round() / 1_000.0;
        LatencySummary {
            count: histogram.len(),
            mean: millis(histogram.mean()),
            p50: millis(histogram.value_at_quantile(0.50) as f64),
            p90: millis(histogram.value_at_quantile(0.90) as f64),
            p99: millis(histogram.value_at_quantile(0.99) as f64),
            p999: millis(histogram.value_at_quantile(0.999) as f64),
            max: millis(histogram.max() as f64),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondRecord {
    pub second: u64,
    pub requests: u64,
    pub primary: u64,
    pub successes: u64,
    pub refused: u64,
    pub errors: u64,
    /// The primary operation's latency in the second; null without one.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The parts of an outcome the run itself knows; the rest comes from the
/// recorder's tally.
#[derive(Debug)]
pub struct RunFacts {
    pub scenario: ScenarioKind,
    pub run_id: String,
    pub started_at: String,
    pub config: ConfigRecord,
    pub campaigns: Vec<String>,
    pub arrivals: Arrivals,
    pub schedule_seconds: f64,
    pub elapsed_seconds: f64,
    pub outcomes: BTreeMap<String, u64>,
    pub primary: String,
    pub verdict: Verdict,
}

impl Outcome {
    pub(crate) fn new(facts: RunFacts, tally: &Tally) -> Outcome {
        let series: Vec<SecondRecord> = tally
            .seconds
            .iter()
            .enumerate()
            .map(|(second, tally)| {
                let quantile = |quantile: f64| {
                    (!tally.primary_latency.is_empty())
                        .then(|| tally.primary_latency.value_at_quantile(quantile) as f64 / 1_000.0)
                };
                SecondRecord {
                    second: second as u64,
                    requests: tally.requests,
                    primary: tally.primary,
                    successes: tally.successes,
                    refused: tally.refused,
                    errors: tally.errors,
                    p50_ms: quantile(0.50),
                    p99_ms: quantile(0.99),
                }
            })
            .collect();
        Outcome {
            throughput: throughput(&facts.primary, tally, &series),
            answers: tally
                .operations
                .iter()
                .filter(|(_, operation_tally)| !operation_tally.answers.is_empty())
                .map(|(operation, operation_tally)| {
                    let by_status = operation_tally
                        .answers
                        .iter()
                        .map(|(status, count)| (status.to_string(), *count))
                        .collect();
                    (operation.as_str().to_owned(), by_status)
                })
                .collect(),
            latency_ms: tally
                .operations
                .iter()
                .filter(|(_, operation_tally)| !operation_tally.histogram.is_empty())
                .map(|(operation, operation_tally)| {
                    (
                        operation.as_str().to_owned(),
                        LatencySummary::new(&operation_tally.histogram),
                    )
                })
                .collect(),
            errors: tally.errors.clone(),
            series,
            scenario: facts.scenario,
            run_id: facts.run_id,
            started_at: facts.started_at,
            config: facts.config,
            campaigns: facts.campaigns,
            arrivals: facts.arrivals,
            schedule_seconds: facts.schedule_seconds,
            elapsed_seconds: facts.elapsed_seconds,
            outcomes: facts.outcomes,
            verdict: facts.verdict,
        }
    }

    /// Writes `result.json` and `chart.svg` into `directory`, creating it.
    pub fn write(&self, directory: &Path) -> Result<(), LoadError> {
        let written = |path: &Path, result: std::io::Result<()>| {
            result.map_err(|source| LoadError::Write {
                path: path.to_owned(),
                source,
            })
        };
        written(directory, std::fs::create_dir_all(directory))?;
        let result_path = directory.join("result.json");
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other);
        written(
            &result_path,
            json.and_then(|json| std::fs::write(&result_path, json + "\n")),
        )?;
        let chart_path = directory.join("chart.svg");
        written(
            &chart_path,
            std::fs::write(&chart_path, crate::chart::render(self)),
        )
    }
}

/// Counts of users by outcome, leaving out the empty ones.
pub(crate) fn outcome_counts(count: impl Fn(UserOutcome) -> u64) -> BTreeMap<String, u64> {
    UserOutcome::ALL
        .into_iter()
        .map(|outcome| (outcome.as_str().to_owned(), count(outcome)))
        .filter(|(_, count)| *count > 0)
        .collect()
}

fn throughput(primary: &str, tally: &Tally, series: &[SecondRecord]) -> Throughput {
    // Spans under a second (a tiny run) count as a second.
    let seconds = |span: Option<(Instant, Instant)>| {
        span.map_or(0.0, |(first, last)| (last - first).as_secs_f64())
    };
    let rate = |total: u64, seconds: f64| (total as f64 / seconds.max(1.0) * 10.0).round() / 10.0;
    let requests: u64 = tally
        .operations
        .values()
        .map(|operation| operation.answers.values().sum::<u64>())
        .sum();
    let primary_count: u64 = series.iter().map(|second| second.primary).sum();
    let successes: u64 = series.iter().map(|second| second.successes).sum();
    let primary_seconds = seconds(tally.primary_span);
    Throughput {
        primary: primary.to_owned(),
        primary_seconds: (primary_seconds * 1_000.0).round() / 1_000.0,
        requests_per_second: rate(requests, seconds(tally.requests_span)),
        primary_per_second: rate(primary_count, primary_seconds),
        successes_per_second: rate(successes, primary_seconds),
        peak_primary_per_second: series
            .iter()
            .map(|second| second.primary)
            .max()
            .unwrap_or(0),
        peak_successes_per_second: series
            .iter()
            .map(|second| second.successes)
            .max()
            .unwrap_or(0),
    }
}

impl fmt::Display for Outcome {
    /// The summary table printed at the end of a run.
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            out,
            "voucherd-load {}  run {}  started {}",
            self.scenario, self.run_id, self.started_at
        )?;
        if !self.campaigns.is_empty() {
            writeln!(out, "campaigns    {}", self.campaigns.join(", "))?;
        }
        let arrivals = &self.arrivals;
        writeln!(
            out,
            "arrivals     {} scheduled, {} started, {} requests dropped by the client's in-flight bound, {} unfinished",
            arrivals.scheduled, arrivals.started, arrivals.dropped_by_client, arrivals.unfinished
        )?;
        writeln!(
            out,
            "time         {:.1} s of arrivals, {:.1} s in all",
            self.schedule_seconds, self.elapsed_seconds
        )?;
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(outcome, count)| format!("{outcome} {count}"))
            .collect();
        writeln!(out, "users        {}", outcomes.join(", "))?;
        let throughput = &self.throughput;
        writeln!(
            out,
            "throughput   {} requests/s; {} {}/s (peak {}), of which successes {}/s (peak {}), over {:.1} s",
            throughput.requests_per_second,
            throughput.primary,
            throughput.primary_per_second,
            throughput.peak_primary_per_second,
            throughput.successes_per_second,
            throughput.peak_successes_per_second,
            throughput.primary_seconds
        )?;
        writeln!(
            out,
            "latency ms   {:<14}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
            "operation", "count", "p50", "p90", "p99", "p99.9", "max"
        )?;
        for (operation, latency) in &self.latency_ms {
            writeln!(
                out,
                "             {:<14}{:>9}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
                operation,
                latency.count,
                latency.p50,
                latency.p90,
                latency.p99,
                latency.p999,
                latency.max
            )?;
        }
        for (operation, answers) in &self.answers {
            let statuses: Vec<String> = answers
                .iter()
                .map(|(status, count)| format!("{status}: {count}"))
                .collect();
            writeln!(out, "answers      {operation:<14}{}", statuses.join("  "))?;
        }
        if self.errors.is_empty() {
            writeln!(out, "errors       none")?;
        }
        for (kind, count) in &self.errors {
            writeln!(out, "errors       {kind}: {count}")?;
        }
        let verdict = if self.verdict.passed {
            "PASSED"
        } else {
            "FAILED"
        };
        writeln!(out, "verdict      {verdict}")?;
        for check in &self.verdict.checks {
            let mark = if check.passed { "pass" } else { "FAIL" };
            writeln!(out, "  [{mark}] {}: {}", check.name, check.detail)?;
        }
        Ok(())
    }
}

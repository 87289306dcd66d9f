//! What the run measured: a latency histogram and answer counts per
//! operation, errors by kind, and a per-second series for the chart.
//!
//! Latency is always measured from the time a request was *due*, not from
//! when it was sent: a request that waited behind a slow server or a busy
//! client counts its wait (no coordinated omission).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::api::{Answer, Failure};

/// Latencies are recorded in microseconds up to an hour; longer ones are
/// clamped to an hour.
const LATENCY_MAX_US: u64 = 3_600_000_000;
/// Whole-run histograms keep three significant digits; the per-second
/// ones two, which keeps each under 50 KiB.
const RUN_DIGITS: u8 = 3;
const SECOND_DIGITS: u8 = 2;
/// The series covers at most this many seconds; later answers are counted
/// in the last one.
pub const SERIES_SECONDS_MAX: usize = 4 * 3_600;

/// The requests a run makes, plus two derived latencies: `order_settled`
/// (checkout accepted until the order was seen paid or failed) and
/// `schedule_lag` (an arrival's due time until the driver started it: the
/// load generator's own lateness, already inside every other latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Healthz,
    View,
    Claim,
    Checkout,
    Order,
    OrderSettled,
    Login,
    AdminCreate,
    AdminPublish,
    AdminReport,
    ScheduleLag,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Healthz => "healthz",
            Operation::View => "view",
            Operation::Claim => "claim",
            Operation::Checkout => "checkout",
            Operation::Order => "order",
            Operation::OrderSettled => "order_settled",
            Operation::Login => "login",
            Operation::AdminCreate => "admin_create",
            Operation::AdminPublish => "admin_publish",
            Operation::AdminReport => "admin_report",
            Operation::ScheduleLag => "schedule_lag",
        }
    }
}

/// How one answer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerClass {
    /// Any answer the scenario expects: a voucher, sold out, a daily limit.
    Expected,
    /// `429`/`503`: the server shed the request, as it should under
    /// overload.
    Refused,
    /// Anything else, including no answer.
    Unexpected,
}

#[derive(Debug)]
pub(crate) struct OperationTally {
    pub histogram: Histogram<u64>,
    /// Answers by HTTP status; `0` for no answer.
    pub answers: BTreeMap<u16, u64>,
}

#[derive(Debug)]
pub(crate) struct SecondTally {
    pub requests: u64,
    pub primary: u64,
    /// Primary answers the scenario counts as a success (a new voucher).
    pub successes: u64,
    pub refused: u64,
    pub errors: u64,
    pub primary_latency: Histogram<u64>,
}

#[derive(Debug)]
pub(crate) struct Tally {
    pub operations: BTreeMap<Operation, OperationTally>,
    /// When the first and the last answer came, of any request and of the
    /// primary operation: the spans the rates are averaged over.
    pub requests_span: Option<(Instant, Instant)>,
    pub primary_span: Option<(Instant, Instant)>,
    pub errors: BTreeMap<String, u64>,
    pub seconds: Vec<SecondTally>,
}

/// Counters the progress line reads without taking the lock.
#[derive(Debug, Default)]
pub struct Live {
    pub arrivals: AtomicU64,
    pub requests: AtomicU64,
    pub refused: AtomicU64,
    pub errors: AtomicU64,
    pub dropped: AtomicU64,
}

#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    primary: Operation,
    pub(crate) tally: Mutex<Tally>,
    pub live: Live,
}

fn histogram(digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, digits).expect("valid histogram bounds")
}

pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, LATENCY_MAX_US)
}

impl Recorder {
    pub fn new(start: Instant, primary: Operation) -> Recorder {
        Recorder {
            start,
            primary,
            tally: Mutex::new(Tally {
                operations: BTreeMap::new(),
                requests_span: None,
                primary_span: None,
                errors: BTreeMap::new(),
                seconds: Vec::new(),
            }),
            live: Live::default(),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn primary(&self) -> Operation {
        self.primary
    }

    /// Records one request: its latency from `due`, its status, how it
    /// counts, and for an unexpected one the error kind.
    pub fn request(
        &self,
        operation: Operation,
        due: Instant,
        sent: &Result<Answer, Failure>,
        class: AnswerClass,
        success: bool,
    ) {
        let now = Instant::now();
        let latency = micros(now.saturating_duration_since(due));
        let status = sent.as_ref().map_or(0, |answer| answer.status);
        let error_kind = (class == AnswerClass::Unexpected).then(|| error_kind(operation, sent));
        self.live.requests.fetch_add(1, Ordering::Relaxed);
        match class {
            AnswerClass::Refused => self.live.refused.fetch_add(1, Ordering::Relaxed),
            AnswerClass::Unexpected => self.live.errors.fetch_add(1, Ordering::Relaxed),
            AnswerClass::Expected => 0,
        };
        let mut tally = self.tally.lock().expect("the recorder's lock");
        let operation_tally = tally.operation(operation);
        operation_tally.histogram.saturating_record(latency);
        *operation_tally.answers.entry(status).or_default() += 1;
        if let Some(kind) = error_kind {
            *tally.errors.entry(kind).or_default() += 1;
        }
        let is_primary = operation == self.primary;
        widen(&mut tally.requests_span, now);
        if is_primary {
            widen(&mut tally.primary_span, now);
        }
        let second = self.second(&mut tally, now);
        second.requests += 1;
        match class {
            AnswerClass::Refused => second.refused += 1,
            AnswerClass::Unexpected => second.errors += 1,
            AnswerClass::Expected => {}
        }
        if is_primary {
            second.primary += 1;
            second.successes += u64::from(success);
            second.primary_latency.saturating_record(latency);
        }
    }

    /// Records a latency that is not one request's (`order_settled`).
    pub fn latency(&self, operation: Operation, latency: Duration) {
        let mut tally = self.tally.lock().expect("the recorder's lock");
        tally
            .operation(operation)
            .histogram
            .saturating_record(micros(latency));
    }

    /// Adds latencies gathered elsewhere (the driver's schedule lag, kept
    /// without the lock while it runs).
    pub fn add_latencies(&self, operation: Operation, latencies: &Histogram<u64>) {
        let mut tally = self.tally.lock().expect("the recorder's lock");
        let operation_tally = tally.operation(operation);
        // Both histograms share bounds and precision, so adding cannot fail.
        let _ = operation_tally.histogram.add(latencies);
    }

    /// A histogram of the run's bounds and precision, to fill elsewhere.
    pub fn new_histogram() -> Histogram<u64> {
        histogram(RUN_DIGITS)
    }

    /// Counts an error that is not one request's answer (an order never
    /// settled, a flow cut off at the end of the run).
    pub fn error(&self, kind: String) {
        self.error_count(kind, 1);
    }

    pub fn error_count(&self, kind: String, count: u64) {
        self.live.errors.fetch_add(count, Ordering::Relaxed);
        let mut tally = self.tally.lock().expect("the recorder's lock");
        *tally.errors.entry(kind).or_default() += count;
        let second = self.second(&mut tally, Instant::now());
        second.errors += count;
    }

    /// The outcome of the run from what was recorded and the run's facts.
    pub(crate) fn outcome(&self, facts: crate::outcome::RunFacts) -> crate::Outcome {
        crate::Outcome::new(facts, &self.tally.lock().expect("the recorder's lock"))
    }

    pub fn dropped(&self) {
        self.live.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Errors counted so far: answers the scenario did not expect, and
    /// flows that failed without one.
    pub fn errors(&self) -> u64 {
        self.live.errors.load(Ordering::Relaxed)
    }

    fn second<'t>(&self, tally: &'t mut Tally, now: Instant) -> &'t mut SecondTally {
        let index = (now.saturating_duration_since(self.start).as_secs() as usize)
            .min(SERIES_SECONDS_MAX - 1);
        while tally.seconds.len() <= index {
            tally.seconds.push(SecondTally {
                requests: 0,
                primary: 0,
                successes: 0,
                refused: 0,
                errors: 0,
                primary_latency: histogram(SECOND_DIGITS),
            });
        }
        &mut tally.seconds[index]
    }
}

impl Tally {
    fn operation(&mut self, operation: Operation) -> &mut OperationTally {
        self.operations
            .entry(operation)
            .or_insert_with(|| OperationTally {
                histogram: histogram(RUN_DIGITS),
                answers: BTreeMap::new(),
            })
    }
}

fn widen(span: &mut Option<(Instant, Instant)>, now: Instant) {
    let (first, _) = span.get_or_insert((now, now));
    *span = Some((*first, now));
}

/// `claim 500 internal`, `claim timeout`: the operation, then the status
/// and problem type, or the kind of failure.
fn error_kind(operation: Operation, sent: &Result<Answer, Failure>) -> String {
    match sent {
        Ok(answer) => format!(
            "{} {} {}",
            operation.as_str(),
            answer.status,
            answer.problem_kind()
        ),
        Err(failure) => format!("{} {}", operation.as_str(), failure.kind.as_str()),
    }
}

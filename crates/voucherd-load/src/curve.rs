//! The target arrival rate over time, and the schedule of arrivals it
//! implies.
//!
//! A curve is a list of `seconds:rate` points joined by straight lines and
//! held flat after the last point. The `n`-th arrival (counting from 1) is
//! due when the area under the curve reaches `n`, so the schedule follows
//! the curve exactly whatever the server answers: that is what makes the
//! load open-loop.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A piecewise-linear rate curve, in arrivals per second.
#[derive(Debug, Clone, PartialEq)]
pub struct RateCurve {
    /// `(seconds, rate)`, seconds strictly increasing from 0.
    points: Vec<(f64, f64)>,
}

/// Why a curve or a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl RateCurve {
    /// The same rate from start to end.
    pub fn constant(rate_per_second: f64) -> RateCurve {
        RateCurve {
            points: vec![(0.0, rate_per_second.max(0.0))],
        }
    }

    /// The rate at `seconds` after the start.
    pub fn rate_at(&self, seconds: f64) -> f64 {
        let mut previous = self.points[0];
        for &point in &self.points[1..] {
            if seconds < point.0 {
                let slope = (point.1 - previous.1) / (point.0 - previous.0);
                return previous.1 + slope * (seconds - previous.0);
            }
            previous = point;
        }
        previous.1
    }

    /// The arrivals due in the first `seconds`: the area under the curve.
    pub fn arrivals_until(&self, seconds: f64) -> f64 {
        let mut area = 0.0;
        for (start, end) in self.segments() {
            if seconds <= start.0 {
                break;
            }
            let until = seconds.min(end.0);
            area += (start.1 + self.rate_at(until)) / 2.0 * (until - start.0);
        }
        area
    }

    /// When the area under the curve reaches `count`; `None` when it never
    /// does (the curve ends at rate 0 below it).
    pub fn time_of(&self, count: f64) -> Option<f64> {
        let mut before = 0.0;
        for (start, end) in self.segments() {
            let width = end.0 - start.0;
            let area = (start.1 + end.1) / 2.0 * width;
            if before + area >= count && area > 0.0 {
                let slope = (end.1 - start.1) / width;
                // The root of start.rate·x + slope/2·x² = rest, in the form
                // that stays exact when the slope is zero or negative.
                let rest = count - before;
                if rest <= 0.0 {
                    return Some(start.0);
                }
                let root = (start.1 * start.1 + 2.0 * slope * rest).max(0.0).sqrt();
                let offset = 2.0 * rest / (start.1 + root);
                return Some(start.0 + offset.min(width));
            }
            before += area;
        }
        None
    }

    /// Consecutive pairs of points, the last one extended to infinity.
    fn segments(&self) -> impl Iterator<Item = ((f64, f64), (f64, f64))> + '_ {
        let last = self.points[self.points.len() - 1];
        let tail = (f64::INFINITY, last.1);
        self.points
            .iter()
            .copied()
            .zip(self.points[1..].iter().copied().chain([tail]))
    }

    /// The highest rate the curve reaches.
    pub fn peak(&self) -> f64 {
        self.points.iter().map(|point| point.1).fold(0.0, f64::max)
    }
}

impl FromStr for RateCurve {
    type Err = ParseError;

    /// `"0:0,5:20000,60:20000"` (seconds:rate, joined by lines) or a single
    /// rate such as `"500"`.
    fn from_str(text: &str) -> Result<RateCurve, ParseError> {
        let text = text.trim();
        if let Ok(rate) = text.parse::<f64>() {
            return finite_rate(rate).map(RateCurve::constant);
        }
        let mut points: Vec<(f64, f64)> = Vec::new();
        for part in text.split(',') {
            let (seconds, rate) = part.split_once(':').ok_or_else(|| {
                ParseError(format!("{part:?} is not seconds:rate in the rate curve"))
            })?;
            let seconds: f64 = seconds
                .trim()
                .parse()
                .map_err(|_| ParseError(format!("{seconds:?} is not a number of seconds")))?;
            let rate = rate
                .trim()
                .parse::<f64>()
                .map_err(|_| ParseError(format!("{rate:?} is not a rate")))
                .and_then(finite_rate)?;
            let after_previous = points.last().is_none_or(|last| seconds > last.0);
            if !seconds.is_finite() || !after_previous {
                return Err(ParseError(
                    "the rate curve's seconds must increase".to_owned(),
                ));
            }
            points.push((seconds, rate));
        }
        if points.first().is_none_or(|first| first.0 != 0.0) {
            return Err(ParseError(
                "the rate curve must start at second 0".to_owned(),
            ));
        }
        Ok(RateCurve { points })
    }
}

fn finite_rate(rate: f64) -> Result<f64, ParseError> {
    if rate.is_finite() && rate >= 0.0 {
        Ok(rate)
    } else {
        Err(ParseError(format!("{rate} is not a rate per second")))
    }
}

impl fmt::Display for RateCurve {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (seconds, rate)) in self.points.iter().enumerate() {
            if index > 0 {
                formatter.write_str(",")?;
            }
            write!(formatter, "{seconds}:{rate}")?;
        }
        Ok(())
    }
}

/// Reads `"60s"`, `"250ms"`, `"2m"`, `"1.5s"` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    let text = text.trim();
    let (number, unit_seconds) = if let Some(number) = text.strip_suffix("ms") {
        (number, 0.001)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix('m') {
        (number, 60.0)
    } else {
        (text, 1.0)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|value| value.is_finite() && *value >= 0.0)
        .and_then(|value| Duration::try_from_secs_f64(value * unit_seconds).ok())
        .ok_or_else(|| ParseError(format!("{text:?} is not a duration such as 60s or 250ms")))
}

/// The arrivals of one run: when each is due, counted from the start.
#[derive(Debug, Clone)]
pub struct Schedule {
    curve: RateCurve,
    /// How many arrivals the run has: the curve's area over the duration,
    /// capped by the number of users.
    pub arrivals: u64,
}

impl Schedule {
    pub fn new(curve: RateCurve, duration: Duration, users_max: Option<u64>) -> Schedule {
        let due = curve.arrivals_until(duration.as_secs_f64()).floor() as u64;
        let arrivals = users_max.map_or(due, |users| users.min(due));
        Schedule { curve, arrivals }
    }

    /// When arrival `index` (from 0) is due.
    pub fn due(&self, index: u64) -> Duration {
        let seconds = self.curve.time_of(index as f64 + 1.0).unwrap_or(f64::MAX);
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    }
}

//! What a simulated gateway does, and the parsers that turn the command
//! line's strings into it.

use std::ops::RangeInclusive;
use std::time::Duration;

/// How a simulated gateway behaves. The defaults are the numbers of one of
/// the three real gateways voucherd was sized for: about 100 charges a
/// second, 20 to 200 ms each, 2 % declined and 0.5 % never answered.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatorConfig {
    /// Charges accepted in any one-second window; more are answered `429`.
    pub rate_per_second: u32,
    /// Each charge is answered after a uniformly drawn time in this range.
    pub latency_ms: RangeInclusive<u64>,
    /// The probability that a charge is declined.
    pub decline_rate: f64,
    /// The probability that a charge gets no answer. Half of those were
    /// decided and are in the ledger; the other half never reached the
    /// gateway and are not.
    pub timeout_rate: f64,
    /// Makes every draw reproducible: the outcome of a charge depends only
    /// on the seed, its idempotency key and how many earlier attempts with
    /// that key were lost. `None` draws a seed from the operating system.
    pub seed: Option<u64>,
    /// How long a charge that gets no answer is held before the simulator
    /// gives up on it with a `504`: far longer than any client waits, so
    /// the client sees nothing and has to look the charge up.
    pub timeout_hold: Duration,
    /// Requests to the gateway API being answered at once, held ones
    /// included; past it requests are refused with `503` at once, so a
    /// flood cannot grow the simulator's memory.
    pub in_flight_max: usize,
}

impl Default for SimulatorConfig {
    fn default() -> SimulatorConfig {
        SimulatorConfig {
            rate_per_second: 100,
            latency_ms: 20..=200,
            decline_rate: 0.02,
            timeout_rate: 0.005,
            seed: None,
            timeout_hold: Duration::from_secs(30),
            in_flight_max: 1024,
        }
    }
}

/// A latency longer than ten minutes is a typo; it would also hold a slot
/// of `in_flight_max` for that long.
pub const LATENCY_MS_MAX: u64 = 600_000;

/// Why a configuration or one of its command-line strings was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("rate must be a whole number of charges per second of at least 1, got {0:?}")]
    Rate(String),
    #[error(
        "latency must be MIN..MAX milliseconds (both included, MIN <= MAX <= {LATENCY_MS_MAX}) or one number, got {0:?}"
    )]
    Latency(String),
    #[error("{name} must be a probability between 0 and 1, got {value:?}")]
    Probability { name: &'static str, value: String },
    #[error("in_flight_max must be at least 1")]
    InFlight,
}

impl SimulatorConfig {
    /// Checks what the field types alone cannot: the simulator refuses to
    /// start on a configuration it cannot honour.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.rate_per_second == 0 {
            return Err(ConfigError::Rate("0".to_owned()));
        }
        let (min, max) = (*self.latency_ms.start(), *self.latency_ms.end());
        if min > max || max > LATENCY_MS_MAX {
            return Err(ConfigError::Latency(format!("{min}..{max}")));
        }
        check_probability("decline_rate", self.decline_rate)?;
        check_probability("timeout_rate", self.timeout_rate)?;
        if self.in_flight_max == 0 {
            return Err(ConfigError::InFlight);
        }
        Ok(())
    }
}

/// Parses `--rate`: charges per second, at least 1.
pub fn parse_rate_per_second(text: &str) -> Result<u32, ConfigError> {
    match text.trim().parse::<u32>() {
        Ok(rate) if rate > 0 => Ok(rate),
        _ => Err(ConfigError::Rate(text.to_owned())),
    }
}

/// Parses `--latency-ms`: `"20..200"` and `"20..=200"` both mean 20 to 200
/// milliseconds with both ends included, and `"50"` means always 50.
pub fn parse_latency_ms(text: &str) -> Result<RangeInclusive<u64>, ConfigError> {
    let invalid = || ConfigError::Latency(text.to_owned());
    let trimmed = text.trim();
    let (min, max) = match trimmed.split_once("..") {
        Some((min, max)) => (min, max.strip_prefix('=').unwrap_or(max)),
        None => (trimmed, trimmed),
    };
    let min = min.trim().parse::<u64>().map_err(|_| invalid())?;
    let max = max.trim().parse::<u64>().map_err(|_| invalid())?;
    if min > max || max > LATENCY_MS_MAX {
        return Err(invalid());
    }
    Ok(min..=max)
}

/// Parses `--decline-rate` and `--timeout-rate`: a probability in `0..=1`.
/// Its error names no flag, so that clap can put the flag's name before it.
pub fn parse_probability(text: &str) -> Result<f64, ConfigError> {
    let invalid = || ConfigError::Probability {
        name: "the value",
        value: text.to_owned(),
    };
    let probability = text.trim().parse::<f64>().map_err(|_| invalid())?;
    check_probability("the value", probability).map_err(|_| invalid())?;
    Ok(probability)
}

fn check_probability(name: &'static str, probability: f64) -> Result<(), ConfigError> {
    // `contains` is false for NaN, so NaN is refused here too.
    if (0.0..=1.0).contains(&probability) {
        Ok(())
    } else {
        Err(ConfigError::Probability {
            name,
            value: probability.to_string(),
        })
    }
}
